//! Beginning a close, and who polls it after that.
//!
//! [`Shared::begin`] takes the transport out of the gate and polls the close task once, on the
//! spot: the Close frame (or the reply to the peer's) is on its way before it returns. The
//! rest is [`Parked`] until something wakes it, then polled by the caller awaiting `close()`
//! (the driver) or by a task of its own. The end is published once, by [`Shared::finish`].

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::{Cause, CloseReport, Outcome, State, Transport, telemetry};

use super::closer::Closer;
use super::phase::closing_phase;
use super::plan::Plan;
use super::{CloseTask, OutFrame, Shared, Slot};

/// A close whose first poll ran on the spot waits here, not yet spawned, until something
/// wakes it: the peer's bytes, its deadline, or a shutdown's terminate. The connection itself
/// is the waker of every poll of a parked close, and its wake decides who polls next:
///
/// - A caller in the connection's runtime awaiting [`Handle::close`](super::Handle::close) (the *driver*) is woken for
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
pub(super) struct Parked {
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
            // its `Closer` drops the transport and publishes its report (a teardown's). (Tokio's
            // streams, timers and `Notify`, and the deadline sweeper, wake outside their locks.)
            self.spawn(task);
        }
    }
}

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

impl<T: Transport> Shared<T> {
    /// Begins the close if nobody has; returns false when it had already begun.
    ///
    /// Takes the transport and drives the close task as far as it goes right now (the Close
    /// frame, or the reply to the peer's, is written before this returns). The rest waits,
    /// parked, until something wakes it, and then runs in the task awaiting `close()` or in a
    /// task of its own on the connection's runtime (see [`Parked`]). So nothing a caller does
    /// afterwards (awaiting a future, keeping one without polling it, dropping it) can hold a
    /// close up beyond its deadline, and a close may begin on any thread.
    pub(super) fn begin(self: &Arc<Self>, slot: &mut Slot<'_, T>, plan: Plan) -> bool {
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
        // A disabled span (no subscriber wants it) would only be entered and left on every poll,
        // and would record nothing at the end.
        let span = Some(telemetry::close_span(&self.span)).filter(|s| !s.is_disabled());
        closer.close_span = span.clone();
        let run = closer.run(io);
        let mut task: CloseTask = match span {
            None => Box::pin(run),
            Some(span) => Box::pin(run.instrument(span)),
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
    pub(super) async fn close_driven(self: Arc<Self>) -> CloseReport {
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
    /// down) the task is dropped: its `Closer` publishes a teardown's report (see its `Drop`).
    pub(super) fn spawn(&self, task: CloseTask) {
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
    pub(super) fn request_close(self: &Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        let begun = self.begin(&mut self.gate.lock(), Plan::close(cause, frame));
        if !begun {
            telemetry::on_redundant_close(self.series(), self.state(), &self.span);
        }
        begun
    }

    pub(super) fn finish(
        &self,
        report: CloseReport,
        state_before: State,
        close_attempted: bool,
        error: Option<&str>,
        close_span: Option<&Span>,
    ) {
        telemetry::on_end(&telemetry::End {
            series: self.series(),
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
    pub(super) fn poll_terminated(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.terminated.load(Ordering::Acquire) {
            self.closer.register(cx.waker());
            if !self.terminated.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }

    pub(super) async fn closed(&self) -> CloseReport {
        loop {
            let mut notified = pin!(self.done.notified());
            notified.as_mut().enable();
            if let Some(r) = self.gate.report() {
                return r;
            }
            notified.await;
        }
    }
}
