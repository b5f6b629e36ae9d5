//! The `metrics` facade backend: each [`Update`] on the series of [`TABLE`] with docs/metrics.md's
//! Prometheus names and labels. A no-op (one atomic load in the facade) when no recorder is
//! installed.
//!
//! Registering a series is a lookup in the recorder's registry (about 100 ns each), so the
//! handles of a recorder that lives for the rest of the process (the global recorder, or the
//! facade's no-op one) are cached per thread, each registered on first use. An event then costs
//! a thread-local access, a comparison and the update itself. Static labels add one index: the
//! handles are kept per interned label set ([`LabelSet::id`]), allocated on the set's first event
//! on the thread.
//!
//! A *local* recorder (`metrics::with_local_recorder`, `set_default_local_recorder`) is only
//! borrowed: it may be dropped after any event and another one built at the same address, and
//! `metrics` 0.24 offers no way to tell (no identity or generation of the current recorder, no
//! hook when a local scope ends). Its handles are therefore registered anew at each event (with
//! keys built once, so a registration is one registry lookup), never kept across events: keyed
//! by the recorder's address, they once sent a new recorder's updates to a dropped one's handles.

use std::cell::{OnceCell, RefCell};
use std::sync::Mutex;

use metrics::{Counter, Gauge, Histogram, Level, Metadata, Recorder};

use super::labels::LabelSet;
use super::table::{Instrument, Kind, TABLE, Update, Value};

/// Records the updates of one event, on the series of the static label set `set`.
pub(crate) fn apply(set: &'static LabelSet, updates: impl Iterator<Item = Update>) {
    metrics::with_recorder(|r| {
        let id = RecorderId::of(r);
        CACHE.with(|cell| {
            // Reentered (a recorder that records wsclose events itself): no cache.
            let Ok(mut cache) = cell.try_borrow_mut() else {
                return updates.for_each(|u| Handle::register(r, set, u).apply(u));
            };
            if let Some(handles) = cache.handles(id, set) {
                for u in updates {
                    handles[u.instrument.index][u.series()]
                        .get_or_init(|| Handle::register(r, set, u))
                        .apply(u);
                }
            } else {
                updates.for_each(|u| Handle::register(r, set, u).apply(u));
            }
        });
    });
}

/// One label set's handles: by instrument, then by series number.
type Handles = Box<[Box<[OnceCell<Handle>]>]>;

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache { process_wide: None, local: None, sets: Vec::new() })
    };
}

/// What identifies a recorder while it lives: where it is, and its size and alignment (so that
/// zero-sized recorders of different layouts at one address are told apart; two zero-sized
/// recorders of one layout at one address, the static no-op one and a local one, would be taken
/// for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecorderId {
    addr: usize,
    size: usize,
    align: usize,
}

impl RecorderId {
    fn of(r: &dyn Recorder) -> Self {
        RecorderId {
            addr: r as *const dyn Recorder as *const () as usize,
            size: std::mem::size_of_val(r),
            align: std::mem::align_of_val(r),
        }
    }
}

/// One thread's handles.
struct Cache {
    /// The process-wide recorder the handles were registered with.
    process_wide: Option<RecorderId>,
    /// The last recorder found to be a local one (so that it is not probed again).
    local: Option<RecorderId>,
    /// By label set ([`LabelSet::id`]), made on the set's first event on this thread.
    sets: Vec<Option<Handles>>,
}

impl Cache {
    /// The handles of `set` to use for the recorder `id`, or `None` when it is a local
    /// recorder, whose handles must not outlive the event.
    fn handles(&mut self, id: RecorderId, set: &LabelSet) -> Option<&Handles> {
        if self.process_wide != Some(id) {
            if self.local == Some(id) || !is_process_wide(id) {
                self.local = Some(id);
                return None;
            }
            // The global recorder, installed since the last event, or the no-op one.
            self.process_wide = Some(id);
            self.sets.clear();
        }
        if self.sets.len() <= set.id {
            self.sets.resize_with(set.id + 1, || None);
        }
        Some(self.sets[set.id].get_or_insert_with(|| {
            TABLE
                .iter()
                .map(|i| (0..i.series_count()).map(|_| OnceCell::new()).collect())
                .collect()
        }))
    }
}

