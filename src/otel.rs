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
//!
//! The counters are asynchronous: an event is one relaxed atomic add inside wsclose, and the
//! SDK reads the counts at collection (a synchronous counter would cost an attribute-set lookup
//! per event). The histograms record each value as it happens.
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

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::{
    AsyncInstrument, Histogram, Meter, MeterProvider, ObservableCounter, ObservableUpDownCounter,
};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::Error;
use crate::telemetry::{
    CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, Direction, Update, help, index,
};
use crate::{CODE_LABELS, Cause, Outcome, Role};

/// The instrumentation scope name [`install`] uses (with the crate version).
pub const SCOPE: &str = "wsclose";

/// Instrument names.
pub mod names {
    /// Asynchronous UpDownCounter `{connection}`: connections currently open or closing.
    pub const CONNECTIONS_ACTIVE: &str = "websocket.connections.active";
    /// Asynchronous Counter `{connection}`: connections wrapped.
    pub const CONNECTIONS_OPENED: &str = "websocket.connections.opened";
    /// Asynchronous Counter `{connection}`: connection ends.
    pub const CLOSES: &str = "websocket.closes";
    /// Histogram `s`: first Close frame sent or received → transport closed.
    pub const CLOSE_DURATION: &str = "websocket.close.duration";
    /// Histogram `s`: open → transport closed.
    pub const CONNECTION_DURATION: &str = "websocket.connection.duration";
    /// Asynchronous Counter `{frame}`: Close frames on the wire.
    pub const CLOSE_FRAMES: &str = "websocket.close.frames";
    /// Asynchronous Counter `{request}`: close requests on a connection already closing or closed.
    pub const CLOSE_REDUNDANT: &str = "websocket.close.redundant";
    /// Asynchronous Counter `{message}`: sends refused because the connection is closing or closed.
    pub const SEND_AFTER_CLOSE: &str = "websocket.send_after_close";
    /// Asynchronous Counter `{message}`: accepted outbound messages never confirmed delivered.
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
///
/// The counters (and the active count) are asynchronous instruments: an event is one relaxed
/// atomic add on [`Counts`], and the SDK reads the counts through the callbacks when it
/// collects (at each export). A synchronous counter would cost an attribute-set lookup in the
/// SDK per event (hashing every attribute, ≈ 100 ns), six per connection. The two duration
/// histograms need each value, so they are recorded as it happens.
pub(crate) struct Instruments {
    counts: Arc<Counts>,
    close_duration: Histogram<f64>,
    connection_duration: Histogram<f64>,
    /// The asynchronous instruments, kept for as long as the process records.
    _observed: (ObservableUpDownCounter<i64>, [ObservableCounter<u64>; 6]),
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments").finish_non_exhaustive()
    }
}

/// What the asynchronous instruments report, indexed by role (`Role::ALL`), cause
/// (`Cause::ALL`), outcome (`Outcome::ALL`), direction (sent, received) and code label
/// (`CODE_LABELS`): every series wsclose can produce, so an event never allocates.
#[derive(Default)]
struct Counts {
    opened: [AtomicU64; 2],
    active: [AtomicI64; 2],
    closes: [[[AtomicU64; 6]; 6]; 2],
    frames: [[[AtomicU64; 16]; 2]; 2],
    redundant: [AtomicU64; 2],
    send_after_close: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
}

