//! The relay: one upgraded client stream and one upgraded backend stream, spliced
//! frame by frame until the close handshake (or a failure) ends the session.
//!
//! Owns: the session future (both directions polled by one task, no locks), the close
//! logic (who gets which Close code, and in which order: `Session::client_failed`;
//! the codes: README.md "Close codes wsgate sends", their one home, tested row by row
//! by `relay_close`), keepalive and the idle timeout, the session duration limit, and
//! the close deadline. Does not own: frame parsing (frame.rs), UTF-8 checking
//! (utf8.rs), buffering and per-frame limits (pump.rs), or the rate bucket (bucket.rs).

pub(crate) mod bucket;
pub mod frame;
mod gate;
mod pool;
mod pump;
pub mod stats;
pub mod utf8;

pub use crate::census::StopReason;
use crate::census::{FORCED_CLOSE, Forced};
use crate::config::SessionLimits;
use frame::{Extensions, Sender};
use pump::{Pump, PumpEvent, PumpLimits};
use stats::SessionStats;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep, sleep, sleep_until};

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Bytes of buffer per direction.
    pub buffer: usize,
    /// How long closing may take once it has begun.
    pub close_timeout: Duration,
    /// Message, size, UTF-8 and time limits (the route's `[limits]`).
    pub limits: SessionLimits,
}

/// How a session ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both Close frames passed end to end.
    Closed {
        client_code: Option<u16>,
        backend_code: Option<u16>,
    },
    /// The backend left (or failed) without a close handshake; the client got 1014.
    BackendGone,
    /// The client left without a close handshake; the backend got 1001.
    ClientGone,
    ClientViolation(frame::Violation),
    BackendViolation(frame::Violation),
    ClientTooBig,
    BackendTooBig,
    ClientRateExceeded,
    ClientIdle,
    DurationLimit,
    /// wsgate is shutting down: 1001 to both sides.
    Shutdown,
    /// A reload removed the backend: 1012 to the client, 1001 to the backend.
    BackendRemoved,
    /// The client's token expired: 1008 to the client, 1001 to the backend.
    TokenExpired,
    /// The close handshake did not finish within the close timeout.
    CloseTimeout,
}

/// Resolves with why wsgate ends the session and when (shutdown, a removed backend,
/// an expired token).
pub type StopSignal = Pin<Box<dyn Future<Output = (StopReason, Instant)> + Send>>;

/// The two directions and how the session is going.
struct Session {
    c2b: Pump,
    b2c: Pump,
    outcome: Option<Outcome>,
    stats: Arc<SessionStats>,
}

impl Session {
    /// The two pumps of a session: client to backend under the route's client
    /// limits (and keepalive's needs), backend to client under its backend limits.
    fn new(
        cfg: &RelayConfig,
        extensions: Extensions,
        [client_pre, backend_pre]: [&[u8]; 2],
        keepalive: Option<&Keepalive>,
        stats: Arc<SessionStats>,
    ) -> Session {
        let l = &cfg.limits;
        let client_limits = PumpLimits {
            max_frame: l.max_frame_bytes,
            max_message: l.max_message_bytes,
            rate: bucket::Bucket::new(l.message_rate, l.message_burst),
            on_exceed: l.on_exceed,
            drop_keepalive_pongs: keepalive.is_some_and(|k| k.ping.is_some()),
            track_activity: keepalive.is_some(),
            validate_utf8: l.validate_utf8,
        };
        let backend_limits = PumpLimits {
            max_frame: l.backend_max_frame_bytes,
            max_message: l.backend_max_message_bytes,
            validate_utf8: l.backend_validate_utf8,
            ..PumpLimits::default()
        };
        Session {
            c2b: Pump::new(
                Sender::Client,
                extensions,
                cfg.buffer,
                client_pre,
                client_limits,
                stats.clone(),
            ),
            b2c: Pump::new(
                Sender::Server,
                extensions,
                cfg.buffer,
                backend_pre,
                backend_limits,
                stats.clone(),
            ),
            outcome: None,
            stats,
        }
    }

