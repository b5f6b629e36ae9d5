//! The instrument table: every wsclose instrument declared once, with its Prometheus name,
//! OpenTelemetry name, kind, units, HELP text, label keys and buckets; the label keys with their
//! bounded values; and [`Update`], what an event does to one series of one instrument.
//!
//! Everything else is derived from here: [`names`], [`otel_names`], [`attributes`],
//! [`crate::describe_metrics`], the Prometheus buckets, both backends (`facade.rs`, `otel.rs`) and
//! `dashboards/contract.json` (rendered by the `contract` tests, which also hold the
//! documentation's tables to it).

use metrics::{KeyName, SharedString, Unit};

use crate::{CODE_LABELS, Cause, HandshakeOutcome, Outcome, Role};

/// Histogram buckets (seconds) for `websocket_close_duration_seconds`: 0.5 ms to 10 s,
/// including the default 5 s close deadline.
pub const CLOSE_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets (seconds) for `websocket_connection_duration_seconds`: 10 ms to 1 h.
pub const CONNECTION_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Histogram buckets (seconds) for `websocket_handshake_duration_seconds`: 1 ms to 30 s,
/// including the default 10 s handshake deadline.
pub const HANDSHAKE_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Declares the instruments: [`names`], [`otel_names`], [`TABLE`] and [`instrument`].
macro_rules! instruments {
    ($(
        $id:ident {
            summary: $summary:literal,
            prometheus: $prom:literal,
            otel: $otel:literal,
            kind: $kind:ident,
            unit: $unit:ident, $otel_unit:literal,
            labels: [$($label:ident),*],
            error_type: $error_type:literal,
            buckets: $buckets:expr,
            help: $help:literal $(,)?
        }
    )+) => {
        /// Series names, as exported to Prometheus (docs/metrics.md).
        pub mod names {
            $(
                #[doc = concat!(stringify!($kind), ": ", $summary, ".")]
                pub const $id: &str = $prom;
            )+

            /// Every series name, in the order of the table in `docs/metrics.md`.
            pub const ALL: [&str; super::COUNT] = [$($id),+];
        }

        /// Instrument names (OpenTelemetry).
        #[cfg_attr(not(feature = "otel"), allow(dead_code, unreachable_pub))]
        pub mod otel_names {
            $(
                #[doc = concat!("`", $otel_unit, "`: ", $summary, ".")]
                pub const $id: &str = $otel;
            )+

            /// Every instrument name, in the order of [`crate::names::ALL`] (the Prometheus
            /// names).
            pub const ALL: [&str; super::COUNT] = [$($id),+];
        }

        /// Positions in [`TABLE`].
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Position { $($id),+ }

        /// Every instrument, in the order of [`names::ALL`].
        pub(crate) const TABLE: [Instrument; COUNT] = [$(
            Instrument {
                index: Position::$id as usize,
                prometheus: $prom,
                otel: $otel,
                kind: Kind::$kind,
                unit: Unit::$unit,
                otel_unit: $otel_unit,
                labels: &[$(Label::$label),*],
                error_type: $error_type,
                buckets: $buckets,
                help: $help,
            }
        ),+];

        /// How many instruments there are.
        pub(crate) const COUNT: usize = [$(stringify!($id)),+].len();

        /// Each instrument of [`TABLE`] by name, for the code that builds [`Update`]s.
        pub(crate) mod instrument {
            use super::{Instrument, Position, TABLE};
            $(
                pub(crate) const $id: &Instrument = &TABLE[Position::$id as usize];
            )+
        }
    };
}

