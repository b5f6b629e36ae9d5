//! The one recording point: every metric and every log event of this crate is emitted here.
//!
//! Events are rare (an open, an end, a refused send); nothing here runs per message.
//!
//! Each event is decided once, here, as a list of [`Update`]s (which series moves, by how
//! much, with which facts). Every installed backend renders the same list: the `metrics` facade
//! (a no-op until a recorder is installed) and, with the `otel` feature, the OpenTelemetry
//! instruments of [`crate::otel`] (skipped at the cost of one atomic load until
//! `otel::install` is called).

use std::cell::{OnceCell, RefCell};
use std::sync::Once;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use tracing::{Level, Span};

use crate::{CODE_LABELS, Cause, CloseCode, CloseReport, Outcome, Role, State};

/// Series names, as exported to Prometheus (docs/metrics.md).
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

    /// Every series name, in the order of the table in `docs/metrics.md`.
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

/// HELP text (Prometheus) and description (OpenTelemetry) of every instrument, shared by both.
pub(crate) mod help {
    pub(crate) const CONNECTIONS_ACTIVE: &str = "WebSocket connections currently open or closing.";
    pub(crate) const CONNECTIONS_OPENED: &str = "WebSocket connections opened (wrapped).";
    pub(crate) const CLOSES: &str = "WebSocket connection ends, by who started the end (cause), how it ended (outcome) and whether that is expected.";
    pub(crate) const CLOSE_DURATION: &str =
        "Time from the first Close frame sent or received to the transport closed.";
    pub(crate) const CONNECTION_DURATION: &str = "Time from connection open to transport closed.";
    pub(crate) const CLOSE_FRAMES: &str =
        "Close frames on the wire, by direction (sent/received) and close code class.";
    pub(crate) const CLOSE_REDUNDANT: &str =
        "Close requests on a connection that was already closing or closed (no-ops).";
    pub(crate) const SEND_AFTER_CLOSE: &str =
        "Sends refused because the connection was closing or closed.";
    pub(crate) const MESSAGES_DROPPED: &str =
        "Messages accepted for sending that were never confirmed delivered.";
}

/// Registers HELP text and units for every series with the installed `metrics` recorder.
///
/// [`prometheus::install`](crate::prometheus::install) calls this for you; call it yourself
/// after installing any other recorder. It is also called once, on the first wrapped
/// connection, for recorders installed before that.
pub fn describe_metrics() {
    use names::*;
    describe_gauge!(CONNECTIONS_ACTIVE, Unit::Count, help::CONNECTIONS_ACTIVE);
    describe_counter!(CONNECTIONS_OPENED, Unit::Count, help::CONNECTIONS_OPENED);
    describe_counter!(CLOSES, Unit::Count, help::CLOSES);
    describe_histogram!(CLOSE_DURATION, Unit::Seconds, help::CLOSE_DURATION);
    describe_histogram!(
        CONNECTION_DURATION,
        Unit::Seconds,
        help::CONNECTION_DURATION
    );
    describe_counter!(CLOSE_FRAMES, Unit::Count, help::CLOSE_FRAMES);
    describe_counter!(CLOSE_REDUNDANT, Unit::Count, help::CLOSE_REDUNDANT);
    describe_counter!(SEND_AFTER_CLOSE, Unit::Count, help::SEND_AFTER_CLOSE);
    describe_counter!(MESSAGES_DROPPED, Unit::Count, help::MESSAGES_DROPPED);
}

/// One instrument update, with the facts its labels are made of. Decided once per event by
/// the functions below; rendered by every backend (label names differ per backend, the
/// values and the label *sets* are docs/metrics.md's).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Update {
    /// `connections.opened` += 1.
    Opened(Role),
    /// `connections.active` += delta (±1).
    Active(Role, i64),
    /// `closes` += 1.
    Closed {
        role: Role,
        cause: Cause,
        outcome: Outcome,
    },
    /// `close.duration` observation.
    CloseDuration {
        role: Role,
        outcome: Outcome,
        seconds: f64,
    },
    /// `connection.duration` observation.
    ConnectionDuration {
        role: Role,
        outcome: Outcome,
        seconds: f64,
    },
    /// `close.frames` += 1.
    CloseFrame {
        role: Role,
        direction: Direction,
        code: CloseCode,
    },
    /// `close.redundant` += n.
    Redundant(Role, u64),
    /// `send_after_close` += n.
    SendAfterClose(Role, u64),
    /// `messages.dropped` += n.
    Dropped(Role, u64),
}