    /// Ends the session on wsgate's initiative: `client` goes to the client (None:
    /// just close its connection), `backend` (masked) to the backend.
    fn end(&mut self, why: Outcome, client: Option<(u16, &str)>, backend: Option<(u16, &str)>) {
        if self.outcome.is_none() {
            self.stats.wsgate_close(client, backend);
        }
        self.outcome.get_or_insert(why);
        self.b2c
            .close_output(client.map(|(c, r)| frame::close_frame(c, r, false)));
        self.c2b
            .close_output(backend.map(|(c, r)| frame::close_frame(c, r, true)));
    }

    /// The client broke a rule (its reads have stopped): the backend gets `backend`
    /// now; the client gets `client` once the backend's Close answers (what the
    /// backend sends meanwhile still reaches the client), in place of that answer.
    /// So nothing is lost when one side breaks a rule. Waiting is bounded by
    /// `close_timeout`: the offender's Close then goes out at once (`pay_owed`), and
    /// writing it gets one more `close_timeout`.
    fn client_failed(&mut self, why: Outcome, client: (u16, &str), backend: (u16, &str)) {
        if self.outcome.is_none() {
            self.stats.wsgate_close(Some(client), Some(backend));
        }
        self.outcome.get_or_insert(why);
        self.c2b
            .close_output(Some(frame::close_frame(backend.0, backend.1, true)));
        self.b2c
            .owe_close(frame::close_frame(client.0, client.1, false));
    }

    /// The backend broke a rule: the mirror of `client_failed`.
    fn backend_failed(&mut self, why: Outcome, client: (u16, &str), backend: (u16, &str)) {
        if self.outcome.is_none() {
            self.stats.wsgate_close(Some(client), Some(backend));
        }
        self.outcome.get_or_insert(why);
        self.b2c
            .close_output(Some(frame::close_frame(client.0, client.1, false)));
        self.c2b
            .owe_close(frame::close_frame(backend.0, backend.1, true));
    }

    /// Stops waiting for the answer to a Close: owed Closes go out now.
    fn pay_owed(&mut self) -> bool {
        let owed = self.c2b.owes_close() || self.b2c.owes_close();
        if self.c2b.owes_close() {
            self.c2b.close_output(None);
        }
        if self.b2c.owes_close() {
            self.b2c.close_output(None);
        }
        owed
    }

    fn on_client_event(&mut self, ev: PumpEvent) {
        match ev {
            // The client left after a Close from either side: a normal end (browsers
            // send Close and drop the connection without waiting for the reply).
            PumpEvent::SrcEnded if self.handshake_started() => {
                self.c2b.close_output(None);
                self.b2c.close_output(None);
            }
            PumpEvent::SrcEnded => {
                self.end(Outcome::ClientGone, None, Some((1001, "client went away")))
            }
            PumpEvent::DstFailed => self.backend_gone(),
            PumpEvent::Violation(v) => self.client_failed(
                Outcome::ClientViolation(v),
                (v.close_code(), v.reason()),
                (1001, "client protocol error"),
            ),
            PumpEvent::TooBig => self.client_failed(
                Outcome::ClientTooBig,
                (1009, "message too big"),
                (1001, "client message too big"),
            ),
            PumpEvent::RateExceeded => self.client_failed(
                Outcome::ClientRateExceeded,
                (1008, "message rate exceeded"),
                (1001, "client message rate exceeded"),
            ),
        }
    }

    fn on_backend_event(&mut self, ev: PumpEvent) {
        match ev {
            // The backend closed after a Close from either side: the normal end.
            PumpEvent::SrcEnded if self.handshake_started() => {
                self.b2c.close_output(None);
                self.c2b.close_output(None);
            }
            PumpEvent::SrcEnded => self.backend_gone(),
            PumpEvent::DstFailed => {
                self.end(Outcome::ClientGone, None, Some((1001, "client went away")))
            }
            PumpEvent::Violation(v) => self.backend_failed(
                Outcome::BackendViolation(v),
                (1014, "backend protocol error"),
                (v.close_code(), v.reason()),
            ),
            PumpEvent::TooBig => self.backend_failed(
                Outcome::BackendTooBig,
                (1014, "backend message too big"),
                (1009, "message too big"),
            ),
            PumpEvent::RateExceeded => self.backend_gone(), // no rate limit toward clients
        }
    }

