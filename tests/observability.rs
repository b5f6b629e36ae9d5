//! The logs of docs/design.md: one end event per connection at the right level with the listed fields, inside a
//! per-connection span; peer reasons escaped; refused sends and redundant closes at DEBUG.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use tracing::Level;
use wsclose::{Config, Role};

use support::logs;
use support::pairs::{BOTH, bounded, wrapped_and_raw};

const ENDED: &str = "websocket connection ended";

#[tokio::test]
async fn expected_end_is_one_debug_event_with_every_field() {
    for role in BOTH {
        let (logs, _g) = logs::capture();
        let peer_addr = "127.0.0.1:4242".parse().unwrap();
        let config = Config::new().with_peer_addr(peer_addr);
        let (ws, mut raw) = wrapped_and_raw(role, &config).await;
        let handle = ws.handle();
        handle.start_close(1000, "bye").unwrap();
        let f = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(f.is_close());
        raw.send_close(Some(1000), b"ok\nFAKE LOG LINE")
            .await
            .unwrap();
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        bounded(handle.closed()).await;

        let ended = logs.with_message(ENDED);
        assert_eq!(ended.len(), 1, "{:?}", logs.records());
        let e = &ended[0];
        assert_eq!((e.level, e.target.as_str()), (Level::DEBUG, "wsclose"));
        let want = [
            ("outcome", "clean"),
            ("cause", "app"),
            ("expected", "true"),
            ("code_sent", "normal_closure"),
            ("code_received", "normal_closure"),
            ("code_received_value", "1000"),
            ("reason", "ok\\nFAKE LOG LINE"),
            ("state_before", "closing(app)"),
            ("close_attempted", "true"),
            ("messages_dropped", "0"),
            ("span.name", "websocket"),
            ("span.role", role.as_str()),
            ("span.peer", "127.0.0.1:4242"),
        ];
        for (k, v) in want {
            assert_eq!(e.field(k), Some(v), "field {k}: {e:?}");
        }
        let ms: u64 = e.field("duration_ms").unwrap().parse().unwrap();
        assert!(ms < 5_000);
        assert_eq!(
            e.field("span.conn_id"),
            Some(handle.id().to_string().as_str())
        );
        assert!(logs.at_level(Level::WARN).is_empty());
    }
}

#[tokio::test]
async fn unexpected_end_is_a_warning_with_the_peers_invalid_code() {
    for role in BOTH {
        let (logs, _g) = logs::capture();
        let (ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        raw.read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        raw.send_close(Some(5000), b"\x1b[2J evil").await.unwrap();
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        bounded(handle.closed()).await;
        let warns = logs.at_level(Level::WARN);
        assert_eq!(warns.len(), 1, "{:?}", logs.records());
        let e = &warns[0];
        assert_eq!(e.field("message"), Some(ENDED));
        assert_eq!(e.field("outcome"), Some("protocol_error"));
        assert_eq!(e.field("expected"), Some("false"));
        assert_eq!(e.field("code_received"), Some("invalid"));
        assert_eq!(e.field("code_received_value"), Some("5000"));
        assert_eq!(e.field("reason"), Some("\\u{1b}[2J evil"));
    }
}

#[tokio::test]
async fn peer_gone_is_debug_and_errors_are_not_logged_as_warnings() {
    for role in BOTH {
        let (logs, _g) = logs::capture();
        let (mut ws, raw) = wrapped_and_raw(role, &Config::new()).await;
        raw.reset();
        let item = bounded(ws.next()).await.unwrap();
        assert!(item.is_err());
        assert!(bounded(ws.next()).await.is_none());
        let ended = logs.with_message(ENDED);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].level, Level::DEBUG);
        assert_eq!(ended[0].field("outcome"), Some("peer_gone"));
        assert_eq!(ended[0].field("state_before"), Some("open"));
        assert_eq!(ended[0].field("close_attempted"), Some("false"));
        assert!(
            logs.at_level(Level::WARN).is_empty(),
            "{:?}",
            logs.records()
        );
    }
}

