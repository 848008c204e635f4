//! The command line, as clap reads it; the man page (`wsgate man`) and the shell
//! completions (`wsgate completions SHELL`) are generated from this same definition.

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the configuration is read when `-c` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/wsgate/wsgate.toml";

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "TLS-terminating WebSocket reverse proxy and load balancer",
    long_about = "TLS-terminating WebSocket reverse proxy and load balancer.\n\n\
        Without a command, wsgate runs the proxy (`wsgate run`). Signals of a running \
        wsgate: SIGHUP reloads the configuration, certificates and keys; SIGTERM or \
        SIGINT drain the sessions and exit (a second one exits at once)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Configuration file to run when no command is given (a command's own `-c` wins).
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the proxy (the default).
    Run {
        /// Configuration file to serve; SIGHUP re-reads this same path
        /// [default: /etc/wsgate/wsgate.toml].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and certificates, then exit 0 (valid) or 1.
    Check {
        /// Configuration file to validate, with every certificate, key, CA bundle and
        /// JWT key it names (nothing is bound or started)
        /// [default: /etc/wsgate/wsgate.toml].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration, ask the running wsgate to reload it (SIGHUP), and
    /// wait for the outcome: exit 0 when the new generation is loaded, 1 when the
    /// process refused it (its reason is printed).
    Reload {
        /// The running wsgate's configuration file: validated here first (a broken
        /// one is not signalled); its `[server] pid_file` names the process and its
        /// `[admin] address` is where the outcome is read. The process re-reads the
        /// path it was started with [default: /etc/wsgate/wsgate.toml].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The running process; default: the `pid_file` of the configuration.
        #[arg(long)]
        pid: Option<u32>,
        /// Seconds to wait for the outcome (read from the admin listener's /reload).
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Run two echo backends behind wsgate on https://127.0.0.1:8443 with certs-example/.
    Demo,
    /// Print the shell completion script for SHELL to stdout.
    Completions {
        /// The shell whose script to print.
        shell: Shell,
    },
    /// Write the wsgate(1) man page (DIR/wsgate.1) and one per command
    /// (DIR/wsgate-COMMAND.1), generated from this command line.
    #[command(hide = true)]
    Man {
        /// Folder to write the pages into.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

impl Cli {
    /// The configuration file: the command's own `-c`, else the top-level one.
    pub(crate) fn config_path(&self) -> &Path {
        let own = match &self.command {
            Some(
                Command::Run { config }
                | Command::Check { config }
                | Command::Reload { config, .. },
            ) => config.as_deref(),
            _ => None,
        };
        own.unwrap_or(&self.config)
    }
}

/// `wsgate completions SHELL`.
pub(crate) fn completions(shell: Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "wsgate", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `wsgate man`: writes wsgate(1) as DIR/wsgate.1, and a page for each listed
/// command (wsgate-reload.1, ...), since wsgate(1) refers to them.
pub(crate) fn man(dir: &Path) -> ExitCode {
    match clap_mangen::generate_to(Cli::command(), dir) {
        Ok(()) => {
            println!("{}", dir.join("wsgate.1").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: cannot write the man pages: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
