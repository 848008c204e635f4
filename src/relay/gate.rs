//! A future the session polls only when its own waker has fired.
//!
//! The session task wakes for every read and write; the stop signal (a watch
//! receiver behind the backend's drain/removal) almost never fires, yet polling it on
//! every wake-up cost about 350 instructions per round trip under callgrind (the
//! keepalive timer and the session time limit, which fire rarely, are gated the same
//! way). `Gated` polls the inner future with a waker of its own that marks it woken
//! and then wakes the session; until that happens, polling `Gated` only refreshes the
//! session's waker. Owns nothing else: what the future means is the caller's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = task {
            w.wake();
        }
    }
}

pub(super) struct Gated<F: ?Sized> {
    fut: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<F: Future + ?Sized> Gated<F> {
    pub(super) fn new(fut: Pin<Box<F>>) -> Gated<F> {
        let flag = Arc::new(Flag {
            // Polled the first time, so that the inner future registers its wakers.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Gated {
            fut,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Changes the inner future (a timer's new deadline, say) and has the next
    /// `poll` poll it, so that it registers its waker again.
    pub(super) fn rearm(&mut self, change: impl FnOnce(Pin<&mut F>)) {
        change(self.fut.as_mut());
        self.flag.woken.store(true, Ordering::Release);
    }

    /// Polls the inner future if its waker fired since the last poll (or never was
    /// polled); otherwise `Pending`, with `cx`'s waker kept for when it fires.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self.flag.task.lock().unwrap_or_else(|e| e.into_inner());
            match task.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        self.fut
            .as_mut()
            .poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_when_its_own_waker_fires_and_only_polls_then() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fut = async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let mut g = Gated::new(Box::pin(PollCount(Box::pin(fut), polls.clone())));
        let noise = tokio::sync::Notify::new();
        let mut done = false;
        // The task wakes for other reasons many times: the gated future is not polled.
        for _ in 0..100 {
            let woke = std::future::poll_fn(|cx| {
                if g.poll(cx).is_ready() {
                    done = true;
                }
                Poll::Ready(())
            });
            woke.await;
            noise.notify_one();
        }
        assert!(!done);
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register");
        tx.send_replace(true);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| g.poll(cx)),
        )
        .await;
        assert!(r.is_ok(), "the gated future completes once its waker fired");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn rearm_polls_the_changed_future_once_at_the_next_poll() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let mut g = Gated::new(Box::pin(PollCount(
            Box::pin(tokio::time::sleep_until(far)),
            polls.clone(),
        )));
        assert!(!poll_once(&mut g).await);
        assert!(!poll_once(&mut g).await);
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register");
        // A new deadline: the timer must be polled again so that it registers anew,
        // however the runtime treats a reset timer's waker.
        g.rearm(|t| t.project_sleep().reset(far + Duration::from_secs(1)));
        assert!(!poll_once(&mut g).await);
        assert!(!poll_once(&mut g).await);
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "polled once after the rearm"
        );
        // And it still fires: a deadline now is ready at the first poll after it.
        g.rearm(|t| t.project_sleep().reset(tokio::time::Instant::now()));
        let fired = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| g.poll(cx)),
        )
        .await;
        assert!(fired.is_ok(), "a rearmed timer fires");
    }

    /// Polls `g` once: whether it was ready.
    async fn poll_once<F: Future + ?Sized>(g: &mut Gated<F>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(g.poll(cx).is_ready())).await
    }

    impl<F> PollCount<F> {
        /// The inner future (boxed, so `PollCount` itself is `Unpin`).
        fn project_sleep(self: Pin<&mut Self>) -> Pin<&mut F> {
            self.get_mut().0.as_mut()
        }
    }

    /// Counts the polls of the inner future.
    struct PollCount<F>(Pin<Box<F>>, Arc<std::sync::atomic::AtomicUsize>);
    impl<F: Future> Future for PollCount<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.as_mut().poll(cx)
        }
    }
}
