//! [`Handle`]: close and watch a connection from any task or thread.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::code::{MAX_REASON_BYTES, truncate_utf8};
use crate::gate::OPEN;
use crate::{Cause, CloseReport, Error, IntoCloseCode, Role, State, Transport};

use super::plan::{Plan, validate};
use super::{OutFrame, Shared};

/// The object-safe view of a connection that [`Handle`] holds, so handles of every transport
/// type are one type (and a connection still connecting, `opening.rs`, is one more).
pub(super) trait Control: Send + Sync {
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
/// [`WebSocket`](super::WebSocket)/[`Sender`](super::Sender)/[`Receiver`](super::Receiver) is dropped, the connection closes with 1001.
#[derive(Clone)]
pub struct Handle {
    pub(super) ctl: Arc<dyn Control>,
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
    pub(super) fn new<T: Transport>(shared: Arc<Shared<T>>) -> Self {
        Handle { ctl: shared }
    }

    pub(super) fn from_control(ctl: Arc<dyn Control>) -> Self {
        Handle { ctl }
    }

    /// Closes the connection with `code` and `reason` and waits for the end, at most the close
    /// deadline. Any number of callers, from any task, at once: exactly one Close frame is
    /// sent, and every caller gets the same report. A call on a connection already closing
    /// or closed sends nothing, counts as a redundant close and returns the final report.
    ///
    /// `code` is a `u16` or tungstenite's `CloseCode`; `reason` is cut to 123 bytes at a
    /// character boundary.
    ///
    /// # Errors
    ///
    /// A `code` the protocol forbids (0–999, 1004–1006, 1015–2999, ≥5000) is refused with
    /// [`Error::is_invalid_close_code`] before anything is sent or counted.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. The close begins when `close` is called, not when the future is first
    /// polled: the Close frame is on its way before it returns, so a future spawned, kept or
    /// dropped cannot change which Close goes out. The future only waits for the end. Awaited
    /// in a task (or `block_on`) of the connection's runtime, it may run the rest of the close
    /// itself when the peer's bytes arrive (no task hand-off, as with a raw `close()`). Dropped,
    /// it leaves the close to a task of its own; kept without being polled, it can delay the
    /// close until the deadline (or a shutdown's terminate), never beyond: the close ends within
    /// the deadline whatever happens to this future.
    pub fn close<C: IntoCloseCode>(
        &self,
        code: C,
        reason: &str,
    ) -> impl Future<Output = Result<CloseReport, Error>> + Send + 'static + use<C> {
        let begun = validate(Some((code.into_close_code(), reason))).map(|frame| {
            self.ctl.clone().request_close(Cause::App, frame);
            self.ctl.clone()
        });
        async move { Ok(begun?.close_driven().await) }
    }

    /// Begins the close without waiting; returns whether this call began it (`false`: it was
    /// already closing or closed, counted as redundant).
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub fn start_close(&self, code: impl IntoCloseCode, reason: &str) -> Result<bool, Error> {
        self.start_close_with_cause(Cause::App, code.into_close_code(), reason)
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
