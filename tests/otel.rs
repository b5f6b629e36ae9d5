//! The metrics of docs/metrics.md through OpenTelemetry: after the core scenario set in both roles, every
//! OpenTelemetry instrument (read back with opentelemetry_sdk's in-memory exporter) equals the
//! `metrics`-facade series with the same labels, recorded by the same events; units,
//! descriptions and histogram boundaries are as documented.
//!
//! The OpenTelemetry instruments are process-global, so this binary holds one test.

mod support;

use std::collections::BTreeMap;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use wsclose::{
    CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, Config, HANDSHAKE_DURATION_BUCKETS, otel,
};

use support::pairs::BOTH;
use support::recorder;
use support::scenarios;

/// (OpenTelemetry name, Prometheus name, unit, description starts with).
const TABLE: [(&str, &str, &str, &str); 11] = [
    (
        "websocket.connections.active",
        "websocket_connections_active",
        "{connection}",
        "WebSocket connections currently open or closing.",
    ),
    (
        "websocket.connections.opened",
        "websocket_connections_opened_total",
        "{connection}",
        "WebSocket connections opened (wrapped).",
    ),
    (
        "websocket.closes",
        "websocket_closes_total",
        "{connection}",
        "WebSocket connection ends, by who started the end (cause), how it ended (outcome) and whether that is expected.",
    ),
    (
        "websocket.close.duration",
        "websocket_close_duration_seconds",
        "s",
        "Time from the first Close frame sent or received to the transport closed.",
    ),
    (
        "websocket.connection.duration",
        "websocket_connection_duration_seconds",
        "s",
        "Time from connection open to transport closed.",
    ),
    (
        "websocket.close.frames",
        "websocket_close_frames_total",
        "{frame}",
        "Close frames on the wire, by direction (sent/received) and close code class.",
    ),
    (
        "websocket.close.redundant",
        "websocket_close_redundant_total",
        "{request}",
        "Close requests on a connection that was already closing or closed (no-ops).",
    ),
    (
        "websocket.send_after_close",
        "websocket_send_after_close_total",
        "{message}",
        "Sends refused because the connection was closing or closed.",
    ),
    (
        "websocket.messages.dropped",
        "websocket_messages_dropped_total",
        "{message}",
        "Messages accepted for sending that were never confirmed delivered.",
    ),
    (
        "websocket.handshakes",
        "websocket_handshakes_total",
        "{handshake}",
        "WebSocket opening handshakes run by wsclose, by outcome (accepted, rejected, failed, timeout).",
    ),
    (
        "websocket.handshake.duration",
        "websocket_handshake_duration_seconds",
        "s",
        "Time from the start of the opening handshake to its end (accepted, rejected, failed or timed out).",
    ),
];

/// OpenTelemetry attribute → Prometheus label.
fn label_for(key: &str) -> &'static str {
    match key {
        "websocket.role" => "role",
        "websocket.close.cause" => "cause",
        "websocket.close.outcome" => "outcome",
        "websocket.close.expected" => "expected",
        "websocket.close.direction" => "direction",
        "websocket.close.code" => "code",
        "websocket.handshake.outcome" => "outcome",
        other => panic!("unexpected attribute {other}"),
    }
}

/// A data point's attributes as Prometheus labels, after checking `error.type`: present, equal
/// to an end's outcome, exactly when that outcome is not `clean` (never on the handshake
/// instruments).
fn labels(name: &str, attrs: Vec<(String, Value)>) -> Vec<(&'static str, String)> {
    let mut error_type = None;
    let mut outcome = None;
    let mut out = Vec::new();
    for (k, v) in attrs {
        if k == "websocket.close.outcome" {
            outcome = Some(v.as_str().into_owned());
        }
        if k == "error.type" {
            error_type = Some(v.as_str().into_owned());
            continue;
        }
        if k == "websocket.close.expected" {
            assert!(matches!(v, Value::Bool(_)), "{name}: expected is a bool");
        }
        out.push((label_for(&k), v.as_str().into_owned()));
    }
    match &outcome {
        Some(o) if o == "clean" => assert_eq!(error_type, None, "{name}: {out:?}"),
        Some(o) => assert_eq!(error_type.as_ref(), Some(o), "{name}: {out:?}"),
        None => assert_eq!(error_type, None, "{name}: {out:?}"),
    }
    out.sort();
    out
}

