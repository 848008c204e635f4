//! The `wsgate` command: `run` (the default), `check` (like `nginx -t`), `reload`
//! (signal the running process and wait for the outcome), `demo`, `completions`
//! and (hidden, for packaging) `man`. The definition is in cli.rs.
//!
//! Signals of `run`: SIGHUP reloads (config, certificates, keys); SIGTERM or SIGINT
//! drain and exit (a second one forces the stop: the sessions still open are closed
//! at once, each with its access line). systemd hears of each step.

mod alloc;
mod cli;
mod demo;
mod reload;

use clap::Parser;
use cli::{Cli, Command};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::reload::Handle;
use tracing_subscriber::{EnvFilter, Registry};
use wsgate::config::{Config, LogFormat, Server};
use wsgate::control::check::CheckSummary;
use wsgate::control::notify;
use wsgate::control::server::{Running, StopCause};
use wsgate::errors::ErrorChain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.config_path().to_path_buf();
    let command = cli.command.unwrap_or(Command::Run { config: None });
    match command {
        Command::Completions { shell } => return cli::completions(shell),
        Command::Man { dir } => return cli::man(&dir),
        _ => {}
    }
    // Before anything is opened or derived from it: the soft open-file limit up to
    // the hard one (max_connections is derived from it).
    wsgate::resources::raise_nofile();
    match command {
        Command::Run { .. } => {
            let Some(cfg) = load(&path) else {
                return ExitCode::FAILURE;
            };
            match runtime(cfg.server.workers) {
                Some(rt) => rt.block_on(run(&path, cfg)),
                None => ExitCode::FAILURE,
            }
        }
        Command::Check { .. } => check(&path),
        Command::Reload { pid, timeout, .. } => {
            reload_command(&path, pid, Duration::from_secs(timeout))
        }
        Command::Demo => match runtime(None) {
            Some(rt) => rt.block_on(demo::run()),
            None => ExitCode::FAILURE,
        },
        Command::Completions { .. } | Command::Man { .. } => ExitCode::SUCCESS,
    }
}

/// The tokio runtime: `workers` threads, or one per core.
fn runtime(workers: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.on_thread_park(alloc::on_thread_park);
    match b.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("wsgate: cannot start the runtime: {e}");
            None
        }
    }
}

fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{}", ErrorChain(&e));
            None
        }
    }
}

/// Parses and loads everything `run` would; prints the problems.
fn checked(path: &Path) -> Option<(Config, CheckSummary)> {
    let cfg = load(path)?;
    match wsgate::control::check::check_summary(&cfg) {
        Ok(summary) => {
            for w in &summary.warnings {
                eprintln!("warning: {w}");
            }
            Some((cfg, summary))
        }
        Err(e) => {
            eprintln!("{}", ErrorChain(&e));
            None
        }
    }
}

