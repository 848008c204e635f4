//! The HTTP/1.1 side of a client connection, wsgate's own (no HTTP server library):
//! so that every framing rule is enforced with a defined answer, the request-head
//! timeout stays separate from the keep-alive idle timeout, and a connection can
//! carry plain requests and then a WebSocket upgrade.
//!
//! - `serve`: the connection loop (heads, deadlines, keep-alive, dispatch).
//! - `head`: parsing one head and the RFC 9112 smuggling rules.
//! - `body`: request bodies (chunked decoding, streaming to the backend).
//! - `forward`: one proxied plain request, with retries and pooled connections.
//! - `write`: response heads and bodies toward the client.
//! - `idle`: a backend's idle keep-alive connections (held by `backend::Backend`).

pub mod body;
pub mod conn;
pub mod forward;
pub mod handshake;
pub mod head;
pub mod idle;
pub mod serve;
pub mod upgrade;
pub mod write;
