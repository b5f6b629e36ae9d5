//! On the wire: the OTLP/HTTP pipeline of `examples/otlp.rs` (the same code, included below)
//! exports to a test receiver that decodes the protobuf with the official
//! `opentelemetry-proto` definitions. Checked: metric names, units, descriptions, attributes,
//! values, bucket boundaries, the resource; one `websocket` span per connection with its
//! `websocket.close` child span carrying the close attributes, and the end event.
//!
//! The OpenTelemetry instruments are process-global, so this binary holds one test.

mod support;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../examples/otlp.rs"]
mod example;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::{Span, status};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TtCode;
use wsclose::{CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, Config};

use support::otlp_receiver::{OtlpReceiver, attrs, value_str};
use support::pairs::bounded;
use support::raw::RawPeer;
use support::recorder;

type Attrs = Vec<(String, String)>;

fn kv(pairs: &[(&str, &str)]) -> Attrs {
    let mut v: Attrs = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// Sum data points of a metric as (attributes → value).
fn sums(m: &Metric) -> BTreeMap<Attrs, i64> {
    match m.data.as_ref().expect("data") {
        metric::Data::Sum(s) => {
            // Cumulative (2): what a Prometheus exporter needs.
            assert_eq!(s.aggregation_temporality, 2, "{}", m.name);
            s.data_points
                .iter()
                .map(|p| {
                    let v = match p.value {
                        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                        ref other => panic!("{}: {other:?}", m.name),
                    };
                    (attrs(&p.attributes), v)
                })
                .collect()
        }
        other => panic!("{}: not a sum: {other:?}", m.name),
    }
}

fn span_attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_str(&kv.value))
}

