//! The one recording point: every metric and every log event of this crate is emitted here.
//!
//! Events are rare (an open, an end, a refused send, a shutdown); nothing here runs per message.
//!
//! Each event is decided once, here, as a list of [`Update`]s (which series of which instrument
//! of [`table`] moves, by how much). Every installed backend renders the same list: the
//! `metrics` facade ([`facade`], a no-op until a recorder is installed) and, with the `otel`
//! feature, the OpenTelemetry instruments ([`otel`], skipped at the cost of one atomic load
//! until `wsclose::otel::install` is called). The backends know the table, not the events.

use std::sync::Once;

use tracing::{Level, Span};

use crate::{CloseReport, Outcome, Role, State, WireCode};

#[cfg(test)]
mod contract;
mod facade;
#[cfg(feature = "otel")]
pub(crate) mod otel;
mod table;

pub use table::{CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, describe_metrics, names};
use table::{Direction, Update, Value, expected_slot, instrument};
#[cfg(feature = "prometheus")]
pub(crate) use table::{Kind, TABLE};
#[cfg(feature = "otel")]
pub use table::{attributes, otel_names};

/// The backends installed in this process, looked up once per event.
struct Backends {
    #[cfg(feature = "otel")]
    otel: Option<&'static otel::Instruments>,
}

impl Backends {
    /// At most one atomic load (the OpenTelemetry `OnceLock`).
    #[inline]
    fn get() -> Self {
        Backends {
            #[cfg(feature = "otel")]
            otel: otel::instruments(),
        }
    }

    /// Records the updates of one event: one recorder lookup and one cache access for all.
    fn apply(&self, updates: impl Iterator<Item = Update> + Clone) {
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel {
            updates.clone().for_each(|u| otel.apply(u));
        }
        facade::apply(updates);
    }
}

/// The updates of the per-role instruments.
fn per_role(i: &'static table::Instrument, role: Role, value: Value) -> Update {
    Update::new(i, &[role.index()], value)
}

static DESCRIBE_ONCE: Once = Once::new();

/// The span of one connection (`websocket`: `conn_id`, `role`, `peer`), parent of its close
/// span and of every event about it.
pub(crate) fn connection_span(id: u64, role: Role, peer: Option<std::net::SocketAddr>) -> Span {
    let span = tracing::debug_span!(
        target: "wsclose",
        "websocket",
        conn_id = id,
        role = role.as_str(),
        peer = tracing::field::Empty,
    );
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    span
}

pub(crate) fn on_open(role: Role) {
    DESCRIBE_ONCE.call_once(describe_metrics);
    // Rare-event counters exist from the first connection on, at 0, so `increase()` and
    // alerts see their first event rather than a series appearing out of nowhere.
    Backends::get().apply(
        [
            per_role(instrument::CONNECTIONS_OPENED, role, Value::Add(1)),
            per_role(instrument::CONNECTIONS_ACTIVE, role, Value::Delta(1)),
            per_role(instrument::CLOSE_REDUNDANT, role, Value::Add(0)),
            per_role(instrument::SEND_AFTER_CLOSE, role, Value::Add(0)),
            per_role(instrument::MESSAGES_DROPPED, role, Value::Add(0)),
        ]
        .into_iter(),
    );
}

/// Everything known about an end, for metrics, the close span and the end events.
pub(crate) struct End<'a> {
    pub(crate) role: Role,
    pub(crate) report: &'a CloseReport,
    pub(crate) state_before: State,
    pub(crate) close_attempted: bool,
    /// The connection's span: the parent of the end events.
    pub(crate) span: &'a Span,
    /// The close task's span ([`close_span`]), when the end was decided by a close task; the
    /// end's attributes are recorded on it.
    pub(crate) close_span: Option<&'a Span>,
    /// Why the end is not clean, in words (a transport error, a protocol violation), logged at
    /// DEBUG as the close detail.
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn on_end(end: &End<'_>) {
    if let Some(error) = end.error {
        tracing::debug!(target: "wsclose", parent: end.span, error = %error, "close detail");
    }
    let r = end.report;
    let role = end.role.index();
    let outcome = r.outcome;
    let frame = |direction: Direction, code: Option<WireCode>| {
        code.map(|code| {
            Update::new(
                instrument::CLOSE_FRAMES,
                &[role, direction.index(), code.label_index()],
                Value::Add(1),
            )
        })
    };
    let timed = |i, seconds: f64| Update::new(i, &[role, outcome.index()], Value::Observe(seconds));
    let updates = [
        Some(Update::new(
            instrument::CLOSES,
            &[
                role,
                r.cause.index(),
                outcome.index(),
                expected_slot(outcome),
            ],
            Value::Add(1),
        )),
        frame(Direction::Sent, r.code_sent),
        frame(Direction::Received, r.code_received),
        r.close_duration
            .map(|d| timed(instrument::CLOSE_DURATION, d.as_secs_f64())),
        Some(timed(
            instrument::CONNECTION_DURATION,
            r.connection_duration.as_secs_f64(),
        )),
        (r.messages_dropped > 0).then(|| {
            per_role(
                instrument::MESSAGES_DROPPED,
                end.role,
                Value::Add(r.messages_dropped),
            )
        }),
        Some(per_role(
            instrument::CONNECTIONS_ACTIVE,
            end.role,
            Value::Delta(-1),
        )),
    ];
    Backends::get().apply(updates.iter().flatten().copied());

    if let Some(span) = end.close_span {
        record_close_span(span, r);
    }
    let outcome = outcome.as_str();
    let code_sent = r.code_sent.map(WireCode::as_str);
    let code_received = r.code_received.map(WireCode::as_str);
    let duration_ms = r.connection_duration.as_millis() as u64;
    macro_rules! end_event {
        ($level:expr) => {
            tracing::event!(
                target: "wsclose",
                parent: end.span,
                $level,
                outcome,
                cause = r.cause.as_str(),
                expected = r.outcome.is_expected(),
                code_sent,
                code_received,
                code_received_value = r.code_received.and_then(WireCode::code),
                reason = r.reason_received.as_deref(),
                state_before = %end.state_before,
                close_attempted = end.close_attempted,
                duration_ms,
                messages_dropped = r.messages_dropped,
                "websocket connection ended"
            )
        };
    }
    if r.outcome.is_expected() {
        end_event!(Level::DEBUG);
    } else {
        end_event!(Level::WARN);
    }
}

