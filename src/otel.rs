//! OpenTelemetry: every wsclose instrument recorded natively through an OpenTelemetry
//! [`Meter`], with semantic-convention style names, units, descriptions and attributes.
//!
//! # Choosing the backends
//!
//! wsclose records each event once, in one place, and hands it to every backend installed in
//! the process:
//!
//! | you want | do |
//! |---|---|
//! | Prometheus only (the `metrics` facade) | install a `metrics` recorder, e.g. [`prometheus::install`](crate::prometheus::install) |
//! | OpenTelemetry only | call [`install`] with your `MeterProvider`, and install no `metrics` recorder |
//! | both | do both |
//!
//! The `metrics` facade is a no-op while no recorder is installed, so "OpenTelemetry only"
//! needs no switch. (If your application installs a `metrics` recorder for its own series but
//! wants wsclose's only in OpenTelemetry, filter the `websocket_` prefix out of that recorder,
//! e.g. with `metrics_util::layers::FilterLayer`.) Until [`install`] is called, enabling this
//! feature costs one atomic load per connection event and records nothing.
//!
//! # Instruments
//!
//! | OpenTelemetry name | instrument | unit | attributes | Prometheus (SPEC §5) |
//! |---|---|---|---|---|
//! | `websocket.connections.active` | `UpDownCounter<i64>` | `{connection}` | role | `websocket_connections_active` |
//! | `websocket.connections.opened` | `Counter<u64>` | `{connection}` | role | `websocket_connections_opened_total` |
//! | `websocket.closes` | `Counter<u64>` | `{connection}` | role, cause, outcome, expected, `error.type` | `websocket_closes_total` |
//! | `websocket.close.duration` | `Histogram<f64>` | `s` | role, outcome, `error.type` | `websocket_close_duration_seconds` |
//! | `websocket.connection.duration` | `Histogram<f64>` | `s` | role, outcome, `error.type` | `websocket_connection_duration_seconds` |
//! | `websocket.close.frames` | `Counter<u64>` | `{frame}` | role, direction, code | `websocket_close_frames_total` |
//! | `websocket.close.redundant` | `Counter<u64>` | `{request}` | role | `websocket_close_redundant_total` |
//! | `websocket.send_after_close` | `Counter<u64>` | `{message}` | role | `websocket_send_after_close_total` |
//! | `websocket.messages.dropped` | `Counter<u64>` | `{message}` | role | `websocket_messages_dropped_total` |
//!
//! Attribute keys are in [`attributes`]: `websocket.role`, `websocket.close.cause`,
//! `websocket.close.outcome`, `websocket.close.expected` (bool), `websocket.close.direction`,
//! `websocket.close.code`, and `error.type` (the outcome, present only when it is not
//! `clean`). Values are the same bounded labels as the Prometheus series. Histogram bucket
//! boundaries are [`CLOSE_DURATION_BUCKETS`] and [`CONNECTION_DURATION_BUCKETS`], set on the
//! instruments (a `View` of yours still takes precedence).
//!
//! Translated by an OpenTelemetry Collector's Prometheus exporter (cumulative temporality, unit
//! and `_total` suffixes on), the names become exactly the Prometheus names above; see
//! `docs/opentelemetry.md` for the attribute renaming that keeps the bundled dashboard working.
//!
//! # Traces
//!
//! Spans and events are plain `tracing` (target `wsclose`, level DEBUG): a `websocket` span
//! per connection (`conn_id`, `role`, `peer`), a `websocket.close` child span around the close
//! (attributes `websocket.close.outcome`, `.cause`, `.code.sent`, `.code.received`,
//! `error.type`, and an error status when the end is unexpected), and the end event. Add a
//! `tracing_opentelemetry` layer that lets `wsclose=debug` through to export them; see
//! `examples/otlp.rs`.
//!
//! # Examples
//!
//! ```
//! use opentelemetry::metrics::MeterProvider;
//!
//! # fn run(provider: &impl MeterProvider) -> Result<(), wsclose::Error> {
//! // Once, at startup, with the application's SdkMeterProvider (or any MeterProvider):
//! wsclose::otel::install(provider)?;
//! assert!(wsclose::otel::is_installed());
//! # Ok(()) }
//! # run(&opentelemetry::metrics::NoopMeterProvider::new()).unwrap();
//! ```

