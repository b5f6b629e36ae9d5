//! A connection in the `Connecting` state: the opening handshake the crate runs.
//!
//! Its [`Handle`] exists from the start of the handshake (`Handshake::handle`, a registry's
//! `handles`). While connecting it reads `Connecting` and a close is a request to the
//! handshake (refuse the upgrade, or give it up); once the upgrade is accepted the same handle
//! is the open connection's (same id), and a close requested meanwhile is applied at once; a
//! handshake that ends otherwise leaves the handle `Closed` with a report of that end.

use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Span;

use crate::deadline::Deadline;
use crate::handshake::never_opened;
use crate::telemetry::{self, Series};
use crate::{Cause, CloseReport, Config, Outcome, Role, State, Transport, WebSocket};

use super::handle::Control;
use super::{Handle, OutFrame, next_id};

/// The opening phase of one connection, shared by its handles and the handshake.
pub(crate) struct Opening {
    id: u64,
    /// Its role and static labels: the series a redundant close counts in.
    series: Series,
    phase: Mutex<Phase>,
    /// Woken on every change of `phase` (a close requested, open, ended).
    changed: Notify,
    /// The close deadline of its configuration: a close through a handle waits at most this
    /// long for the handshake to act on it (see [`Opening::give_up`]).
    close_timeout: Duration,
}

enum Phase {
    Connecting {
        /// A close asked for while connecting: who asked, and the Close frame it wants.
        close: Option<(Cause, OutFrame)>,
        /// The upgrade was accepted and is being wrapped ([`Opening::claim`]): it opens.
        claimed: bool,
    },
    /// Accepted: the open connection's handle.
    Open(Handle),
    /// The handshake ended without opening.
    Ended(CloseReport),
}

/// Where a connecting handle's waiters go once the phase is over.
enum Settled {
    Open(Handle),
    Ended(CloseReport),
}

impl Opening {
    pub(crate) fn new(series: Series, close_timeout: Duration) -> Arc<Self> {
        Arc::new(Opening {
            id: next_id(),
            series,
            phase: Mutex::new(Phase::Connecting {
                close: None,
                claimed: false,
            }),
            changed: Notify::new(),
            close_timeout,
        })
    }

