//! axum with 1,000 real clients: `serve(..).with_graceful_shutdown(registry.graceful(..))`
//! returns only once every upgraded WebSocket has been closed with 1001.

mod support;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wsclose::{Cause, Config, Outcome, Registry};

use support::pairs::bounded;
use support::recorder;

#[tokio::test]
async fn serve_returns_only_when_every_socket_is_closed() {
    const CLIENTS: usize = 1000;
    let (m, _g) = recorder::install();
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let app = Router::new().route(
        "/ws",
        get(move |upgrade: WebSocketUpgrade| {
            let config = config.clone();
            async move {
                upgrade.on_upgrade(move |socket| async move {
                    let mut ws = config.server(socket);
                    while let Some(Ok(msg)) = ws.next().await {
                        if let Message::Text(_) = msg {
                            let _ = ws.send(msg).await;
                        }
                    }
                })
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let graceful = registry.graceful(signal, 1001, Duration::from_secs(5));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
            .unwrap();
    });

    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
                .await
                .unwrap();
            let mut code = None;
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Close(Some(f)) = msg {
                    code = Some(u16::from(f.code));
                }
            }
            code
        });
    }
    bounded(async {
        while registry.len() < CLIENTS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    stop.send(()).unwrap();
    bounded(server).await.unwrap();
    // `serve` has returned: every socket is already closed.
    assert!(registry.is_empty());
    assert_eq!(
        m.gauge("websocket_connections_active", &[("role", "server")]),
        0.0
    );
    let report = registry
        .last_report()
        .expect("the graceful future ran a shutdown");
    assert_eq!(report.connections, CLIENTS);
    assert_eq!(report.count(Outcome::Clean), CLIENTS, "{report}");
    while let Some(code) = bounded(clients.join_next()).await {
        assert_eq!(code.unwrap(), Some(1001));
    }
    let labels = [
        ("role", "server"),
        ("cause", Cause::Shutdown.as_str()),
        ("outcome", "clean"),
        ("expected", "true"),
    ];
    assert_eq!(m.counter("websocket_closes_total", &labels), CLIENTS as u64);
}