instruments! {
    CONNECTIONS_ACTIVE {
        summary: "connections currently open or closing",
        prometheus: "websocket_connections_active",
        otel: "websocket.connections.active",
        kind: Gauge,
        unit: Count, "{connection}",
        labels: [Role],
        error_type: false,
        buckets: None,
        help: "WebSocket connections currently open or closing.",
    }
    CONNECTIONS_OPENED {
        summary: "connections wrapped",
        prometheus: "websocket_connections_opened_total",
        otel: "websocket.connections.opened",
        kind: Counter,
        unit: Count, "{connection}",
        labels: [Role],
        error_type: false,
        buckets: None,
        help: "WebSocket connections opened (wrapped).",
    }
    CLOSES {
        summary: "connection ends",
        prometheus: "websocket_closes_total",
        otel: "websocket.closes",
        kind: Counter,
        unit: Count, "{connection}",
        labels: [Role, Cause, Outcome, Expected],
        error_type: true,
        buckets: None,
        help: "WebSocket connection ends, by who started the end (cause), how it ended (outcome) and whether that is expected.",
    }
    CLOSE_DURATION {
        summary: "first Close frame sent or received → transport closed",
        prometheus: "websocket_close_duration_seconds",
        otel: "websocket.close.duration",
        kind: Histogram,
        unit: Seconds, "s",
        labels: [Role, Outcome],
        error_type: true,
        buckets: Some(CLOSE_DURATION_BUCKETS),
        help: "Time from the first Close frame sent or received to the transport closed.",
    }
    CONNECTION_DURATION {
        summary: "wrap → transport closed",
        prometheus: "websocket_connection_duration_seconds",
        otel: "websocket.connection.duration",
        kind: Histogram,
        unit: Seconds, "s",
        labels: [Role, Outcome],
        error_type: true,
        buckets: Some(CONNECTION_DURATION_BUCKETS),
        help: "Time from connection open to transport closed.",
    }
    CLOSE_FRAMES {
        summary: "Close frames on the wire",
        prometheus: "websocket_close_frames_total",
        otel: "websocket.close.frames",
        kind: Counter,
        unit: Count, "{frame}",
        labels: [Role, Direction, Code],
        error_type: false,
        buckets: None,
        help: "Close frames on the wire, by direction (sent/received) and close code class.",
    }
    CLOSE_REDUNDANT {
        summary: "close requests on a connection already closing or closed",
        prometheus: "websocket_close_redundant_total",
        otel: "websocket.close.redundant",
        kind: Counter,
        unit: Count, "{request}",
        labels: [Role],
        error_type: false,
        buckets: None,
        help: "Close requests on a connection that was already closing or closed (no-ops).",
    }
    SEND_AFTER_CLOSE {
        summary: "sends refused because the connection is closing or closed",
        prometheus: "websocket_send_after_close_total",
        otel: "websocket.send_after_close",
        kind: Counter,
        unit: Count, "{message}",
        labels: [Role],
        error_type: false,
        buckets: None,
        help: "Sends refused because the connection was closing or closed.",
    }
    MESSAGES_DROPPED {
        summary: "accepted outbound messages never confirmed delivered",
        prometheus: "websocket_messages_dropped_total",
        otel: "websocket.messages.dropped",
        kind: Counter,
        unit: Count, "{message}",
        labels: [Role],
        error_type: false,
        buckets: None,
        help: "Messages accepted for sending that were never confirmed delivered.",
    }
    HANDSHAKES {
        summary: "opening handshakes run by the crate, by how they ended",
        prometheus: "websocket_handshakes_total",
        otel: "websocket.handshakes",
        kind: Counter,
        unit: Count, "{handshake}",
        labels: [Role, HandshakeOutcome],
        error_type: false,
        buckets: None,
        help: "WebSocket opening handshakes run by wsclose, by outcome (accepted, rejected, failed, timeout).",
    }
    HANDSHAKE_DURATION {
        summary: "start of the opening handshake → accepted, rejected, failed or timed out",
        prometheus: "websocket_handshake_duration_seconds",
        otel: "websocket.handshake.duration",
        kind: Histogram,
        unit: Seconds, "s",
        labels: [Role, HandshakeOutcome],
        error_type: false,
        buckets: Some(HANDSHAKE_DURATION_BUCKETS),
        help: "Time from the start of the opening handshake to its end (accepted, rejected, failed or timed out).",
    }
}