/// Which way a Close frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

const fn expected_label(outcome: Outcome) -> &'static str {
    if outcome.is_expected() {
        "true"
    } else {
        "false"
    }
}

/// The `metrics` facade backend: docs/metrics.md's Prometheus names and labels. A no-op (one atomic
/// load in the facade) when no recorder is installed.
///
/// Registering a series is a lookup in the recorder's registry (about 100 ns each); the handles
/// are therefore cached per thread and per recorder, each built on first use. An event then
/// costs a thread-local access, a pointer comparison and the update itself.
fn facade(updates: impl Iterator<Item = Update>) {
    let recorder =
        metrics::with_recorder(|r| r as *const dyn metrics::Recorder as *const () as usize);
    FACADE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.as_ref().map(|c| c.recorder) != Some(recorder) {
            // A different recorder (installed later, or a test's local one): start over.
            *cache = Some(FacadeCache {
                recorder,
                roles: [None, None],
            });
        }
        let Some(cache) = cache.as_mut() else { return };
        for u in updates {
            let role = u.role();
            cache.roles[index(Role::ALL, role)]
                .get_or_insert_with(|| RoleHandles::new(role))
                .apply(u);
        }
    });
}

thread_local! {
    static FACADE: RefCell<Option<FacadeCache>> = const { RefCell::new(None) };
}

/// The facade handles registered with one recorder (identified by its address).
struct FacadeCache {
    recorder: usize,
    roles: [Option<RoleHandles>; 2],
}

/// Every series of one role; the labelled ones are registered when first used.
struct RoleHandles {
    role: Role,
    opened: Counter,
    active: Gauge,
    redundant: Counter,
    send_after_close: Counter,
    dropped: Counter,
    /// cause × outcome
    closes: [[OnceCell<Counter>; 6]; 6],
    /// by outcome
    close_duration: [OnceCell<Histogram>; 6],
    connection_duration: [OnceCell<Histogram>; 6],
    /// direction × code label
    frames: [[OnceCell<Counter>; 16]; 2],
}

/// The position of `value` in `all` (the taxonomy's `ALL` lists, `CODE_LABELS`).
pub(crate) fn index<T: PartialEq>(all: &[T], value: T) -> usize {
    all.iter().position(|v| *v == value).unwrap_or(0)
}

impl RoleHandles {
    fn new(role: Role) -> Self {
        let r = role.as_str();
        RoleHandles {
            role,
            opened: counter!(names::CONNECTIONS_OPENED, "role" => r),
            active: gauge!(names::CONNECTIONS_ACTIVE, "role" => r),
            redundant: counter!(names::CLOSE_REDUNDANT, "role" => r),
            send_after_close: counter!(names::SEND_AFTER_CLOSE, "role" => r),
            dropped: counter!(names::MESSAGES_DROPPED, "role" => r),
            closes: Default::default(),
            close_duration: Default::default(),
            connection_duration: Default::default(),
            frames: Default::default(),
        }
    }

    fn apply(&self, u: Update) {
        let role = self.role.as_str();
        match u {
            Update::Opened(_) => self.opened.increment(1),
            Update::Active(_, delta) => self.active.increment(delta as f64),
            Update::Closed { cause, outcome, .. } => self.closes[index(Cause::ALL, cause)]
                [index(Outcome::ALL, outcome)]
            .get_or_init(|| {
                counter!(
                    names::CLOSES,
                    "role" => role,
                    "cause" => cause.as_str(),
                    "outcome" => outcome.as_str(),
                    "expected" => expected_label(outcome),
                )
            })
            .increment(1),
            Update::CloseDuration { outcome, seconds, .. } => self.close_duration
                [index(Outcome::ALL, outcome)]
            .get_or_init(|| {
                histogram!(names::CLOSE_DURATION, "role" => role, "outcome" => outcome.as_str())
            })
            .record(seconds),
            Update::ConnectionDuration { outcome, seconds, .. } => self.connection_duration
                [index(Outcome::ALL, outcome)]
            .get_or_init(|| {
                histogram!(names::CONNECTION_DURATION, "role" => role, "outcome" => outcome.as_str())
            })
            .record(seconds),
            Update::CloseFrame { direction, code, .. } => {
                let label = code.as_str();
                let d = usize::from(direction == Direction::Received);
                self.frames[d][index(&CODE_LABELS, label)]
                    .get_or_init(|| {
                        counter!(
                            names::CLOSE_FRAMES,
                            "role" => role,
                            "direction" => direction.as_str(),
                            "code" => label,
                        )
                    })
                    .increment(1)
            }
            Update::Redundant(_, n) => self.redundant.increment(n),
            Update::SendAfterClose(_, n) => self.send_after_close.increment(n),
            Update::Dropped(_, n) => self.dropped.increment(n),
        }
    }
}

