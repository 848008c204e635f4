//! The control plane: what stands above the data path and drives it.
//!
//! - `check`: what `wsgate check` runs and the summary it ends with.
//! - `server`: binds the listeners, starts, reloads (publishing each generation) and stops.
//! - `discovery`: re-resolves `resolve` backends and publishes their address sets.
//! - `admin`: the admin listener (metrics, status page, backends, health endpoints).
//! - `notify`, `activation`: systemd readiness/status messages and socket activation.
//!
//! Does not own: anything a single connection does (accept/ and below).

pub mod activation;
pub mod admin;
pub mod check;
pub mod discovery;
pub mod notify;
pub mod server;
