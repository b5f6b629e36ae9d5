//! A thread-local `metrics` recorder for exact assertions.
//!
//! Installed as the *local* recorder of the test thread, so with `#[tokio::test]`'s
//! current-thread runtime every task of the test (including wsclose's close tasks) records into
//! it, and tests running in parallel threads never see each other's numbers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use metrics::LocalRecorderGuard;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

pub struct Metrics {
    snapshotter: Snapshotter,
    /// The debugging recorder's snapshots drain it, so totals are accumulated here, keyed by
    /// `name{k=v,...}` with labels sorted.
    totals: Mutex<BTreeMap<String, Value>>,
}

/// Installs a fresh recorder for the current thread. Keep the guard alive for the test.
pub fn install() -> (Metrics, LocalRecorderGuard<'static>) {
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let metrics = Metrics {
        snapshotter: recorder.snapshotter(),
        totals: Mutex::new(BTreeMap::new()),
    };
    (metrics, metrics::set_default_local_recorder(recorder))
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl Metrics {
    fn refresh(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        let mut totals = self.totals.lock().unwrap();
        for (ck, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let labels: Vec<(&str, &str)> =
                ck.key().labels().map(|l| (l.key(), l.value())).collect();
            let k = key(ck.key().name(), &labels);
            let entry = totals.entry(k);
            match value {
                DebugValue::Counter(n) => {
                    let e = entry.or_insert(Value::Counter(0));
                    if let Value::Counter(t) = e {
                        *t += n;
                    }
                }
                DebugValue::Gauge(g) => {
                    let e = entry.or_insert(Value::Gauge(0.0));
                    if let Value::Gauge(t) = e {
                        *t += g.into_inner();
                    }
                }
                DebugValue::Histogram(vs) => {
                    let e = entry.or_insert(Value::Histogram(Vec::new()));
                    if let Value::Histogram(t) = e {
                        t.extend(vs.into_iter().map(|v| v.into_inner()));
                    }
                }
            }
        }
        totals
    }

    /// A counter with exactly these labels (0 when never recorded).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.refresh().get(&key(name, labels)) {
            Some(Value::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// The sum of a counter over every series whose labels include `filter`.
    pub fn counter_sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let totals = self.refresh();
        totals
            .iter()
            .filter(|(k, _)| matches_filter(k, name, filter))
            .map(|(_, v)| if let Value::Counter(n) = v { *n } else { 0 })
            .sum()
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.refresh().get(&key(name, labels)) {
            Some(Value::Gauge(g)) => *g,
            _ => 0.0,
        }
    }

    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.refresh().get(&key(name, labels)) {
            Some(Value::Histogram(v)) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// Observations of a histogram over every series whose labels include `filter`.
    pub fn histogram_count(&self, name: &str, filter: &[(&str, &str)]) -> usize {
        let totals = self.refresh();
        totals
            .iter()
            .filter(|(k, _)| matches_filter(k, name, filter))
            .map(|(_, v)| {
                if let Value::Histogram(h) = v {
                    h.len()
                } else {
                    0
                }
            })
            .sum()
    }

    /// Every series recorded so far, for failure messages.
    pub fn dump(&self) -> String {
        self.refresh()
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect()
    }

    /// `websocket_closes_total` for one role, cause and outcome (`expected` follows from the
    /// outcome, as docs/design.md's classification says).
    pub fn closes(&self, role: &str, cause: &str, outcome: &str) -> u64 {
        let expected = if matches!(outcome, "clean" | "peer_gone" | "timeout") {
            "true"
        } else {
            "false"
        };
        let labels = [
            ("role", role),
            ("cause", cause),
            ("outcome", outcome),
            ("expected", expected),
        ];
        self.counter("websocket_closes_total", &labels)
    }

    /// `websocket_close_frames_total` for one role, direction (`sent`, `received`) and code
    /// label.
    pub fn frames(&self, role: &str, direction: &str, code: &str) -> u64 {
        let labels = [("role", role), ("direction", direction), ("code", code)];
        self.counter("websocket_close_frames_total", &labels)
    }

    /// Checks the invariant of docs/metrics.md for `role`: opened = Σ closes + active.
    pub fn assert_balanced(&self, role: &str) {
        let opened = self.counter("websocket_connections_opened_total", &[("role", role)]);
        let closed = self.counter_sum("websocket_closes_total", &[("role", role)]);
        let active = self.gauge("websocket_connections_active", &[("role", role)]);
        assert_eq!(
            opened as f64,
            closed as f64 + active,
            "unbalanced for {role}:\n{}",
            self.dump()
        );
    }
}

fn matches_filter(k: &str, name: &str, filter: &[(&str, &str)]) -> bool {
    let Some(rest) = k.strip_prefix(name) else {
        return false;
    };
    let Some(labels) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return false;
    };
    let labels: Vec<&str> = labels.split(',').collect();
    filter
        .iter()
        .all(|(fk, fv)| labels.contains(&format!("{fk}={fv}").as_str()))
}
