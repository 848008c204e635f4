//! wsgate: a TLS-terminating WebSocket reverse proxy and load balancer.
//!
//! The path of one connection, module by module (see ARCHITECTURE.md):
//! `listen` (accept, TLS via `tls`) -> `handshake` (RFC 6455 checks) -> `route`
//! and `origin` -> `balance` -> `upstream` -> `relay`. `server` wires them up from
//! a `config::Config`; `session` counts live relays; `echo` is a small WebSocket
//! echo backend used by the demo and the tests.

pub mod admission;
pub mod backend;
pub mod balance;
pub mod config;
pub mod echo;
pub mod handshake;
pub mod health;
pub mod listen;
pub mod origin;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;
