//! The wrapped connection: [`WebSocket`], its halves [`Sender`] and [`Receiver`], the
//! cloneable [`Handle`], and the close task that finishes every connection.
//!
//! While open, reads and writes poll the transport directly under the gate's lock (no task
//! hop, no channel). The first party to begin the close takes the transport out of the gate
//! and hands it to the close task, which alone flushes, sends the Close frame, reads until the
//! peer's Close or EOF, shuts the transport down, and publishes the report. The taker polls it
//! first; then the caller awaiting `close()`, or a task of its own, polls the rest (see
//! [`Parked`]).

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::classify::{Verdict, received_code};
use crate::code::{MAX_REASON_BYTES, check_close_code, sanitize_reason, truncate_utf8};
use crate::deadline::{self, Deadline};
use crate::error::Kind;
use crate::gate::{CLOSED, Gate, OPEN};
use crate::telemetry;
use crate::{Cause, CloseCode, CloseReport, Config, Error, Outcome, Role, State, Transport};

/// A Close frame to send: `None` is a Close frame without a status code.
type OutFrame = Option<(u16, String)>;

/// The transport while it is in the gate, with the count of messages accepted since the
/// last confirmed flush (the ones that would be lost if the transport died now).
struct Io<T> {
    t: T,
    pending: u64,
    /// The application's reader, and its writer, left a waker in `Shared::reader` or in
    /// `WriteWakers::app` on their last `Pending`. A poll that then completes takes it back:
    /// a waker left behind would have `begin` wake the very task that is closing (a yield
    /// and a cross-worker wake-up per close on a multi-thread runtime).
    reader_waits: bool,
    writer_waits: bool,
}

type Slot<'a, T> = MutexGuard<'a, Option<Io<T>>>;

/// The part of a close that waits for the peer.
type CloseTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A close whose first poll ran on the spot waits here, not yet spawned, until something
/// wakes it: the peer's bytes, its deadline, or a shutdown's terminate. The connection itself
/// is the waker of every poll of a parked close, and its wake decides who polls next:
///
/// - A caller in the connection's runtime awaiting [`Handle::close`] (the *driver*) is woken for
///   the peer's bytes and polls the close itself, in its own turn, as a raw `close()` would: no
///   task is spawned, and the close's end reaches the caller without a hand-off between tasks.
///   A driver still registered when the close ends elsewhere is woken by that end.
/// - Otherwise the close is spawned as a task of its own: with no driver, and for the deadline
///   or a terminate, which never wait for a driver. So a `close()` future kept but no longer
///   polled (or a caller busy elsewhere) can delay its close until its deadline or a
///   shutdown's terminate, never beyond. Dropped, it spawns a close it was woken for.
///
/// A task spawned for the close at once would cost a task poll that only finds nothing
/// changed (and a read attempt that comes up empty again: tungstenite zeroes its whole free
/// read buffer, 128 KiB by default, for each), inside the turn of whoever began the close.
/// And a task (a watchdog) spawned with each wake of a driver, to take over from one that
/// does not come, costs more than it saves: on a multi-thread runtime it wakes an idle worker
/// per close.
#[derive(Default)]
struct Parked {
    /// Woken since its last poll (even during that poll): there is something to do.
    woken: bool,
    task: Option<CloseTask>,
    /// The close's deadline: a wake-up at or after it does not wait for a driver.
    deadline: Option<Instant>,
    /// The task waiting in `Handle::close`, ready to poll the close when it is woken.
    driver: Option<Waker>,
    /// The driver has been woken and has not polled the close since.
    driver_woken: bool,
}

impl Parked {
    /// The close, when it is parked and has been woken: whoever takes it polls it.
    fn take_woken(&mut self) -> Option<CloseTask> {
        if !self.woken {
            return None;
        }
        let task = self.task.take()?;
        self.woken = false;
        self.driver_woken = false;
        Some(task)
    }
}