#[tokio::test]
async fn the_examples_otlp_export_decodes_with_every_name_unit_attribute_and_span() {
    let receiver = OtlpReceiver::start();
    // Exports only on the final flush, so the payload is one deterministic snapshot.
    let telemetry = example::Telemetry::init(Some(&receiver.url), Duration::from_secs(3600))
        .expect("pipelines");
    let _trace = tracing::subscriber::set_default(telemetry.subscriber());
    let (facade, _guard) = recorder::install();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(example::accept_loop(listener, Config::new()));

    // 1. A client echoes once and closes with 1000: the server ends clean, cause peer.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    client.send(Message::text("hello")).await.unwrap();
    let echo = bounded(client.next()).await.unwrap().unwrap();
    assert_eq!(echo, Message::text("hello"));
    client
        .close(Some(CloseFrame {
            code: TtCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    while let Some(Ok(_)) = bounded(client.next()).await {}

    // 2. A client sends an invalid close code: protocol_error, answered with 1002.
    let mut raw = RawPeer::connect(addr).await.unwrap();
    raw.send_close(Some(5000), b"").await.unwrap();
    let frames = raw
        .read_all_until_eof(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(frames.last().and_then(|f| f.close_code()), Some(1002));

    // 3. A client resets its connection: peer_gone, cause transport.
    let raw = RawPeer::connect(addr).await.unwrap();
    raw.reset();

    // Wait until the server has ended all three (seen through the facade, same events).
    bounded(async {
        while facade.counter_sum("websocket_closes_total", &[]) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.abort();
    let _ = server.await;
    drop(_trace);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .expect("export");

    assert_eq!(receiver.rejected(), Vec::<(String, String)>::new());

    // ---- Metrics ----
    let requests = receiver.metrics();
    let last = requests.last().expect("a metrics export");
    let rm = &last.resource_metrics[0];
    let resource = attrs(&rm.resource.as_ref().unwrap().attributes);
    assert!(
        resource.contains(&("service.name".into(), "wsclose-echo".into())),
        "{resource:?}"
    );
    let scope = rm
        .scope_metrics
        .iter()
        .find(|s| s.scope.as_ref().is_some_and(|s| s.name == "wsclose"))
        .expect("wsclose scope");
    assert_eq!(
        scope.scope.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    let metrics: BTreeMap<&str, &Metric> =
        scope.metrics.iter().map(|m| (m.name.as_str(), m)).collect();
    let units = [
        ("websocket.connections.active", "{connection}"),
        ("websocket.connections.opened", "{connection}"),
        ("websocket.closes", "{connection}"),
        ("websocket.close.duration", "s"),
        ("websocket.connection.duration", "s"),
        ("websocket.close.frames", "{frame}"),
        ("websocket.close.redundant", "{request}"),
        ("websocket.send_after_close", "{message}"),
        ("websocket.messages.dropped", "{message}"),
        ("websocket.handshakes", "{handshake}"),
        ("websocket.handshake.duration", "s"),
    ];
    assert_eq!(metrics.keys().copied().collect::<Vec<_>>(), {
        let mut names: Vec<&str> = units.iter().map(|(n, _)| *n).collect();
        names.sort();
        names
    });
    for (name, unit) in units {
        assert_eq!(metrics[name].unit, unit, "{name}");
        assert!(!metrics[name].description.is_empty(), "{name}");
    }

    let server_role = [("websocket.role", "server")];
    let active = &metrics["websocket.connections.active"];
    match active.data.as_ref().unwrap() {
        metric::Data::Sum(s) => assert!(!s.is_monotonic, "UpDownCounter"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sums(active), BTreeMap::from([(kv(&server_role), 0)]));
    assert_eq!(
        sums(metrics["websocket.connections.opened"]),
        BTreeMap::from([(kv(&server_role), 3)])
    );
    for zeroed in [
        "websocket.close.redundant",
        "websocket.send_after_close",
        "websocket.messages.dropped",
    ] {
        assert_eq!(
            sums(metrics[zeroed]),
            BTreeMap::from([(kv(&server_role), 0)]),
            "{zeroed}"
        );
    }
    let end = |cause: &str, outcome: &str, expected: &str, error: bool| {
        let mut v = vec![
            ("websocket.role", "server"),
            ("websocket.close.cause", cause),
            ("websocket.close.outcome", outcome),
            ("websocket.close.expected", expected),
        ];
        if error {
            v.push(("error.type", outcome));
        }
        kv(&v)
    };
    // Every series of the role exists from its first connection, at 0 (docs/metrics.md): 35
    // ends and 31 close frames; compare the ones that moved.
    let moved = |m: &Metric| -> BTreeMap<Attrs, i64> {
        sums(m).into_iter().filter(|(_, v)| *v != 0).collect()
    };
    assert_eq!(sums(metrics["websocket.closes"]).len(), 35);
    assert_eq!(sums(metrics["websocket.close.frames"]).len(), 31);
    assert_eq!(
        moved(metrics["websocket.closes"]),
        BTreeMap::from([
            (end("peer", "clean", "true", false), 1),
            (end("peer", "protocol_error", "false", true), 1),
            (end("transport", "peer_gone", "true", true), 1),
        ])
    );
    let frame = |direction: &str, code: &str| {
        kv(&[
            ("websocket.role", "server"),
            ("websocket.close.direction", direction),
            ("websocket.close.code", code),
        ])
    };
    assert_eq!(
        moved(metrics["websocket.close.frames"]),
        BTreeMap::from([
            (frame("received", "normal_closure"), 1),
            (frame("sent", "normal_closure"), 1),
            (frame("received", "invalid"), 1),
            (frame("sent", "protocol_error"), 1),
        ])
    );
    for (name, bounds, want) in [
        (
            "websocket.close.duration",
            CLOSE_DURATION_BUCKETS,
            vec![
                kv(&[
                    ("websocket.role", "server"),
                    ("websocket.close.outcome", "clean"),
                ]),
                kv(&[
                    ("websocket.role", "server"),
                    ("websocket.close.outcome", "protocol_error"),
                    ("error.type", "protocol_error"),
                ]),
            ],
        ),
        (
            "websocket.connection.duration",
            CONNECTION_DURATION_BUCKETS,
            vec![
                kv(&[
                    ("websocket.role", "server"),
                    ("websocket.close.outcome", "clean"),
                ]),
                kv(&[
                    ("websocket.role", "server"),
                    ("websocket.close.outcome", "protocol_error"),
                    ("error.type", "protocol_error"),
                ]),
                kv(&[
                    ("websocket.role", "server"),
                    ("websocket.close.outcome", "peer_gone"),
                    ("error.type", "peer_gone"),
                ]),
            ],
        ),
    ] {
        let metric::Data::Histogram(h) = metrics[name].data.as_ref().unwrap() else {
            panic!("{name} is not a histogram");
        };
        assert_eq!(h.aggregation_temporality, 2, "{name}");
        let mut got: Vec<Attrs> = h.data_points.iter().map(|p| attrs(&p.attributes)).collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{name}");
        for p in &h.data_points {
            assert_eq!(p.explicit_bounds, bounds, "{name}");
            assert_eq!(p.bucket_counts.len(), bounds.len() + 1, "{name}");
            assert_eq!(p.count, 1, "{name}");
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), 1, "{name}");
        }
    }

    // ---- Traces ----
    let spans: Vec<Span> = receiver
        .traces()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let conns: Vec<&Span> = spans.iter().filter(|s| s.name == "websocket").collect();
    let closes: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "websocket.close")
        .collect();
    assert_eq!((conns.len(), closes.len()), (3, 3), "{spans:#?}");
    let mut outcomes = Vec::new();
    for close in &closes {
        let parent = conns
            .iter()
            .find(|c| c.span_id == close.parent_span_id)
            .expect("a close span is a child of its connection span");
        assert_eq!(parent.trace_id, close.trace_id);
        assert_eq!(span_attr(parent, "role").as_deref(), Some("server"));
        assert!(span_attr(parent, "conn_id").is_some());
        assert!(
            span_attr(parent, "peer").is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{parent:?}"
        );
        assert!(close.start_time_unix_nano >= parent.start_time_unix_nano);
        assert!(close.end_time_unix_nano <= parent.end_time_unix_nano);
        let outcome = span_attr(close, "websocket.close.outcome").unwrap();
        let cause = span_attr(close, "websocket.close.cause").unwrap();
        let sent = span_attr(close, "websocket.close.code.sent");
        let received = span_attr(close, "websocket.close.code.received");
        let error_type = span_attr(close, "error.type");
        let status = close.status.as_ref().map(|s| s.code).filter(|c| *c != 0);
        // The end event is on the connection span, with the same outcome.
        let ended = parent
            .events
            .iter()
            .find(|e| e.name == "websocket connection ended")
            .expect("end event");
        let event_outcome = ended
            .attributes
            .iter()
            .find(|kv| kv.key == "outcome")
            .map(|kv| value_str(&kv.value));
        assert_eq!(event_outcome.as_deref(), Some(outcome.as_str()));
        outcomes.push((outcome, cause, sent, received, error_type, status));
    }
    outcomes.sort();
    let error = Some(status::StatusCode::Error as i32);
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        outcomes,
        vec![
            (
                s("clean").unwrap(),
                s("peer").unwrap(),
                s("normal_closure"),
                s("normal_closure"),
                None,
                None
            ),
            (
                s("peer_gone").unwrap(),
                s("transport").unwrap(),
                None,
                None,
                s("peer_gone"),
                None
            ),
            (
                s("protocol_error").unwrap(),
                s("peer").unwrap(),
                s("protocol_error"),
                s("invalid"),
                s("protocol_error"),
                error
            ),
        ]
    );
}
