//! Static labels: the few labels a service sets on its [`Config`](crate::Config) (for example
//! `endpoint="/chat"`), the same on every series and attribute set of the connections wrapped
//! with it.
//!
//! Each distinct set of static labels is interned once, when the configuration is built, as a
//! [`LabelSet`] that lives for the rest of the process: its `metrics` keys are built on first
//! use, its OpenTelemetry counts are its own, and it remembers for which roles its series have
//! been created at 0. An event then carries a pointer to its set; nothing is looked up, hashed
//! or allocated per event because of static labels.

use std::fmt;
use std::sync::{Mutex, Once, OnceLock};

use metrics::Key;

use super::table::{LABELS, TABLE};
use crate::{Error, Role};

/// The most static labels one configuration may carry.
pub(crate) const MAX_STATIC_LABELS: usize = 4;

/// The longest static label value, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 128;

/// Label names a static label may not take, besides the crate's own (`role`, `cause`, …):
/// the histogram bucket label, the summary quantile label, and the labels Prometheus adds to
/// every scraped series (a static `job` or `instance` would be renamed `exported_job` or
/// `exported_instance`, or would overwrite the target's with `honor_labels`).
pub(crate) const RESERVED: [&str; 4] = ["le", "quantile", "job", "instance"];

/// One interned set of static labels, sorted by name.
pub(crate) struct LabelSet {
    /// Its position in the interned list; 0 is the empty set.
    pub(crate) id: usize,
    /// `(name, value)`, sorted by name, names unique.
    pub(crate) labels: &'static [(&'static str, &'static str)],
    /// `name=value,name=value`, for the connection span.
    pub(crate) display: &'static str,
    /// Per role ([`Role::index`]): the set's series have been created at 0.
    zeroed: [Once; 2],
    /// The `metrics` key of every series, by instrument and series number.
    keys: OnceLock<Box<[Box<[Key]>]>>,
    /// The OpenTelemetry counts of this set's series, made on first use after installation.
    #[cfg(feature = "otel")]
    pub(crate) otel: OnceLock<super::otel::Counts>,
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.labels.iter().copied()).finish()
    }
}

/// The empty set: a configuration without static labels.
static EMPTY: LabelSet = LabelSet {
    id: 0,
    labels: &[],
    display: "",
    zeroed: [Once::new(), Once::new()],
    keys: OnceLock::new(),
    #[cfg(feature = "otel")]
    otel: OnceLock::new(),
};

/// Every set interned besides the empty one, in the order of their ids (from 1).
static SETS: Mutex<Vec<&'static LabelSet>> = Mutex::new(Vec::new());

/// How many distinct sets in use before one WARN says that label values look unbounded.
const MANY_SETS: usize = 64;

fn sets() -> std::sync::MutexGuard<'static, Vec<&'static LabelSet>> {
    SETS.lock().unwrap_or_else(|e| e.into_inner())
}

impl LabelSet {
    /// The set of a configuration without static labels.
    pub(crate) fn empty() -> &'static LabelSet {
        &EMPTY
    }

    /// Every set interned so far, the empty one first.
    pub(crate) fn all() -> Vec<&'static LabelSet> {
        let mut all = vec![&EMPTY];
        all.extend(sets().iter().copied());
        all
    }

    /// This set with `name=value` added (or its value replaced), interned: equal sets are one
    /// [`LabelSet`].
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] when the name or value is refused (see [`check`]) or the set would
    /// have more than [`MAX_STATIC_LABELS`] labels.
    pub(crate) fn with(&'static self, name: &str, value: &str) -> Result<&'static LabelSet, Error> {
        check(name, value)?;
        let mut labels: Vec<(&str, &str)> = self.labels.to_vec();
        match labels.iter_mut().find(|(n, _)| *n == name) {
            Some(l) => l.1 = value,
            None => labels.push((name, value)),
        }
        if labels.len() > MAX_STATIC_LABELS {
            return Err(Error::config(
                "static labels",
                format!("at most {MAX_STATIC_LABELS} static labels; {name:?} would be one more"),
            ));
        }
        labels.sort_unstable_by_key(|(n, _)| *n);
        Ok(intern(&labels))
    }

    /// Creates the series of `role` with this set at 0 by running `zero`, unless that has been
    /// done: once per role and set in the process, whoever asks first.
    pub(crate) fn zero_once(&'static self, role: Role, zero: impl FnOnce()) {
        self.zeroed[role.index()].call_once(zero);
    }

    /// Whether the series of `role` with this set have been created at 0.
    pub(crate) fn is_zeroed(&self, role: Role) -> bool {
        self.zeroed[role.index()].is_completed()
    }

    /// The `metrics` key of series number `series` of instrument number `instrument`: its name,
    /// its labels, then the static ones. Built once per set, so registering a series neither
    /// allocates nor hashes (a `Key` keeps its hash).
    pub(crate) fn key(&self, instrument: usize, series: usize) -> &Key {
        let keys = self.keys.get_or_init(|| {
            TABLE
                .iter()
                .map(|i| {
                    (0..i.series_count())
                        .map(|n| {
                            let mut labels: Vec<metrics::Label> = i
                                .labels
                                .iter()
                                .zip(i.slots(n))
                                .map(|(l, slot)| {
                                    metrics::Label::from_static_parts(
                                        l.key(),
                                        l.value(usize::from(slot)),
                                    )
                                })
                                .collect();
                            labels.extend(
                                self.labels
                                    .iter()
                                    .map(|(k, v)| metrics::Label::from_static_parts(k, v)),
                            );
                            Key::from_parts(i.prometheus, labels)
                        })
                        .collect()
                })
                .collect()
        });
        &keys[instrument][series]
    }
}