impl<T: Transport> std::task::Wake for Shared<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut parked = self.parked();
        parked.woken = true;
        if parked.task.is_none() {
            // Being polled (its poller sees `woken`), or running in a task of its own.
            return;
        }
        let urgent = self.terminated.load(Ordering::Acquire)
            || parked.deadline.is_some_and(|at| Instant::now() >= at);
        if !urgent {
            if parked.driver_woken {
                // On its way (one readiness event wakes a transport's reader and writer).
                return;
            }
            if let Some(driver) = parked.driver.take() {
                parked.driver_woken = true;
                drop(parked);
                driver.wake();
                return;
            }
        }
        let task = parked.task.take();
        drop(parked);
        if let Some(task) = task {
            // A runtime shut down meanwhile drops the task here, inside whatever called `wake`:
            // its `Closer` drops the transport and publishes an `internal_error` report. (Tokio's
            // streams, timers and `Notify`, and the deadline sweeper, wake outside their locks.)
            self.spawn(task);
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What one [`Shared::poll_drive`] did.
enum Drive {
    /// The close ended in this poll.
    Ended,
    /// The caller is the close's driver: it is woken when the close needs a poll, and when the
    /// close ends elsewhere.
    Registered,
    /// The close runs elsewhere (a task of its own, or another caller's poll) or cannot be
    /// driven from here: wait for its end.
    Elsewhere,
}

/// Which party a write-side poll is for (see [`WriteWakers`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiter {
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
struct WriteWakers {
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

struct Shared<T: Transport> {
    gate: Gate<Io<T>, CloseReport>,
    role: Role,
    config: Config,
    id: u64,
    span: Span,
    opened_at: Instant,
    /// The runtime the connection was wrapped on: its close runs there, whichever thread
    /// begins it (a `Handle` is `Send + Sync`; a close may come from any thread).
    rt: Option<tokio::runtime::Handle>,
    /// The application task waiting in `poll_next`.
    reader: AtomicWaker,
    /// The parties waiting for the socket to drain (see [`WriteWakers`]).
    writers: Arc<WriteWakers>,
    /// `writers` as the waker every write-side poll of the open transport is given.
    write_waker: Waker,
    /// `Handle::closed` waiters.
    done: Notify,
    /// A close polled once on the spot, until it is woken.
    parked: std::sync::Mutex<Parked>,
    /// Ends the close task at once (a shutdown's grace period ran out), and the close task's
    /// waker for it.
    terminated: AtomicBool,
    closer: AtomicWaker,
    /// Pongs received (keepalive liveness), and their wake-up.
    pongs: AtomicU64,
    pong: Notify,
    /// The transport's sink said it was ready after the last message written to it: the
    /// application's next `poll_ready` can answer without taking the gate's lock. Written only
    /// under the lock; see `Shared::poll_ready`.
    sink_ready: AtomicBool,
}

fn closing_phase(cause: Cause) -> u8 {
    1 + Cause::ALL.iter().position(|c| *c == cause).unwrap_or(0) as u8
}

/// Sleeps until `at`, or forever when there is no such instant.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A lifetime drawn uniformly from `[max - jitter, max]`, so connections opened together do not
/// all end (and reconnect) together.
fn jittered(max: Duration, jitter: Duration, id: u64) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(id);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
    max - jitter.mul_f64(fraction)
}

fn phase_state(phase: u8) -> State {
    match phase {
        OPEN => State::Open,
        CLOSED => State::Closed,
        n => State::Closing(
            Cause::ALL
                .get(usize::from(n) - 1)
                .copied()
                .unwrap_or(Cause::App),
        ),
    }
}

/// How a close begins; built by whoever takes the transport.
struct Plan {
    cause: Cause,
    /// Our Close frame, when we send one.
    send: Option<OutFrame>,
    /// tungstenite already queued this reply to the peer's Close; flush it at once.
    reply: Option<CloseCode>,
    /// The peer's Close frame, when the application's reader saw it.
    received: Option<(CloseCode, Option<String>)>,
    /// The outcome is already known (a fatal error began the close).
    preset: Option<(Outcome, String)>,
    /// Read after sending, until the peer's Close or EOF.
    drain: bool,
    /// A shorter deadline than the configured close timeout.
    budget: Option<Duration>,
}

impl Plan {
    fn close(cause: Cause, frame: OutFrame) -> Self {
        Plan {
            cause,
            send: Some(frame),
            reply: None,
            received: None,
            preset: None,
            drain: true,
            budget: None,
        }
    }

    fn peer_closed(frame: Option<(u16, &str)>) -> Self {
        let code = received_code(frame, true);
        // tungstenite echoes the (possibly substituted) frame back as its reply.
        let reply = match frame {
            None => CloseCode::NoStatus,
            Some((c, _)) => CloseCode::Valid(c),
        };
        // A substituted frame carries tungstenite's reason, not the peer's: report none.
        let reason = match code {
            CloseCode::Invalid(None) => None,
            _ => frame.map(|(_, r)| sanitize_reason(r)),
        };
        Plan {
            cause: Cause::Peer,
            send: None,
            reply: Some(reply),
            received: Some((code, reason)),
            preset: None,
            drain: true,
            budget: None,
        }
    }

    fn failed(outcome: Outcome, cause: Cause, reply: Option<u16>, error: String) -> Self {
        Plan {
            cause,
            send: reply.map(|code| Some((code, String::new()))),
            reply: None,
            received: None,
            preset: Some((outcome, error)),
            drain: false,
            budget: None,
        }
    }

    /// No pong in time: the peer is presumed dead. Send 1011 if the socket takes it at once,
    /// then terminate; waiting out a handshake with a dead peer would only delay the end.
    fn keepalive_timeout() -> Self {
        Plan {
            budget: Some(KEEPALIVE_CLOSE_BUDGET),
            ..Plan::failed(
                Outcome::Timeout,
                Cause::Keepalive,
                Some(1011),
                "no pong within the keepalive timeout".into(),
            )
        }
    }
}

/// How long a keepalive close may try to put its Close frame on the wire.
const KEEPALIVE_CLOSE_BUDGET: Duration = Duration::from_millis(250);

impl<T: Transport> Shared<T> {
    fn state(&self) -> State {
        phase_state(self.gate.phase())
    }

    /// Begins the close if nobody has; returns false when it had already begun.
    ///
    /// Takes the transport and drives the close task as far as it goes right now (the Close
    /// frame, or the reply to the peer's, is written before this returns). The rest waits,
    /// parked, until something wakes it, and then runs in the task awaiting `close()` or in a
    /// task of its own on the connection's runtime (see [`Parked`]). So nothing a caller does
    /// afterwards (awaiting a future, keeping one without polling it, dropping it) can hold a
    /// close up beyond its deadline, and a close may begin on any thread.
    fn begin(self: &Arc<Self>, slot: &mut Slot<'_, T>, plan: Plan) -> bool {
        let Some(io) = self.gate.begin(slot, closing_phase(plan.cause)) else {
            return false;
        };
        self.reader.wake();
        self.write_waker.wake_by_ref();
        let mut closer = Closer::new(self.clone(), plan, io.pending);
        let deadline = closer.deadline;
        let current = tokio::runtime::Handle::try_current();
        let Some(rt) = self.rt.as_ref().or(current.as_ref().ok()) else {
            // No runtime to run a handshake on (wrapped and closed outside Tokio): terminate the
            // transport now and say so.
            drop(io);
            closer.finish_now(Outcome::InternalError, "closed outside a Tokio runtime");
            return true;
        };
        let span = telemetry::close_span(&self.span);
        closer.close_span = (!span.is_disabled()).then(|| span.clone());
        let run = closer.run(io);
        // A disabled span (no subscriber wants it) would only be entered and left on every poll.
        let mut task: CloseTask = if span.is_disabled() {
            Box::pin(run)
        } else {
            Box::pin(run.instrument(span))
        };
        if current
            .as_ref()
            .is_err_and(|e| e.is_thread_local_destroyed())
        {
            // A thread tearing down its locals cannot enter a runtime: run it all in the task.
            self.spawn(task);
            return true;
        }
        let inside = current.as_ref().is_ok_and(|c| c.id() == rt.id());
        if self.poll_on_the_spot(rt, inside, &mut task).is_pending() {
            let mut parked = self.parked();
            if parked.woken {
                drop(parked);
                self.spawn(task);
            } else {
                parked.task = Some(task);
                parked.deadline = Some(deadline);
            }
        }
        true
    }

    /// Polls a parked (or not yet parked) close outside its own task, with this connection as
    /// its waker. The first poll registers the deadline with the runtime's timer, so every
    /// such poll runs inside the connection's runtime (`rt`, entered unless the thread is
    /// `inside` it already), also from a thread that is not one of its workers.
    fn poll_on_the_spot(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        inside: bool,
        task: &mut CloseTask,
    ) -> Poll<()> {
        let _entered = (!inside).then(|| rt.enter());
        let waker = Waker::from(self.clone());
        task.as_mut().poll(&mut Context::from_waker(&waker))
    }

    /// The driver's part (see [`Parked`]): polls the close when it is parked and has been
    /// woken, else registers `cx` as the driver, to be woken when it is or when the close
    /// ends ([`Drive::Registered`]).
    fn poll_drive(self: &Arc<Self>, cx: &mut Context<'_>) -> Drive {
        // Only a caller inside the connection's runtime (a task, or its `block_on`) drives, under
        // the runtime's task budget: elsewhere (an executor of another kind, a thread tearing
        // down its locals) the close runs in a task of its own.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Drive::Elsewhere;
        };
        if self.rt.as_ref().is_some_and(|own| own.id() != rt.id()) {
            return Drive::Elsewhere;
        }
        let mut parked = self.parked();
        // One poll per turn: a close woken again during its poll goes on in a task of its own
        // rather than keep this caller's turn.
        let mut polled = false;
        loop {
            if parked.task.is_none() {
                // Running elsewhere (a driver registered meanwhile is woken by its end).
                return Drive::Elsewhere;
            }
            if polled && parked.woken {
                let task = parked.task.take();
                drop(parked);
                if let Some(task) = task {
                    self.spawn(task);
                }
                return Drive::Elsewhere;
            }
            let Some(mut task) = parked.take_woken() else {
                // One driver at a time: a second caller waits for the end. A driver is never
                // replaced, as it returns without waiting on `done`.
                return match &parked.driver {
                    Some(driver) if driver.will_wake(cx.waker()) => Drive::Registered,
                    Some(_) => Drive::Elsewhere,
                    None => {
                        parked.driver = Some(cx.waker().clone());
                        Drive::Registered
                    }
                };
            };
            drop(parked);
            if self.poll_on_the_spot(&rt, true, &mut task).is_ready() {
                return Drive::Ended;
            }
            polled = true;
            parked = self.parked();
            parked.task = Some(task);
        }
    }

    /// Waits for the end like [`closed`](Self::closed), driving the close meanwhile
    /// ([`Parked`]).
    async fn close_driven(self: Arc<Self>) -> CloseReport {
        /// A driver that goes away leaves no waker behind, and runs a close it was woken
        /// for in a task of its own. The registered driver may be another caller's (this one
        /// waiting for the end): it is woken, to register again. Nothing to do for a caller
        /// that never registered, or that ended the close.
        struct Leave<'a, T: Transport> {
            shared: &'a Shared<T>,
            registered: bool,
        }
        impl<T: Transport> Drop for Leave<'_, T> {
            fn drop(&mut self) {
                if !self.registered {
                    return;
                }
                let (driver, missed) = {
                    let mut parked = self.shared.parked();
                    let missed = if parked.driver_woken {
                        parked.take_woken()
                    } else {
                        None
                    };
                    (parked.driver.take(), missed)
                };
                if let Some(driver) = driver {
                    driver.wake();
                }
                if let Some(task) = missed {
                    self.shared.spawn(task);
                }
            }
        }
        let mut leave = Leave {
            shared: &self,
            registered: false,
        };
        // `done` is waited on only while the close runs elsewhere. A `Notified` hears every
        // `notify_waiters` after its creation, polled or not: an end between a look at the
        // report and the poll is not missed.
        let mut notified = pin!(self.done.notified());
        poll_fn(|cx| {
            loop {
                if let Some(report) = self.gate.report() {
                    return Poll::Ready(report);
                }
                match self.poll_drive(cx) {
                    Drive::Ended => {
                        leave.registered = false;
                        continue;
                    }
                    // Woken when the close needs it, or by `finish` when it ended elsewhere: not
                    // also by `done`, which would wake this task again after it ended the close.
                    Drive::Registered => {
                        leave.registered = true;
                        return Poll::Pending;
                    }
                    Drive::Elsewhere => {}
                }
                if notified.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                notified.set(self.done.notified());
            }
        })
        .await
    }

    /// The runtime the close runs on: the one the connection was wrapped on, else the current.
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.rt
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    }

    /// Runs the rest of a close in a task of its own. Without a runtime (or with one shut
    /// down) the task is dropped: its `Closer` publishes an `internal_error` report.
    fn spawn(&self, task: CloseTask) {
        if let Some(rt) = self.runtime() {
            drop(rt.spawn(task));
        }
    }

    fn parked(&self) -> MutexGuard<'_, Parked> {
        // Nothing in the critical sections can panic midway; carry on if one did.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Begins an application-level close (app, shutdown, keepalive, lifetime). Counts and logs
    /// a redundant request when the close had already begun. Returns whether this began it.
    fn request_close(self: &Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        let begun = self.begin(&mut self.gate.lock(), Plan::close(cause, frame));
        if !begun {
            telemetry::on_redundant_close(self.role, self.state(), &self.span);
        }
        begun
    }

    /// Polls a write-side operation of the open transport with the connection's write waker
    /// ([`WriteWakers`]); `waiter` is the calling party's slot there. On `Pending` the party's
    /// waker is registered and the operation polled once more, so that a drain between the
    /// two polls is not missed (the fast path, ready at once, registers nothing).
    fn poll_write_side<R>(
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
    async fn lifecycle(
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

    fn finish(
        &self,
        report: CloseReport,
        state_before: State,
        close_attempted: bool,
        error: Option<&str>,
        close_span: Option<&Span>,
    ) {
        telemetry::on_end(&telemetry::End {
            role: self.role,
            report: &report,
            state_before,
            close_attempted,
            span: &self.span,
            close_span,
            error,
        });
        self.gate.finish(report);
        // The close task's waker for terminate: after a poll on the spot it is this connection
        // itself, which must not keep itself alive.
        drop(self.closer.take());
        // A driver still registered (the close ended in a task of its own) learns of the end
        // here; its waker (its task holds this connection) must not outlive the close either.
        let driver = self.parked().driver.take();
        if let Some(driver) = driver {
            driver.wake();
        }
        self.reader.wake();
        self.write_waker.wake_by_ref();
        self.done.notify_waiters();
        if let Some(registry) = &self.config.registry {
            registry.remove(self.id);
        }
    }

    /// Ready once a shutdown has terminated the close.
    fn poll_terminated(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.terminated.load(Ordering::Acquire) {
            self.closer.register(cx.waker());
            if !self.terminated.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }

    /// Ready once the final report is published.
    fn poll_ended(&self, waker: &AtomicWaker, cx: &mut Context<'_>) -> Poll<()> {
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

    async fn closed(&self) -> CloseReport {
        loop {
            let mut notified = pin!(self.done.notified());
            notified.as_mut().enable();
            if let Some(r) = self.gate.report() {
                return r;
            }
            notified.await;
        }
    }

    fn refuse_send(&self) -> Error {
        let state = self.state();
        telemetry::on_send_after_close(self.role, state, &self.span);
        Error::closed(state, self.gate.report())
    }

    /// A transport error seen by the application: begin the close if it is fatal.
    fn on_error(self: &Arc<Self>, slot: &mut Slot<'_, T>, err: T::WsError) -> Error {
        match T::verdict(&err) {
            Verdict::Recoverable => Error::new(Kind::Rejected).with_source(err),
            Verdict::Fatal {
                outcome,
                cause,
                reply,
            } => {
                let mut plan = Plan::failed(outcome, cause, reply, err.to_string());
                if T::is_malformed_close(&err) {
                    plan.received = Some((CloseCode::Invalid(None), None));
                }
                self.begin(slot, plan);
                Error::new(Kind::Ended { outcome }).with_source(err)
            }
        }
    }

    fn poll_next(
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
    fn poll_ready(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
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

    fn start_send(
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

    fn poll_flush(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut slot = self.gate.lock();
        let Some(io) = slot.as_mut() else {
            // The close task flushes what was accepted, or counts it as dropped: then this
            // flush did not deliver, and says so.
            drop(slot);
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

    fn poll_close(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        close_requested: &mut bool,
    ) -> Poll<Result<(), Error>> {
        if !*close_requested {
            *close_requested = true;
            self.request_close(Cause::App, Some((1000, String::new())));
        }
        self.poll_ended(&self.writers.app, cx).map(|_| Ok(()))
    }
}

/// Checks an application-supplied Close frame: refuses forbidden codes, cuts the reason.
fn validate(frame: Option<(u16, &str)>) -> Result<OutFrame, Error> {
    match frame {
        None => Ok(None),
        Some((code, reason)) => {
            check_close_code(code)?;
            Ok(Some((
                code,
                truncate_utf8(reason, MAX_REASON_BYTES).to_owned(),
            )))
        }
    }
}

/// The close task's record of what happened. If the task is dropped before it finishes (the
/// runtime shut down mid-close), `Drop` still publishes an `internal_error` report, so the
/// gauge, the counters and every waiter see exactly one end.
struct Closer<T: Transport> {
    shared: Arc<Shared<T>>,
    cause: Cause,
    started: Instant,
    code_sent: Option<CloseCode>,
    code_received: Option<CloseCode>,
    reason_received: Option<String>,
    handshake_done: bool,
    close_attempted: bool,
    /// Accepted messages not yet confirmed flushed.
    pending: u64,
    preset: Option<Outcome>,
    error: Option<String>,
    finished: bool,
    /// The span the close task runs in, when it is enabled (set by `begin`).
    close_span: Option<Span>,
    /// What is left to do of the plan (taken as it is done).
    reply: Option<CloseCode>,
    send: Option<OutFrame>,
    drain: bool,
    deadline: Instant,
}

impl<T: Transport> Closer<T> {
    fn new(shared: Arc<Shared<T>>, plan: Plan, pending: u64) -> Self {
        let (code_received, reason_received) = match plan.received {
            Some((code, reason)) => (Some(code), reason),
            None => (None, None),
        };
        let invalid = matches!(code_received, Some(CloseCode::Invalid(_)));
        let started = Instant::now();
        let budget = plan.budget.unwrap_or(shared.config.close_timeout);
        let deadline = started + budget.min(shared.config.close_timeout);
        let (preset, error) = match plan.preset {
            Some((o, e)) => (Some(o), Some(e)),
            None if invalid => (
                Some(Outcome::ProtocolError),
                Some("invalid close code received".into()),
            ),
            None => (None, None),
        };
        Closer {
            shared,
            cause: plan.cause,
            started,
            code_sent: None,
            code_received,
            reason_received,
            handshake_done: false,
            close_attempted: false,
            pending,
            preset,
            error,
            finished: false,
            close_span: None,
            reply: plan.reply,
            send: plan.send,
            drain: plan.drain,
            deadline,
        }
    }

    /// Runs the close to its end and publishes the report.
    ///
    /// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
    /// keeps its `mut` arguments twice in its state (as arguments, and as the locals they are
    /// moved into), which took the boxed close from ≈ 800 to ≈ 1,250 bytes, past the size
    /// glibc serves from its per-thread cache.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` doubles the arguments' space"
    )]
    fn run(mut self, mut io: Io<T>) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let mut deadline = pin!(Deadline::new(self.deadline));
            let shared = self.shared.clone();
            let result = tokio::select! {
                biased;
                r = self.handshake(&mut io) => Ok(r),
                () = &mut deadline => Err("close deadline passed"),
                () = poll_fn(|cx| shared.poll_terminated(cx)) => {
                    Err("terminated at the end of a shutdown's grace period")
                }
            };
            let failed = match result {
                Ok(Ok(())) => None,
                Ok(Err(outcome)) => Some(outcome),
                Err(_) if self.handshake_done => None,
                Err(why) => {
                    self.error.get_or_insert_with(|| why.into());
                    Some(Outcome::Timeout)
                }
            };
            if failed.is_none() && self.preset.is_none() {
                // Orderly end (TLS close_notify; see `Transport::poll_shutdown`), bounded by what is
                // left of the deadline, or cut short by a terminate.
                tokio::select! {
                    biased;
                    _ = poll_fn(|cx| io.t.poll_shutdown(cx)) => {}
                    () = &mut deadline => {}
                    () = poll_fn(|cx| shared.poll_terminated(cx)) => {}
                }
            }
            drop(io);
            let outcome = self.preset.or(failed).unwrap_or(if self.handshake_done {
                Outcome::Clean
            } else {
                Outcome::InternalError
            });
            self.finish(outcome);
        }
    }

    async fn handshake(&mut self, io: &mut Io<T>) -> Result<(), Outcome> {
        if let Some(reply) = self.reply.take() {
            // The peer closed first; tungstenite queued the echo. Put it on the wire now rather
            // than on some later write.
            self.close_attempted = true;
            poll_fn(|cx| Pin::new(&mut io.t).poll_flush(cx))
                .await
                .map_err(|e| self.fail(e))?;
            io.pending = 0;
            self.pending = 0;
            self.code_sent = Some(reply);
            self.handshake_done = true;
        }
        if let Some(frame) = self.send.take() {
            self.close_attempted = true;
            let msg = T::close_message(frame.as_ref().map(|(c, r)| (*c, r.as_str())));
            // Queued data frames go out first: the Close frame is written behind them and one
            // flush sends both.
            io.t.send(msg).await.map_err(|e| self.fail(e))?;
            io.pending = 0;
            self.pending = 0;
            self.code_sent = Some(frame.map_or(CloseCode::NoStatus, |(c, _)| CloseCode::Valid(c)));
        }
        if !self.drain || (self.handshake_done && self.shared.role == Role::Server) {
            return Ok(());
        }
        // Read (and discard) until the peer's Close, then EOF for a client: the server closes
        // the TCP connection first.
        loop {
            match io.t.next().await {
                Some(Ok(msg)) => {
                    if let Some(frame) = T::close_frame(&msg) {
                        if self.code_received.is_none() {
                            let code = received_code(frame, false);
                            if matches!(code, CloseCode::Invalid(_)) {
                                self.preset.get_or_insert(Outcome::ProtocolError);
                                self.error
                                    .get_or_insert_with(|| "invalid close code received".into());
                            }
                            self.code_received = Some(code);
                            self.reason_received = Some(sanitize_reason(frame.map_or("", |f| f.1)));
                        }
                        self.handshake_done = true;
                        if self.shared.role == Role::Server {
                            return Ok(());
                        }
                    } else if self.handshake_done {
                        // A data frame after the peer's Close: the peer broke the protocol
                        // (a library that hands such frames over rather than failing).
                        return Err(self.violation("data received after the peer's Close"));
                    }
                }
                // After the peer's Close only the end of the transport may come; tungstenite
                // reports a frame that still arrives as a protocol error.
                Some(Err(e)) if self.handshake_done => {
                    return match T::verdict(&e) {
                        Verdict::Fatal {
                            outcome: Outcome::ProtocolError,
                            ..
                        } => Err(self.fail(e)),
                        _ => Ok(()),
                    };
                }
                None if self.handshake_done => return Ok(()),
                Some(Err(e)) => return Err(self.fail(e)),
                None => {
                    self.error
                        .get_or_insert_with(|| "transport ended before the peer's Close".into());
                    return Err(Outcome::PeerGone);
                }
            }
        }
    }

    fn violation(&mut self, what: &str) -> Outcome {
        self.error.get_or_insert_with(|| what.into());
        Outcome::ProtocolError
    }

    fn fail(&mut self, err: T::WsError) -> Outcome {
        if T::is_malformed_close(&err) && self.code_received.is_none() {
            self.code_received = Some(CloseCode::Invalid(None));
        }
        let outcome = match T::verdict(&err) {
            Verdict::Fatal { outcome, .. } => outcome,
            Verdict::Recoverable => Outcome::InternalError,
        };
        self.error.get_or_insert_with(|| err.to_string());
        outcome
    }

    fn finish_now(mut self, outcome: Outcome, error: &str) {
        self.error = Some(error.to_owned());
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let now = Instant::now();
        let report = CloseReport {
            outcome,
            cause: self.cause,
            code_sent: self.code_sent,
            code_received: self.code_received,
            reason_received: self.reason_received.take(),
            // Only ends with a Close frame either way have a close duration (docs/metrics.md).
            close_duration: (self.code_sent.is_some() || self.code_received.is_some())
                .then(|| now - self.started),
            connection_duration: now - self.shared.opened_at,
            messages_dropped: self.pending,
        };
        let state_before = if self.close_attempted {
            State::Closing(self.cause)
        } else {
            State::Open
        };
        self.shared.finish(
            report,
            state_before,
            self.close_attempted,
            self.error.as_deref(),
            self.close_span.as_ref(),
        );
    }
}

impl<T: Transport> Drop for Closer<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.error = Some("close task dropped before it finished (runtime shut down?)".into());
            self.finish(Outcome::InternalError);
        }
    }
}

/// Ends the connection with `1001 going away` when the last application handle
/// ([`WebSocket`], [`Sender`], [`Receiver`]) is dropped without a close.
struct Owner<T: Transport>(Arc<Shared<T>>);

impl<T: Transport> Drop for Owner<T> {
    fn drop(&mut self) {
        self.0.begin(
            &mut self.0.gate.lock(),
            Plan::close(Cause::App, Some((1001, String::new()))),
        );
    }
}

/// The object-safe view of a connection that [`Handle`] holds, so handles of every transport
/// type are one type.
trait Control: Send + Sync {
    fn request_close(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool;
    fn begin_quietly(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool;
    fn terminate(&self);
    fn state(&self) -> State;
    fn report(&self) -> Option<CloseReport>;
    fn closed(&self) -> Pin<Box<dyn Future<Output = CloseReport> + Send + '_>>;
    fn close_driven(self: Arc<Self>) -> Pin<Box<dyn Future<Output = CloseReport> + Send>>;
    fn role(&self) -> Role;
    fn id(&self) -> u64;
}

impl<T: Transport> Control for Shared<T> {
    fn request_close(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        Shared::request_close(&self, cause, frame)
    }
    fn begin_quietly(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        self.begin(&mut self.gate.lock(), Plan::close(cause, frame))
    }
    fn terminate(&self) {
        if self.gate.phase() == OPEN {
            return; // nothing to terminate
        }
        self.terminated.store(true, Ordering::Release);
        self.closer.wake();
    }
    fn state(&self) -> State {
        Shared::state(self)
    }
    fn report(&self) -> Option<CloseReport> {
        self.gate.report()
    }
    fn closed(&self) -> Pin<Box<dyn Future<Output = CloseReport> + Send + '_>> {
        Box::pin(Shared::closed(self))
    }
    fn close_driven(self: Arc<Self>) -> Pin<Box<dyn Future<Output = CloseReport> + Send>> {
        Box::pin(Shared::close_driven(self))
    }
    fn role(&self) -> Role {
        self.role
    }
    fn id(&self) -> u64 {
        self.id
    }
}

/// A cloneable, `Send + Sync` handle to a connection: close it, wait for its end, query its
/// state from any task. A handle does not keep the connection alive: when the last
/// [`WebSocket`]/[`Sender`]/[`Receiver`] is dropped, the connection closes with 1001.
#[derive(Clone)]
pub struct Handle {
    ctl: Arc<dyn Control>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.ctl.id())
            .field("role", &self.ctl.role())
            .field("state", &self.ctl.state())
            .finish()
    }
}