/// One instrument: a row of [`TABLE`].
#[derive(Debug)]
pub(crate) struct Instrument {
    /// Its position in [`TABLE`].
    pub(crate) index: usize,
    /// The Prometheus series name (with `_total` for counters).
    pub(crate) prometheus: &'static str,
    /// The OpenTelemetry instrument name.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) otel: &'static str,
    pub(crate) kind: Kind,
    /// The unit given to the `metrics` recorder.
    pub(crate) unit: Unit,
    /// The OpenTelemetry (UCUM) unit.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) otel_unit: &'static str,
    /// The label keys, in the order the series carry them.
    pub(crate) labels: &'static [Label],
    /// OpenTelemetry only: the outcome again as `error.type`, when it is not `clean` (the
    /// instrument must have an `Outcome` label).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) error_type: bool,
    /// Histogram bucket bounds (seconds), for the exporters that take them from here.
    #[cfg_attr(not(any(feature = "prometheus", feature = "otel")), allow(dead_code))]
    pub(crate) buckets: Option<&'static [f64]>,
    /// The HELP text (Prometheus) and description (OpenTelemetry).
    pub(crate) help: &'static str,
}

/// What an instrument is, in each backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A monotonic count: a `metrics` counter; an OpenTelemetry `ObservableCounter<u64>`.
    Counter,
    /// A value that goes up and down: a `metrics` gauge; an OpenTelemetry
    /// `ObservableUpDownCounter<i64>`.
    Gauge,
    /// Observed values: a histogram in both.
    Histogram,
}

#[cfg(test)]
impl Kind {
    /// The Prometheus metric type.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    /// The OpenTelemetry instrument.
    pub(crate) const fn otel_instrument(self) -> &'static str {
        match self {
            Kind::Counter => "ObservableCounter<u64>",
            Kind::Gauge => "ObservableUpDownCounter<i64>",
            Kind::Histogram => "Histogram<f64>",
        }
    }
}

impl Instrument {
    /// How many series the labels allow: the product of their cardinalities.
    pub(crate) const fn series_count(&self) -> usize {
        let mut n = 1;
        let mut i = 0;
        while i < self.labels.len() {
            n *= self.labels[i].cardinality();
            i += 1;
        }
        n
    }

    /// The label slots of series number `series` (the inverse of [`Update::series`]).
    pub(crate) fn slots(&self, mut series: usize) -> Slots {
        let mut slots = [0; MAX_LABELS];
        for (i, label) in self.labels.iter().enumerate().rev() {
            slots[i] = (series % label.cardinality()) as u8;
            series /= label.cardinality();
        }
        slots
    }

    /// The slot of `label` among `slots`, if the instrument has that label.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn slot_of(&self, slots: &Slots, label: Label) -> Option<usize> {
        let i = self.labels.iter().position(|l| *l == label)?;
        Some(usize::from(slots[i]))
    }
}

/// Registers HELP text and units for every series with the current `metrics` recorder (the
/// public [`crate::describe_metrics`] also creates the zero series).
pub(crate) fn describe() {
    metrics::with_recorder(|r| {
        for i in &TABLE {
            let (key, unit, help) = (
                KeyName::from_const_str(i.prometheus),
                Some(i.unit),
                SharedString::const_str(i.help),
            );
            match i.kind {
                Kind::Counter => r.describe_counter(key, unit, help),
                Kind::Gauge => r.describe_gauge(key, unit, help),
                Kind::Histogram => r.describe_histogram(key, unit, help),
            }
        }
    });
}

/// A label key. Its values are a fixed list; a value is stored as its slot in that list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    Role,
    Cause,
    Outcome,
    /// Whether the outcome is expected (slot 0 `true`, 1 `false`).
    Expected,
    Direction,
    /// The close code class ([`CODE_LABELS`]).
    Code,
    /// How an opening handshake ended (Prometheus key `outcome`, like [`Label::Outcome`], with
    /// the handshake's own values).
    HandshakeOutcome,
}

/// The most labels an instrument has.
pub(crate) const MAX_LABELS: usize = 4;

/// Label slots, in the order of an instrument's labels.
pub(crate) type Slots = [u8; MAX_LABELS];