fn attrs<'a>(it: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<(String, Value)> {
    it.map(|kv| (kv.key.as_str().to_owned(), kv.value.clone()))
        .collect()
}

/// The value of one OpenTelemetry data point.
#[derive(Debug)]
enum Point {
    Sum(i128),
    Histogram {
        bounds: Vec<f64>,
        buckets: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

fn points(m: &Metric) -> Vec<(Vec<(&'static str, String)>, Point)> {
    let name = m.name();
    let mut out = Vec::new();
    match m.data() {
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            assert!(s.is_monotonic(), "{name}");
            for p in s.data_points() {
                out.push((
                    labels(name, attrs(p.attributes())),
                    Point::Sum(p.value().into()),
                ));
            }
        }
        AggregatedMetrics::I64(MetricData::Sum(s)) => {
            assert!(!s.is_monotonic(), "{name} is an UpDownCounter");
            for p in s.data_points() {
                out.push((
                    labels(name, attrs(p.attributes())),
                    Point::Sum(p.value().into()),
                ));
            }
        }
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            for p in h.data_points() {
                out.push((
                    labels(name, attrs(p.attributes())),
                    Point::Histogram {
                        bounds: p.bounds().collect(),
                        buckets: p.bucket_counts().collect(),
                        count: p.count(),
                        sum: p.sum(),
                    },
                ));
            }
        }
        other => panic!("{name}: unexpected data {other:?}"),
    }
    out
}

/// Facade series from the recorder's dump: `name{k=v,...}` keys of one metric. A histogram
/// created at 0 and never observed is left out: an OpenTelemetry histogram has no data point
/// until its first value.
fn facade_series(dump: &str, prom: &str) -> Vec<String> {
    dump.lines()
        .filter(|l| !l.ends_with("= Histogram([])"))
        .filter_map(|l| l.split(" = ").next())
        .filter(|k| k.strip_prefix(prom).is_some_and(|r| r.starts_with('{')))
        .map(str::to_owned)
        .collect()
}

fn key(prom: &str, labels: &[(&'static str, String)]) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{prom}{{{}}}", l.join(","))
}

/// One accepted handshake (closed cleanly) and one refused with 403, through the crate, each
/// seen from both roles. Returns the connections the accepted ones opened per role (1).
async fn handshakes() -> u64 {
    use tokio_tungstenite::tungstenite::http::StatusCode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = Config::new().accept(tcp).await.unwrap();
        while let Some(Ok(_)) = ws.recv().await {}
        let (tcp, _) = listener.accept().await.unwrap();
        #[allow(clippy::result_large_err)] // tungstenite's `Callback` signature
        let refuse = |_: &_, _| Err(wsclose::reject(StatusCode::FORBIDDEN, "no"));
        let _ = Config::new().accept_with(tcp, refuse).await;
    });
    let (mut ws, _) = Config::new()
        .connect(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.close(1000, "").await.unwrap();
    let refused = Config::new().connect(format!("ws://{addr}/")).await;
    assert_eq!(refused.unwrap_err().status(), Some(403));
    server.await.unwrap();
    1
}

#[tokio::test]
async fn every_instrument_equals_the_facade_series_after_the_scenario_set() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    assert!(!otel::is_installed());
    otel::install(&provider).unwrap();
    assert!(otel::is_installed());
    let again = otel::install(&provider).unwrap_err();
    assert!(again.is_config(), "{again}");

    let (facade, _guard) = recorder::install();
    let mut done = Vec::new();
    for role in BOTH {
        done.push((role, scenarios::run_all(role).await));
    }
    // Two handshakes run by the crate, each seen from both sides: one accepted, one refused.
    let handshakes = handshakes().await;

    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let last = exported.last().expect("one export");
    let scope = last
        .scope_metrics()
        .find(|s| s.scope().name() == "wsclose")
        .expect("the wsclose scope");
    assert_eq!(scope.scope().version(), Some(env!("CARGO_PKG_VERSION")));
    let metrics: BTreeMap<&str, &Metric> = scope.metrics().map(|m| (m.name(), m)).collect();
    assert_eq!(
        metrics.keys().copied().collect::<Vec<_>>(),
        {
            let mut all = otel::names::ALL.to_vec();
            all.sort();
            all
        },
        "every instrument exported"
    );

    let dump = facade.dump();
    let mut compared = 0;
    for (otel_name, prom, unit, description) in TABLE {
        let m = metrics[otel_name];
        assert_eq!(m.unit(), unit, "{otel_name}");
        assert_eq!(m.description(), description, "{otel_name}");
        let points = points(m);
        let mut otel_keys: Vec<String> = points.iter().map(|(l, _)| key(prom, l)).collect();
        otel_keys.sort();
        let mut facade_keys = facade_series(&dump, prom);
        facade_keys.sort();
        assert_eq!(otel_keys, facade_keys, "{otel_name}: same series\n{dump}");

        for (labels, point) in points {
            let lr: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match point {
                Point::Sum(v) if prom == "websocket_connections_active" => {
                    assert_eq!(v as f64, facade.gauge(prom, &lr), "{otel_name} {lr:?}");
                    assert_eq!(v, 0, "every connection ended");
                }
                Point::Sum(v) => {
                    assert_eq!(
                        v,
                        i128::from(facade.counter(prom, &lr)),
                        "{otel_name} {lr:?}"
                    );
                }
                Point::Histogram {
                    bounds,
                    buckets,
                    count,
                    sum,
                } => {
                    let want_bounds = if prom.starts_with("websocket_close") {
                        CLOSE_DURATION_BUCKETS
                    } else if prom.starts_with("websocket_handshake") {
                        HANDSHAKE_DURATION_BUCKETS
                    } else {
                        CONNECTION_DURATION_BUCKETS
                    };
                    assert_eq!(bounds, want_bounds, "{otel_name}");
                    let obs = facade.histogram(prom, &lr);
                    assert_eq!(count, obs.len() as u64, "{otel_name} {lr:?}");
                    let want_sum: f64 = obs.iter().sum();
                    assert!(
                        (sum - want_sum).abs() < 1e-9,
                        "{otel_name}: {sum} vs {want_sum}"
                    );
                    // OpenTelemetry bucket i counts (bounds[i-1], bounds[i]]; the last is +Inf.
                    let mut want = vec![0u64; bounds.len() + 1];
                    for v in &obs {
                        want[bounds.iter().position(|b| v <= b).unwrap_or(bounds.len())] += 1;
                    }
                    assert_eq!(buckets, want, "{otel_name} {lr:?}");
                }
            }
            compared += 1;
        }
    }

    // Exact totals per role, from what the scenarios did (so an equal-but-wrong pair fails).
    for (role, n) in &done {
        let r = role.as_str();
        let sum = |name: &str| facade.counter_sum(name, &[("role", r)]);
        assert_eq!(
            sum("websocket_connections_opened_total"),
            n.connections + handshakes
        );
        assert_eq!(sum("websocket_closes_total"), n.connections + handshakes);
        for (outcome, want) in [("accepted", handshakes), ("rejected", 1)] {
            let got = facade.counter(
                "websocket_handshakes_total",
                &[("role", r), ("outcome", outcome)],
            );
            assert_eq!(got, want, "{r} {outcome}");
        }
        assert_eq!(sum("websocket_close_redundant_total"), n.redundant);
        assert_eq!(sum("websocket_send_after_close_total"), n.send_after_close);
        assert_eq!(sum("websocket_messages_dropped_total"), n.dropped);
        facade.assert_balanced(r);
        let closes = |outcome: &str| {
            facade.counter_sum(
                "websocket_closes_total",
                &[("role", r), ("outcome", outcome)],
            )
        };
        assert_eq!(
            [
                closes("clean"),
                closes("timeout"),
                closes("peer_gone"),
                closes("protocol_error")
            ],
            [4 + handshakes, 2, 2, 1],
            "{role}\n{dump}"
        );
    }
    assert!(compared >= 40, "compared {compared} series");
}