impl Handle {
    /// Closes the connection with `code` and `reason` and waits for the end, at most the close
    /// deadline. Any number of callers, from any task, at once: exactly one Close frame is
    /// sent, and every caller gets the same report. A call on a connection already closing
    /// or closed sends nothing, counts as a redundant close and returns the final report.
    ///
    /// `reason` is cut to 123 bytes at a character boundary.
    ///
    /// # Errors
    ///
    /// A `code` the protocol forbids (0–999, 1004–1006, 1015–2999, ≥5000) is refused with
    /// [`Error::is_invalid_close_code`] before anything is sent or counted.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. The first poll begins the close and writes the Close frame. Awaited in a
    /// task (or `block_on`) of the connection's runtime, this future may run the rest of the close itself when
    /// the peer's bytes arrive (no task hand-off, as with a raw `close()`). Dropped, it leaves the close to a task of its own;
    /// kept without being polled, it can delay the close until the deadline (or a shutdown's
    /// terminate), never beyond: the close ends within the deadline whatever happens to this
    /// future.
    pub async fn close(&self, code: u16, reason: &str) -> Result<CloseReport, Error> {
        let frame = validate(Some((code, reason)))?;
        self.ctl.clone().request_close(Cause::App, frame);
        Ok(self.ctl.clone().close_driven().await)
    }

