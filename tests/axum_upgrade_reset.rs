//! A client that resets right after sending its upgrade request, through axum and
//! `Config::on_upgrade`: classified as the tokio-tungstenite path classifies it, a peer that went
//! away (`peer_gone`, `cause="transport"`), quietly. Whether hyper's upgrade fails (the 101 meets
//! the reset) or completes first (the reset then ends the open connection) is the machine's
//! timing; neither may be an `io_error`, and neither may log a WARN.

mod support;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Level;
use wsclose::{Config, Registry};

use support::logs;
use support::pairs::bounded;
use support::recorder;

const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn a_client_reset_during_an_axum_upgrade_is_peer_gone_quietly() {
    let (logs, _g) = logs::capture();
    let (metrics, _m) = recorder::install();
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let app = Router::new().route(
        "/ws",
        get(move |upgrade: WebSocketUpgrade| {
            let config = config.clone();
            async move {
                config.on_upgrade(upgrade, |mut ws| async move {
                    while ws.next().await.is_some() {}
                })
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    const N: u64 = 20;
    for _ in 0..N {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(REQUEST).await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp); // RST
    }
    // A reset that hyper sees before the request reaches the handler upgrades nothing and is
    // not a handshake of the crate's; the others are. Wait until they have all ended.
    let handshakes = || metrics.counter_sum("websocket_handshakes_total", &[("role", "server")]);
    let mut last = u64::MAX;
    bounded(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = handshakes();
            if now == last && registry.is_empty() && registry.connecting() == 0 {
                break;
            }
            last = now;
        }
    })
    .await;
    let warnings = logs.at_level(Level::WARN);
    assert!(warnings.is_empty(), "{warnings:?}");
    let failed = metrics.counter(
        "websocket_handshakes_total",
        &[("role", "server"), ("outcome", "failed")],
    );
    let accepted = metrics.counter(
        "websocket_handshakes_total",
        &[("role", "server"), ("outcome", "accepted")],
    );
    assert_eq!(failed + accepted, handshakes(), "{}", metrics.dump());
    assert!(handshakes() <= N);
    // The opened ones ended as a reset does.
    assert_eq!(
        metrics.closes("server", "transport", "io_error"),
        0,
        "{}",
        metrics.dump()
    );
    assert_eq!(
        metrics.closes("server", "transport", "peer_gone"),
        accepted,
        "{}",
        metrics.dump()
    );
    // The failed ones logged their end at DEBUG (their handles' report: src/handshake/axum.rs).
    let ended = logs.with_message("websocket handshake ended");
    assert_eq!(ended.len() as u64, failed, "{:?}", logs.records());
    assert!(ended.iter().all(|e| e.level == Level::DEBUG), "{ended:?}");
}
