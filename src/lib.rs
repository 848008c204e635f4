//! wsgate: a TLS-terminating WebSocket reverse proxy and load balancer.
//!
//! The modules below are listed in the order a connection meets them; ARCHITECTURE.md
//! walks the path and states the import rules. Modules that tests, benches or the
//! binary use are `pub`; the rest are `pub(crate)`.

// The control plane: start, reload, stop, DNS discovery, the admin listener, systemd.
pub mod control;

// The data path, in order: accept and admit, TLS, HTTP (upgrade or plain request),
// route and authenticate, backends (balance, health, connect), relay.
pub mod accept;
pub mod backends;
pub mod http;
pub mod relay;
pub(crate) mod route;
pub mod tls;

// The generation: everything built from one checked config, behind one swap point.
pub mod runtime;

// The config, and the leaves every layer may use.
pub(crate) mod access;
pub(crate) mod census;
pub mod config;
pub(crate) mod conn;
pub mod echo;
pub mod errors;
pub(crate) mod lag;
pub(crate) mod metrics;
pub(crate) mod refusal;
pub mod resources;