    /// Begins the close without waiting; returns whether this call began it (`false`: it was
    /// already closing or closed, counted as redundant).
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub fn start_close(&self, code: u16, reason: &str) -> Result<bool, Error> {
        self.start_close_with_cause(Cause::App, code, reason)
    }

    pub(crate) fn start_close_with_cause(
        &self,
        cause: Cause,
        code: u16,
        reason: &str,
    ) -> Result<bool, Error> {
        let frame = validate(Some((code, reason)))?;
        Ok(self.ctl.clone().request_close(cause, frame))
    }

    /// Begins a close without counting a redundant request when one is already under way
    /// (a shutdown closing every connection is not the application repeating itself).
    pub(crate) fn begin_close_quietly(&self, cause: Cause, code: u16, reason: &str) -> bool {
        let frame = Some((code, truncate_utf8(reason, MAX_REASON_BYTES).to_owned()));
        self.ctl.clone().begin_quietly(cause, frame)
    }

    /// Ends a close under way now: the transport is dropped and the outcome is `timeout`
    /// (unless the handshake had completed). No effect on an open or closed connection.
    pub(crate) fn terminate(&self) {
        self.ctl.terminate();
    }

    /// Waits until the connection has ended and returns the report.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) -> CloseReport {
        // Already over (always so right after `close` drove its own close): no waiter needed.
        if let Some(report) = self.ctl.report() {
            return report;
        }
        self.ctl.closed().await
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.ctl.state()
    }

    /// The final report once the connection is `Closed`.
    pub fn report(&self) -> Option<CloseReport> {
        self.ctl.report()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.ctl.role()
    }

    /// A process-unique id for the connection (the `conn_id` of its tracing span).
    pub fn id(&self) -> u64 {
        self.ctl.id()
    }
}

