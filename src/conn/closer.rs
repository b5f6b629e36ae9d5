//! The close task: flushes, sends the Close frame (or the reply to the peer's), reads until
//! the peer's Close or EOF, shuts the transport down, all within one deadline; then decides
//! the outcome and publishes the one report.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tracing::Span;

use crate::classify::{Verdict, received_code};
use crate::code::sanitize_reason;
use crate::deadline::Deadline;
use crate::{Cause, CloseReport, Outcome, Role, State, Transport, WireCode};

use super::plan::Plan;
use super::{Io, OutFrame, Shared};

/// The close task's record of what happened. If the task is dropped before it finishes (the
/// runtime shut down mid-close: a process returning from `main`, a test's runtime dropped),
/// `Drop` still publishes the one report, so the gauge, the counters and every waiter see
/// exactly one end; it is an expected end (see `Drop`).
pub(super) struct Closer<T: Transport> {
    shared: Arc<Shared<T>>,
    cause: Cause,
    started: Instant,
    code_sent: Option<WireCode>,
    code_received: Option<WireCode>,
    reason_received: Option<String>,
    handshake_done: bool,
    close_attempted: bool,
    /// Accepted messages not yet confirmed flushed.
    pending: u64,
    preset: Option<Outcome>,
    error: Option<String>,
    finished: bool,
    /// The span the close task runs in, when it is enabled (set by `begin`).
    pub(super) close_span: Option<Span>,
    /// What is left to do of the plan (taken as it is done).
    reply: Option<WireCode>,
    send: Option<OutFrame>,
    drain: bool,
    /// Begun by the drop of the last application handle ([`Plan::dropped`]).
    dropped: bool,
    pub(super) deadline: Instant,
}

impl<T: Transport> Closer<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, plan: Plan, pending: u64) -> Self {
        let (code_received, reason_received) = match plan.received {
            Some((code, reason)) => (Some(code), reason),
            None => (None, None),
        };
        let invalid = matches!(code_received, Some(WireCode::Invalid(_)));
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
            dropped: plan.dropped,
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
    pub(super) fn run(mut self, mut io: Io<T>) -> impl Future<Output = ()> + Send + 'static {
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
        if self.reply.is_none()
            && self.send.is_none()
            && self.preset == Some(Outcome::ProtocolError)
        {
            // The library queued its own Close for the violation (`Verdict::protocol_error(None)`,
            // tokio-websockets): put it on the wire before the transport is dropped.
            let _ = poll_fn(|cx| Pin::new(&mut io.t).poll_flush(cx)).await;
        }
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
            self.shared.on_close_written();
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
            self.code_sent = Some(frame.map_or(WireCode::NoStatus, |(c, _)| WireCode::Valid(c)));
            self.shared.on_close_written();
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
                            if matches!(code, WireCode::Invalid(_)) {
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
            self.code_received = Some(WireCode::Invalid(None));
        }
        let outcome = match T::verdict(&err) {
            Verdict::Fatal { outcome, .. } => outcome,
            Verdict::Recoverable => Outcome::InternalError,
        };
        self.error.get_or_insert_with(|| err.to_string());
        outcome
    }

    pub(super) fn finish_now(mut self, outcome: Outcome, error: &str) {
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

/// A close task dropped before it finished: its runtime was torn down (a task is never aborted
/// otherwise). That is how a process ends that returns from `main` with connections open, so it
/// is an expected end, logged at DEBUG: `clean` when both Close frames had been exchanged, else
/// `peer_gone` (the transport ends, dropped, without a complete handshake). A close begun by
/// the application, the peer, keepalive or a lifetime keeps its cause; a close begun because
/// the last handle was dropped (the runtime dropping the task that held it, most likely) counts
/// as `shutdown`, like a drain's. A preset outcome (a protocol violation found first) stands.
impl<T: Transport> Drop for Closer<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.error = Some("runtime shut down before the close finished".into());
            if self.dropped {
                self.cause = Cause::Shutdown;
            }
            let outcome = if self.handshake_done && self.code_sent.is_some() {
                Outcome::Clean
            } else {
                Outcome::PeerGone
            };
            self.finish(self.preset.unwrap_or(outcome));
        }
    }
}