use std::sync::OnceLock;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::Error;
use crate::telemetry::{CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, Update, help};
use crate::{Outcome, Role};

/// The instrumentation scope name [`install`] uses (with the crate version).
pub const SCOPE: &str = "wsclose";

/// Instrument names.
pub mod names {
    /// UpDownCounter `{connection}`: connections currently open or closing.
    pub const CONNECTIONS_ACTIVE: &str = "websocket.connections.active";
    /// Counter `{connection}`: connections wrapped.
    pub const CONNECTIONS_OPENED: &str = "websocket.connections.opened";
    /// Counter `{connection}`: connection ends.
    pub const CLOSES: &str = "websocket.closes";
    /// Histogram `s`: first Close frame sent or received → transport closed.
    pub const CLOSE_DURATION: &str = "websocket.close.duration";
    /// Histogram `s`: open → transport closed.
    pub const CONNECTION_DURATION: &str = "websocket.connection.duration";
    /// Counter `{frame}`: Close frames on the wire.
    pub const CLOSE_FRAMES: &str = "websocket.close.frames";
    /// Counter `{request}`: close requests on a connection already closing or closed.
    pub const CLOSE_REDUNDANT: &str = "websocket.close.redundant";
    /// Counter `{message}`: sends refused because the connection is closing or closed.
    pub const SEND_AFTER_CLOSE: &str = "websocket.send_after_close";
    /// Counter `{message}`: accepted outbound messages never confirmed delivered.
    pub const MESSAGES_DROPPED: &str = "websocket.messages.dropped";

    /// Every instrument name, in the order of [`crate::names::ALL`] (the Prometheus names).
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

/// Attribute keys.
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
    /// The outcome, present only when it is not `clean` (no Prometheus label).
    pub const ERROR_TYPE: &str = "error.type";
}

/// Every instrument, built once by [`install`].
#[derive(Debug)]
pub(crate) struct Instruments {
    active: UpDownCounter<i64>,
    opened: Counter<u64>,
    closes: Counter<u64>,
    close_duration: Histogram<f64>,
    connection_duration: Histogram<f64>,
    close_frames: Counter<u64>,
    redundant: Counter<u64>,
    send_after_close: Counter<u64>,
    dropped: Counter<u64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// The installed instruments; one atomic load.
#[inline]
pub(crate) fn instruments() -> Option<&'static Instruments> {
    INSTRUMENTS.get()
}

/// Records every wsclose instrument through a meter from `provider`, with the
/// instrumentation scope [`SCOPE`] and this crate's version, for the rest of the process.
///
/// Call it once at startup, before connections are wrapped (connections already open are
/// counted from their next event on, so `websocket.connections.active` would miss them).
/// A provider with no reader or exporter, such as the default global provider
/// (`opentelemetry::global::meter_provider()` before `set_meter_provider`), is accepted and
/// records nothing: a documented no-op, never a panic.
///
/// # Errors
///
/// [`Error::is_config`] when instruments are already installed in this process (the first
/// installation stays in force).
///
/// # Examples
///
/// ```no_run
/// # fn run() -> Result<(), wsclose::Error> {
/// let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
/// wsclose::otel::install(&provider)?;
/// # Ok(()) }
/// ```
pub fn install<P: MeterProvider + ?Sized>(provider: &P) -> Result<(), Error> {
    let scope = InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    install_meter(&provider.meter_with_scope(scope))
}

/// Like [`install`], with a [`Meter`] you made (your own scope name or attributes).
///
/// # Errors
///
/// As [`install`].
pub fn install_meter(meter: &Meter) -> Result<(), Error> {
    let mut fresh = false;
    INSTRUMENTS.get_or_init(|| {
        fresh = true;
        Instruments::new(meter)
    });
    if fresh {
        Ok(())
    } else {
        Err(Error::config(
            "otel",
            "OpenTelemetry instruments are already installed in this process",
        ))
    }
}

/// Whether [`install`] (or [`install_meter`]) has been called in this process.
pub fn is_installed() -> bool {
    INSTRUMENTS.get().is_some()
}