/// A WebSocket connection whose close is idempotent, race-free and deadline-bounded, and
/// whose end is classified and measured.
///
/// It is a [`Stream`] of messages and a [`Sink`] for them, like tokio-tungstenite's
/// `WebSocketStream`, so `split`, `forward` and `SinkExt::send` keep working. The differences:
///
/// - the stream ends (`None`) once the connection is fully closed, and yields an error only
///   when the connection ended with one ([`Error::outcome`] says which);
/// - sending on a closing or closed connection returns [`Error::is_closed`], never panics;
/// - `SinkExt::close`, a `Message::Close` written to the sink, [`WebSocket::close`] and
///   [`Handle::close`] are the same idempotent close;
/// - a Close from the peer is answered at once and the handshake finishes in the background
///   even if nobody polls the stream again;
/// - dropping it without closing closes with `1001 going away`.
///
/// # Examples
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use tokio_tungstenite::tungstenite::Message;
///
/// # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// let ws = tokio_tungstenite::accept_async(tcp).await?;
/// let mut ws = wsclose::WebSocket::server(ws);
/// while let Some(msg) = ws.next().await {
///     let msg = msg?;
///     if msg.is_text() {
///         ws.send(msg).await?;
///     }
/// }
/// // The stream ended: the connection is closed and the report is final.
/// println!("{}", ws.report().unwrap());
/// # Ok(()) }
/// ```
pub struct WebSocket<T: Transport> {
    owner: Arc<Owner<T>>,
    close_requested: bool,
}

