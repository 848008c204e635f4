//! The `wsgate` command: `run` (the default), `check` (like `nginx -t`), `demo`.

mod demo;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use wsgate::config::Config;

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "TLS-terminating WebSocket reverse proxy and load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for `run` when no command is given).
    #[arg(short, long, global = true, default_value = "/etc/wsgate/wsgate.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and certificates, then exit 0 (valid) or 1.
    Check,
    /// Run two echo backends behind wsgate on https://127.0.0.1:8443 with certs-example/.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => rt.block_on(run(&cli.config)),
        Command::Check => check(&cli.config),
        Command::Demo => rt.block_on(demo::run()),
    }
}

fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let Some(cfg) = load(path) else {
        return ExitCode::FAILURE;
    };
    match wsgate::server::check_tls(&cfg) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: configuration OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging: `RUST_LOG` wins over the config's `log_level`.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run(path: &Path) -> ExitCode {
    let Some(cfg) = load(path) else {
        return ExitCode::FAILURE;
    };
    init_logging(&cfg.server.log_level);
    let mut running = match wsgate::server::start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    let grace = cfg.server.close_timeout.get() + Duration::from_secs(1);
    tracing::info!(
        "stopping: no new connections; closing {} live sessions with 1001 (up to {grace:?})",
        running.live_sessions()
    );
    running.stop_accepting().await;
    running.close_sessions();
    if tokio::time::timeout(grace, running.wait_sessions_done())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} sessions still open after {grace:?}; exiting",
            running.live_sessions()
        );
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
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