impl Update {
    fn role(self) -> Role {
        match self {
            Update::Opened(role)
            | Update::Active(role, _)
            | Update::Closed { role, .. }
            | Update::CloseDuration { role, .. }
            | Update::ConnectionDuration { role, .. }
            | Update::CloseFrame { role, .. }
            | Update::Redundant(role, _)
            | Update::SendAfterClose(role, _)
            | Update::Dropped(role, _) => role,
        }
    }
}

/// The backends installed in this process, looked up once per event.
struct Backends {
    #[cfg(feature = "otel")]
    otel: Option<&'static crate::otel::Instruments>,
}

impl Backends {
    /// At most one atomic load (the OpenTelemetry `OnceLock`).
    #[inline]
    fn get() -> Self {
        Backends {
            #[cfg(feature = "otel")]
            otel: crate::otel::instruments(),
        }
    }

    /// Records the updates of one event: one recorder lookup and one cache access for all.
    fn apply(&self, updates: impl Iterator<Item = Update> + Clone) {
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel {
            updates.clone().for_each(|u| otel.apply(u));
        }
        facade(updates);
    }
}

static DESCRIBE_ONCE: Once = Once::new();

pub(crate) fn on_open(role: Role) {
    DESCRIBE_ONCE.call_once(describe_metrics);
    // Rare-event counters exist from the first connection on, at 0, so `increase()` and
    // alerts see their first event rather than a series appearing out of nowhere.
    Backends::get().apply(
        [
            Update::Opened(role),
            Update::Active(role, 1),
            Update::Redundant(role, 0),
            Update::SendAfterClose(role, 0),
            Update::Dropped(role, 0),
        ]
        .into_iter(),
    );
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
    let role = end.role;
    let outcome = r.outcome;
    let frame = |direction, code: Option<CloseCode>| {
        code.map(|code| Update::CloseFrame {
            role,
            direction,
            code,
        })
    };
    let updates = [
        Some(Update::Closed {
            role,
            cause: r.cause,
            outcome,
        }),
        frame(Direction::Sent, r.code_sent),
        frame(Direction::Received, r.code_received),
        r.close_duration.map(|d| Update::CloseDuration {
            role,
            outcome,
            seconds: d.as_secs_f64(),
        }),
        Some(Update::ConnectionDuration {
            role,
            outcome,
            seconds: r.connection_duration.as_secs_f64(),
        }),
        (r.messages_dropped > 0).then_some(Update::Dropped(role, r.messages_dropped)),
        Some(Update::Active(role, -1)),
    ];
    Backends::get().apply(updates.iter().flatten().copied());

    record_close_span(r);
    let outcome = outcome.as_str();
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
    Backends::get().apply(std::iter::once(Update::Redundant(role, 1)));
    tracing::debug!(target: "wsclose", parent: span, state = %state, "close requested on a connection already closing or closed");
}

pub(crate) fn on_send_after_close(role: Role, state: State, span: &Span) {
    Backends::get().apply(std::iter::once(Update::SendAfterClose(role, 1)));
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

/// Records the end on the close span. When that span is enabled, `on_end` runs inside the close
/// task (or in its drop, which `Instrumented` also enters), so the current span is this
/// connection's close span; an end decided without a close task (no runtime), or with the close
/// span disabled, has none, and nothing is recorded.
fn record_close_span(r: &CloseReport) {
    if !tracing::dispatcher::has_been_set() {
        return; // no subscriber, so no span to record on (and `Span::current` is not free)
    }
    let span = Span::current();
    if !span
        .metadata()
        .is_some_and(|m| m.name() == CLOSE_SPAN && m.target() == "wsclose")
    {
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