impl<T: Transport> std::fmt::Debug for WebSocket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.owner.0.id)
            .field("role", &self.owner.0.role)
            .field("state", &self.owner.0.state())
            .finish()
    }
}

impl<T: Transport> WebSocket<T> {
    /// Wraps the server side of an established connection with the default [`Config`].
    pub fn server(ws: T) -> Self {
        Self::with_config(ws, Role::Server, Config::default())
    }

    /// Wraps the client side of an established connection with the default [`Config`].
    pub fn client(ws: T) -> Self {
        Self::with_config(ws, Role::Client, Config::default())
    }

    pub(crate) fn with_config(ws: T, role: Role, config: Config) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!(
            target: "wsclose",
            "websocket",
            conn_id = id,
            role = role.as_str(),
            peer = tracing::field::Empty,
        );
        if let Some(peer) = config.peer_addr {
            span.record("peer", tracing::field::display(peer));
        }
        telemetry::on_open(role);
        let writers = Arc::new(WriteWakers::default());
        let write_waker = Waker::from(writers.clone());
        let shared = Arc::new(Shared {
            write_waker,
            gate: Gate::new(Io {
                t: ws,
                pending: 0,
                reader_waits: false,
                writer_waits: false,
            }),
            role,
            config,
            id,
            span,
            opened_at: Instant::now(),
            rt: tokio::runtime::Handle::try_current().ok(),
            reader: AtomicWaker::new(),
            writers,
            done: Notify::new(),
            parked: std::sync::Mutex::default(),
            terminated: AtomicBool::new(false),
            closer: AtomicWaker::new(),
            pongs: AtomicU64::new(0),
            pong: Notify::new(),
            sink_ready: AtomicBool::new(false),
        });
        let config = &shared.config;
        if let Some(registry) = &config.registry {
            if let Some(code) = registry.insert(Handle {
                ctl: shared.clone(),
            }) {
                // Wrapped during a drain: close at once, like every other connection.
                let frame = Some((code, "server shutting down".to_owned()));
                shared.begin(&mut shared.gate.lock(), Plan::close(Cause::Shutdown, frame));
            }
        }
        let lifetime = config
            .max_lifetime
            .map(|(max, jitter)| jittered(max, jitter, id));
        if config.keepalive.is_some() || lifetime.is_some() {
            // Without a timer (logged once at WARN) there is no keepalive and no lifetime.
            if let Some(rt) = shared.rt.as_ref().filter(|rt| deadline::has_timer(rt)) {
                let task = shared.clone().lifecycle(config.keepalive, lifetime);
                rt.spawn(task.instrument(shared.span.clone()));
            }
        }
        WebSocket {
            owner: Arc::new(Owner(shared)),
            close_requested: false,
        }
    }

    fn shared(&self) -> &Arc<Shared<T>> {
        &self.owner.0
    }

    /// A cloneable handle for closing and watching this connection from other tasks.
    pub fn handle(&self) -> Handle {
        Handle {
            ctl: self.shared().clone(),
        }
    }

    /// Splits into a sending and a receiving half, each usable from its own task. The
    /// connection closes with 1001 when both halves (and this value) are dropped without a
    /// close.
    pub fn split(self) -> (Sender<T>, Receiver<T>) {
        let owner = self.owner;
        (
            Sender {
                owner: owner.clone(),
                close_requested: self.close_requested,
            },
            Receiver { owner },
        )
    }

    /// Closes the connection and waits for the end; see [`Handle::close`].
    ///
    /// # Errors
    ///
    /// A forbidden `code` ([`Error::is_invalid_close_code`]); nothing is sent.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn close(&self, code: u16, reason: &str) -> Result<CloseReport, Error> {
        // As `Handle::close`, without the handle's boxed, type-erased future.
        let frame = validate(Some((code, reason)))?;
        let shared = self.shared();
        shared.request_close(Cause::App, frame);
        Ok(shared.clone().close_driven().await)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared().state()
    }

    /// The final report once the connection is `Closed`.
    pub fn report(&self) -> Option<CloseReport> {
        self.shared().gate.report()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.shared().role
    }
}

