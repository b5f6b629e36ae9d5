//! An application with its own `PrometheusBuilder` (it already exports other metrics) gives it
//! wsclose's buckets without the `prometheus` feature (`wsclose::histogram_buckets`), or with it
//! (`wsclose::prometheus::with_buckets`): the histograms then render as `_bucket` series, which
//! the dashboard and the slow-close rule read. Without, they render as summaries: the silent
//! failure this exists for.

mod support;

use futures_util::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use wsclose::{Config, Role};

use support::pairs::{bounded, wrapped_and_tt};

/// One close recorded into `recorder`; the rendered text.
async fn one_close(recorder: PrometheusRecorder) -> String {
    let handle = recorder.handle();
    let _g = metrics::set_default_local_recorder(&recorder);
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    bounded(ws.close(1000, "")).await.unwrap();
    metrics::counter!("my_app_requests_total").increment(1); // the application's own
    handle.render()
}

#[tokio::test]
async fn an_own_builder_with_the_buckets_renders_histograms() {
    let mut builder = PrometheusBuilder::new().add_global_label("service", "chat");
    for (name, buckets) in wsclose::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .unwrap();
    }
    let text = one_close(builder.build_recorder()).await;
    assert!(
        text.contains("my_app_requests_total{service=\"chat\"} 1"),
        "{text}"
    );
    for name in [
        "websocket_close_duration_seconds",
        "websocket_connection_duration_seconds",
        "websocket_handshake_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} histogram")),
            "{name}:\n{text}"
        );
    }
    assert!(
        text.contains("websocket_close_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("le=\"1\""), "{text}");
    assert!(!text.contains("quantile="), "{text}");
    let listed: Vec<&str> = wsclose::histogram_buckets().map(|(n, _)| n).collect();
    assert_eq!(
        listed,
        [
            "websocket_close_duration_seconds",
            "websocket_connection_duration_seconds",
            "websocket_handshake_duration_seconds"
        ]
    );
}

#[tokio::test]
async fn an_own_builder_without_them_renders_summaries() {
    let text = one_close(PrometheusBuilder::new().build_recorder()).await;
    assert!(
        text.contains("# TYPE websocket_close_duration_seconds summary"),
        "{text}"
    );
    assert!(
        !text.contains("websocket_close_duration_seconds_bucket"),
        "{text}"
    );
}

#[cfg(feature = "prometheus")]
#[tokio::test]
async fn with_buckets_adds_them_to_an_own_builder() {
    let mine = PrometheusBuilder::new().add_global_label("service", "chat");
    let text = one_close(
        wsclose::prometheus::with_buckets(mine)
            .unwrap()
            .build_recorder(),
    )
    .await;
    assert!(
        text.contains("websocket_close_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("service=\"chat\""), "{text}");
    assert!(!text.contains("quantile="), "{text}");
}