/// `wsgate check`: the problems, or a line saying the file is fine and a summary.
fn check(path: &Path) -> ExitCode {
    match checked(path) {
        Some((_, summary)) => {
            println!("{}: configuration OK", path.display());
            println!("{}", summary.line(std::time::SystemTime::now()));
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// `wsgate reload`: refuses a broken config before disturbing the running process,
/// then sends it SIGHUP and waits for the outcome (reload.rs).
fn reload_command(path: &Path, pid: Option<u32>, timeout: Duration) -> ExitCode {
    let Some((cfg, _)) = checked(path) else {
        eprintln!("not reloading: the running wsgate keeps its configuration");
        return ExitCode::FAILURE;
    };
    reload::run(path, &cfg, pid, timeout)
}

type LogHandle = Handle<EnvFilter, Registry>;

/// Sets up logging: `RUST_LOG` wins over the config's `log_level`. The handle
/// changes the level on reload (`None` when `RUST_LOG` rules or logging was set up).
/// `Json` writes one object per line with the event's fields at the top level.
pub fn init_logging(level: &str, format: LogFormat) -> Option<LogHandle> {
    use std::io::IsTerminal;
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Text => fmt.with_target(false).boxed(),
        // The target says which lines are the access log ("access").
        LogFormat::Json => fmt.json().flatten_event(true).with_target(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .ok()?;
    (!fixed).then_some(handle)
}

fn status_line(running: &Running) -> String {
    format!(
        "{} live sessions, {} open connections; configuration generation {}",
        running.live_sessions(),
        running.open_connections(),
        running.generation().id
    )
}

fn write_pid_file(cfg: &Config) {
    if let Some(file) = &cfg.server.pid_file
        && let Err(e) = std::fs::write(file, format!("{}\n", std::process::id()))
    {
        tracing::warn!("{}: cannot write the pid file: {e}", file.display());
    }
}

async fn run(path: &Path, cfg: Config) -> ExitCode {
    let log = init_logging(&cfg.server.log_level, cfg.server.log_format);
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("wsgate: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut running = match wsgate::control::server::start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}", ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    write_pid_file(&cfg);
    notify::ready(&status_line(&running));
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(notify::watchdog(every));
    }
    let mut status_tick = tokio::time::interval(Duration::from_secs(5));
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&mut running, path, log.as_ref(), &cfg.server).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = status_tick.tick() => {
                let s = status_line(&running);
                if s != last_status {
                    notify::status(&s);
                    last_status = s;
                }
            }
        }
    }
    let g = running.generation();
    let msg = format!(
        "draining: {} live sessions closing over {:?} (at most {:?})",
        running.live_sessions(),
        g.drain_spread(),
        g.shutdown_timeout()
    );
    let grace = g.config.server.shutdown_grace.get();
    if grace.is_zero() {
        tracing::info!("stopping: not ready, no new connections; {msg}");
    } else {
        tracing::info!("stopping: not ready; accepting for {grace:?} more, then {msg}");
    }
    notify::stopping(&msg);
    // A second SIGTERM or SIGINT forces the stop: every session still open gets
    // its Close 1001 and its access line before the process exits.
    let second = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let stopped = running.shutdown_until(second).await;
    if let Some(file) = &cfg.server.pid_file {
        let _ = std::fs::remove_file(file);
    }
    // The last line, whatever ended the shutdown.
    if stopped.why == StopCause::Drained && stopped.unfinished == 0 {
        tracing::info!("{stopped}");
    } else {
        tracing::warn!("{stopped}");
    }
    ExitCode::SUCCESS
}

/// SIGHUP: reload the file. Either way the process goes on serving, and systemd
/// gets `RELOADING=1` then `READY=1` with the outcome in `STATUS=`.
async fn reload(running: &mut Running, path: &Path, log: Option<&LogHandle>, at_start: &Server) {
    notify::reloading();
    tracing::info!("reloading {}", path.display());
    match running.reload_file(path).await {
        Ok((r, cfg)) => {
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            if cfg.server.workers != at_start.workers {
                tracing::warn!("workers changed in the file: that takes a restart");
            }
            if let Some(h) = log
                && let Err(e) = h.reload(EnvFilter::new(&cfg.server.log_level))
            {
                tracing::warn!("log_level not changed: {e}");
            }
            if cfg.server.log_format != at_start.log_format {
                tracing::warn!(
                    "log_format changed in the file: it takes effect at the next start ({:?} until then)",
                    at_start.log_format
                );
            }
            write_pid_file(&cfg);
            tracing::info!(
                generation = r.generation,
                "reload succeeded: {} listeners added, {} removed",
                r.listeners_added.len(),
                r.listeners_removed.len()
            );
            notify::ready(&status_line(running));
        }
        Err(e) => {
            let g = running.generation().id;
            let e = ErrorChain(&e);
            tracing::error!("reload failed, still serving generation {g}: {e}");
            notify::ready(&format!("reload failed: {e}; {}", status_line(running)));
        }
    }
}

/// Resolves on SIGINT or SIGTERM (the demo's way out).
pub async fn wait_for_signal() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