#[tokio::test]
async fn redundant_close_is_logged_at_debug() {
    let (logs, _g) = logs::capture();
    let (mut ws, raw) = wrapped_and_raw(Role::Server, &Config::new()).await;
    drop(raw);
    let first = bounded(ws.close(1000, "")).await.unwrap();
    let second = bounded(ws.close(1000, "")).await.unwrap();
    assert_eq!(first, second);
    let redundant = logs.with_message("close requested on a connection already closing or closed");
    assert_eq!(redundant.len(), 1);
    assert_eq!(redundant[0].level, Level::DEBUG);
    assert_eq!(redundant[0].field("state"), Some("closed"));
}

/// A connection wrapped and closed with no Tokio runtime anywhere (no runtime to run a close
/// handshake on): the transport is dropped at once, the end is `internal_error`, and the close
/// detail at DEBUG says why.
#[test]
fn a_close_outside_any_runtime_says_why_it_is_an_internal_error() {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role as TtRole;

    let (logs, _guard) = logs::capture();
    let (a, _b) = tokio::io::duplex(1024);
    // Built on a runtime that is gone before the connection is wrapped.
    let ws = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(WebSocketStream::from_raw_socket(a, TtRole::Server, None));
    assert!(tokio::runtime::Handle::try_current().is_err());
    let ws = wsclose::WebSocket::server(ws);
    assert!(ws.handle().start_close(1000, "bye").unwrap());
    let report = ws.report().expect("ended at once");
    assert_eq!(
        report.outcome,
        wsclose::Outcome::InternalError,
        "{report:?}"
    );
    let details = logs.with_message("close detail");
    assert_eq!(
        details.iter().map(|r| r.field("error")).collect::<Vec<_>>(),
        [Some("closed outside a Tokio runtime")],
        "{details:?}"
    );
}

/// A shutdown logs its report once, at INFO, as the `report` field of "shutdown complete":
/// what an operator reads after a deploy.
#[tokio::test]
async fn a_shutdown_logs_its_report_once_at_info() {
    let (logs, _g) = logs::capture();
    let registry = wsclose::Registry::new();
    let config = Config::new().with_registry(registry.clone());
    // A silent peer: its close is terminated at the end of the grace period.
    let (_ws, _raw) = wrapped_and_raw(Role::Server, &config).await;
    let report = bounded(registry.shutdown(1001, Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!((report.connections, report.stragglers), (1, 1), "{report}");
    let done = logs.with_message("shutdown complete");
    assert_eq!(done.len(), 1, "{:?}", logs.records());
    assert_eq!(
        (done[0].level, done[0].target.as_str()),
        (Level::INFO, "wsclose")
    );
    assert_eq!(done[0].field("report"), Some(report.to_string().as_str()));
}

/// The static labels are on the connection span (`labels`), so the end event carries them; a
/// connection without static labels has no such field.
#[tokio::test]
async fn static_labels_are_in_the_connection_span() {
    for (config, want) in [
        (
            Config::new()
                .with_label("endpoint", "/chat")
                .unwrap()
                .with_label("area", "eu")
                .unwrap(),
            Some("area=eu,endpoint=/chat"),
        ),
        (Config::new(), None),
    ] {
        let (logs, _g) = logs::capture();
        let (ws, mut raw) = wrapped_and_raw(Role::Server, &config).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let _ = raw.read_frame_timeout(Duration::from_secs(5)).await;
        raw.send_close(Some(1000), b"").await.unwrap();
        bounded(handle.closed()).await;
        let ended = logs.with_message(ENDED);
        assert_eq!(ended.len(), 1, "{:?}", logs.records());
        assert_eq!(ended[0].field("span.labels"), want, "{:?}", ended[0]);
    }
}
