//! The one recording point: every metric and every log event of this crate is emitted here.
//!
//! Events are rare (an open, an end, a refused send, a shutdown); nothing here runs per message.
//!
//! Each event is decided once, here, as a list of [`Update`]s (which series of which instrument
//! of [`table`] moves, by how much). Every installed backend renders the same list: the
//! `metrics` facade ([`facade`], a no-op until a recorder is installed) and, with the `otel`
//! feature, the OpenTelemetry instruments ([`otel`], skipped at the cost of one atomic load
//! until `wsclose::otel::install` is called). The backends know the table, not the events.
//!
//! Every event belongs to a [`Series`]: a role and the static label set of the connection's
//! configuration ([`labels`]). The series of a (role, label set) are created at 0 once, on the
//! first connection wrapped with them ([`on_open`]) or earlier through
//! [`Config::init_metrics`](crate::Config::init_metrics) ([`init_series`]).

use std::sync::Once;

use tracing::{Level, Span};

use crate::{CODE_LABELS, Cause, CloseReport, HandshakeOutcome, Outcome, Role, State, WireCode};

#[cfg(test)]
mod contract;
mod facade;
pub(crate) mod labels;
#[cfg(feature = "otel")]
pub(crate) mod otel;
mod table;

pub use table::{
    CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, HANDSHAKE_DURATION_BUCKETS, names,
};
use table::{Direction, Update, Value, expected_slot, instrument};
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
    fn apply(&self, set: &'static LabelSet, updates: impl Iterator<Item = Update> + Clone) {
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel {
            updates.clone().for_each(|u| otel.apply(set, u));
        }
        facade::apply(set, updates);
    }
}

use labels::LabelSet;

/// Whose series an event moves: a role, and the static labels of the connection's
/// configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Series {
    pub(crate) role: Role,
    pub(crate) labels: &'static LabelSet,
}

/// The updates of the per-role instruments.
fn per_role(i: &'static table::Instrument, role: Role, value: Value) -> Update {
    Update::new(i, &[role.index()], value)
}

/// The series of `role` that an end can produce, each at 0 ([`Value::Zero`]): the dashboards
/// and the alerts read all of them, and `increase()` and `rate()` see the first event of a
/// series only when the series existed before it. Only combinations that can occur:
/// `expected` is the one the outcome implies; `cause="transport"` never comes with
/// `protocol_error` (a transport end's outcome is fixed by the transport's error, and every
/// protocol violation is the peer's); a Close frame is never *sent* with an `invalid` code
/// (outgoing codes are validated). 91 series per role, the whole bound of docs/metrics.md but
/// for those 3.
fn zeros(role: Role) -> impl Iterator<Item = Update> + Clone {
    let r = role.index();
    let per_role = [
        instrument::CONNECTIONS_ACTIVE,
        instrument::CONNECTIONS_OPENED,
        instrument::CLOSE_REDUNDANT,
        instrument::SEND_AFTER_CLOSE,
        instrument::MESSAGES_DROPPED,
    ]
    .into_iter()
    .map(move |i| Update::new(i, &[r], Value::Zero));
    let closes = Cause::ALL.iter().flat_map(move |c| {
        Outcome::ALL
            .iter()
            .filter(move |o| !(*c == Cause::Transport && **o == Outcome::ProtocolError))
            .map(move |o| {
                let slots = [r, c.index(), o.index(), expected_slot(*o)];
                Update::new(instrument::CLOSES, &slots, Value::Zero)
            })
    });
    // The instruments labelled by role and one more label: every value of that label.
    let by_role_and_one = [
        instrument::CLOSE_DURATION,
        instrument::CONNECTION_DURATION,
        instrument::HANDSHAKES,
        instrument::HANDSHAKE_DURATION,
    ]
    .into_iter()
    .flat_map(move |i| {
        (0..i.labels[1].cardinality()).map(move |v| Update::new(i, &[r, v], Value::Zero))
    });
    let invalid = WireCode::Invalid(None).label_index();
    let frames = Direction::ALL.into_iter().flat_map(move |d| {
        (0..CODE_LABELS.len())
            .filter(move |code| !(d == Direction::Sent && *code == invalid))
            .map(move |code| {
                Update::new(instrument::CLOSE_FRAMES, &[r, d.index(), code], Value::Zero)
            })
    });
    per_role.chain(closes).chain(by_role_and_one).chain(frames)
}

/// Creates the series of `series` at 0 in every backend, unless they exist already: once per
/// role and label set in the process, whatever the number of connections.
pub(crate) fn init_series(series: Series) {
    DESCRIBE_ONCE.call_once(table::describe);
    series.labels.zero_once(series.role, || {
        Backends::get().apply(series.labels, zeros(series.role))
    });
}

static DESCRIBE_ONCE: Once = Once::new();

