//! `GET /reload`: the outcome of each reload attempt (SIGHUP), so `wsgate reload`
//! can wait for the one its signal caused and say how it went.
//!
//! Owns: the record of attempts (`ReloadLog`: how they are numbered, what is kept)
//! and its JSON. Does not own: reloading (server.rs records into it) or the waiting
//! (the `wsgate reload` command).

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// Finished attempts kept for `/reload`.
pub const KEPT: usize = 16;

/// How one reload attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new generation is published.
    Loaded {
        generation: u64,
        warnings: Vec<String>,
    },
    /// Nothing changed; `reason` is the whole error chain, as logged.
    Refused { serving: u64, reason: String },
}

#[derive(Debug, Clone)]
struct Attempt {
    seq: u64,
    started_at: SystemTime,
    finished_at: SystemTime,
    outcome: Outcome,
}

#[derive(Debug, Default)]
struct Inner {
    started: u64,
    in_flight: Option<(u64, SystemTime)>,
    finished: VecDeque<Attempt>,
}

/// The reload attempts of this process. Attempts are numbered from 1 in the order
/// they start; `started` counts those begun (the one in flight included), and the
/// last `KEPT` finished are kept, newest first. An attempt is begun before the file
/// is read, so an attempt numbered above the `started` a client read after checking
/// the file has read that file (or a later one).
#[derive(Debug, Default)]
pub struct ReloadLog {
    inner: Mutex<Inner>,
}

impl ReloadLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An attempt starts (before its file is read); returns its number.
    pub fn begin(&self) -> u64 {
        let mut i = self.lock();
        i.started += 1;
        let seq = i.started;
        i.in_flight = Some((seq, SystemTime::now()));
        seq
    }

    /// Attempt `seq` ended with `outcome`.
    pub fn finish(&self, seq: u64, outcome: Outcome) {
        let mut i = self.lock();
        let started_at = match i.in_flight.take() {
            Some((s, at)) if s == seq => at,
            other => {
                i.in_flight = other;
                SystemTime::now()
            }
        };
        i.finished.push_front(Attempt {
            seq,
            started_at,
            finished_at: SystemTime::now(),
            outcome,
        });
        i.finished.truncate(KEPT);
    }

    /// Attempts begun so far.
    pub fn started(&self) -> u64 {
        self.lock().started
    }

    /// The `/reload` answer; `generation` is the one serving now.
    pub fn to_json(&self, generation: u64) -> Value {
        let i = self.lock();
        let attempts: Vec<Value> = i.finished.iter().map(attempt).collect();
        json!({
            "pid": std::process::id(),
            "generation": generation,
            "started": i.started,
            "in_progress": i.in_flight.map(|(seq, _)| seq),
            "attempts": attempts,
        })
    }
}

fn attempt(a: &Attempt) -> Value {
    let mut v = json!({
        "seq": a.seq,
        "started_at": super::rfc3339(a.started_at),
        "finished_at": super::rfc3339(a.finished_at),
    });
    let extra = match &a.outcome {
        Outcome::Loaded {
            generation,
            warnings,
        } => json!({ "result": "loaded", "generation": generation, "warnings": warnings }),
        Outcome::Refused { serving, reason } => {
            json!({ "result": "refused", "generation": serving, "reason": reason })
        }
    };
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_numbered_and_kept_newest_first() {
        let log = ReloadLog::default();
        assert_eq!(log.started(), 0);
        let a = log.begin();
        assert_eq!(log.to_json(1)["in_progress"], 1);
        log.finish(
            a,
            Outcome::Loaded {
                generation: 2,
                warnings: vec![],
            },
        );
        let b = log.begin();
        log.finish(
            b,
            Outcome::Refused {
                serving: 2,
                reason: "cannot listen".into(),
            },
        );
        let v = log.to_json(2);
        assert_eq!(v["started"], 2);
        assert_eq!(v["in_progress"], Value::Null);
        assert_eq!(v["attempts"][0]["seq"], 2);
        assert_eq!(v["attempts"][0]["result"], "refused");
        assert_eq!(v["attempts"][0]["reason"], "cannot listen");
        assert_eq!(v["attempts"][1]["result"], "loaded");
        assert_eq!(v["attempts"][1]["generation"], 2);
        for _ in 0..KEPT + 3 {
            let s = log.begin();
            log.finish(
                s,
                Outcome::Refused {
                    serving: 2,
                    reason: String::new(),
                },
            );
        }
        assert_eq!(
            log.to_json(2)["attempts"].as_array().map(Vec::len),
            Some(KEPT)
        );
    }
}
