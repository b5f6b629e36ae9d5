//! The one recording point: every metric and every log event of this crate is emitted here.
//!
//! Events are rare (an open, an end, a refused send); nothing here runs per message.

use std::sync::Once;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use tracing::{Level, Span};

use crate::{CloseCode, CloseReport, Role, State};

/// Series names, as exported to Prometheus (SPEC §5).
pub mod names {
    /// Gauge: connections currently open or closing (`role`).
    pub const CONNECTIONS_ACTIVE: &str = "websocket_connections_active";
    /// Counter: connections wrapped (`role`).
    pub const CONNECTIONS_OPENED: &str = "websocket_connections_opened_total";
    /// Counter: connection ends (`role`, `cause`, `outcome`, `expected`).
    pub const CLOSES: &str = "websocket_closes_total";
    /// Histogram: first Close frame sent or received → transport closed (`role`, `outcome`).
    pub const CLOSE_DURATION: &str = "websocket_close_duration_seconds";
    /// Histogram: wrap → transport closed (`role`, `outcome`).
    pub const CONNECTION_DURATION: &str = "websocket_connection_duration_seconds";
    /// Counter: Close frames on the wire (`role`, `direction`, `code`).
    pub const CLOSE_FRAMES: &str = "websocket_close_frames_total";
    /// Counter: close requests on a connection already closing or closed (`role`).
    pub const CLOSE_REDUNDANT: &str = "websocket_close_redundant_total";
    /// Counter: sends refused because the connection is closing or closed (`role`).
    pub const SEND_AFTER_CLOSE: &str = "websocket_send_after_close_total";
    /// Counter: accepted outbound messages never confirmed delivered (`role`).
    pub const MESSAGES_DROPPED: &str = "websocket_messages_dropped_total";

    /// Every series name, in SPEC order.
    pub const ALL: [&str; 9] = [
        CONNECTIONS_ACTIVE,
        CONNECTIONS_OPENED,
        CLOSES,
        CLOSE_DURATION,
        CONNECTION_DURATION,
        CLOSE_FRAMES,
        CLOSE_REDUNDANT,
        SEND_AFTER_CLOSE,
        MESSAGES_DROPPED,
    ];
}

/// Histogram buckets (seconds) for `websocket_close_duration_seconds`: 0.5 ms to 10 s,
/// including the default 5 s close deadline.
pub const CLOSE_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets (seconds) for `websocket_connection_duration_seconds`: 10 ms to 1 h.
pub const CONNECTION_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Registers HELP text and units for every series with the installed `metrics` recorder.
///
/// [`prometheus::install`](crate::prometheus::install) calls this for you; call it yourself
/// after installing any other recorder. It is also called once, on the first wrapped
/// connection, for recorders installed before that.
pub fn describe_metrics() {
    use names::*;
    describe_gauge!(
        CONNECTIONS_ACTIVE,
        Unit::Count,
        "WebSocket connections currently open or closing."
    );
    describe_counter!(
        CONNECTIONS_OPENED,
        Unit::Count,
        "WebSocket connections opened (wrapped)."
    );
    describe_counter!(
        CLOSES,
        Unit::Count,
        "WebSocket connection ends, by who started the end (cause), how it ended (outcome) and whether that is expected."
    );
    describe_histogram!(
        CLOSE_DURATION,
        Unit::Seconds,
        "Time from the first Close frame sent or received to the transport closed."
    );
    describe_histogram!(
        CONNECTION_DURATION,
        Unit::Seconds,
        "Time from connection open to transport closed."
    );
    describe_counter!(
        CLOSE_FRAMES,
        Unit::Count,
        "Close frames on the wire, by direction (sent/received) and close code class."
    );
    describe_counter!(
        CLOSE_REDUNDANT,
        Unit::Count,
        "Close requests on a connection that was already closing or closed (no-ops)."
    );
    describe_counter!(
        SEND_AFTER_CLOSE,
        Unit::Count,
        "Sends refused because the connection was closing or closed."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        Unit::Count,
        "Messages accepted for sending that were never confirmed delivered."
    );
}

static DESCRIBE_ONCE: Once = Once::new();

pub(crate) fn on_open(role: Role) {
    DESCRIBE_ONCE.call_once(describe_metrics);
    let role = role.as_str();
    counter!(names::CONNECTIONS_OPENED, "role" => role).increment(1);
    gauge!(names::CONNECTIONS_ACTIVE, "role" => role).increment(1.0);
    // Rare-event counters exist from the first connection on, at 0, so `increase()` and
    // alerts see their first event rather than a series appearing out of nowhere.
    for name in [
        names::CLOSE_REDUNDANT,
        names::SEND_AFTER_CLOSE,
        names::MESSAGES_DROPPED,
    ] {
        counter!(name, "role" => role).increment(0);
    }
}

/// Everything known about an end, for metrics and the end event.
pub(crate) struct End<'a> {
    pub(crate) role: Role,
    pub(crate) report: &'a CloseReport,
    pub(crate) state_before: State,
    pub(crate) close_attempted: bool,
    pub(crate) span: &'a Span,
}

pub(crate) fn on_end(end: &End<'_>) {
    let r = end.report;
    let role = end.role.as_str();
    let outcome = r.outcome.as_str();
    counter!(
        names::CLOSES,
        "role" => role,
        "cause" => r.cause.as_str(),
        "outcome" => outcome,
        "expected" => if r.outcome.is_expected() { "true" } else { "false" },
    )
    .increment(1);
    for (direction, code) in [("sent", r.code_sent), ("received", r.code_received)] {
        if let Some(code) = code {
            counter!(names::CLOSE_FRAMES, "role" => role, "direction" => direction, "code" => code.as_str())
                .increment(1);
        }
    }
    if let Some(d) = r.close_duration {
        histogram!(names::CLOSE_DURATION, "role" => role, "outcome" => outcome)
            .record(d.as_secs_f64());
    }
    histogram!(names::CONNECTION_DURATION, "role" => role, "outcome" => outcome)
        .record(r.connection_duration.as_secs_f64());
    if r.messages_dropped > 0 {
        counter!(names::MESSAGES_DROPPED, "role" => role).increment(r.messages_dropped);
    }
    gauge!(names::CONNECTIONS_ACTIVE, "role" => role).decrement(1.0);

    let code_sent = r.code_sent.map(CloseCode::as_str);
    let code_received = r.code_received.map(CloseCode::as_str);
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
                code_received_value = r.code_received.and_then(CloseCode::code),
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
    counter!(names::CLOSE_REDUNDANT, "role" => role.as_str()).increment(1);
    tracing::debug!(target: "wsclose", parent: span, state = %state, "close requested on a connection already closing or closed");
}

pub(crate) fn on_send_after_close(role: Role, state: State, span: &Span) {
    counter!(names::SEND_AFTER_CLOSE, "role" => role.as_str()).increment(1);
    tracing::debug!(target: "wsclose", parent: span, state = %state, "send refused: connection closing or closed");
}