/// The histograms and their buckets, `(Prometheus name, upper bounds in seconds)`, for an
/// application that builds its own Prometheus exporter (it already exports other metrics):
/// without explicit buckets metrics-exporter-prometheus renders histograms as summaries, and
/// the dashboard's bucket panels, the heatmap and the `le="1"` rule then find nothing. Needs no
/// feature. With the `prometheus` feature, `wsclose::prometheus::with_buckets(builder)` applies
/// them.
///
/// ```
/// # use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
/// let mut builder = PrometheusBuilder::new(); // the application's own
/// for (name, buckets) in wsclose::histogram_buckets() {
///     builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)?;
/// }
/// # Ok::<(), metrics_exporter_prometheus::BuildError>(())
/// ```
pub fn histogram_buckets() -> impl Iterator<Item = (&'static str, &'static [f64])> {
    table::TABLE
        .iter()
        .filter_map(|i| Some((i.prometheus, i.buckets?)))
}

/// Registers HELP text and units for every series with the installed `metrics` recorder, and
/// creates at 0 the series of every role and static label set already in use (see
/// [`Config::init_metrics`](crate::Config::init_metrics)).
///
/// [`prometheus::install`] calls this for you; call it yourself after installing any other
/// recorder. It is also called once, on the first wrapped connection, for recorders installed
/// before that.
///
#[cfg_attr(
    feature = "prometheus",
    doc = "[`prometheus::install`]: crate::prometheus::install"
)]
#[cfg_attr(
    not(feature = "prometheus"),
    doc = "[`prometheus::install`]: https://docs.rs/wsclose/latest/wsclose/prometheus/fn.install.html"
)]
pub fn describe_metrics() {
    table::describe();
    for set in LabelSet::all() {
        for role in Role::ALL {
            if set.is_zeroed(*role) {
                facade::apply(set, zeros(*role));
            }
        }
    }
}

/// The OpenTelemetry instruments were just installed: the series created at 0 before are
/// created in them too.
#[cfg(feature = "otel")]
fn on_otel_installed(instruments: &otel::Instruments) {
    for set in LabelSet::all() {
        for role in Role::ALL {
            if set.is_zeroed(*role) {
                zeros(*role).for_each(|u| instruments.apply(set, u));
            }
        }
    }
}

/// The span of one connection (`websocket`: `conn_id`, `role`, `peer`, and `labels`, the
/// static labels as `name=value,…` when there are any), parent of its close span and of every
/// event about it.
pub(crate) fn connection_span(id: u64, series: Series, peer: Option<std::net::SocketAddr>) -> Span {
    let span = tracing::debug_span!(
        target: "wsclose",
        "websocket",
        conn_id = id,
        role = series.role.as_str(),
        peer = tracing::field::Empty,
        labels = tracing::field::Empty,
    );
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    if !series.labels.display.is_empty() && !span.is_disabled() {
        span.record("labels", series.labels.display);
    }
    span
}

pub(crate) fn on_open(series: Series) {
    // Every series an end can produce exists from the first connection of its role and label
    // set on (or from `Config::init_metrics`), at 0, so `increase()` and alerts see the first
    // event rather than a series appearing out of nowhere. One atomic load after the first.
    init_series(series);
    let role = series.role;
    Backends::get().apply(
        series.labels,
        [
            per_role(instrument::CONNECTIONS_OPENED, role, Value::Add(1)),
            per_role(instrument::CONNECTIONS_ACTIVE, role, Value::Delta(1)),
        ]
        .into_iter(),
    );
}

/// Everything known about the end of an opening handshake.
pub(crate) struct HandshakeEnd<'a> {
    pub(crate) series: Series,
    /// The connection's id (its `conn_id` once open).
    pub(crate) conn_id: u64,
    pub(crate) outcome: HandshakeOutcome,
    /// The HTTP status answered instead of the upgrade (`rejected`).
    pub(crate) status: Option<u16>,
    pub(crate) duration: std::time::Duration,
    pub(crate) error: Option<&'a (dyn std::error::Error + 'static)>,
    /// A failure that may point at the server's side: logged at WARN.
    pub(crate) warn: bool,
}

/// The end of an opening handshake run by the crate: `websocket_handshakes_total` and
/// `websocket_handshake_duration_seconds`, and one event, DEBUG for expected ends (accepted,
/// refused by the application or a drain, timed out, a peer that went away) or WARN
/// (`websocket handshake failed`).
pub(crate) fn on_handshake(end: &HandshakeEnd<'_>) {
    init_series(end.series);
    let slots = [end.series.role.index(), end.outcome.index()];
    Backends::get().apply(
        end.series.labels,
        [
            Update::new(instrument::HANDSHAKES, &slots, Value::Add(1)),
            Update::new(
                instrument::HANDSHAKE_DURATION,
                &slots,
                Value::Observe(end.duration.as_secs_f64()),
            ),
        ]
        .into_iter(),
    );
    let (role, outcome) = (end.series.role.as_str(), end.outcome.as_str());
    let status = end.status;
    let duration_ms = end.duration.as_secs_f64() * 1e3;
    let error = end.error.map(tracing::field::display);
    let labels = (!end.series.labels.display.is_empty()).then_some(end.series.labels.display);
    let conn_id = end.conn_id;
    if end.warn {
        tracing::warn!(target: "wsclose", conn_id, role, outcome, status, duration_ms, error, labels, "websocket handshake failed");
    } else {
        tracing::debug!(target: "wsclose", conn_id, role, outcome, status, duration_ms, error, labels, "websocket handshake ended");
    }
}

