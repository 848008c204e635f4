//! Backends: the pools a route sends sessions to, and reaching one backend.
//!
//! - `balance`: a pool and its pick (round robin, ip_hash, least_conn, sticky), and
//!   the `Lease` a session holds on its backend; the pool's bounds on passive checks
//!   (`max_ejection_percent`, panic mode).
//! - `backend`: one backend's identity and health state (active checks, passive
//!   ejections, slow start, drain).
//! - `health`: the active health checker tasks; `probe`: why a probe failed.
//! - `hash`, `cookie`: rendezvous hashing, and the sticky cookie's value.
//! - `connect`: opening a backend connection and forwarding the upgrade to it;
//!   `socket`: its source address and the ephemeral ports; `error`: why a backend
//!   could not be used, told apart from wsgate's own shortage.
//!
//! Does not own: choosing the route or its pool (route/), or the session (relay/).

pub mod backend;
pub mod balance;
pub mod connect;
pub mod cookie;
pub mod error;
pub mod hash;
pub mod health;
pub mod probe;
pub mod socket;
