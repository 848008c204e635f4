//! The `wsgate` command line on the real binary: `reload` waits for and reports the
//! running process's outcome.

mod common;
use common::bin::{Bin, bin_config};
use common::*;
use std::process::Output;

/// A port free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `wsgate args...`, run off the test's runtime threads.
async fn wsgate(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn reload(conf: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "reload".to_string(),
        "-c".into(),
        conf.display().to_string(),
    ];
    args.extend(extra.iter().map(ToString::to_string));
    let out = wsgate(args).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with a pid file and `admin` as the admin address ("" turns it off).
fn config(pid_file: &std::path::Path, admin: &str, backend: std::net::SocketAddr) -> String {
    bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
pid_file = "{}"

[admin]
address = "{admin}"

{}"#,
            pid_file.display(),
            pool_and_route("p", "round_robin", &[(backend, 1)])
        ),
    )
}

/// The attempt count `/reload` reports.
async fn attempts(admin: std::net::SocketAddr) -> u64 {
    let r = common::admin::get(admin, "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["started"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_the_new_generation_or_the_refusal_and_its_reason() {
    let e = echo("e").await;
    let dir = common::bin::scratch_dir("cli-reload");
    let pid_file = dir.join("wsgate.pid");
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let good = config(&pid_file, &admin.to_string(), e.addr);
    let w = Bin::start("cli-reload-bin", &good).await;

    // A good reload: exit 0, the new generation named.
    let (code, out, err) = reload(&w.conf, &[]).await;
    assert_eq!(code, Some(0), "{out}{err}\nlog:\n{}", w.log());
    assert_eq!(out.trim(), "reloaded: generation 2", "{err}");

    // A new listener on a port already taken: the process refuses; exit 1 with its reason.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let two = format!(
        r#"
[[listener]]
name = "two"
address = "127.0.0.1:{port}"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
"#
    );
    w.write_config(&format!("{good}{two}"));
    let (code, out, err) = reload(&w.conf, &["--timeout", "20"]).await;
    assert_eq!(code, Some(1), "{out}{err}\nlog:\n{}", w.log());
    let refused = err.lines().next().unwrap_or_default();
    assert!(refused.starts_with("reload refused: "), "{err}");
    assert!(
        refused.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(refused.contains("Address already in use"), "{err}");
    assert!(err.contains("still serving generation 2"), "{err}");
    drop(taken);

    // An invalid file: refused before any signal (the attempt count stays).
    let before = attempts(admin).await;
    w.write_config(&good.replace("[[pool]]", "[[pool]"));
    let (code, out, err) = reload(&w.conf, &[]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("not reloading"), "{err}");
    assert_eq!(attempts(admin).await, before, "the process was signalled");

    // Back to good: generation 3 (the refused attempt made none).
    w.write_config(&good);
    let (code, out, err) = reload(&w.conf, &[]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "reloaded: generation 3", "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Without an admin listener the outcome cannot be read: the signal is sent, the
/// command says it cannot confirm, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_an_admin_listener_warns_that_it_cannot_confirm() {
    let e = echo("e").await;
    let dir = common::bin::scratch_dir("cli-reload-noadmin");
    let pid_file = dir.join("wsgate.pid");
    let mut w = Bin::start("cli-reload-noadmin-bin", &config(&pid_file, "", e.addr)).await;
    let (code, out, err) = reload(&w.conf, &[]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("sent SIGHUP to"), "{out}");
    assert!(
        err.contains("cannot be confirmed: no admin listener is configured"),
        "{err}"
    );
    w.wait_note("RELOADING=1").await;
    let ready = w.wait_ready().await;
    assert!(ready.contains("generation 2"), "{ready}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Two `wsgate reload` at once: each reports a finished attempt that began after
/// it read the count, and both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_reloads_each_report_an_outcome() {
    let e = echo("e").await;
    let dir = common::bin::scratch_dir("cli-reload-overlap");
    let pid_file = dir.join("wsgate.pid");
    let admin = format!("127.0.0.1:{}", free_port());
    let w = Bin::start("cli-reload-overlap-bin", &config(&pid_file, &admin, e.addr)).await;
    let (a, b) = tokio::join!(reload(&w.conf, &[]), reload(&w.conf, &[]));
    for (code, out, err) in [a, b] {
        assert_eq!(code, Some(0), "{out}{err}\nlog:\n{}", w.log());
        assert!(out.starts_with("reloaded: generation "), "{out}{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn run_sync(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = run_sync(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(!out.trim().is_empty(), "{shell}: empty script");
        for command in ["run", "check", "reload", "demo", "completions"] {
            assert!(out.contains(command), "{shell}: {command} missing:\n{out}");
        }
        assert!(
            out.contains("timeout"),
            "{shell}: reload's --timeout missing"
        );
    }
    let (ok, _, err) = run_sync(&["completions", "tcsh"]);
    assert!(!ok, "an unknown shell is refused");
    assert!(err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_is_generated_from_the_command_line() {
    let dir = common::bin::scratch_dir("cli-man");
    let (ok, out, err) = run_sync(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    let page = dir.join("wsgate.1");
    assert_eq!(out.trim(), page.display().to_string());
    let roff = std::fs::read_to_string(&page).unwrap();
    assert!(roff.contains(".TH wsgate 1"), "{roff}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(roff.contains(section), "{section} missing:\n{roff}");
    }
    assert!(roff.contains("reload"), "{roff}");
    // Each command wsgate(1) refers to has its page.
    for command in ["run", "check", "reload", "demo", "completions"] {
        assert!(
            dir.join(format!("wsgate-{command}.1")).exists(),
            "{command}"
        );
    }
    // Rendered by man(1) when it is installed.
    let rendered = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    if let Ok(r) = rendered
        && r.status.success()
    {
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(text.contains("NAME"), "{text}");
        assert!(
            text.contains("TLS-terminating WebSocket reverse proxy"),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The `-c` line (and its continuation) of `wsgate ARGS --help`.
fn config_help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let (ok, out, err) = run_sync(&all);
    assert!(ok, "{err}");
    let start = out.find("-c, --config").unwrap_or_else(|| panic!("{out}"));
    let rest = &out[start..];
    // Up to the next option.
    let end = rest[1..].find("\n  -").map_or(rest.len(), |i| i + 1);
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn each_command_has_its_own_config_help() {
    let top = config_help(&[]);
    let run = config_help(&["run"]);
    let check = config_help(&["check"]);
    let reload = config_help(&["reload"]);
    assert!(top.contains("to run when no command is given"), "{top}");
    assert!(run.contains("Configuration file to serve"), "{run}");
    assert!(run.contains("SIGHUP re-reads this same path"), "{run}");
    assert!(check.contains("Configuration file to validate"), "{check}");
    assert!(check.contains("nothing is bound or started"), "{check}");
    assert!(
        reload.contains("The running wsgate's configuration file"),
        "{reload}"
    );
    assert!(reload.contains("[admin] address"), "{reload}");
    for (name, text) in [("run", &run), ("check", &check), ("reload", &reload)] {
        assert!(!text.contains("when no command is given"), "{name}: {text}");
        assert!(text.contains("/etc/wsgate/wsgate.toml"), "{name}: {text}");
    }
    // Commands that read no configuration take no -c.
    for command in ["demo", "completions"] {
        let (_, out, _) = run_sync(&[command, "--help"]);
        assert!(!out.contains("--config"), "{command}: {out}");
    }
}

/// `-c` before the command still names the file (as when it was global), and a
/// command's own `-c` wins over it.
#[test]
fn config_before_or_after_the_command() {
    let good = format!("{}/conf/wsgate.toml", env!("CARGO_MANIFEST_DIR"));
    let (ok, out, err) = run_sync(&["-c", "/nonexistent.toml", "check"]);
    assert!(!ok, "{out}");
    assert!(err.contains("/nonexistent.toml"), "{err}");
    let (_, out, err) = run_sync(&["-c", "/nonexistent.toml", "check", "-c", &good]);
    assert!(!err.contains("/nonexistent.toml"), "{out}{err}");
}

/// `check` ends with one line: what the file defines and the earliest expiry.
#[test]
fn check_ends_with_a_summary_line() {
    let dir = common::bin::scratch_dir("cli-check");
    let conf = dir.join("wsgate.toml");
    let two = format!(
        r#"
[[listener]]
name = "two"
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
"#
    );
    let backends = [
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    ];
    let text = bin_config(
        0,
        &pool_and_route("p", "round_robin", &[(backends[0], 1), (backends[1], 1)]),
    );
    std::fs::write(&conf, format!("{text}{two}")).unwrap();
    let (ok, out, err) = run_sync(&["check", "-c", conf.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "OK: 2 listeners, 1 route, 1 pool, 2 backends, 2 certificates (earliest expiry 20"
        ),
        "{out}"
    );
    assert!(last.ends_with(" days)"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