/// Distinct static label sets keep coming: their values are probably not from a fixed list.
pub(crate) fn on_many_label_sets(n: usize) {
    tracing::warn!(
        target: "wsclose",
        "{n} distinct sets of static labels in use: each multiplies the number of series; \
         static label values must come from a small fixed list (routes, not request data)"
    );
}

/// Everything known about an end, for metrics, the close span and the end events.
pub(crate) struct End<'a> {
    pub(crate) series: Series,
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
    let role = end.series.role.index();
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
                end.series.role,
                Value::Add(r.messages_dropped),
            )
        }),
        Some(per_role(
            instrument::CONNECTIONS_ACTIVE,
            end.series.role,
            Value::Delta(-1),
        )),
    ];
    Backends::get().apply(end.series.labels, updates.iter().flatten().copied());

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

pub(crate) fn on_redundant_close(series: Series, state: State, span: &Span) {
    let u = per_role(instrument::CLOSE_REDUNDANT, series.role, Value::Add(1));
    Backends::get().apply(series.labels, std::iter::once(u));
    tracing::debug!(target: "wsclose", parent: span, state = %state, "close requested on a connection already closing or closed");
}

pub(crate) fn on_send_after_close(series: Series, state: State, span: &Span) {
    let u = per_role(instrument::SEND_AFTER_CLOSE, series.role, Value::Add(1));
    Backends::get().apply(series.labels, std::iter::once(u));
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

/// The Prometheus listener stopped after a drain: with its last scrape served, or at the bound.
#[cfg(feature = "prometheus")]
pub(crate) fn on_linger(served: bool, scrapes: u64, max: std::time::Duration) {
    if served {
        tracing::info!(target: "wsclose", scrapes, "last scrape served; /metrics stopped");
    } else {
        tracing::warn!(
            target: "wsclose",
            scrapes,
            max_ms = max.as_millis() as u64,
            "no scrape within the linger bound; /metrics stopped (the drain's last values may not reach Prometheus)"
        );
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn the_zero_series_are_the_combinations_that_can_occur() {
        for role in Role::ALL {
            let all: Vec<Update> = zeros(*role).collect();
            assert_eq!(all.len(), 91);
            let distinct: BTreeSet<(usize, usize)> = all
                .iter()
                .map(|u| (u.instrument.index, u.series()))
                .collect();
            assert_eq!(distinct.len(), all.len(), "no series twice");
            for u in &all {
                assert_eq!(u.value, Value::Zero);
                assert_eq!(usize::from(u.slots[0]), role.index());
                if u.instrument.index == instrument::CLOSES.index {
                    let outcome = Outcome::ALL[usize::from(u.slots[2])];
                    assert_eq!(usize::from(u.slots[3]), expected_slot(outcome));
                    let cause = Cause::ALL[usize::from(u.slots[1])];
                    assert!(!(cause == Cause::Transport && outcome == Outcome::ProtocolError));
                }
            }
            let closes = all
                .iter()
                .filter(|u| u.instrument.index == instrument::CLOSES.index)
                .count();
            assert_eq!(closes, 35);
        }
    }

    /// Every series of a role and label set at 0 after `init_series`, with the static labels,
    /// and none of the other role.
    #[test]
    fn init_series_creates_a_roles_series_at_zero_with_the_static_labels() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let labels = LabelSet::empty().with("t_init", "x").unwrap();
        metrics::with_local_recorder(&recorder, || {
            init_series(Series {
                role: Role::Server,
                labels,
            })
        });
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(snapshot.len(), 91);
        for (k, _, _, v) in snapshot {
            let key = k.key();
            let l: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            assert!(l.contains(&("role", "server")), "{key:?}");
            assert_eq!(l.last(), Some(&("t_init", "x")), "{key:?}");
            match v {
                DebugValue::Counter(n) => assert_eq!(n, 0, "{key:?}"),
                DebugValue::Gauge(g) => assert_eq!(g.into_inner(), 0.0, "{key:?}"),
                DebugValue::Histogram(h) => assert!(h.is_empty(), "{key:?}"),
            }
        }
        assert!(labels.is_zeroed(Role::Server));
        assert!(!labels.is_zeroed(Role::Client));
    }
}
