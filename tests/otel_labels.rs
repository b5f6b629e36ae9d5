//! OpenTelemetry with static labels and zero series: the counters of a role and label set are
//! reported at 0 from its first connection on, also when `otel::install` comes after that
//! connection; every data point of a labelled connection carries the static labels as
//! attributes; histograms have no point before their first value.

#![cfg(feature = "otel")]

mod support;

use std::collections::BTreeMap;

use futures_util::StreamExt;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use wsclose::{Config, Role, otel};

use support::pairs::{bounded, wrapped_and_tt};

/// (instrument, sorted attributes) -> value, of the wsclose scope of the last export; histogram
/// points as their count.
fn points(exported: &[ResourceMetrics]) -> BTreeMap<(String, Vec<(String, String)>), u64> {
    let mut out = BTreeMap::new();
    let last = exported.last().expect("one export");
    let scope = last
        .scope_metrics()
        .find(|s| s.scope().name() == "wsclose")
        .expect("the wsclose scope");
    for m in scope.metrics() {
        let mut add = |attrs: Vec<(String, String)>, v: u64| {
            let mut attrs = attrs;
            attrs.sort();
            out.insert((m.name().to_owned(), attrs), v);
        };
        let kv = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
            it.map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
                .collect::<Vec<_>>()
        };
        match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(s)) => {
                for p in s.data_points() {
                    add(kv(&mut p.attributes()), p.value());
                }
            }
            AggregatedMetrics::I64(MetricData::Sum(s)) => {
                for p in s.data_points() {
                    add(kv(&mut p.attributes()), p.value() as u64);
                }
            }
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                for p in h.data_points() {
                    add(kv(&mut p.attributes()), p.count());
                }
            }
            other => panic!("{}: unexpected data {other:?}", m.name()),
        }
    }
    out
}

fn has(attrs: &[(String, String)], k: &str, v: &str) -> bool {
    attrs.iter().any(|(a, b)| a == k && b == v)
}

#[tokio::test]
async fn static_labels_are_attributes_and_counters_start_at_zero_even_when_installed_late() {
    // A connection wrapped before OpenTelemetry is installed: its set's zeros must still appear.
    let early = Config::new().with_label("endpoint", "/early").unwrap();
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &early).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    bounded(ws.close(1000, "")).await.unwrap();

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    otel::install(&provider).unwrap();

    let chat = Config::new().with_label("endpoint", "/chat").unwrap();
    let (mut ws, mut peer) = wrapped_and_tt(Role::Client, &chat).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    bounded(ws.close(1000, "")).await.unwrap();

    provider.force_flush().unwrap();
    let points = points(&exporter.get_finished_metrics().unwrap());

    for (endpoint, role) in [("/early", "server"), ("/chat", "client")] {
        let mine: Vec<_> = points
            .iter()
            .filter(|((_, a), _)| has(a, "endpoint", endpoint))
            .collect();
        // Every counter zero of the role: 5 per-role, 35 closes, 31 close frames, 4
        // handshakes; the histograms only where they have a value.
        let counters = mine
            .iter()
            .filter(|((n, _), _)| !n.ends_with(".duration"))
            .count();
        assert_eq!(counters, 75, "{endpoint}: {mine:#?}");
        for ((name, attrs), _) in &mine {
            assert!(has(attrs, "websocket.role", role), "{name} {attrs:?}");
        }
        let error = points
            .iter()
            .find(|((n, a), _)| {
                n == "websocket.closes"
                    && has(a, "endpoint", endpoint)
                    && has(a, "websocket.close.outcome", "protocol_error")
                    && has(a, "websocket.close.cause", "peer")
            })
            .expect("the protocol_error series, at 0");
        assert_eq!(*error.1, 0);
        let opened = points
            .iter()
            .find(|((n, a), _)| n == "websocket.connections.opened" && has(a, "endpoint", endpoint))
            .map(|(_, v)| *v);
        // The early connection was counted before installation: only its zero is reported.
        assert_eq!(
            opened,
            Some(if endpoint == "/chat" { 1 } else { 0 }),
            "{endpoint}"
        );
    }
    let chat_histograms: Vec<_> = points
        .iter()
        .filter(|((n, a), _)| n.ends_with(".duration") && has(a, "endpoint", "/chat"))
        .collect();
    assert_eq!(
        chat_histograms.len(),
        2,
        "one point each, the clean end's: {chat_histograms:?}"
    );
    assert!(chat_histograms.iter().all(|(_, count)| **count == 1));
    // No series without a static label: every connection here had one.
    assert!(
        points
            .keys()
            .all(|(_, a)| a.iter().any(|(k, _)| k == "endpoint")),
        "{points:#?}"
    );
}
