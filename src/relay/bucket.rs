//! A token bucket for one session's message rate (GCRA: one timestamp, no timer).
//! It runs on tokio's clock so throttling composes with the relay's other timers.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: burst - 1 tokens.
    tolerance: Duration,
    tat: Instant,
}

impl Bucket {
    /// `None` for a rate of 0 (no limit).
    pub(crate) fn new(per_second: f64, burst: u32) -> Option<Bucket> {
        if per_second <= 0.0 || !per_second.is_finite() {
            return None;
        }
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Some(Bucket {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            tat: Instant::now(),
        })
    }

    /// Takes a token, or says when one will be available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let tat = self.tat.max(now);
        if tat.duration_since(now) > self.tolerance {
            return Err(tat - self.tolerance);
        }
        self.tat = tat + self.interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let mut b = Bucket::new(10.0, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let next = b.take(t0).unwrap_err();
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(b.take(next).is_ok());
        assert!(b.take(next).is_err());
        assert!(Bucket::new(0.0, 5).is_none());
    }
}
