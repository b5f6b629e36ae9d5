//! The OpenTelemetry backend: the instruments of [`TABLE`] built on a [`Meter`], with
//! OpenTelemetry names, units and attributes. The public installation API is [`crate::otel`].
//!
//! The counters (and the active count) are asynchronous instruments: an event is one relaxed
//! atomic add on [`Counts`], and the SDK reads the counts through the callbacks when it
//! collects (at each export). A synchronous counter would cost an attribute-set lookup in the
//! SDK per event (hashing every attribute, ≈ 100 ns), six per connection. The histograms need
//! each value, so they are recorded as it happens.
//!
//! Each static label set ([`LabelSet`]) has counts of its own, made on its first event after
//! installation; a callback reports the touched series of every set, with the set's labels as
//! further attributes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    AsyncInstrument, Histogram, Meter, ObservableCounter, ObservableUpDownCounter,
};

use super::labels::{LabelSet, MAX_STATIC_LABELS};
use super::table::{
    COUNT, Instrument, Kind, Label, MAX_LABELS, Slots, TABLE, Update, Value, attributes,
};
use crate::Outcome;

/// Every instrument, built once by [`install`].
pub(crate) struct Instruments {
    /// By instrument; `None` for the asynchronous ones.
    histograms: [Option<Histogram<f64>>; COUNT],
    /// The asynchronous instruments, kept for as long as the process records.
    _observed: (
        Vec<ObservableCounter<u64>>,
        Vec<ObservableUpDownCounter<i64>>,
    ),
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments").finish_non_exhaustive()
    }
}

/// What the asynchronous instruments report for one label set: for each instrument and each of
/// its series ([`Update::series`]) a count, and whether an update has touched it (a series
/// exists from its first update on, the zeros of a role's first connection included, as in the
/// `metrics` facade). Every series wsclose can produce has its place, so an event never
/// allocates.
pub(crate) struct Counts {
    series: [Box<[Series]>; COUNT],
}

#[derive(Default)]
struct Series {
    value: AtomicI64,
    touched: AtomicBool,
}

impl Counts {
    fn new() -> Self {
        Counts {
            series: std::array::from_fn(|k| {
                (0..TABLE[k].series_count())
                    .map(|_| Series::default())
                    .collect()
            }),
        }
    }

    fn add(&self, u: &Update, by: i64) {
        let s = &self.series[u.instrument.index][u.series()];
        s.value.fetch_add(by, Ordering::Relaxed);
        if !s.touched.load(Ordering::Relaxed) {
            s.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Reports every touched series of `i` in every label set.
    fn observe<T>(i: &Instrument, o: &dyn AsyncInstrument<T>, value: impl Fn(i64) -> T) {
        for set in LabelSet::all() {
            let Some(counts) = set.otel.get() else {
                continue;
            };
            for (n, s) in counts.series[i.index].iter().enumerate() {
                if s.touched.load(Ordering::Relaxed) {
                    let (attrs, len) = attributes(i, &i.slots(n), set);
                    o.observe(value(s.value.load(Ordering::Relaxed)), &attrs[..len]);
                }
            }
        }
    }
}

/// The most attributes of one series.
const MAX_ATTRIBUTES: usize = MAX_LABELS + 1 + MAX_STATIC_LABELS;

/// The attributes of one series: the labels' (`Expected` as a bool), then `error.type` when
/// the instrument has it and the outcome is not `clean`, then the static labels of `set`.
fn attributes(
    i: &Instrument,
    slots: &Slots,
    set: &LabelSet,
) -> ([KeyValue; MAX_ATTRIBUTES], usize) {
    let mut attrs: [KeyValue; MAX_ATTRIBUTES] = std::array::from_fn(|_| KeyValue::new("", false));
    let mut len = 0;
    for (label, slot) in i.labels.iter().zip(slots) {
        let slot = usize::from(*slot);
        attrs[len] = match label {
            Label::Expected => KeyValue::new(label.otel_key(), slot == 0),
            _ => KeyValue::new(label.otel_key(), label.value(slot)),
        };
        len += 1;
    }
    if i.error_type {
        let outcome = i.slot_of(slots, Label::Outcome).map(|k| Outcome::ALL[k]);
        if let Some(outcome) = outcome.filter(|o| *o != Outcome::Clean) {
            attrs[len] = KeyValue::new(attributes::ERROR_TYPE, outcome.as_str());
            len += 1;
        }
    }
    for (k, v) in set.labels {
        attrs[len] = KeyValue::new(*k, *v);
        len += 1;
    }
    (attrs, len)
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// The installed instruments; one atomic load.
#[inline]
pub(crate) fn instruments() -> Option<&'static Instruments> {
    INSTRUMENTS.get()
}

/// Builds the instruments on `meter` unless they are built already; whether this call built
/// them. The series already created at 0 in the `metrics` facade (connections wrapped before)
/// are created in them too.
pub(crate) fn install(meter: &Meter) -> bool {
    let mut fresh = false;
    let instruments = INSTRUMENTS.get_or_init(|| {
        fresh = true;
        Instruments::new(meter)
    });
    if fresh {
        super::on_otel_installed(instruments);
    }
    fresh
}

impl Instruments {
    fn new(m: &Meter) -> Self {
        let (mut counters, mut gauges) = (Vec::new(), Vec::new());
        let mut histograms: [Option<Histogram<f64>>; COUNT] = Default::default();
        for i in &TABLE {
            match i.kind {
                Kind::Histogram => {
                    let b = m
                        .f64_histogram(i.otel)
                        .with_unit(i.otel_unit)
                        .with_description(i.help);
                    let b = match i.buckets {
                        Some(bounds) => b.with_boundaries(bounds.to_vec()),
                        None => b,
                    };
                    histograms[i.index] = Some(b.build());
                }
                Kind::Counter => counters.push(
                    m.u64_observable_counter(i.otel)
                        .with_unit(i.otel_unit)
                        .with_description(i.help)
                        .with_callback(move |o| Counts::observe(i, o, |v| v as u64))
                        .build(),
                ),
                Kind::Gauge => gauges.push(
                    m.i64_observable_up_down_counter(i.otel)
                        .with_unit(i.otel_unit)
                        .with_description(i.help)
                        .with_callback(move |o| Counts::observe(i, o, |v| v))
                        .build(),
                ),
            }
        }
        Instruments {
            histograms,
            _observed: (counters, gauges),
        }
    }

    /// Renders one update (decided in `telemetry`) with OpenTelemetry names and attributes, on
    /// the series of the static label set `set`.
    pub(crate) fn apply(&self, set: &'static LabelSet, u: Update) {
        let counts = || set.otel.get_or_init(Counts::new);
        match u.value {
            Value::Add(n) => counts().add(&u, n as i64),
            Value::Delta(d) => counts().add(&u, d),
            // An OpenTelemetry histogram has no data point until its first value.
            Value::Zero if u.instrument.kind == Kind::Histogram => {}
            Value::Zero => counts().add(&u, 0),
            Value::Observe(v) => {
                if let Some(h) = &self.histograms[u.instrument.index] {
                    let (attrs, len) = attributes(u.instrument, &u.slots, set);
                    h.record(v, &attrs[..len]);
                }
            }
        }
    }
}
