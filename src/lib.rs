//! wsgate: a TLS-terminating WebSocket reverse proxy and load balancer.
//!
//! The modules below are listed in the order a connection meets them (see
//! ARCHITECTURE.md). Imports go one way: a module uses those listed after it, never
//! those before it (`control` drives the path; the leaves at the end use nothing above).

// The control plane: start, reload, stop, DNS discovery, the admin listener, systemd.
pub mod control;

// The data path, in order.
pub mod accept;
pub mod backends;
pub mod http;
pub mod relay;
pub mod route;
pub mod tls;

// The generation: everything built from one checked config, behind one swap point.
pub mod runtime;

// The config, and the leaves every layer uses.
pub mod access;
pub mod census;
pub mod config;
pub mod conn;
pub mod echo;
pub mod metrics;
pub mod refusal;
pub mod resources;