pub(crate) fn on_redundant_close(role: Role, state: State, span: &Span) {
    let u = per_role(instrument::CLOSE_REDUNDANT, role, Value::Add(1));
    Backends::get().apply(std::iter::once(u));
    tracing::debug!(target: "wsclose", parent: span, state = %state, "close requested on a connection already closing or closed");
}

pub(crate) fn on_send_after_close(role: Role, state: State, span: &Span) {
    let u = per_role(instrument::SEND_AFTER_CLOSE, role, Value::Add(1));
    Backends::get().apply(std::iter::once(u));
    tracing::debug!(target: "wsclose", parent: span, state = %state, "send refused: connection closing or closed");
}

/// Name of the close task's span, a child of the connection's `websocket` span.
pub(crate) const CLOSE_SPAN: &str = "websocket.close";

/// The span the close task runs in: from the moment the close begins (first Close frame, a
/// fatal error, or the transport's end) until the transport is closed, so a slow close is
/// visible in a trace viewer. Its attributes are recorded at the end by [`on_end`]; the field
/// names follow the OpenTelemetry attribute names of [`crate::otel`]-style instruments, and
/// `otel.status_code` marks unexpected ends as errors for `tracing-opentelemetry`.
pub(crate) fn close_span(connection: &Span) -> Span {
    tracing::debug_span!(
        target: "wsclose",
        parent: connection,
        CLOSE_SPAN,
        "websocket.close.cause" = tracing::field::Empty,
        "websocket.close.outcome" = tracing::field::Empty,
        "websocket.close.expected" = tracing::field::Empty,
        "websocket.close.code.sent" = tracing::field::Empty,
        "websocket.close.code.received" = tracing::field::Empty,
        "websocket.close.code.received_value" = tracing::field::Empty,
        "websocket.messages.dropped" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    )
}

/// Records the end on the close span (a no-op when the span is disabled).
fn record_close_span(span: &Span, r: &CloseReport) {
    if span.is_disabled() {
        return;
    }
    span.record("websocket.close.cause", r.cause.as_str());
    span.record("websocket.close.outcome", r.outcome.as_str());
    span.record("websocket.close.expected", r.outcome.is_expected());
    if let Some(code) = r.code_sent {
        span.record("websocket.close.code.sent", code.as_str());
    }
    if let Some(code) = r.code_received {
        span.record("websocket.close.code.received", code.as_str());
        if let Some(value) = code.code() {
            span.record("websocket.close.code.received_value", i64::from(value));
        }
    }
    span.record("websocket.messages.dropped", r.messages_dropped);
    if r.outcome != Outcome::Clean {
        span.record("error.type", r.outcome.as_str());
    }
    if !r.outcome.is_expected() {
        span.record("otel.status_code", "error");
    }
}

/// A [`Registry::shutdown`](crate::Registry::shutdown) has ended; `report` is its
/// `ShutdownReport`.
pub(crate) fn on_shutdown_complete(report: &dyn std::fmt::Display) {
    tracing::info!(target: "wsclose", report = %report, "shutdown complete");
}

/// [`Registry::graceful`](crate::Registry::graceful) was given a code the protocol forbids.
pub(crate) fn on_invalid_shutdown_code(error: &crate::Error) {
    tracing::warn!(target: "wsclose", error = %error, "invalid shutdown code; using 1001");
}

/// A signal [`shutdown_signal`](crate::shutdown_signal) listens for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Signal {
    CtrlC,
    #[cfg_attr(not(unix), allow(dead_code))]
    Terminate,
}

/// A signal handler could not be installed; that signal is ignored.
pub(crate) fn on_signal_unavailable(signal: Signal, error: &std::io::Error) {
    match signal {
        Signal::CtrlC => {
            tracing::warn!(target: "wsclose", error = %error, "cannot listen for Ctrl-C")
        }
        Signal::Terminate => {
            tracing::warn!(target: "wsclose", error = %error, "cannot listen for SIGTERM")
        }
    }
}

/// Closes on a runtime without a timer cannot be bounded (logged once per process).
pub(crate) fn on_runtime_without_timers(why: &str) {
    tracing::warn!(target: "wsclose", "{}", why);
}