    /// The backend left (EOF, reset, failed write) without a close handshake.
    fn backend_gone(&mut self) {
        self.end(
            Outcome::BackendGone,
            Some((1014, "backend closed the connection")),
            None,
        );
    }

    /// Whether either side has sent a Close (so a side leaving is no failure).
    fn handshake_started(&self) -> bool {
        self.c2b.close_seen().is_some() || self.b2c.close_seen().is_some()
    }

    fn closing(&self) -> bool {
        self.outcome.is_some() || self.c2b.close_seen().is_some() || self.b2c.close_seen().is_some()
    }
}

/// Keepalive: a Ping to the client after each `ping` of silence from it; the session
/// ends after `idle` of silence.
struct Keepalive {
    ping: Option<Duration>,
    idle: Option<Duration>,
    last_ping: Instant,
    seq: u64,
    /// Polled only when it fires (or was just reset), not at every wake-up.
    timer: gate::Gated<Sleep>,
}

impl Keepalive {
    fn new(l: &SessionLimits) -> Option<Keepalive> {
        let nz = |d: Duration| (!d.is_zero()).then_some(d);
        let (ping, idle) = (nz(l.ping_interval.get()), nz(l.idle_timeout.get()));
        if ping.is_none() && idle.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut k = Keepalive {
            ping,
            idle,
            last_ping: now,
            seq: 0,
            timer: gate::Gated::new(Box::pin(sleep_until(now))),
        };
        k.rearm(now);
        Some(k)
    }

    fn rearm(&mut self, last_read: Instant) {
        let next_ping = self.ping.map(|p| last_read.max(self.last_ping) + p);
        let next_idle = self.idle.map(|i| last_read + i);
        let next = match (next_ping, next_idle) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_else(Instant::now),
        };
        self.timer.rearm(|t| t.reset(next));
    }

    fn poll(&mut self, cx: &mut Context<'_>, s: &mut Session) -> bool {
        if self.timer.poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        let last_read = s.c2b.last_read();
        if self.idle.is_some_and(|i| now >= last_read + i) {
            s.end(Outcome::ClientIdle, None, Some((1001, "client idle")));
            self.idle = None;
            self.ping = None;
            return true;
        }
        if let Some(p) = self.ping
            && now >= last_read.max(self.last_ping) + p
        {
            self.seq += 1;
            let mut payload = pump::KEEPALIVE_PREFIX.to_vec();
            payload.extend_from_slice(self.seq.to_string().as_bytes());
            s.b2c
                .send_control(frame::control_frame(frame::PING, &payload, false));
            s.stats.ping_sent(self.seq, now.into_std());
            self.last_ping = now;
        }
        self.rearm(last_read);
        true
    }
}

/// How long closing may take: `close_timeout` from when it begins (and again for
/// an offender's owed Close), cut to `FORCED_CLOSE` once the stop is forced. The
/// forced stop is looked at only while closing (the stop signal starts closing).
struct CloseClock {
    deadline: Option<Pin<Box<Sleep>>>,
    bound: Duration,
    forced: Option<Forced>,
    gate: Option<gate::Gated<dyn Future<Output = ()> + Send>>,
}

impl CloseClock {
    fn new(close_timeout: Duration, forced: Option<Forced>) -> CloseClock {
        CloseClock {
            deadline: None,
            bound: close_timeout,
            forced,
            gate: None,
        }
    }

    /// Starts the clock once `closing`; ready when the bound has passed.
    fn poll(&mut self, cx: &mut Context<'_>, closing: bool) -> Poll<()> {
        if self.deadline.is_none() {
            if !closing {
                return Poll::Pending;
            }
            self.deadline = Some(Box::pin(sleep(self.bound)));
            self.gate = self.forced.take().map(|f| gate::Gated::new(f.boxed()));
        }
        if let Some(g) = self.gate.as_mut()
            && g.poll(cx).is_ready()
        {
            self.gate = None;
            self.bound = self.bound.min(FORCED_CLOSE);
            let at = Instant::now() + self.bound;
            if let Some(d) = self.deadline.as_mut()
                && at < d.deadline()
            {
                d.as_mut().reset(at);
            }
        }
        self.deadline
            .as_mut()
            .map_or(Poll::Pending, |d| d.as_mut().poll(cx))
    }