impl<T: Transport> Stream for WebSocket<T> {
    type Item = Result<T::Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.owner.0.poll_next(cx)
    }
}

/// The application-facing halves all poll the same shared connection; this writes their
/// `Sink` impl once.
macro_rules! sink_impl {
    ($ty:ident) => {
        impl<T: Transport> Sink<T::Message> for $ty<T> {
            type Error = Error;

            fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                self.owner.0.poll_ready(cx)
            }

            fn start_send(self: Pin<&mut Self>, item: T::Message) -> Result<(), Error> {
                let this = self.get_mut();
                this.owner.0.start_send(item, &mut this.close_requested)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                self.owner.0.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                let this = self.get_mut();
                this.owner.0.poll_close(cx, &mut this.close_requested)
            }
        }
    };
}

sink_impl!(WebSocket);

/// The sending half of a [`WebSocket`] (a [`Sink`]).
pub struct Sender<T: Transport> {
    owner: Arc<Owner<T>>,
    close_requested: bool,
}

impl<T: Transport> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("id", &self.owner.0.id)
            .finish()
    }
}

impl<T: Transport> Sender<T> {
    /// A cloneable handle for closing and watching the connection.
    pub fn handle(&self) -> Handle {
        Handle {
            ctl: self.owner.0.clone(),
        }
    }
}

sink_impl!(Sender);

/// The receiving half of a [`WebSocket`] (a [`Stream`]).
pub struct Receiver<T: Transport> {
    owner: Arc<Owner<T>>,
}

impl<T: Transport> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("id", &self.owner.0.id)
            .finish()
    }
}

impl<T: Transport> Receiver<T> {
    /// A cloneable handle for closing and watching the connection.
    pub fn handle(&self) -> Handle {
        Handle {
            ctl: self.owner.0.clone(),
        }
    }
}

impl<T: Transport> Stream for Receiver<T> {
    type Item = Result<T::Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.owner.0.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio_tungstenite::tungstenite::protocol::Role as TtRole;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Both ends of a connection over an in-memory stream: (server, client).
    async fn duplex_pair() -> (
        tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
        tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(4096);
        tokio::join!(
            tokio_tungstenite::WebSocketStream::from_raw_socket(a, TtRole::Server, None),
            tokio_tungstenite::WebSocketStream::from_raw_socket(b, TtRole::Client, None),
        )
    }

