//! Keepalive pings and the maximum lifetime: one task per connection that has either, ended
//! with the connection.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Cause, State, Transport};

use super::Shared;
use super::io::Waiter;
use super::plan::Plan;

/// Sleeps until `at`, or forever when there is no such instant.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A lifetime drawn uniformly from `[max - jitter, max]`, so connections opened together do not
/// all end (and reconnect) together.
pub(super) fn jittered(max: Duration, jitter: Duration, id: u64) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(id);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
    max - jitter.mul_f64(fraction)
}

impl<T: Transport> Shared<T> {
    /// Sends a ping (once; `queued` remembers it) and flushes it, under the gate's lock like
    /// any write. It waits for the socket like the application's writer does, through the
    /// connection's write waker, so a writer that polls after it does not take its wake-up.
    fn poll_ping(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        queued: &mut bool,
    ) -> Poll<Result<(), ()>> {
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            return Poll::Ready(Err(()));
        };
        let ready = if *queued {
            Poll::Ready(Ok(()))
        } else {
            self.poll_write_side(io, Waiter::Ping, cx, |t, cx| t.poll_ready(cx))
        };
        let polled = match ready {
            Poll::Ready(Ok(())) => {
                if !*queued {
                    if let Err(e) = Pin::new(&mut io.t).start_send(T::ping_message()) {
                        self.on_error(&mut slot, e);
                        return Poll::Ready(Err(()));
                    }
                    *queued = true;
                    self.sink_ready.store(false, Ordering::Relaxed);
                }
                self.poll_write_side(io, Waiter::Ping, cx, |t, cx| t.poll_flush(cx))
            }
            other => other,
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                io.pending = 0;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.on_error(&mut slot, e);
                Poll::Ready(Err(()))
            }
        }
    }

    /// One keepalive round: ping, then wait up to `timeout` for any pong. Returns false when
    /// the peer did not answer while the connection stayed open.
    async fn ping_answered(self: &Arc<Self>, timeout: Duration) -> bool {
        let before = self.pongs.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let mut queued = false;
        let ping = poll_fn(|cx| self.poll_ping(cx, &mut queued));
        if let Ok(Err(())) = tokio::time::timeout_at(deadline, ping).await {
            return true; // closing or closed already: nothing for keepalive to do
        }
        loop {
            let mut pong = pin!(self.pong.notified());
            pong.as_mut().enable();
            if self.pongs.load(Ordering::Acquire) != before || self.state() != State::Open {
                return true;
            }
            tokio::select! {
                _ = pong => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self.pongs.load(Ordering::Acquire) != before;
                }
            }
        }
    }

    /// Keepalive pings and the maximum lifetime of one connection; ends with it. A keepalive
    /// round in flight (a Ping waiting for the socket or for its Pong) never holds the
    /// lifetime close off: the maximum is an upper bound.
    pub(super) async fn lifecycle(
        self: Arc<Self>,
        keepalive: Option<(Duration, Duration)>,
        lifetime: Option<Duration>,
    ) {
        let mut ended = pin!(self.closed());
        let mut lifetime_at = pin!(sleep_until_opt(lifetime.map(|d| self.opened_at + d)));
        loop {
            let round = async {
                let Some((interval, timeout)) = keepalive else {
                    return std::future::pending().await;
                };
                tokio::time::sleep(interval).await;
                self.ping_answered(timeout).await
            };
            tokio::select! {
                biased;
                _ = &mut ended => return,
                () = &mut lifetime_at => {
                    let reason = "maximum connection lifetime reached".to_owned();
                    let plan = Plan::close(Cause::Lifetime, Some((self.config.lifetime_code, reason)));
                    self.begin(&mut self.gate.lock(), plan);
                    return;
                }
                answered = round => {
                    if !answered {
                        self.begin(&mut self.gate.lock(), Plan::keepalive_timeout());
                        return;
                    }
                }
            }
        }
    }
}
