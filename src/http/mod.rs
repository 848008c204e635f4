//! The HTTP/1.1 side of a client connection, wsgate's own (no HTTP server library), so
//! every framing rule has a defined answer, the head timeout stays apart from the
//! keep-alive idle timeout, and one connection can carry plain requests, then an upgrade.
//!
//! Owns: `serve` (the connection loop), `head` (one head, RFC 9112's smuggling rules),
//! `handshake` + `upgrade` (upgrades), `forward` + `body` + `write` + `idle` (a proxied
//! plain request, request bodies, responses, a backend's idle connections), and `conn`
//! (what both paths share). Does not own: routing (route/) or the session (relay/).

pub mod body;
pub mod conn;
pub mod forward;
pub mod handshake;
pub mod head;
pub mod idle;
pub mod serve;
pub mod upgrade;
pub mod write;
