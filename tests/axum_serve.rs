//! axum with 1,000 real clients: `serve(..).with_graceful_shutdown(registry.graceful(..))`
//! returns only once every upgraded WebSocket has been closed with 1001. And a peer's protocol
//! errors through a real axum server are classified by the type of axum's tungstenite error,
//! not by the fallback: a patch release of axum that moves to another tungstenite fails here.

mod support;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wsclose::{Cause, Config, Outcome, Registry, WireCode};

use support::flavor::axum_socket;
use support::logs;
use support::pairs::bounded;
use support::raw::RawPeer;
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

/// A peer's invalid frame (a reserved opcode) and a Close frame with half a status code, each
/// through a real axum server: `protocol_error`, the malformed Close counted as an invalid
/// code, and no WARN from the fallback that classifies errors of an unknown tungstenite version
/// (it names the problem once per process; no other test of this binary makes an error).
#[tokio::test]
async fn peer_protocol_errors_are_classified_by_type() {
    let (m, _g) = recorder::install();
    let (logs, _l) = logs::capture();
    let cases: [(&str, u8, &[u8]); 2] =
        [("reserved opcode", 0x3, b"?"), ("half a code", 0x8, &[3])];
    for (what, opcode, payload) in cases {
        let (socket, raw) = axum_socket(RawPeer::connect).await;
        let mut raw = raw.unwrap();
        let mut ws = Config::new().server(socket);
        raw.send_frame(true, opcode, payload).await.unwrap();
        let mut error = None;
        while let Some(item) = bounded(ws.next()).await {
            if let Err(e) = item {
                error = Some(e);
            }
        }
        let error = error.unwrap_or_else(|| panic!("{what}: the read failed"));
        assert_eq!(
            error.outcome(),
            Some(Outcome::ProtocolError),
            "{what}: {error:?}"
        );
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::ProtocolError, "{what}: {report:?}");
        assert_eq!(report.cause, Cause::Peer, "{what}");
        if opcode == 0x8 {
            assert_eq!(
                report.code_received,
                Some(WireCode::Invalid(None)),
                "{what}"
            );
        }
        let reply = bounded(raw.read_frame()).await.unwrap().expect("a Close");
        assert_eq!(reply.close_code(), Some(1002), "{what}");
    }
    assert_eq!(
        m.closes("server", "peer", "protocol_error"),
        2,
        "{}",
        m.dump()
    );
    let invalid = [
        ("role", "server"),
        ("direction", "received"),
        ("code", "invalid"),
    ];
    assert_eq!(m.counter("websocket_close_frames_total", &invalid), 1);
    let warned: Vec<_> = logs
        .at_level(tracing::Level::WARN)
        .into_iter()
        .filter(|r| format!("{r:?}").contains("tungstenite"))
        .collect();
    assert!(
        warned.is_empty(),
        "axum's errors went through the fallback: {warned:?}"
    );
}
