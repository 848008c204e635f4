//! Accepting and admitting client connections, before any TLS or HTTP work.
//!
//! - `listen`: the accept loop of one listener, the TLS handshake, and the hand-off
//!   to `http::serve`.
//! - `admission`: `max_connections` slots, per-IP concurrency and connect-rate buckets.
//! - `overload`: the global connect pacing and the memory limit.
//! - `proxy_proto`: the PROXY protocol header (read from trusted proxies, and
//!   encoded toward backends).
//!
//! Does not own: what a connection says (http/) or the TLS policy (tls/).

pub mod admission;
pub mod listen;
pub mod overload;
pub mod proxy_proto;