/// Every label key, in the order of `docs/metrics.md`'s label table.
pub(crate) const LABELS: [Label; 7] = [
    Label::Role,
    Label::Cause,
    Label::Outcome,
    Label::Expected,
    Label::Direction,
    Label::Code,
    Label::HandshakeOutcome,
];

impl Label {
    /// The Prometheus label name.
    pub(crate) const fn key(self) -> &'static str {
        match self {
            Label::Role => "role",
            Label::Cause => "cause",
            Label::Outcome => "outcome",
            Label::Expected => "expected",
            Label::Direction => "direction",
            Label::Code => "code",
            Label::HandshakeOutcome => "outcome",
        }
    }

    /// The first cell of the label's row in docs/metrics.md's "Label values" table: the key,
    /// and for a key shared by two labels, which series it is on.
    #[cfg(test)]
    pub(crate) fn doc_row(self) -> String {
        match self {
            Label::HandshakeOutcome => "`outcome` (handshakes)".to_owned(),
            _ => format!("`{}`", self.key()),
        }
    }

    /// The OpenTelemetry attribute key.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) const fn otel_key(self) -> &'static str {
        match self {
            Label::Role => attributes::ROLE,
            Label::Cause => attributes::CAUSE,
            Label::Outcome => attributes::OUTCOME,
            Label::Expected => attributes::EXPECTED,
            Label::Direction => attributes::DIRECTION,
            Label::Code => attributes::CODE,
            Label::HandshakeOutcome => attributes::HANDSHAKE_OUTCOME,
        }
    }

    /// How many values the label has.
    pub(crate) const fn cardinality(self) -> usize {
        match self {
            Label::Role => Role::ALL.len(),
            Label::Cause => Cause::ALL.len(),
            Label::Outcome => Outcome::ALL.len(),
            Label::Expected => 2,
            Label::Direction => Direction::ALL.len(),
            Label::Code => CODE_LABELS.len(),
            Label::HandshakeOutcome => HandshakeOutcome::ALL.len(),
        }
    }

    /// The value in `slot`.
    pub(crate) fn value(self, slot: usize) -> &'static str {
        match self {
            Label::Role => Role::ALL[slot].as_str(),
            Label::Cause => Cause::ALL[slot].as_str(),
            Label::Outcome => Outcome::ALL[slot].as_str(),
            Label::Expected => ["true", "false"][slot],
            Label::Direction => Direction::ALL[slot].as_str(),
            Label::Code => CODE_LABELS[slot],
            Label::HandshakeOutcome => HandshakeOutcome::ALL[slot].as_str(),
        }
    }
}

/// The `expected` slot of an outcome.
pub(crate) const fn expected_slot(outcome: Outcome) -> usize {
    if outcome.is_expected() { 0 } else { 1 }
}

/// OpenTelemetry attribute keys.
#[cfg_attr(not(feature = "otel"), allow(dead_code, unreachable_pub))]
pub mod attributes {
    /// `server` or `client` (Prometheus label `role`).
    pub const ROLE: &str = "websocket.role";
    /// Who or what started the end (`cause`).
    pub const CAUSE: &str = "websocket.close.cause";
    /// How the connection ended (`outcome`).
    pub const OUTCOME: &str = "websocket.close.outcome";
    /// Whether the outcome is expected, a bool (`expected`).
    pub const EXPECTED: &str = "websocket.close.expected";
    /// `sent` or `received` (`direction`).
    pub const DIRECTION: &str = "websocket.close.direction";
    /// The close code class (`code`).
    pub const CODE: &str = "websocket.close.code";
    /// How an opening handshake ended (`outcome` of the handshake series).
    pub const HANDSHAKE_OUTCOME: &str = "websocket.handshake.outcome";
    /// The outcome, present only when it is not `clean` (no Prometheus label).
    pub const ERROR_TYPE: &str = "error.type";
}