impl Instruments {
    fn new(m: &Meter) -> Self {
        let counter = |name: &'static str, unit: &'static str, help: &'static str| {
            m.u64_counter(name)
                .with_unit(unit)
                .with_description(help)
                .build()
        };
        let histogram = |name: &'static str, help: &'static str, bounds: &[f64]| {
            m.f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(bounds.to_vec())
                .build()
        };
        use names::*;
        Instruments {
            active: m
                .i64_up_down_counter(CONNECTIONS_ACTIVE)
                .with_unit("{connection}")
                .with_description(help::CONNECTIONS_ACTIVE)
                .build(),
            opened: counter(CONNECTIONS_OPENED, "{connection}", help::CONNECTIONS_OPENED),
            closes: counter(CLOSES, "{connection}", help::CLOSES),
            close_duration: histogram(CLOSE_DURATION, help::CLOSE_DURATION, CLOSE_DURATION_BUCKETS),
            connection_duration: histogram(
                CONNECTION_DURATION,
                help::CONNECTION_DURATION,
                CONNECTION_DURATION_BUCKETS,
            ),
            close_frames: counter(CLOSE_FRAMES, "{frame}", help::CLOSE_FRAMES),
            redundant: counter(CLOSE_REDUNDANT, "{request}", help::CLOSE_REDUNDANT),
            send_after_close: counter(SEND_AFTER_CLOSE, "{message}", help::SEND_AFTER_CLOSE),
            dropped: counter(MESSAGES_DROPPED, "{message}", help::MESSAGES_DROPPED),
        }
    }

    /// Renders one update (decided in `telemetry`) with OpenTelemetry names and attributes.
    pub(crate) fn apply(&self, u: Update) {
        use attributes::*;
        let role = |r: Role| KeyValue::new(ROLE, r.as_str());
        match u {
            Update::Opened(r) => self.opened.add(1, &[role(r)]),
            Update::Active(r, delta) => self.active.add(delta, &[role(r)]),
            Update::Closed {
                role: r,
                cause,
                outcome,
            } => {
                let attrs = [
                    role(r),
                    KeyValue::new(CAUSE, cause.as_str()),
                    KeyValue::new(OUTCOME, outcome.as_str()),
                    KeyValue::new(EXPECTED, outcome.is_expected()),
                    KeyValue::new(ERROR_TYPE, outcome.as_str()),
                ];
                self.closes.add(1, with_error_type(&attrs, outcome));
            }
            Update::CloseDuration {
                role: r,
                outcome,
                seconds,
            } => {
                let attrs = timed(r, outcome);
                self.close_duration
                    .record(seconds, with_error_type(&attrs, outcome));
            }
            Update::ConnectionDuration {
                role: r,
                outcome,
                seconds,
            } => {
                let attrs = timed(r, outcome);
                self.connection_duration
                    .record(seconds, with_error_type(&attrs, outcome));
            }
            Update::CloseFrame {
                role: r,
                direction,
                code,
            } => self.close_frames.add(
                1,
                &[
                    role(r),
                    KeyValue::new(DIRECTION, direction.as_str()),
                    KeyValue::new(CODE, code.as_str()),
                ],
            ),
            Update::Redundant(r, n) => self.redundant.add(n, &[role(r)]),
            Update::SendAfterClose(r, n) => self.send_after_close.add(n, &[role(r)]),
            Update::Dropped(r, n) => self.dropped.add(n, &[role(r)]),
        }
    }
}

fn timed(r: Role, outcome: Outcome) -> [KeyValue; 3] {
    [
        KeyValue::new(attributes::ROLE, r.as_str()),
        KeyValue::new(attributes::OUTCOME, outcome.as_str()),
        KeyValue::new(attributes::ERROR_TYPE, outcome.as_str()),
    ]
}

/// `attrs` ends with `error.type`; drop it for a clean end.
fn with_error_type(attrs: &[KeyValue], outcome: Outcome) -> &[KeyValue] {
    let n = attrs.len();
    if outcome == Outcome::Clean {
        &attrs[..n - 1]
    } else {
        attrs
    }
}
