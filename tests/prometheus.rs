//! The `prometheus` feature: all nine SPEC §5 families render with HELP text, the two
//! histograms as real histograms (`_bucket` lines with the documented bounds), never summaries.

mod support;

use futures_util::StreamExt;
use wsclose::{Config, Role};

use support::pairs::{bounded, wrapped_and_tt};

#[tokio::test]
async fn every_family_renders_with_help_and_buckets() {
    let recorder = wsclose::prometheus::builder().unwrap().build_recorder();
    let handle = recorder.handle();
    let _g = metrics::set_default_local_recorder(&recorder);
    wsclose::describe_metrics();

    let (ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    bounded(ws.close(1000, "")).await.unwrap();
    bounded(ws.close(1000, "")).await.unwrap(); // redundant
    let mut ws = ws;
    assert!(
        futures_util::SinkExt::send(&mut ws, "late".into())
            .await
            .is_err()
    ); // send after close

    let text = handle.render();
    for name in wsclose::names::ALL {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("\n{name}")),
            "no samples for {name}:\n{text}"
        );
    }
    for hist in [
        "websocket_close_duration_seconds",
        "websocket_connection_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {hist} histogram")), "{text}");
        assert!(text.contains(&format!("{hist}_bucket{{")), "{text}");
        assert!(text.contains(&format!("{hist}_count{{")), "{text}");
    }
    assert!(
        !text.contains("quantile="),
        "histograms must not render as summaries:\n{text}"
    );
    for le in ["0.0005", "5", "10", "+Inf"] {
        let line = format!(
            "websocket_close_duration_seconds_bucket{{role=\"server\",outcome=\"clean\",le=\"{le}\"}} 1"
        );
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
    assert!(text.contains("websocket_connection_duration_seconds_bucket{role=\"server\",outcome=\"clean\",le=\"3600\"} 1"));
    assert!(
        text.contains("websocket_close_redundant_total{role=\"server\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("websocket_send_after_close_total{role=\"server\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("websocket_messages_dropped_total{role=\"server\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("websocket_connections_active{role=\"server\"} 0"),
        "{text}"
    );
}
