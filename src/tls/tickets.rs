//! Session-ticket keys (TLS session resumption without server-side state).
//!
//! Owns: one rustls ticketer per TLS listener (`TicketKeys`, by its name, or its
//! address), kept across reloads so a client that reconnects after one resumes
//! instead of paying a full handshake (a restart makes new keys), and when a listener
//! gets new keys instead (`TicketKeys::for_listener`).
//! Does not own: the stateful session cache used with `session_tickets = false`
//! (rustls' default, per generation) or anything of the handshake itself.

use super::TlsError;
use crate::config::ListenerTls;
use rustls::crypto::aws_lc_rs::Ticketer;
use rustls::server::ProducesTickets;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The ticketers of the process, by listener name.
#[derive(Default)]
pub struct TicketKeys {
    by_listener: Mutex<HashMap<String, Arc<dyn ProducesTickets>>>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys").finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// The ticketer for the listener named `listener` with settings `t`; `None` when
    /// it issues no tickets. A listener that verifies client certificates gets new
    /// keys at every build: a ticket carries the identity verified under the CA bundle
    /// of its time, and a reload that changed the bundle must not let it resume.
    pub fn for_listener(
        &self,
        listener: &str,
        t: &ListenerTls,
    ) -> Result<Option<Arc<dyn ProducesTickets>>, TlsError> {
        if !t.session_tickets {
            return Ok(None);
        }
        if t.client_certs.is_some() {
            return fresh().map(Some);
        }
        let mut by = self.by_listener.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = by.get(listener) {
            return Ok(Some(k.clone()));
        }
        let k = fresh()?;
        by.insert(listener.to_owned(), k.clone());
        Ok(Some(k))
    }
}

/// New keys (rustls' `Ticketer`): tickets are AES-256 encrypted and HMAC-SHA256
/// authenticated, valid 12 hours, the key rotated every 6 hours with the previous
/// one still accepted. rustls itself refuses a ticket for another SNI name or cipher
/// suite, and runs the SNI resolver on resumed handshakes too, so `strict_sni`
/// still applies to them.
fn fresh() -> Result<Arc<dyn ProducesTickets>, TlsError> {
    Ticketer::new().map_err(|source| TlsError::Provider {
        what: "cannot make session-ticket keys",
        source,
    })
}
