//! systemd socket activation: listening sockets handed over in `LISTEN_FDS`.
//!
//! Owns: taking the inherited sockets once per process (checking each is a
//! listening TCP socket), and matching them to `[[listener]]` blocks, by
//! `FileDescriptorName=` equal to the listener's `name`, else by address. While a
//! service restarts, systemd keeps these sockets open, so connections queue in the
//! kernel instead of being refused. An inherited socket no listener uses is kept
//! (a later reload may add its listener), not closed.
//! `ActivationError` says why the handed-over sockets cannot be used.
//! Does not own: binding sockets of our own (listen.rs) or serving them (server.rs).

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One socket systemd passed us.
#[derive(Debug)]
pub struct Inherited {
    /// `FileDescriptorName=` (systemd's default is the socket unit's name).
    pub name: String,
    pub addr: SocketAddr,
    pub listener: TcpListener,
}

/// Why the sockets systemd passed cannot be used.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_FDS`, `LISTEN_PID` or `LISTEN_FDNAMES` is malformed.
    Environment(std::io::Error),
    /// An inherited socket cannot be made non-blocking.
    Socket { fd: RawFd, source: std::io::Error },
    /// An inherited descriptor is not a listening TCP socket.
    NotTcpListener { fd: RawFd, name: String },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Environment(_) => {
                f.write_str("socket activation: bad LISTEN_FDS/LISTEN_PID")
            }
            ActivationError::Socket { fd, .. } => {
                write!(f, "socket activation: fd {fd}: cannot make it non-blocking")
            }
            ActivationError::NotTcpListener { fd, name } => write!(
                f,
                "socket activation: fd {fd} ({name}) is not a listening TCP socket"
            ),
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Environment(e) | ActivationError::Socket { source: e, .. } => Some(e),
            ActivationError::NotTcpListener { .. } => None,
        }
    }
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The sockets passed in `LISTEN_FDS` for this process; empty without socket
/// activation, and on every call after the first (each fd is owned once).
pub fn take() -> Result<Vec<Inherited>, ActivationError> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let fds = sd_notify::listen_fds_with_names().map_err(ActivationError::Environment)?;
    let mut out = Vec::new();
    for (fd, name) in fds {
        // SAFETY: systemd hands these descriptors to this process (LISTEN_PID is
        // ours) and `TAKEN` makes sure each is wrapped exactly once.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
        let is_tcp_listener = socket.r#type().ok() == Some(socket2::Type::STREAM)
            && socket.is_listener().unwrap_or(false);
        let addr = socket.local_addr().ok().and_then(|a| a.as_socket());
        match addr {
            Some(addr) if is_tcp_listener => {
                socket
                    .set_nonblocking(true)
                    .map_err(|source| ActivationError::Socket { fd, source })?;
                out.push(Inherited {
                    name,
                    addr,
                    listener: socket.into(),
                });
            }
            _ => {
                return Err(ActivationError::NotTcpListener { fd, name });
            }
        }
    }
    Ok(out)
}

/// Takes out of `pool` the socket for a listener called `name` on `addr`: the one
/// named so, else the one bound to that address.
pub fn claim(pool: &mut Vec<Inherited>, name: &str, addr: SocketAddr) -> Option<Inherited> {
    let i = pool
        .iter()
        .position(|s| s.name == name)
        .or_else(|| pool.iter().position(|s| s.addr == addr))?;
    Some(pool.remove(i))
}
