//! The protocol limits of the crate's own handshake (`Config::with_websocket_config`): a service
//! that lets wsclose run its handshake can lower the message size (and frame size, buffers), in
//! both roles; a message past the limit fails the connection with 1009, counted as such; limits
//! tungstenite would panic on are refused when the config is built.

mod support;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wsclose::{Cause, Config, Outcome, WireCode};

use support::pairs::bounded;
use support::recorder;

fn small() -> Config {
    let limits = WebSocketConfig::default()
        .max_message_size(Some(1024))
        .max_frame_size(Some(1024));
    Config::new().with_websocket_config(limits).unwrap()
}

fn assert_too_big(report: &wsclose::CloseReport) {
    assert_eq!(report.outcome, Outcome::ProtocolError, "{report:?}");
    assert_eq!(report.cause, Cause::Peer, "{report:?}");
    assert_eq!(report.code_sent, Some(WireCode::Valid(1009)), "{report:?}");
}

#[tokio::test]
async fn a_server_handshake_run_by_the_crate_applies_the_message_limit() {
    let (metrics, _g) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        ws.send(Message::text("x".repeat(1000))).await.unwrap(); // within the limit
        ws.send(Message::text("x".repeat(2048))).await.unwrap(); // past it
        let mut close = None;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(f) = m {
                close = f.map(|f| u16::from(f.code));
            }
        }
        close
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = bounded(small().accept(tcp)).await.unwrap();
    let first = bounded(ws.next()).await.unwrap().unwrap();
    assert_eq!(first.len(), 1000);
    let second = bounded(ws.next()).await.unwrap();
    assert!(second.is_err(), "{second:?}");
    let report = bounded(ws.handle().closed()).await;
    assert_too_big(&report);
    assert_eq!(bounded(peer).await.unwrap(), Some(1009));
    assert_eq!(
        metrics.frames("server", "sent", "message_too_big"),
        1,
        "{}",
        metrics.dump()
    );
    assert_eq!(
        metrics.closes("server", "peer", "protocol_error"),
        1,
        "{}",
        metrics.dump()
    );
}

async fn fails_too_big<T>(mut ws: wsclose::WebSocket<T>)
where
    T: wsclose::Transport,
    T::Message: std::fmt::Debug,
{
    let got = bounded(ws.next()).await.unwrap();
    assert!(got.is_err(), "{got:?}");
    assert_too_big(&bounded(ws.handle().closed()).await);
}

#[tokio::test]
async fn a_client_handshake_run_by_the_crate_applies_the_message_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::binary(vec![0u8; 4096])).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = bounded(small().client_handshake(format!("ws://{addr}/"), tcp))
        .await
        .unwrap();
    fails_too_big(ws).await;
    // `connect` dials itself: the same limits.
    let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a2 = l2.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = l2.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::binary(vec![0u8; 4096])).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let (ws, _) = bounded(small().connect(format!("ws://{a2}/")))
        .await
        .unwrap();
    fails_too_big(ws).await;
    bounded(peer).await.unwrap();
}

#[test]
fn limits_tungstenite_would_panic_on_are_refused() {
    let d = WebSocketConfig::default();
    for (limits, needle) in [
        (
            d.write_buffer_size(1 << 20).max_write_buffer_size(1 << 20),
            "max_write_buffer_size",
        ),
        (d.max_message_size(Some(0)), "size limit of 0"),
        (
            d.max_frame_size(Some(1 << 20))
                .max_message_size(Some(1 << 10)),
            "max_frame_size",
        ),
    ] {
        let e = Config::new().with_websocket_config(limits).unwrap_err();
        assert!(e.is_config() && e.to_string().contains(needle), "{e}");
    }
    assert_eq!(
        Config::new().websocket_config().max_message_size,
        Some(64 << 20)
    );
}
