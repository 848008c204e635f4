//! Backends: the pools a route sends sessions to, and reaching one backend.
//!
//! Owns: `balance` (a pool, its pick, the `Lease`, panic mode, the bound on passive
//! ejections), `backend` (one backend's identity and health), `health` + `probe`
//! (active checks), `hash` + `cookie` (rendezvous hashing, the sticky value), and
//! `connect` + `socket` + `error` (opening a backend connection, its source address
//! and ports, why a backend could not be used as against wsgate's own shortage).
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
