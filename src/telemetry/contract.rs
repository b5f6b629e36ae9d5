//! `dashboards/contract.json`: the instrument table rendered for what is not Rust (the dashboard
//! lint, the alerting end-to-end test), and the documentation's tables held to it.
//!
//! `contract_file_is_current` fails when the committed file is not the table's rendering;
//! `WSCLOSE_BLESS=1 cargo test --lib contract` rewrites it.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use super::labels::{MAX_STATIC_LABELS, MAX_VALUE_BYTES, RESERVED};
use super::table::{Kind, LABELS, Label, TABLE, attributes};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

const FILE: &str = "dashboards/contract.json";

fn values(label: Label) -> Vec<&'static str> {
    (0..label.cardinality()).map(|k| label.value(k)).collect()
}

/// The OpenTelemetry attribute keys of an instrument, `error.type` last when it has it.
fn otel_attributes(i: &super::table::Instrument) -> Vec<&'static str> {
    let mut keys: Vec<_> = i.labels.iter().map(|l| l.otel_key()).collect();
    if i.error_type {
        keys.push(attributes::ERROR_TYPE);
    }
    keys
}

fn contract() -> Json {
    let instruments: Vec<Json> = TABLE
        .iter()
        .map(|i| {
            let mut m = json!({
                "prometheus": i.prometheus,
                "type": i.kind.as_str(),
                "unit": i.unit.as_str(),
                "help": i.help,
                "labels": i.labels.iter().map(|l| l.key()).collect::<Vec<_>>(),
                "otel": {
                    "name": i.otel,
                    "instrument": i.kind.otel_instrument(),
                    "unit": i.otel_unit,
                    "attributes": otel_attributes(i),
                },
            });
            if let Some(b) = i.buckets {
                m["buckets"] = json!(b);
            }
            m
        })
        .collect();
    let labels: Vec<Json> = LABELS
        .iter()
        .map(|l| {
            json!({
                "name": l.key(),
                "otel": l.otel_key(),
                "otel_type": if *l == Label::Expected { "bool" } else { "string" },
                "values": values(*l),
            })
        })
        .collect();
    json!({
        "about": "Every wsclose instrument and label: generated from src/telemetry/table.rs (WSCLOSE_BLESS=1 cargo test --lib contract), do not edit. docs/metrics.md describes them.",
        "instruments": instruments,
        "labels": labels,
        "error_type": {
            "otel": attributes::ERROR_TYPE,
            "about": "OpenTelemetry only: the outcome again, on the instruments that list it, when the outcome is not clean",
        },
        "static_labels": {
            "about": "Labels a service sets on its Config (Config::with_label), after the instrument's own on every series and OpenTelemetry attribute set of its connections (same key in both)",
            "max": MAX_STATIC_LABELS,
            "max_value_bytes": MAX_VALUE_BYTES,
            "name_pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
            "refused_names": refused_names(),
            "refused_prefix": "__",
        },
    })
}

/// The static label names refused: the crate's own label keys (once each) and the reserved ones.
fn refused_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for key in LABELS.iter().map(|l| l.key()).chain(RESERVED) {
        if !names.contains(&key) {
            names.push(key);
        }
    }
    names
}

fn render() -> String {
    serde_json::to_string_pretty(&contract()).expect("a JSON value renders") + "\n"
}

#[test]
fn contract_file_is_current() {
    let path = root().join(FILE);
    let want = render();
    if std::env::var_os("WSCLOSE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("write dashboards/contract.json");
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{FILE} is not the rendering of src/telemetry/table.rs; run\n\n    \
         WSCLOSE_BLESS=1 cargo test --lib contract\n\nand commit the file"
    );
}

/// The contract as the tools outside Rust read it (the committed file is this rendering, see
/// `contract_file_is_current`; parsed from the rendering so that a blessing run does not race
/// with its own write).
fn committed() -> Json {
    serde_json::from_str(&render()).expect("the contract is JSON")
}

fn strs(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rows of the Markdown table(s) in `text` whose first cell starts with `first`, split into
/// trimmed cells (a `//! ` doc-comment prefix is dropped first).
fn rows(text: &str, first: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells[0].starts_with(first))
        .collect()
}