/// Which way a Close frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub(crate) const ALL: [Direction; 2] = [Direction::Sent, Direction::Received];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// One instrument update: which series of which instrument moves, and by how much. Decided once
/// per event (in `telemetry`); rendered by every backend with its own names and label keys (the
/// values and the label *sets* are docs/metrics.md's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Update {
    pub(crate) instrument: &'static Instrument,
    /// The label values as slots, in the order of the instrument's labels.
    pub(crate) slots: Slots,
    pub(crate) value: Value,
}

/// How a series moves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value {
    /// A counter increment (0 creates the series).
    Add(u64),
    /// A gauge change.
    Delta(i64),
    /// A histogram observation.
    Observe(f64),
    /// Creates the series at 0 without changing it (a histogram with no observation).
    Zero,
}

impl Update {
    /// `slots` are the label values' slots, one per label of `instrument`, in its order.
    pub(crate) fn new(instrument: &'static Instrument, slots: &[usize], value: Value) -> Self {
        debug_assert_eq!(
            slots.len(),
            instrument.labels.len(),
            "{}",
            instrument.prometheus
        );
        debug_assert!(
            matches!(
                (instrument.kind, value),
                (Kind::Counter, Value::Add(_))
                    | (Kind::Gauge, Value::Delta(_))
                    | (Kind::Histogram, Value::Observe(_))
                    | (_, Value::Zero)
            ),
            "{}",
            instrument.prometheus
        );
        let mut s = [0; MAX_LABELS];
        for ((slot, label), out) in slots.iter().zip(instrument.labels).zip(&mut s) {
            debug_assert!(*slot < label.cardinality(), "{label:?} {slot}");
            *out = *slot as u8;
        }
        Update {
            instrument,
            slots: s,
            value,
        }
    }

    /// The series number within the instrument: the slots read as a mixed-radix number, so
    /// every label set has its own position in `0..series_count()`.
    pub(crate) fn series(&self) -> usize {
        self.instrument
            .labels
            .iter()
            .zip(self.slots)
            .fold(0, |n, (label, slot)| {
                n * label.cardinality() + usize::from(slot)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_series_numbers_are_inverse() {
        for i in &TABLE {
            let n = i.series_count();
            for series in 0..n {
                let slots = i.slots(series);
                let slots: Vec<usize> = slots[..i.labels.len()]
                    .iter()
                    .map(|s| usize::from(*s))
                    .collect();
                let value = match i.kind {
                    Kind::Counter => Value::Add(1),
                    Kind::Gauge => Value::Delta(1),
                    Kind::Histogram => Value::Observe(1.0),
                };
                let u = Update::new(i, &slots, value);
                assert_eq!(u.series(), series, "{}", i.prometheus);
            }
        }
    }

    #[test]
    fn the_table_is_in_order_and_consistent() {
        for (k, i) in TABLE.iter().enumerate() {
            assert_eq!(i.index, k);
            assert!(i.labels.len() <= MAX_LABELS);
            assert_eq!(i.labels.first(), Some(&Label::Role), "{}", i.prometheus);
            assert_eq!(i.buckets.is_some(), i.kind == Kind::Histogram);
            assert!(!i.error_type || i.labels.contains(&Label::Outcome));
            assert_eq!(i.prometheus.ends_with("_total"), i.kind == Kind::Counter);
        }
        assert_eq!(instrument::CLOSES.prometheus, names::CLOSES);
        assert_eq!(instrument::CLOSES.otel, otel_names::CLOSES);
    }

    #[test]
    fn slot_values_match_the_taxonomy() {
        for o in Outcome::ALL {
            assert_eq!(Label::Outcome.value(o.index()), o.as_str());
            assert_eq!(
                Label::Expected.value(expected_slot(*o)),
                if o.is_expected() { "true" } else { "false" }
            );
        }
        for d in Direction::ALL {
            assert_eq!(Label::Direction.value(d.index()), d.as_str());
        }
        for code in (0..=u16::MAX).map(Some).chain([None]) {
            let c = crate::WireCode::from_wire(code);
            assert_eq!(Label::Code.value(c.label_index()), c.as_str());
        }
    }
}
