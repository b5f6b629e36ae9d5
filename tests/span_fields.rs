//! The connection span's fields. The crate's handshake fills in `peer` when the stream can tell
//! (a plain `TcpStream`), in both roles; an address given with `Config::with_peer_addr` (the
//! real client behind a proxy) wins. Static labels cannot forge a log line through `labels`.

mod support;

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use wsclose::Config;

use support::logs;
use support::pairs::bounded;

/// The `peer` of the connection span, read from its end event.
fn peer_of_the_end(logs: &logs::Logs) -> Option<String> {
    let ends = logs.with_message("websocket connection ended");
    assert_eq!(ends.len(), 1, "{ends:?}");
    ends[0].field("span.peer").map(str::to_owned)
}

async fn accepted(config: Config) -> (Option<String>, SocketAddr) {
    let (logs, _g) = logs::capture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        while ws.next().await.is_some() {}
        local
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = bounded(config.accept(tcp)).await.unwrap();
    bounded(ws.close(1000, "")).await.unwrap();
    let client = bounded(client).await.unwrap();
    (peer_of_the_end(&logs), client)
}

#[tokio::test]
async fn accept_records_the_tcp_peer() {
    let (peer, client) = accepted(Config::new()).await;
    assert_eq!(peer, Some(client.to_string()));
}

#[tokio::test]
async fn an_address_given_in_the_config_wins() {
    let behind_the_proxy: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let (peer, _) = accepted(Config::new().with_peer_addr(behind_the_proxy)).await;
    assert_eq!(peer.as_deref(), Some("203.0.113.7:40000"));
}

#[tokio::test]
async fn client_handshake_records_the_server() {
    let (logs, _g) = logs::capture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = bounded(Config::new().client_handshake(format!("ws://{addr}/"), tcp))
        .await
        .unwrap();
    bounded(ws.close(1000, "")).await.unwrap();
    bounded(server).await.unwrap();
    assert_eq!(peer_of_the_end(&logs), Some(addr.to_string()));
}

/// Static label values come from configuration, but a log line must still not be forgeable:
/// a control character is refused; `,`, `=` and `\` are escaped in the span's `labels` field.
#[tokio::test]
async fn static_label_values_cannot_forge_a_log_line() {
    for value in [
        "eu\nlevel=ERROR",
        "eu\r",
        "a\u{1b}[31m",
        "tab\there",
        "del\u{7f}",
    ] {
        let e = Config::new().with_label("region", value).unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("control character"),
            "{value:?}: {e}"
        );
    }
    let (logs, _g) = logs::capture();
    let config = Config::new()
        .with_label("region", "eu,endpoint=/admin")
        .unwrap()
        .with_label("zone", "a\\b")
        .unwrap();
    let (mut ws, mut peer) = support::pairs::wrapped_and_tt(wsclose::Role::Server, &config).await;
    tokio::spawn(async move { while peer.next().await.is_some() {} });
    bounded(ws.close(1000, "")).await.unwrap();
    let ends = logs.with_message("websocket connection ended");
    assert_eq!(
        ends[0].field("span.labels"),
        Some("region=eu\\,endpoint\\=/admin,zone=a\\\\b"),
        "{ends:?}"
    );
}
