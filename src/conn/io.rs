//! Reads and writes of the open connection: each polls the transport directly, under the
//! gate's lock, and turns what it sees (a Close frame, a fatal error, the end of the stream)
//! into the beginning of the close.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::classify::Verdict;
use crate::error::Kind;
use crate::gate::{CLOSED, OPEN};
use crate::{Cause, Error, Outcome, State, Transport, WireCode, telemetry};

use super::plan::{Plan, validate};
use super::{Io, Shared, Slot};

/// Which party a write-side poll is for (see [`WriteWakers`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    App,
    Ping,
}

/// The tasks that wait for the socket to take more bytes while the connection is open.
///
/// tokio-tungstenite keeps a single write waker per connection: each write-side poll replaces
/// the one before. Two parties write while the connection is open (the application's writer
/// and the keepalive's ping), so the transport is always polled with this fan-out as its
/// waker, and each party registers its own: when the socket drains, both are woken, whichever
/// polled last.
#[derive(Default)]
pub(super) struct WriteWakers {
    /// The application task waiting in a sink method.
    app: AtomicWaker,
    /// The keepalive task waiting to put its Ping on the wire.
    ping: AtomicWaker,
}

impl std::task::Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.app.wake();
        self.ping.wake();
    }
}

impl<T: Transport> Shared<T> {
    /// The close task's Close frame is on the wire: wakes a flush waiting for it.
    pub(super) fn on_close_written(&self) {
        self.close_written.store(true, Ordering::Release);
        self.writers.app.wake();
    }

    /// Polls a write-side operation of the open transport with the connection's write waker
    /// ([`WriteWakers`]); `waiter` is the calling party's slot there. On `Pending` the party's
    /// waker is registered and the operation polled once more, so that a drain between the
    /// two polls is not missed (the fast path, ready at once, registers nothing).
    pub(super) fn poll_write_side<R>(
        &self,
        io: &mut Io<T>,
        waiter: Waiter,
        cx: &Context<'_>,
        mut op: impl FnMut(Pin<&mut T>, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        let mut wcx = Context::from_waker(&self.write_waker);
        let polled = match op(Pin::new(&mut io.t), &mut wcx) {
            Poll::Pending => {
                match waiter {
                    Waiter::App => {
                        self.writers.app.register(cx.waker());
                        io.writer_waits = true;
                    }
                    Waiter::Ping => self.writers.ping.register(cx.waker()),
                }
                op(Pin::new(&mut io.t), &mut wcx)
            }
            ready => ready,
        };
        if polled.is_ready() && waiter == Waiter::App && io.writer_waits {
            io.writer_waits = false;
            drop(self.writers.app.take());
        }
        polled
    }

    /// Ready once the final report is published.
    pub(super) fn poll_ended(&self, waker: &AtomicWaker, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.phase() == CLOSED {
            return Poll::Ready(());
        }
        waker.register(cx.waker());
        if self.gate.phase() == CLOSED {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub(super) fn refuse_send(&self) -> Error {
        let state = self.state();
        telemetry::on_send_after_close(self.series(), state, &self.span);
        Error::closed(state, self.gate.report())
    }

    /// A transport error seen by the application: begin the close if it is fatal.
    pub(super) fn on_error(self: &Arc<Self>, slot: &mut Slot<'_, T>, err: T::WsError) -> Error {
        match T::verdict(&err) {
            Verdict::Recoverable => Error::new(Kind::Rejected).with_source(err),
            Verdict::Fatal {
                outcome,
                cause,
                reply,
            } => {
                let mut plan = Plan::failed(outcome, cause, reply, err.to_string());
                if T::is_malformed_close(&err) {
                    plan.received = Some((WireCode::Invalid(None), None));
                }
                self.begin(slot, plan);
                Error::new(Kind::Ended { outcome }).with_source(err)
            }
        }
    }

    pub(super) fn poll_next(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T::Message, Error>>> {
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            drop(slot);
            return self.poll_ended(&self.reader, cx).map(|_| None);
        };
        let polled = Pin::new(&mut io.t).poll_next(cx);
        match &polled {
            Poll::Pending => {
                self.reader.register(cx.waker());
                io.reader_waits = true;
                return Poll::Pending;
            }
            Poll::Ready(_) if io.reader_waits => {
                io.reader_waits = false;
                drop(self.reader.take());
            }
            Poll::Ready(_) => {}
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(msg))) => {
                if let Some(frame) = T::close_frame(&msg) {
                    self.begin(&mut slot, Plan::peer_closed(frame));
                } else if T::is_pong(&msg) {
                    self.pongs.fetch_add(1, Ordering::Release);
                    self.pong.notify_waiters();
                }
                Poll::Ready(Some(Ok(msg)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(self.on_error(&mut slot, err)))),
            Poll::Ready(None) => {
                // The library ended the stream without an error or a Close frame.
                let plan = Plan::failed(
                    Outcome::PeerGone,
                    Cause::Transport,
                    None,
                    "stream ended".into(),
                );
                self.begin(&mut slot, plan);
                drop(slot);
                self.poll_ended(&self.reader, cx).map(|_| None)
            }
        }
    }

    /// The fast path answers from `sink_ready` without the lock: `start_send` asked the
    /// transport's sink right after writing, so in a stream of messages each one costs one
    /// lock (in `start_send`), not two. Between this answer and the `start_send`, the lock is
    /// free either way, as it was before: a keepalive ping may write in between (tungstenite
    /// buffers the message all the same), and a close that begins in between makes
    /// `start_send` refuse the message.
    pub(super) fn poll_ready(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.sink_ready.load(Ordering::Relaxed) && self.gate.phase() == OPEN {
            return Poll::Ready(Ok(()));
        }
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            return Poll::Ready(Err(self.refuse_send()));
        };
        match self.poll_write_side(io, Waiter::App, cx, |t, cx| t.poll_ready(cx)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                self.sink_ready.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(self.on_error(&mut slot, err))),
        }
    }