    /// The bound again, from now.
    fn again(&mut self) {
        if let Some(d) = self.deadline.as_mut() {
            d.as_mut().reset(Instant::now() + self.bound);
        }
    }
}

/// One side of a session: its stream, and the bytes already read from it past the
/// HTTP head (copied into the relay's buffer and dropped at once: they share, and
/// would pin, the HTTP layer's read buffers).
pub struct End<S> {
    pub io: S,
    pub pre: bytes::Bytes,
}

impl<S> End<S> {
    /// A side nothing was read from yet.
    pub fn fresh(io: S) -> End<S> {
        End {
            io,
            pre: bytes::Bytes::new(),
        }
    }
}

/// Runs a session to its end, under the route's settings `cfg` and the
/// `extensions` the backend's 101 agreed. When `stop` resolves, at the moment it
/// names both sides get the Close its reason calls for. The session counts what
/// passes in `stats`.
pub async fn run<C, B>(
    client: End<C>,
    backend: End<B>,
    cfg: &RelayConfig,
    extensions: Extensions,
    stop: StopSignal,
    stats: Arc<SessionStats>,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    run_forcible(client, backend, cfg, extensions, stop, None, stats).await
}

/// `run`, under a stop that may be forced: once `forced` resolves (looked at only
/// while the session is closing; `stop` is what starts closing then), closing is
/// bounded by `census::FORCED_CLOSE` instead of `close_timeout`.
pub async fn run_forcible<C, B>(
    End {
        io: mut client,
        pre: client_pre,
    }: End<C>,
    End {
        io: mut backend,
        pre: backend_pre,
    }: End<B>,
    cfg: &RelayConfig,
    extensions: Extensions,
    stop: StopSignal,
    forced: Option<Forced>,
    stats: Arc<SessionStats>,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let l = &cfg.limits;
    let mut keepalive = Keepalive::new(l);
    let mut s = Session::new(
        cfg,
        extensions,
        [&client_pre, &backend_pre],
        keepalive.as_ref(),
        stats,
    );
    drop((client_pre, backend_pre));
    let duration = l.max_session_duration.get();
    // Like the keepalive timer and the stop signal: polled only when it fires.
    let mut lifetime = (!duration.is_zero()).then(|| gate::Gated::new(Box::pin(sleep(duration))));
    let mut clock = CloseClock::new(cfg.close_timeout, forced);
    // Polled only when it fires, not at every read and write of the session.
    let mut stop = Some(gate::Gated::new(stop));
    // Armed (allocated) only once wsgate has asked the session to end.
    let mut stop_at: Option<(StopReason, Pin<Box<Sleep>>)> = None;

    poll_fn(|cx| {
        loop {
            let mut progressed = false;
            if let Poll::Ready(ev) = s.c2b.poll(cx, &mut client, &mut backend) {
                progressed = true;
                s.on_client_event(ev);
            }
            if let Poll::Ready(ev) = s.b2c.poll(cx, &mut backend, &mut client) {
                progressed = true;
                s.on_backend_event(ev);
            }
            if s.c2b.is_done() && s.b2c.is_done() {
                return Poll::Ready(());
            }
            if let Some(k) = keepalive.as_mut().filter(|_| !s.closing()) {
                progressed |= k.poll(cx, &mut s);
            }
            if let Some(g) = stop.as_mut()
                && let Poll::Ready((why, at)) = g.poll(cx)
            {
                stop = None;
                progressed = true;
                stop_at = Some((why, Box::pin(sleep_until(at))));
            }
            if let Some((why, t)) = stop_at.as_mut()
                && t.as_mut().poll(cx).is_ready()
            {
                let why = *why;
                stop_at = None;
                progressed = true;
                match why {
                    StopReason::Shutdown => {
                        let msg = "server shutting down";
                        s.end(Outcome::Shutdown, Some((1001, msg)), Some((1001, msg)));
                    }
                    StopReason::BackendRemoved => s.end(
                        Outcome::BackendRemoved,
                        Some((1012, "service restart")),
                        Some((1001, "backend removed from the configuration")),
                    ),
                    StopReason::TokenExpired => s.end(
                        Outcome::TokenExpired,
                        Some((1008, "token expired")),
                        Some((1001, "client token expired")),
                    ),
                }
            }
            if let Some(t) = lifetime.as_mut()
                && t.poll(cx).is_ready()
            {
                lifetime = None;
                progressed = true;
                let msg = "session time limit";
                s.end(Outcome::DurationLimit, Some((1001, msg)), Some((1001, msg)));
            }
            if clock.poll(cx, s.closing()).is_ready() {
                if s.pay_owed() {
                    // The offender's Close gets its own bounded time to go out.
                    clock.again();
                    continue;
                }
                // A peer that lingers after a completed close handshake is not a
                // timeout of the handshake: the outcome stays `Closed`.
                let handshake_done = s.c2b.close_seen().is_some() && s.b2c.close_seen().is_some();
                if !handshake_done {
                    s.outcome.get_or_insert(Outcome::CloseTimeout);
                }
                return Poll::Ready(());
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;

    s.outcome.unwrap_or(Outcome::Closed {
        client_code: s.c2b.close_seen().flatten(),
        backend_code: s.b2c.close_seen().flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf, duplex};

    /// A stream that counts the writes made to it.
    struct Counted(DuplexStream, Arc<AtomicUsize>);

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, b)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.0).poll_write(cx, b)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    fn cfg() -> RelayConfig {
        RelayConfig {
            buffer: 16 * 1024,
            close_timeout: Duration::from_secs(5),
            limits: SessionLimits::unlimited(),
        }
    }

    /// Many small frames that arrive together leave in one write, not one (or two:
    /// header, then payload) per frame.
    #[tokio::test]
    async fn frames_read_together_are_written_together() {
        let (client_side, mut client) = duplex(1 << 20);
        let (backend_side, mut backend) = duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let relay = tokio::spawn(async move {
            let c = cfg();
            run(
                End::fresh(client_side),
                End::fresh(Counted(backend_side, writes.clone())),
                &c,
                Extensions::default(),
                Box::pin(std::future::pending()),
                Default::default(),
            )
            .await;
            writes.load(Ordering::Relaxed)
        });
        let mut burst = Vec::new();
        for i in 0..100u8 {
            burst.extend_from_slice(&frame::control_frame(frame::BINARY, &[i; 64], true));
        }
        client.write_all(&burst).await.unwrap();
        let mut got = vec![0u8; burst.len()];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(got, burst, "frames are forwarded byte for byte");
        drop(client);
        drop(backend);
        let writes = relay.await.unwrap();
        // 100 frames, read in at most a couple of chunks, plus the 1001 on client EOF.
        assert!(writes <= 4, "{writes} writes for 100 frames read together");
    }

    /// A client that sends Close and drops its connection at once (what browsers do
    /// when a page closes) ends the session normally, not as a backend failure.
    #[tokio::test]
    async fn client_close_then_drop_is_a_normal_end() {
        let (client_side, mut client) = duplex(1 << 16);
        let (backend_side, mut backend) = duplex(1 << 16);
        let relay = tokio::spawn(async move {
            run(
                End::fresh(client_side),
                End::fresh(backend_side),
                &cfg(),
                Extensions::default(),
                Box::pin(std::future::pending()),
                Default::default(),
            )
            .await
        });
        client
            .write_all(&frame::close_frame(1001, "page closed", true))
            .await
            .unwrap();
        drop(client);
        let mut got = vec![0u8; 2 + 4 + 2 + "page closed".len()];
        backend.read_exact(&mut got).await.unwrap();
        backend
            .write_all(&frame::close_frame(1001, "", false))
            .await
            .unwrap();
        drop(backend);
        let outcome = relay.await.unwrap();
        assert!(
            matches!(
                outcome,
                Outcome::Closed {
                    client_code: Some(1001),
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}