/// Whether `id` is a recorder that lives until the process ends: the global recorder (set once,
/// and leaked, by `metrics`) or the facade's static no-op recorder, the only ones whose address
/// no other recorder can take. A thread of our own has no local recorder, so the recorder it
/// sees is the one that is current when no local one is set; what it saw is remembered for
/// every thread (at most two: the no-op recorder, then the global one).
///
/// A recorder found to be local is not asked about again on this thread (`Cache::local`): should
/// the global recorder later be installed at the address of a dropped local one, this thread
/// only registers its handles at each event, which is slower, never wrong.
fn is_process_wide(id: RecorderId) -> bool {
    static KNOWN: Mutex<Vec<RecorderId>> = Mutex::new(Vec::new());
    let known = || KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if known().contains(&id) {
        return true;
    }
    let seen = std::thread::Builder::new()
        .name("wsclose-recorder-probe".into())
        .spawn(|| metrics::with_recorder(RecorderId::of))
        .ok()
        .and_then(|t| t.join().ok());
    let Some(seen) = seen else { return false };
    let mut k = known();
    if !k.contains(&seen) {
        k.push(seen);
    }
    seen == id
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
    fn register(r: &dyn Recorder, set: &LabelSet, u: Update) -> Self {
        let i: &Instrument = u.instrument;
        let key = set.key(i.index, u.series());
        match i.kind {
            Kind::Counter => Handle::Counter(r.register_counter(key, &METADATA)),
            Kind::Gauge => Handle::Gauge(r.register_gauge(key, &METADATA)),
            Kind::Histogram => Handle::Histogram(r.register_histogram(key, &METADATA)),
        }
    }

    fn apply(&self, u: Update) {
        match (self, u.value) {
            (Handle::Counter(c), Value::Add(n)) => c.increment(n),
            (Handle::Gauge(g), Value::Delta(d)) => g.increment(d as f64),
            (Handle::Histogram(h), Value::Observe(v)) => h.record(v),
            // Registered, the series exists at 0; the no-op update is for recorders that
            // create a series at its first update rather than at registration.
            (Handle::Counter(c), Value::Zero) => c.increment(0),
            (Handle::Gauge(g), Value::Zero) => g.increment(0.0),
            (Handle::Histogram(_), Value::Zero) => {}
            _ => debug_assert!(false, "{u:?} does not fit its instrument"),
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::super::table::instrument;
    use super::*;

    fn opened(r: &DebuggingRecorder) -> Vec<(String, u64)> {
        let snapshotter = r.snapshotter();
        metrics::with_local_recorder(r, || {
            apply(
                LabelSet::empty(),
                std::iter::once(Update::new(
                    instrument::CONNECTIONS_OPENED,
                    &[0],
                    Value::Add(1),
                )),
            )
        });
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(k, _, _, v)| match v {
                DebugValue::Counter(n) => Some((k.key().name().to_owned(), n)),
                _ => None,
            })
            .collect()
    }

    /// A recorder dropped and a new one built in its place (at the same address): the new one
    /// gets the updates. With handles cached by the recorder's address, it got none.
    #[test]
    fn a_new_recorder_at_a_dropped_ones_address_gets_the_updates() {
        let mut recorder = DebuggingRecorder::new();
        let first = &recorder as *const DebuggingRecorder as usize;
        let want = vec![("websocket_connections_opened_total".to_owned(), 1)];
        assert_eq!(opened(&recorder), want);
        // Dropped and replaced in place.
        recorder = DebuggingRecorder::new();
        assert_eq!(&recorder as *const DebuggingRecorder as usize, first);
        assert_eq!(opened(&recorder), want);
    }

    #[test]
    fn a_local_recorder_is_not_process_wide_and_the_current_global_one_is() {
        let recorder = DebuggingRecorder::new();
        let local =
            metrics::with_local_recorder(&recorder, || metrics::with_recorder(RecorderId::of));
        assert!(!is_process_wide(local));
        // No local recorder on this thread: the global one (or the no-op one) is current.
        assert!(is_process_wide(metrics::with_recorder(RecorderId::of)));
    }
}