    pub(super) fn start_send(
        self: &Arc<Self>,
        msg: T::Message,
        close_requested: &mut bool,
    ) -> Result<(), Error> {
        if let Some(frame) = T::close_frame(&msg) {
            // A Close message written to the sink is a close request like any other.
            let frame = validate(frame)?;
            *close_requested = true;
            self.request_close(Cause::App, frame);
            return Ok(());
        }
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            return Err(self.refuse_send());
        };
        if let Err(err) = Pin::new(&mut io.t).start_send(msg) {
            self.sink_ready.store(false, Ordering::Relaxed);
            return Err(self.on_error(&mut slot, err));
        }
        io.pending += 1;
        // Ask the sink now, while the lock is held, whether it takes another message. On
        // `Pending` the next `poll_ready` asks again and registers the application's waker;
        // the connection's write waker, given here too, keeps the socket's single write waker
        // pointing at every party that waits for it (see `WriteWakers`).
        match Pin::new(&mut io.t).poll_ready(&mut Context::from_waker(&self.write_waker)) {
            Poll::Ready(Ok(())) => self.sink_ready.store(true, Ordering::Relaxed),
            Poll::Pending => self.sink_ready.store(false, Ordering::Relaxed),
            Poll::Ready(Err(err)) => {
                // The message was accepted; the close this error begins flushes it or counts
                // it as dropped.
                self.sink_ready.store(false, Ordering::Relaxed);
                self.on_error(&mut slot, err);
            }
        }
        Ok(())
    }

    pub(super) fn poll_flush(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            // A close is under way. The flush is over once its Close frame is on the wire, as
            // with the raw library (that frame goes out behind every message accepted before
            // it); a `send(Message::Close(..))` returns then, not at the end of the handshake.
            // Else the close task flushes what was accepted, or counts it as dropped: then this
            // flush did not deliver, and says so at the end.
            drop(slot);
            if self.close_written.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            self.writers.app.register(cx.waker());
            if self.close_written.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            std::task::ready!(self.poll_ended(&self.writers.app, cx));
            return Poll::Ready(match self.gate.report() {
                Some(report) if report.messages_dropped > 0 => {
                    Err(Error::closed(State::Closed, Some(report)))
                }
                _ => Ok(()),
            });
        };
        match self.poll_write_side(io, Waiter::App, cx, |t, cx| t.poll_flush(cx)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                io.pending = 0;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(self.on_error(&mut slot, err))),
        }
    }

    pub(super) fn poll_close(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        close_requested: &mut bool,
    ) -> Poll<Result<(), Error>> {
        if !*close_requested {
            *close_requested = true;
            // The sink's close is "flush, then close": on a connection already closing or closed
            // (the peer's Close ended the stream that `forward` was copying) it only waits for
            // the end, and is not a redundant close request.
            self.begin(
                &mut self.gate.lock(),
                Plan::close(Cause::App, Some((1000, String::new()))),
            );
        }
        self.poll_ended(&self.writers.app, cx).map(|_| Ok(()))
    }
}
