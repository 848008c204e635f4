//! wsgate: a TLS-terminating WebSocket reverse proxy and load balancer.
//!
//! The path of one connection, module by module (see ARCHITECTURE.md):
//! `listen` (accept, admission, TLS via `tls`) -> `http` (the HTTP/1.1 connection:
//! heads, keep-alive, plain requests proxied by `http::forward`, after the route's
//! JWT check) -> `proxy` for an upgrade: `handshake` (RFC 6455 checks) -> `route`,
//! `origin` and `auth` (JWT) -> `balance` -> `upstream` -> `relay`, under the
//! generation (`runtime`) the request arrived in. `server` binds, reloads
//! and stops; `config` turns the file into a checked `Config`; `session` counts
//! live connections and carries the drain signal; `discovery` re-resolves
//! `resolve` backends and publishes their sets; `notify` talks to systemd; `echo`
//! is a small WebSocket echo backend used by the demo and the tests.

pub mod access;
pub mod activation;
pub mod admin;
pub mod admission;
pub mod answer;
pub mod auth;
pub mod backend;
pub mod balance;
pub mod config;
pub mod conn;
pub mod cookie;
pub mod discovery;
pub mod echo;
pub mod handshake;
pub mod hash;
pub mod health;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod origin;
pub mod overload;
pub mod proxy;
pub mod proxy_proto;
pub mod relay;
pub mod resources;
pub mod route;
pub mod runtime;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;