/// The `code spans` of a cell, in order.
fn ticks(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A comma-separated list, backticks dropped.
fn words(cell: &str) -> Vec<String> {
    cell.split(',')
        .map(|w| w.trim().trim_matches('`').to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

/// From the heading `heading` to the next heading.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let body = &text[start + heading.len()..];
    let end = body.find("\n#").unwrap_or(body.len());
    &body[..end]
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docs/metrics.md's static-label rules: the limits and every refused name.
#[test]
fn docs_metrics_md_states_the_static_label_rules() {
    let doc = read("docs/metrics.md");
    let rules = section(&doc, "## Static labels");
    let c = committed();
    let s = &c["static_labels"];
    for name in strs(&s["refused_names"]) {
        assert!(
            rules.contains(&format!("`{name}`")),
            "docs/metrics.md, static labels: `{name}` refused"
        );
    }
    for n in [&s["max"], &s["max_value_bytes"]] {
        let n = n.as_u64().expect("a number");
        assert!(
            rules.contains(&format!("**{n}**")),
            "docs/metrics.md, static labels: the limit **{n}**"
        );
    }
}

/// docs/metrics.md: the series table (name, type, labels), the label values (all but
/// `expected`, which is prose) and the bucket lists.
#[test]
fn docs_metrics_md_matches_the_contract() {
    let c = committed();
    let doc = read("docs/metrics.md");
    let instruments = c["instruments"].as_array().unwrap();

    assert_eq!(
        series_rows(section(&doc, "## Series")),
        contract_series(instruments),
        "docs/metrics.md, the series table"
    );

    let labels = c["labels"].as_array().unwrap();
    assert_eq!(labels.len(), LABELS.len());
    for (label, key) in labels.iter().zip(LABELS) {
        let name = label["name"].as_str().unwrap();
        // A key shared by two labels (`outcome`) has one row per label, told apart in the cell.
        let first = key.doc_row();
        let row: Vec<_> = rows(section(&doc, "### Label values"), &first)
            .into_iter()
            .filter(|r| r[0] == first)
            .collect();
        assert_eq!(
            row.len(),
            1,
            "docs/metrics.md: one label-values row {first}"
        );
        let cell = &row[0][1];
        if name == "expected" {
            assert!(
                cell.starts_with("`true` for ") && cell.contains("`false`"),
                "{cell}"
            );
            continue;
        }
        assert_eq!(
            ticks(cell),
            strs(&label["values"]),
            "docs/metrics.md, label `{name}`"
        );
    }

    let buckets = section(&doc, "### Buckets");
    for i in instruments.iter().filter(|i| i["type"] == "histogram") {
        let name = i["prometheus"].as_str().unwrap();
        let at = buckets
            .find(&format!("- `{name}`: "))
            .unwrap_or_else(|| panic!("docs/metrics.md: no bucket list for {name}"));
        let list = &buckets[at + name.len() + 5..];
        let list = &list[..list.find("(+Inf)").expect("a list ends with (+Inf)")];
        let got: Vec<f64> = list
            .split(',')
            .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("{name}: {n:?}")))
            .collect();
        let want: Vec<f64> = i["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect();
        assert_eq!(got, want, "docs/metrics.md, buckets of {name}");
    }
}

/// A Prometheus series table's rows in `text`: (name, type, label keys).
fn series_rows(text: &str) -> Vec<(String, String, Vec<String>)> {
    rows(text, "`websocket_")
        .into_iter()
        .map(|r| (ticks(&r[0]).concat(), r[1].clone(), ticks(&r[2])))
        .collect()
}

/// The contract's series, as [`series_rows`] reads a table.
fn contract_series(instruments: &[serde_json::Value]) -> Vec<(String, String, Vec<String>)> {
    instruments
        .iter()
        .map(|i| {
            (
                i["prometheus"].as_str().unwrap().to_owned(),
                i["type"].as_str().unwrap().to_owned(),
                strs(&i["labels"]),
            )
        })
        .collect()
}

/// The crate documentation's tables: `src/lib.rs` (Prometheus) and `src/otel.rs`
/// (OpenTelemetry).
#[test]
fn crate_docs_match_the_contract() {
    let c = committed();
    let instruments = c["instruments"].as_array().unwrap();

    assert_eq!(
        series_rows(&read("src/lib.rs")),
        contract_series(instruments),
        "src/lib.rs, the metrics table"
    );

    let otel: Vec<Vec<String>> = rows(&read("src/otel.rs"), "`websocket.")
        .into_iter()
        .map(|r| {
            vec![
                ticks(&r[0]).concat(),
                ticks(&r[1]).concat(),
                ticks(&r[2]).concat(),
                words(&r[3]).join(" "),
                ticks(&r[4]).concat(),
            ]
        })
        .collect();
    let want: Vec<Vec<String>> = instruments
        .iter()
        .map(|i| {
            let o = &i["otel"];
            let mut attrs = strs(&i["labels"]);
            if strs(&o["attributes"])
                .iter()
                .any(|a| a == attributes::ERROR_TYPE)
            {
                attrs.push(attributes::ERROR_TYPE.to_owned());
            }
            vec![
                o["name"].as_str().unwrap().to_owned(),
                o["instrument"].as_str().unwrap().to_owned(),
                o["unit"].as_str().unwrap().to_owned(),
                attrs.join(" "),
                i["prometheus"].as_str().unwrap().to_owned(),
            ]
        })
        .collect();
    assert_eq!(otel, want, "src/otel.rs, the instruments table");
}

#[test]
fn the_contract_lists_every_kind_once_per_instrument() {
    // The contract's own shape: what lint.mjs and e2e_alerts.py rely on.
    let c = contract();
    for i in c["instruments"].as_array().unwrap() {
        let kind = i["type"].as_str().unwrap();
        assert!(["counter", "gauge", "histogram"].contains(&kind));
        assert_eq!(i.get("buckets").is_some(), kind == Kind::Histogram.as_str());
        for l in strs(&i["labels"]) {
            assert!(LABELS.iter().any(|k| k.key() == l), "{l}");
        }
    }
}
