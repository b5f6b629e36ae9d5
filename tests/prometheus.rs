//! The `prometheus` feature: all nine families of docs/metrics.md render with HELP text, the two
//! histograms as real histograms (`_bucket` lines with the documented bounds), never summaries.
//!
//! A loopback close takes anything from tens of microseconds to milliseconds on a busy machine,
//! so no assertion names the bucket it lands in: each histogram must render exactly the
//! documented bounds, and its one observation must be the report's duration in seconds (`_sum`)
//! and appear as exactly one cumulative step, at the first bound at or above that value.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use wsclose::{Config, Role};

use support::pairs::{bounded, wrapped_and_tt};

#[tokio::test]
async fn every_family_renders_with_help_and_buckets() {
    let recorder = wsclose::prometheus::builder().unwrap().build_recorder();
    let handle = recorder.handle();
    let _g = metrics::set_default_local_recorder(&recorder);
    wsclose::describe_metrics();

    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    let report = bounded(ws.close(1000, "")).await.unwrap();
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
    // The documented bounds (docs/metrics.md), written out rather than taken from the crate's
    // constants so that a changed list fails here.
    let close_bounds = [
        "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
        "2.5", "5", "10",
    ];
    let connection_bounds = [
        "0.01", "0.1", "1", "10", "30", "60", "300", "600", "1800", "3600",
    ];
    let series = "role=\"server\",outcome=\"clean\"";
    one_observation(
        &text,
        "websocket_close_duration_seconds",
        series,
        &close_bounds,
        report
            .close_duration
            .expect("a clean close has a close duration"),
    );
    one_observation(
        &text,
        "websocket_connection_duration_seconds",
        series,
        &connection_bounds,
        report.connection_duration,
    );
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

/// Checks that histogram `name{series}` renders exactly `bounds` (then `+Inf`) in order, holds
/// one observation whose `_sum` is `observed` in seconds, and that its cumulative bucket counts
/// step from 0 to 1 exactly once: at the first bound `>= observed` (Prometheus' `le`).
fn one_observation(text: &str, name: &str, series: &str, bounds: &[&str], observed: Duration) {
    let sample = |line: &str, prefix: &str| -> Option<String> {
        line.strip_prefix(prefix).map(|rest| rest.trim().to_owned())
    };
    let bucket_prefix = format!("{name}_bucket{{{series},le=\"");
    let mut buckets: Vec<(String, u64)> = Vec::new();
    let mut sum = None;
    let mut count = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&bucket_prefix) {
            let (le, value) = rest
                .split_once("\"}")
                .unwrap_or_else(|| panic!("malformed bucket line {line:?}"));
            let value = value.trim().parse::<u64>().unwrap_or_else(|e| {
                panic!("bucket count in {line:?}: {e}");
            });
            buckets.push((le.to_owned(), value));
        } else if let Some(v) = sample(line, &format!("{name}_sum{{{series}}}")) {
            sum = Some(v.parse::<f64>().unwrap());
        } else if let Some(v) = sample(line, &format!("{name}_count{{{series}}}")) {
            count = Some(v.parse::<u64>().unwrap());
        }
    }
    let les: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
    let mut expected: Vec<&str> = bounds.to_vec();
    expected.push("+Inf");
    assert_eq!(les, expected, "{name}{{{series}}} bucket bounds:\n{text}");
    assert_eq!(count, Some(1), "{name}_count{{{series}}}:\n{text}");

    let observed = observed.as_secs_f64();
    let sum = sum.unwrap_or_else(|| panic!("no {name}_sum{{{series}}}:\n{text}"));
    assert!(
        (sum - observed).abs() <= 1e-9,
        "{name}_sum is {sum}, the report says {observed} s:\n{text}"
    );
    // Cumulative: 0 below the observation's bucket, 1 from it on (and at +Inf).
    let step = bounds
        .iter()
        .position(|b| observed <= b.parse::<f64>().unwrap())
        .unwrap_or(bounds.len());
    let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
    let want: Vec<u64> = (0..=bounds.len()).map(|i| u64::from(i >= step)).collect();
    assert_eq!(
        counts, want,
        "{name}{{{series}}}: {observed} s must count from le=\"{}\" on:\n{text}",
        expected[step]
    );
}

/// The exporter's rendering with static labels: every series of a labelled connection carries
/// them, and the first connection of a role and label set renders all 83 of its series (the
/// histograms with `_count 0`), so a first error has a 0 before it.
#[tokio::test]
async fn static_labels_and_zero_series_render() {
    let recorder = wsclose::prometheus::builder().unwrap().build_recorder();
    let handle = recorder.handle();
    let _g = metrics::set_default_local_recorder(&recorder);

    let config = Config::new()
        .with_label("endpoint", "/render")
        .unwrap()
        .with_label("tier", "gold")
        .unwrap();
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    bounded(ws.close(1000, "")).await.unwrap();

    let text = handle.render();
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("websocket_"))
        .collect();
    for l in &samples {
        assert!(
            l.contains(r#"endpoint="/render",tier="gold""#),
            "every series carries the static labels: {l}"
        );
        assert!(l.contains(r#"role="server""#), "{l}");
    }
    let count = |prefix: &str| samples.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("websocket_closes_total{"), 35);
    assert_eq!(count("websocket_close_frames_total{"), 31);
    assert_eq!(count("websocket_close_duration_seconds_count{"), 6);
    assert_eq!(count("websocket_connection_duration_seconds_count{"), 6);
    let zero = r#"websocket_closes_total{role="server",cause="peer",outcome="protocol_error",expected="false",endpoint="/render",tier="gold"} 0"#;
    assert!(samples.contains(&zero), "{text}");
    let clean = r#"websocket_closes_total{role="server",cause="app",outcome="clean",expected="true",endpoint="/render",tier="gold"} 1"#;
    assert!(samples.contains(&clean), "{text}");
    let never = r#"websocket_close_duration_seconds_count{role="server",outcome="timeout",endpoint="/render",tier="gold"} 0"#;
    assert!(samples.contains(&never), "{text}");
}