impl Counts {
    /// Roles that have had a connection: their series exist (the rare-event ones at 0).
    fn roles(&self) -> impl Iterator<Item = (usize, Role)> + '_ {
        Role::ALL
            .iter()
            .copied()
            .enumerate()
            .filter(|(r, _)| self.opened[*r].load(Ordering::Relaxed) > 0)
    }

    fn observe_per_role<T>(&self, o: &dyn AsyncInstrument<T>, value: impl Fn(usize) -> T) {
        for (r, role) in self.roles() {
            o.observe(value(r), &[KeyValue::new(attributes::ROLE, role.as_str())]);
        }
    }

    fn observe_closes(&self, o: &dyn AsyncInstrument<u64>) {
        use attributes::*;
        for (r, role) in Role::ALL.iter().copied().enumerate() {
            for (c, cause) in Cause::ALL.iter().copied().enumerate() {
                for (k, outcome) in Outcome::ALL.iter().copied().enumerate() {
                    let n = self.closes[r][c][k].load(Ordering::Relaxed);
                    if n > 0 {
                        let attrs = [
                            KeyValue::new(ROLE, role.as_str()),
                            KeyValue::new(CAUSE, cause.as_str()),
                            KeyValue::new(OUTCOME, outcome.as_str()),
                            KeyValue::new(EXPECTED, outcome.is_expected()),
                            KeyValue::new(ERROR_TYPE, outcome.as_str()),
                        ];
                        o.observe(n, with_error_type(&attrs, outcome));
                    }
                }
            }
        }
    }

    fn observe_frames(&self, o: &dyn AsyncInstrument<u64>) {
        use attributes::*;
        for (r, role) in Role::ALL.iter().copied().enumerate() {
            for (d, direction) in [Direction::Sent, Direction::Received]
                .into_iter()
                .enumerate()
            {
                for (k, code) in CODE_LABELS.into_iter().enumerate() {
                    let n = self.frames[r][d][k].load(Ordering::Relaxed);
                    if n > 0 {
                        o.observe(
                            n,
                            &[
                                KeyValue::new(ROLE, role.as_str()),
                                KeyValue::new(DIRECTION, direction.as_str()),
                                KeyValue::new(CODE, code),
                            ],
                        );
                    }
                }
            }
        }
    }
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
        use names::*;
        let counts = Arc::new(Counts::default());
        let histogram = |name: &'static str, help: &'static str, bounds: &[f64]| {
            m.f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(bounds.to_vec())
                .build()
        };
        type Observe = fn(&Counts, &dyn AsyncInstrument<u64>);
        let counter = |name: &'static str, unit: &'static str, help: &'static str, f: Observe| {
            let counts = counts.clone();
            m.u64_observable_counter(name)
                .with_unit(unit)
                .with_description(help)
                .with_callback(move |o| f(&counts, o))
                .build()
        };
        let active = {
            let counts = counts.clone();
            m.i64_observable_up_down_counter(CONNECTIONS_ACTIVE)
                .with_unit("{connection}")
                .with_description(help::CONNECTIONS_ACTIVE)
                .with_callback(move |o| {
                    counts.observe_per_role(o, |r| counts.active[r].load(Ordering::Relaxed))
                })
                .build()
        };
        let counters = [
            counter(
                CONNECTIONS_OPENED,
                "{connection}",
                help::CONNECTIONS_OPENED,
                |c, o| c.observe_per_role(o, |r| c.opened[r].load(Ordering::Relaxed)),
            ),
            counter(CLOSES, "{connection}", help::CLOSES, Counts::observe_closes),
            counter(
                CLOSE_FRAMES,
                "{frame}",
                help::CLOSE_FRAMES,
                Counts::observe_frames,
            ),
            counter(
                CLOSE_REDUNDANT,
                "{request}",
                help::CLOSE_REDUNDANT,
                |c, o| c.observe_per_role(o, |r| c.redundant[r].load(Ordering::Relaxed)),
            ),
            counter(
                SEND_AFTER_CLOSE,
                "{message}",
                help::SEND_AFTER_CLOSE,
                |c, o| c.observe_per_role(o, |r| c.send_after_close[r].load(Ordering::Relaxed)),
            ),
            counter(
                MESSAGES_DROPPED,
                "{message}",
                help::MESSAGES_DROPPED,
                |c, o| c.observe_per_role(o, |r| c.dropped[r].load(Ordering::Relaxed)),
            ),
        ];
        Instruments {
            counts,
            close_duration: histogram(CLOSE_DURATION, help::CLOSE_DURATION, CLOSE_DURATION_BUCKETS),
            connection_duration: histogram(
                CONNECTION_DURATION,
                help::CONNECTION_DURATION,
                CONNECTION_DURATION_BUCKETS,
            ),
            _observed: (active, counters),
        }
    }

    /// Renders one update (decided in `telemetry`) with OpenTelemetry names and attributes.
    pub(crate) fn apply(&self, u: Update) {
        let c = &*self.counts;
        let role = |r: Role| index(Role::ALL, r);
        let add = |n: &AtomicU64, by: u64| {
            n.fetch_add(by, Ordering::Relaxed);
        };
        match u {
            Update::Opened(r) => add(&c.opened[role(r)], 1),
            Update::Active(r, delta) => {
                c.active[role(r)].fetch_add(delta, Ordering::Relaxed);
            }
            Update::Closed {
                role: r,
                cause,
                outcome,
            } => add(
                &c.closes[role(r)][index(Cause::ALL, cause)][index(Outcome::ALL, outcome)],
                1,
            ),
            Update::CloseFrame {
                role: r,
                direction,
                code,
            } => add(
                &c.frames[role(r)][usize::from(direction == Direction::Received)]
                    [index(&CODE_LABELS, code.as_str())],
                1,
            ),
            Update::Redundant(r, n) if n > 0 => add(&c.redundant[role(r)], n),
            Update::SendAfterClose(r, n) if n > 0 => add(&c.send_after_close[role(r)], n),
            Update::Dropped(r, n) if n > 0 => add(&c.dropped[role(r)], n),
            // `on_open`'s zeros: the series exist once the role has a connection.
            Update::Redundant(..) | Update::SendAfterClose(..) | Update::Dropped(..) => {}
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
