//! One client connection: the facts about it and the settings it runs under.
//!
//! Owns: `ConnSettings` (handshake, request head, keep-alive and request body
//! timeouts, head size limit: taken from the generation the connection was accepted
//! under, then from the current one for each later request) and `ConnInfo` (peer, the
//! listener it came in on, TLS or not, the verified client-certificate subject).
//! Does not own: accepting (accept/listen.rs) or what a request means (http/).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeouts and sizes every client connection runs under.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub tls_handshake_timeout: Duration,
    /// The whole request head (from its first byte; the first request's from the
    /// connection's start).
    pub header_read_timeout: Duration,
    /// Idle time allowed between two requests on one connection.
    pub keepalive_timeout: Duration,
    /// Longest pause while reading a proxied request's body.
    pub request_body_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Who is connected, and where.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the source a trusted PROXY header carried.
    pub peer: SocketAddr,
    /// The address the client connected to (the PROXY header's destination).
    pub local: SocketAddr,
    /// The listener's name (its address unless the config names it).
    pub listener: Arc<str>,
    pub tls: bool,
    /// The subject of the client certificate the TLS handshake verified (RFC 4514).
    pub client_subject: Option<Arc<str>>,
    /// When the TCP connection was accepted.
    pub accepted: Instant,
}