    /// glibc serves allocations up to 1,032 bytes from a per-thread cache; larger ones take its
    /// general path (several hundred instructions more for the allocation and the free).
    #[tokio::test]
    async fn the_boxed_close_fits_the_allocators_thread_cache() {
        let (a, _b) = tokio::io::duplex(1024);
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            a,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let conn = WebSocket::server(ws);
        let shared = conn.shared().clone();
        let io = shared.gate.begin(&mut shared.gate.lock(), 1).expect("open");
        let plan = Plan::close(Cause::App, Some((1000, String::new())));
        let close = Closer::new(shared.clone(), plan, 0).run(io);
        let size = std::mem::size_of_val(&close);
        assert!(size <= 1024, "the close task is {size} bytes");
    }

    /// A close polled on the spot has the connection itself as its waker; once it has ended,
    /// nothing may keep the connection alive (its span would also never close).
    #[tokio::test]
    async fn a_connection_closed_by_its_peer_is_freed() {
        use tokio_tungstenite::tungstenite::Message;
        let (mut server, client) = duplex_pair().await;
        let mut ws = WebSocket::client(client);
        let conn = Arc::downgrade(ws.shared());
        server.send(Message::Close(None)).await.unwrap();
        // The server reads the client's reply, then closes the stream.
        let peer = tokio::spawn(async move { while let Some(Ok(_)) = server.next().await {} });
        while let Some(Ok(_)) = ws.next().await {}
        peer.await.unwrap();
        let report = ws.handle().closed().await;
        assert_eq!(report.outcome, Outcome::Clean);
        drop(ws);
        for _ in 0..100 {
            if conn.strong_count() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(conn.strong_count(), 0, "the connection outlived its close");
    }

    /// The task awaiting `close()` ends the close in its own poll when the peer answers; that
    /// end must not wake the same task again (a spurious poll of the caller, and on a
    /// multi-thread runtime possibly another worker woken, per close).
    #[tokio::test]
    async fn a_close_ended_by_its_caller_does_not_wake_the_caller_again() {
        let (mut server, client) = duplex_pair().await;
        let ws = WebSocket::client(client);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut close = Box::pin(ws.close(1000, "bye"));
        assert!(close.as_mut().poll(&mut cx).is_pending(), "no answer yet");
        // The peer reads the Close, answers it and closes the stream.
        while let Some(Ok(_)) = server.next().await {}
        drop(server);
        let mut ended = None;
        for _ in 0..1000 {
            let before = count.0.load(Ordering::SeqCst);
            if let Poll::Ready(report) = close.as_mut().poll(&mut cx) {
                ended = Some((report, count.0.load(Ordering::SeqCst) - before));
                break;
            }
            tokio::task::yield_now().await;
        }
        let (report, woken) = ended.expect("the close ended");
        assert_eq!(report.expect("valid code").outcome, Outcome::Clean);
        assert_eq!(
            woken, 0,
            "the close woke its caller from the poll that ended it"
        );
    }

    /// Two callers await `close()`; the first registers as the close's driver, the second
    /// waits for the end, then is dropped. The driver it unregisters on the way out is woken
    /// (to register again): else the first caller, which waits for nothing but its driver's
    /// wake-up, would never learn of the end.
    #[tokio::test]
    async fn a_second_close_dropped_leaves_the_first_a_way_to_the_end() {
        let (mut server, client) = duplex_pair().await;
        let ws = WebSocket::client(client);
        let (first, second) = (ws.handle(), ws.handle());
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = Box::pin(first.close(1000, "bye"));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        let mut second = Box::pin(second.close(1000, "bye"));
        assert!(
            second
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        drop(second);
        while let Some(Ok(_)) = server.next().await {}
        drop(server);
        let mut report = None;
        for _ in 0..1000 {
            if count.0.swap(0, Ordering::SeqCst) > 0 {
                if let Poll::Ready(r) = first.as_mut().poll(&mut cx) {
                    report = Some(r);
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        let report = report.expect("the first caller was woken to the end");
        assert_eq!(report.expect("valid code").outcome, Outcome::Clean);
    }

    /// Every public type says in `Debug` which connection it is (the id an operator finds in
    /// the connection's span), and the connection and its handle in which state.
    #[tokio::test]
    async fn debug_output_names_the_connection() {
        let (a, _b) = tokio::io::duplex(1024);
        let ws = WebSocket::server(
            tokio_tungstenite::WebSocketStream::from_raw_socket(a, TtRole::Server, None).await,
        );
        let id = ws.handle().id();
        let state = format!("id: {id}, role: Server, state: Open");
        assert_eq!(format!("{ws:?}"), format!("WebSocket {{ {state} }}"));
        assert_eq!(
            format!("{:?}", ws.handle()),
            format!("Handle {{ {state} }}")
        );
        let (tx, rx) = ws.split();
        assert_eq!(format!("{tx:?}"), format!("Sender {{ id: {id} }}"));
        assert_eq!(format!("{rx:?}"), format!("Receiver {{ id: {id} }}"));
    }

    /// A reader that was woken and has read leaves no waker behind: a close it begins next
    /// must not wake the very task that is closing (on a multi-thread runtime that is a yield
    /// and another worker woken per close).
    #[tokio::test]
    async fn a_completed_read_leaves_no_waker_for_the_close_to_wake() {
        use tokio_tungstenite::tungstenite::Message;

        let (server, mut client) = duplex_pair().await;
        let mut ws = WebSocket::server(server);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut ws).poll_next(&mut cx).is_pending());
        client.send(Message::text("hi")).await.unwrap();
        // Read it with the same waker, as the woken task would.
        let mut read = None;
        for _ in 0..100 {
            if let Poll::Ready(got) = Pin::new(&mut ws).poll_next(&mut cx) {
                read = got;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(matches!(read, Some(Ok(Message::Text(_)))), "{read:?}");
        let before = count.0.load(Ordering::SeqCst);
        ws.handle().start_close(1000, "bye").unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            before,
            "the close woke the reader that had already read"
        );
    }
}