/// The interned set with exactly `labels` (sorted by name, names unique).
fn intern(labels: &[(&str, &str)]) -> &'static LabelSet {
    if labels.is_empty() {
        return &EMPTY;
    }
    let mut sets = sets();
    if let Some(s) = sets.iter().find(|s| s.labels == labels) {
        return s;
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.into()) };
    let owned: Vec<(&'static str, &'static str)> =
        labels.iter().map(|(k, v)| (leak(k), leak(v))).collect();
    let display = owned
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_value(v)))
        .collect::<Vec<_>>()
        .join(",");
    let set: &'static LabelSet = Box::leak(Box::new(LabelSet {
        id: sets.len() + 1,
        labels: Box::leak(owned.into_boxed_slice()),
        display: leak(&display),
        zeroed: [Once::new(), Once::new()],
        keys: OnceLock::new(),
        #[cfg(feature = "otel")]
        otel: OnceLock::new(),
    }));
    sets.push(set);
    if sets.len() == MANY_SETS {
        super::on_many_label_sets(MANY_SETS);
    }
    set
}

/// A value as the span's `labels` field writes it: `\\`, `,` and `=` escaped with a backslash,
/// so that `name=value,…` reads back one way (control characters are refused by [`check`]).
fn escape_value(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out.into()
}

/// Checks one static label: the name is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), not
/// `__`-prefixed (reserved for Prometheus), not one of wsclose's own label names nor of
/// [`RESERVED`]; the value is not empty, at most [`MAX_VALUE_BYTES`] bytes, and has no control
/// character (a newline in a log line's field would let it forge another line).
pub(crate) fn check(name: &str, value: &str) -> Result<(), Error> {
    let refuse = |why: String| Err(Error::config("static label", why));
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return refuse(format!(
            "{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if name.starts_with("__") {
        return refuse(format!("{name:?}: names starting with __ are reserved"));
    }
    if LABELS.iter().any(|l| l.key() == name) || RESERVED.contains(&name) {
        return refuse(format!(
            "{name:?} is a label wsclose or Prometheus sets itself"
        ));
    }
    if value.is_empty() {
        return refuse(format!(
            "{name:?}: the value is empty (an empty value means no label)"
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return refuse(format!(
            "{name:?}: the value is {} bytes, more than {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return refuse(format!(
            "{name:?}: the value {value:?} has a control character"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_are_one_set_whatever_the_order() {
        let a = LabelSet::empty()
            .with("t_region", "eu")
            .unwrap()
            .with("t_endpoint", "/chat")
            .unwrap();
        let b = LabelSet::empty()
            .with("t_endpoint", "/chat")
            .unwrap()
            .with("t_region", "eu")
            .unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.labels, &[("t_endpoint", "/chat"), ("t_region", "eu")]);
        assert_eq!(a.display, "t_endpoint=/chat,t_region=eu");
        let odd = LabelSet::empty().with("t_odd", "a,b=c\\d").unwrap();
        assert_eq!(odd.display, "t_odd=a\\,b\\=c\\\\d");
        let c = a.with("t_region", "us").unwrap();
        assert!(!std::ptr::eq(a, c));
        assert_eq!(c.labels, &[("t_endpoint", "/chat"), ("t_region", "us")]);
        assert!(LabelSet::all().iter().any(|s| std::ptr::eq(*s, c)));
    }

    #[test]
    fn keys_carry_the_static_labels_after_the_crates() {
        let s = LabelSet::empty().with("t_keys", "x").unwrap();
        let k = s.key(super::super::table::instrument::CLOSES.index, 0);
        let labels: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(
            labels,
            [
                ("role", "server"),
                ("cause", "app"),
                ("outcome", "clean"),
                ("expected", "true"),
                ("t_keys", "x")
            ]
        );
    }

    #[test]
    fn refusals() {
        let e = LabelSet::empty();
        for name in [
            "",
            "1a",
            "a-b",
            "a.b",
            "é",
            "__x",
            "role",
            "cause",
            "outcome",
            "expected",
            "direction",
            "code",
            "le",
            "quantile",
            "job",
            "instance",
        ] {
            let err = e.with(name, "v").unwrap_err();
            assert!(err.is_config(), "{name:?}");
        }
        assert!(e.with("ok", "").unwrap_err().is_config());
        assert!(
            e.with("ok", &"v".repeat(MAX_VALUE_BYTES + 1))
                .unwrap_err()
                .is_config()
        );
        assert!(e.with("ok", &"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(e.with("_ok9", "v").is_ok());
        let mut s = e;
        for k in ["t_a", "t_b", "t_c", "t_d"] {
            s = s.with(k, "v").unwrap();
        }
        assert!(s.with("t_e", "v").unwrap_err().is_config());
        // Replacing a value does not add a label.
        assert!(s.with("t_a", "w").is_ok());
    }
}
