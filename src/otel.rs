//! OpenTelemetry: every wsclose instrument recorded natively through an OpenTelemetry
//! [`Meter`], with names, units, descriptions and attributes that follow OpenTelemetry's
//! general naming rules (there is no semantic convention for WebSocket metrics).
//!
//! # Choosing the backends
//!
//! wsclose records each event once, in one place, and hands it to every backend installed in
//! the process:
//!
//! | you want | do |
//! |---|---|
//! | Prometheus only (the `metrics` facade) | install a `metrics` recorder, e.g. [`prometheus::install`] |
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
//! | OpenTelemetry name | instrument | unit | attributes | Prometheus (docs/metrics.md) |
//! |---|---|---|---|---|
//! | `websocket.connections.active` | `ObservableUpDownCounter<i64>` | `{connection}` | role | `websocket_connections_active` |
//! | `websocket.connections.opened` | `ObservableCounter<u64>` | `{connection}` | role | `websocket_connections_opened_total` |
//! | `websocket.closes` | `ObservableCounter<u64>` | `{connection}` | role, cause, outcome, expected, `error.type` | `websocket_closes_total` |
//! | `websocket.close.duration` | `Histogram<f64>` | `s` | role, outcome, `error.type` | `websocket_close_duration_seconds` |
//! | `websocket.connection.duration` | `Histogram<f64>` | `s` | role, outcome, `error.type` | `websocket_connection_duration_seconds` |
//! | `websocket.close.frames` | `ObservableCounter<u64>` | `{frame}` | role, direction, code | `websocket_close_frames_total` |
//! | `websocket.close.redundant` | `ObservableCounter<u64>` | `{request}` | role | `websocket_close_redundant_total` |
//! | `websocket.send_after_close` | `ObservableCounter<u64>` | `{message}` | role | `websocket_send_after_close_total` |
//! | `websocket.messages.dropped` | `ObservableCounter<u64>` | `{message}` | role | `websocket_messages_dropped_total` |
//! | `websocket.handshakes` | `ObservableCounter<u64>` | `{handshake}` | role, outcome | `websocket_handshakes_total` |
//! | `websocket.handshake.duration` | `Histogram<f64>` | `s` | role, outcome | `websocket_handshake_duration_seconds` |
//!
//! The counters are asynchronous: an event is one relaxed atomic add inside wsclose, and the
//! SDK reads the counts at collection (a synchronous counter would cost an attribute-set lookup
//! per event). The histograms record each value as it happens.
//!
//! Attribute keys are in [`attributes`]: `websocket.role`, `websocket.close.cause`,
//! `websocket.close.outcome`, `websocket.close.expected` (bool), `websocket.close.direction`,
//! `websocket.close.code`, `websocket.handshake.outcome` (the handshake instruments' outcome), and `error.type` (the outcome, present only when it is not
//! `clean`), then the static labels of the connection's configuration
//! ([`Config::with_label`](crate::Config::with_label)) under the keys the service chose. Values
//! are the same bounded labels as the Prometheus series. Histogram bucket
//! boundaries are [`CLOSE_DURATION_BUCKETS`](crate::CLOSE_DURATION_BUCKETS) and
//! [`CONNECTION_DURATION_BUCKETS`](crate::CONNECTION_DURATION_BUCKETS), set on the
//! instruments (a `View` of yours still takes precedence).
//!
//! Translated by an OpenTelemetry Collector's Prometheus exporter (cumulative temporality, unit
//! and `_total` suffixes on), the names become exactly the Prometheus names above; see
//! `docs/opentelemetry.md` for the attribute renaming that keeps the bundled dashboard working.
//!
//! # Traces
//!
//! Spans and events are plain `tracing` (target `wsclose`, level DEBUG): a `websocket` span
//! per connection (`conn_id`, `role`, `peer`, and `labels`, the static labels), a
//! `websocket.close` child span around the close (attributes `websocket.close.outcome`, `.cause`, `.code.sent`, `.code.received`,
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
//!
#![cfg_attr(
    feature = "prometheus",
    doc = "[`prometheus::install`]: crate::prometheus::install"
)]
#![cfg_attr(
    not(feature = "prometheus"),
    doc = "[`prometheus::install`]: https://docs.rs/wsclose/latest/wsclose/prometheus/fn.install.html"
)]

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::{Meter, MeterProvider};

use crate::Error;

pub use crate::telemetry::attributes;
pub use crate::telemetry::otel_names as names;

/// The instrumentation scope name [`install`] uses (with the crate version).
pub const SCOPE: &str = "wsclose";

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
    if crate::telemetry::otel::install(meter) {
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
    crate::telemetry::otel::instruments().is_some()
}