    /// The handshake succeeded and its connection is about to be wrapped: true unless the
    /// connection was given up meanwhile ([`give_up`](Self::give_up)), in which case the
    /// caller drops it. From here on it opens: nothing gives it up any more.
    pub(crate) fn claim(&self) -> bool {
        match &mut *self.phase() {
            Phase::Connecting { claimed, .. } => {
                *claimed = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the connection was given up from outside its handshake ([`give_up`](Self::give_up)).
    pub(crate) fn given_up(&self) -> bool {
        matches!(&*self.phase(), Phase::Ended(_))
    }

    /// Ends a connection still connecting from outside its handshake: a close was requested
    /// and the `Handshake` future has not acted on it within the close deadline (kept without
    /// being polled, or a worker busy elsewhere). The handles report what the handshake itself
    /// would have: `timeout` for a server (its refusal never went out), `clean` for a client
    /// (given up at once). The socket goes when the future is next polled or dropped; the
    /// handshake is counted then. `None` when it is no longer connecting (or already opening).
    fn give_up(&self) -> Option<CloseReport> {
        let mut phase = self.phase();
        let Phase::Connecting {
            close,
            claimed: false,
        } = &*phase
        else {
            return None;
        };
        let cause = close.as_ref().map_or(Cause::App, |(c, _)| *c);
        let outcome = match self.series.role {
            Role::Server => Outcome::Timeout,
            Role::Client => Outcome::Clean,
        };
        let report = never_opened(outcome, cause);
        *phase = Phase::Ended(report.clone());
        drop(phase);
        self.changed.notify_waiters();
        Some(report)
    }

    /// The connection's id (its handle's, and the wrapped connection's once open).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// A handle to this connection, valid through every state.
    pub(crate) fn handle(self: &Arc<Self>) -> Handle {
        Handle::from_control(self.clone())
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The close requested while connecting, if any.
    pub(crate) fn close_requested(&self) -> Option<(Cause, OutFrame)> {
        match &*self.phase() {
            Phase::Connecting { close, .. } => close.clone(),
            _ => None,
        }
    }

    /// Resolves once a close has been requested (or the phase is over).
    pub(crate) async fn close_request(&self) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if !matches!(&*self.phase(), Phase::Connecting { close: None, .. }) {
                return;
            }
            changed.await;
        }
    }

    /// The upgrade was accepted: wraps `ws` as this connection (same id), applies a close
    /// requested meanwhile, and turns every handle into the open connection's.
    pub(crate) fn open<T: Transport>(&self, ws: T, config: &Config) -> WebSocket<T> {
        let ws = WebSocket::with_config_id(ws, self.series.role, config.clone(), self.id);
        let handle = ws.handle();
        // The close is begun outside the lock (it writes to the socket and may end the
        // connection at once). Meanwhile the state still reads `Closing`, and a request finds
        // a close under way: nothing is applied twice.
        let mut applied = false;
        loop {
            let mut phase = self.phase();
            match &*phase {
                Phase::Connecting {
                    close: Some((cause, frame)),
                    ..
                } if !applied => {
                    let (cause, frame) = (*cause, frame.clone());
                    drop(phase);
                    handle.ctl.clone().begin_quietly(cause, frame);
                    applied = true;
                }
                // Checked and switched under one lock: a request meanwhile is not lost.
                _ => {
                    *phase = Phase::Open(handle);
                    break;
                }
            }
        }
        self.changed.notify_waiters();
        ws
    }

    /// The handshake ended without opening; `report` is what every handle reports.
    pub(crate) fn end(&self, report: CloseReport) {
        let mut phase = self.phase();
        if matches!(&*phase, Phase::Connecting { .. }) {
            *phase = Phase::Ended(report);
        }
        drop(phase);
        self.changed.notify_waiters();
    }

    /// Waits until the phase is over.
    async fn settled(&self) -> Settled {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            match &*self.phase() {
                Phase::Connecting { .. } => {}
                Phase::Open(h) => return Settled::Open(h.clone()),
                Phase::Ended(r) => return Settled::Ended(r.clone()),
            }
            changed.await;
        }
    }

    /// A close through a handle: recorded while connecting, forwarded once open; a repeat is
    /// a redundant close (counted, unless `quietly`).
    fn request(&self, cause: Cause, frame: OutFrame, quietly: bool) -> bool {
        let mut phase = self.phase();
        let state = match &mut *phase {
            Phase::Connecting {
                close: close @ None,
                ..
            } => {
                *close = Some((cause, frame));
                drop(phase);
                self.changed.notify_waiters();
                return true;
            }
            Phase::Open(h) => {
                let ctl = h.ctl.clone();
                drop(phase);
                return if quietly {
                    ctl.begin_quietly(cause, frame)
                } else {
                    ctl.request_close(cause, frame)
                };
            }
            Phase::Connecting {
                close: Some((by, _)),
                ..
            } => State::Closing(*by),
            Phase::Ended(_) => State::Closed,
        };
        drop(phase);
        if !quietly {
            telemetry::on_redundant_close(self.series, state, &Span::none());
        }
        false
    }

    fn open_handle(&self) -> Option<Handle> {
        match &*self.phase() {
            Phase::Open(h) => Some(h.clone()),
            _ => None,
        }
    }
}

impl Control for Opening {
    fn request_close(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        self.request(cause, frame, false)
    }
    fn begin_quietly(self: Arc<Self>, cause: Cause, frame: OutFrame) -> bool {
        self.request(cause, frame, true)
    }
    fn terminate(&self) {
        // A handshake in flight ends by its own deadline, a close's, or a drain's cut.
        if let Some(h) = self.open_handle() {
            h.ctl.terminate();
        }
    }
    fn state(&self) -> State {
        match &*self.phase() {
            // As the WebSocket API's `readyState`: a close while connecting is `Closing`.
            Phase::Connecting {
                close: Some((cause, _)),
                ..
            } => State::Closing(*cause),
            Phase::Connecting { close: None, .. } => State::Connecting,
            Phase::Open(h) => h.state(),
            Phase::Ended(_) => State::Closed,
        }
    }
    fn report(&self) -> Option<CloseReport> {
        match &*self.phase() {
            Phase::Connecting { .. } => None,
            Phase::Open(h) => h.report(),
            Phase::Ended(r) => Some(r.clone()),
        }
    }
    fn closed(&self) -> Pin<Box<dyn Future<Output = CloseReport> + Send + '_>> {
        Box::pin(async move {
            match self.settled().await {
                Settled::Open(h) => h.closed().await,
                Settled::Ended(r) => r,
            }
        })
    }
    fn close_driven(self: Arc<Self>) -> Pin<Box<dyn Future<Output = CloseReport> + Send>> {
        Box::pin(async move {
            // The handshake acts on the close when it is polled; whatever its caller does with
            // it, the close is over by the deadline.
            let deadline = Deadline::new(Instant::now() + self.close_timeout);
            let settled = tokio::select! {
                biased;
                settled = self.settled() => settled,
                () = deadline => match self.give_up() {
                    Some(report) => return report,
                    None => self.settled().await, // opening or ended just now
                },
            };
            match settled {
                Settled::Open(h) => h.ctl.clone().close_driven().await,
                Settled::Ended(r) => r,
            }
        })
    }
    fn role(&self) -> Role {
        self.series.role
    }
    fn id(&self) -> u64 {
        self.id
    }
}
