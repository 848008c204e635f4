//! The real `wsgate` binary as a child process, for signals, reloads and restarts:
//! its config in a folder of its own, its stderr in a file, and a `NOTIFY_SOCKET`
//! the test reads, so a test waits on `READY=1` instead of sleeping.

use super::DEADLINE;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UnixDatagram;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder for one test's files (removed by `Bin`'s drop, or by the caller).
pub fn scratch_dir(what: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsgate-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Bin {
    pub child: Child,
    pub dir: PathBuf,
    pub conf: PathBuf,
    log: PathBuf,
    notify: UnixDatagram,
    /// Every notification received so far, in order.
    pub notes: Vec<String>,
}

impl Bin {
    /// Writes `config` and starts `wsgate run` on it; returns once it sent READY=1.
    pub async fn start(what: &str, config: &str) -> Bin {
        Bin::start_with(what, config, |_| {}).await
    }

    /// Like `start`; `adjust` may add to the command (environment, fds) first.
    pub async fn start_with(what: &str, config: &str, adjust: impl FnOnce(&mut Command)) -> Bin {
        let mut b = Bin::spawn_with(scratch_dir(what), config, adjust);
        b.wait_ready().await;
        b
    }

    /// Starts the binary without waiting for readiness.
    pub fn spawn_with(dir: PathBuf, config: &str, adjust: impl FnOnce(&mut Command)) -> Bin {
        Bin::spawn_command(dir, config, |conf| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsgate"));
            cmd.args(["run", "-c"]).arg(conf);
            adjust(&mut cmd);
            cmd
        })
    }

    /// Starts whatever `command` builds for the config file (a wrapper such as
    /// `systemd-socket-activate` around `wsgate run -c <conf>`, say), with the
    /// notify socket, stderr log and environment of every `Bin`.
    pub fn spawn_command(
        dir: PathBuf,
        config: &str,
        command: impl FnOnce(&std::path::Path) -> Command,
    ) -> Bin {
        let conf = dir.join("wsgate.toml");
        std::fs::write(&conf, config).unwrap();
        let sock = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).unwrap();
        let log = dir.join("stderr.log");
        let mut cmd = command(&conf);
        cmd.env_remove("RUST_LOG")
            .env("NOTIFY_SOCKET", &sock)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("wsgate starts");
        Bin {
            child,
            dir,
            conf,
            log,
            notify,
            notes: Vec::new(),
        }
    }

    /// The next notification datagram (all its lines).
    pub async fn next_note(&mut self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = match tokio::time::timeout(DEADLINE, self.notify.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            other => panic!(
                "no notification from wsgate within {DEADLINE:?} ({other:?}); notes so far: {:?}\nlog:\n{}",
                self.notes,
                self.log()
            ),
        };
        let s = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.notes.push(s.clone());
        s
    }

    /// Skips notifications until one has a line equal to `line`; returns it.
    pub async fn wait_note(&mut self, line: &str) -> String {
        loop {
            let n = self.next_note().await;
            if n.lines().any(|l| l == line) {
                return n;
            }
        }
    }

    pub async fn wait_ready(&mut self) -> String {
        self.wait_note("READY=1").await
    }

    /// SIGHUP, then waits for RELOADING=1 and the READY=1 that ends the reload;
    /// returns that READY notification (its STATUS says how the reload went).
    pub async fn reload(&mut self) -> String {
        self.signal(libc::SIGHUP);
        self.wait_note("RELOADING=1").await;
        self.wait_ready().await
    }

    /// Writes a new config for the next reload.
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.conf, config).unwrap();
    }

    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child; plain integers.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to wsgate");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every address wsgate said it is listening on, in order.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.log()
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("listening on ")? + "listening on ".len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    /// The admin listener's address, from its log line.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.log().lines().find_map(|l| {
            let rest =
                &l[l.find("admin interface on http://")? + "admin interface on http://".len()..];
            rest.split('/').next()?.parse().ok()
        })
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.listening()[0]
    }

    /// Waits for the process to exit by itself within `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < limit,
                "wsgate did not exit within {limit:?}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config text for the binary: a TLS listener on 127.0.0.1:`port` (0: any) with
/// certs-example, loopback exempt from per-IP limits, no drain spread unless
/// `rest` has a `[server]` table, then `rest`.
pub fn bin_config(port: u16, rest: &str) -> String {
    let server = if rest.contains("[server]") {
        ""
    } else {
        r#"[server]
drain_spread = "0s"
"#
    };
    let limits = if rest.contains("[limits]") {
        ""
    } else {
        r#"[limits]
exempt = ["127.0.0.0/8"]
"#
    };
    format!(
        r#"{server}{limits}[[listener]]
address = "127.0.0.1:{port}"
cert = "{c}/fullchain.pem"
key = "{c}/key.pem"

{rest}"#,
        c = super::CERTS
    )
}
