//! The command line: `wsgate check` and `--version`.

use super::*;
use std::process::Command;

fn wsgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run wsgate")
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wsgate.toml");
    if !conf.exists() {
        println!("skipped: {} does not exist yet", conf.display());
        return;
    }
    let out = wsgate(&["check", "-c", "conf/wsgate.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn check_refuses_a_broken_file_on_stderr() {
    let dir = std::env::temp_dir().join(format!("wsgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(&file, format!("{LISTENER}{POOL}weight = 0\n{ROUTE}")).unwrap();
    let out = wsgate(&["check", "-c", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let expected = format!("{}:8:1: pool[0].backend[0].weight: ", file.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_refuses_a_missing_file() {
    let out = wsgate(&["check", "-c", "/nonexistent/wsgate.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("/nonexistent/wsgate.toml"), "{stderr}");
}

#[test]
fn version_prints_the_version() {
    let out = wsgate(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wsgate {}", env!("CARGO_PKG_VERSION"))
    );
}
