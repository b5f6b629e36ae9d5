//! The `metrics` facade backend: each [`Update`] on the series of [`TABLE`] with docs/metrics.md's
//! Prometheus names and labels. A no-op (one atomic load in the facade) when no recorder is
//! installed.
//!
//! Registering a series is a lookup in the recorder's registry (about 100 ns each); the handles
//! are therefore cached per thread and per recorder, each built on first use. An event then
//! costs a thread-local access, a pointer comparison and the update itself.

use std::cell::{OnceCell, RefCell};

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};

use super::table::{Instrument, Kind, TABLE, Update, Value};

/// Records the updates of one event.
pub(crate) fn apply(updates: impl Iterator<Item = Update>) {
    metrics::with_recorder(|r| {
        let recorder = r as *const dyn Recorder as *const () as usize;
        CACHE.with(|cell| {
            let mut cache = cell.borrow_mut();
            if cache.recorder != Some(recorder) {
                // A different recorder (installed later, or a test's local one): start over.
                cache.recorder = Some(recorder);
                cache.handles = TABLE
                    .iter()
                    .map(|i| (0..i.series_count()).map(|_| OnceCell::new()).collect())
                    .collect();
            }
            for u in updates {
                cache.handles[u.instrument.index][u.series()]
                    .get_or_init(|| Handle::register(r, u))
                    .apply(u);
            }
        });
    });
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache { recorder: None, handles: Vec::new() })
    };
}

/// The handles registered with one recorder (identified by its address).
struct Cache {
    recorder: Option<usize>,
    /// By instrument, then by series number.
    handles: Vec<Box<[OnceCell<Handle>]>>,
}

/// A registered series.
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Handle {
    fn register(r: &dyn Recorder, u: Update) -> Self {
        let i: &Instrument = u.instrument;
        let labels: Vec<metrics::Label> = u
            .labels()
            .map(|(label, value)| metrics::Label::from_static_parts(label.key(), value))
            .collect();
        let key = Key::from_parts(i.prometheus, labels);
        match i.kind {
            Kind::Counter => Handle::Counter(r.register_counter(&key, &METADATA)),
            Kind::Gauge => Handle::Gauge(r.register_gauge(&key, &METADATA)),
            Kind::Histogram => Handle::Histogram(r.register_histogram(&key, &METADATA)),
        }
    }

    fn apply(&self, u: Update) {
        match (self, u.value) {
            (Handle::Counter(c), Value::Add(n)) => c.increment(n),
            (Handle::Gauge(g), Value::Delta(d)) => g.increment(d as f64),
            (Handle::Histogram(h), Value::Observe(v)) => h.record(v),
            _ => debug_assert!(false, "{u:?} does not fit its instrument"),
        }
    }
}
