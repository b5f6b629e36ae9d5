//! The opening handshake run by the crate: bounded, classified, refused during a drain.
//!
//! Peers are real sockets: tokio-tungstenite clients and servers, and raw TCP peers that send
//! half a request (slowloris) or a malformed one.

// tungstenite's `Callback` signature returns its `ErrorResponse` by value.
#![allow(clippy::result_large_err)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tracing::Level;
use wsclose::{Config, HandshakeOutcome, Outcome, Registry, State};

use support::logs;
use support::pairs::{bounded, until};

/// Half an upgrade request: the request line and one header, never the blank line.
const HALF_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n";

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Reads until the server closes the socket; returns what it sent. Bounded.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = bounded(tcp.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "current_thread")]
async fn a_slowloris_peer_ends_at_the_deadline_as_timeout_and_its_socket_is_released() {
    let (logs, _g) = logs::capture();
    let (listener, addr) = listener().await;
    let config = Config::new()
        .with_handshake_timeout(Duration::from_millis(200))
        .unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        config.accept(tcp).await
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.write_all(HALF_REQUEST).await.unwrap();
    let err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Timeout), "{err}");
    assert_eq!(err.status(), None);
    // The server dropped its end: the peer reads EOF, with no answer.
    assert_eq!(read_to_close(&mut peer).await, b"");
    let ends = logs.with_message("websocket handshake ended");
    assert_eq!(ends.len(), 1, "{:?}", logs.records());
    assert_eq!(ends[0].level, Level::DEBUG);
    assert_eq!(ends[0].field("outcome"), Some("timeout"));
}

/// 1,000 stalled peers hold 1,000 handshakes; a normal upgrade goes through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slowloris_peers_do_not_delay_a_normal_upgrade() {
    const STALLED: usize = 1000;
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_handshake_timeout(Duration::from_secs(60))
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let config = config.clone();
                let accepted = accepted.clone();
                tasks.spawn(async move {
                    if let Ok(mut ws) = config.accept(tcp).await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                });
            }
        })
    };
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(HALF_REQUEST).await.unwrap();
        stalled.push(tcp);
    }
    // Every stalled peer is in the Connecting phase before the normal client arrives.
    until(|| registry.connecting() >= STALLED).await;
    let (mut client, response) = bounded(tokio_tungstenite::connect_async(format!("ws://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    // The client may read the 101 before the server's `accept` has returned.
    until(|| accepted.load(Ordering::SeqCst) >= 1).await;
    assert_eq!(
        registry.connecting(),
        STALLED,
        "the stalled handshakes are still waiting (60 s deadline), the normal one is through"
    );
    client.close(None).await.unwrap();
    drop(stalled);
    until(|| registry.connecting() == 0).await;
    server.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_malformed_upgrade_fails_and_is_logged_at_warn() {
    let (logs, _g) = logs::capture();
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        Config::new().accept(tcp).await
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    // A plain GET: no Upgrade, no Sec-WebSocket-Key.
    peer.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
    let warns = logs.at_level(Level::WARN);
    assert_eq!(warns.len(), 1, "{:?}", logs.records());
    assert_eq!(warns[0].field("outcome"), Some("failed"));
    assert!(warns[0].field("error").is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_peer_gone_mid_handshake_fails_quietly() {
    // EOF, then a reset (RST): both are a peer that went away.
    for reset in [false, true] {
        let (logs, _g) = logs::capture();
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let handshake = Config::new().accept(tcp);
            let handle = handshake.handle();
            (handshake.await.map(drop), handle)
        });
        let mut peer = TcpStream::connect(addr).await.unwrap();
        peer.write_all(HALF_REQUEST).await.unwrap();
        if reset {
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(peer);
        let (result, handle) = bounded(server).await.unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
        assert!(
            logs.at_level(Level::WARN).is_empty(),
            "reset {reset}: {:?}",
            logs.records()
        );
        assert_eq!(logs.with_message("websocket handshake ended").len(), 1);
        assert_eq!(handle.report().unwrap().outcome, Outcome::PeerGone, "{err}");
    }
}

/// The application refuses an upgrade through its callback; both sides see the status.
#[tokio::test]
async fn a_refused_upgrade_is_answered_with_its_status_and_seen_by_the_client() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let auth = |req: &Request, resp: Response| {
            if req.headers().contains_key("authorization") {
                Ok(resp)
            } else {
                Err(wsclose::reject(StatusCode::FORBIDDEN, "token required"))
            }
        };
        Config::new().accept_with(tcp, auth).await
    });
    let err = bounded(Config::new().connect(format!("ws://{addr}/ws")))
        .await
        .unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Rejected), "{err}");
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.to_string(), "websocket handshake rejected: HTTP 403");
    let server_err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(server_err.handshake(), Some(HandshakeOutcome::Rejected));
    assert_eq!(server_err.status(), Some(403));
}

#[tokio::test]
async fn connect_and_accept_open_wrapped_connections_and_a_bad_config_is_refused() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = Config::new().accept(tcp).await.unwrap();
        assert_eq!(ws.state(), State::Open);
        while let Some(Ok(_)) = ws.next().await {}
        ws.report().unwrap()
    });
    let (mut ws, response) = bounded(Config::new().connect(format!("ws://{addr}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let report = bounded(ws.close(1000, "bye")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(bounded(server).await.unwrap().outcome, Outcome::Clean);

    assert_eq!(Config::new().handshake_timeout(), Duration::from_secs(10));
    let config = Config::new()
        .with_handshake_timeout(Duration::from_secs(3))
        .unwrap();
    assert_eq!(config.handshake_timeout(), Duration::from_secs(3));
    for bad in [Duration::ZERO, Duration::from_secs(601)] {
        let err = Config::new().with_handshake_timeout(bad).unwrap_err();
        assert!(err.is_config(), "{err}");
    }
}

/// A client whose server never answers ends at its own handshake deadline.
#[tokio::test]
async fn a_client_handshake_to_a_silent_server_times_out() {
    let (listener, addr) = listener().await;
    let hold = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tcp);
    });
    let config = Config::new()
        .with_handshake_timeout(Duration::from_millis(200))
        .unwrap();
    let err = bounded(config.connect(format!("ws://{addr}/")))
        .await
        .unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Timeout), "{err}");
    hold.abort();
}

/// 1,000 clients upgrading while a drain starts: every one gets an answer, either
/// `503` or the upgrade followed by a Close 1001; none is reset without one. The report counts
/// both kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_during_a_drain_are_all_answered_and_counted() {
    const CLIENTS: usize = 1000;
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(mut ws) = config.accept(tcp).await {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            });
        }
    });
    // Every client is connected (its TCP accepted) before the drain; they send their upgrade
    // requests as the drain starts.
    let go = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let go = go.clone();
        clients.spawn(async move {
            go.wait().await;
            let request = format!("ws://{addr}/");
            match tokio_tungstenite::client_async(request, tcp).await {
                Ok((mut ws, _)) => match bounded(ws.next()).await {
                    Some(Ok(msg)) if msg.is_close() => {
                        let code = match msg {
                            tokio_tungstenite::tungstenite::Message::Close(Some(f)) => {
                                u16::from(f.code)
                            }
                            _ => 0,
                        };
                        assert_eq!(code, 1001);
                        "closed 1001"
                    }
                    other => panic!("upgraded, then {other:?}"),
                },
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
                    "refused 503"
                }
                Err(e) => panic!("no answer: {e}"),
            }
        });
    }
    until(|| registry.connecting() >= CLIENTS).await;
    let shutdown = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.shutdown(1001, Duration::from_secs(20)).await })
    };
    go.wait().await;
    let mut refused = 0;
    let mut closed = 0;
    while let Some(r) = bounded(clients.join_next()).await {
        match r.unwrap() {
            "refused 503" => refused += 1,
            _ => closed += 1,
        }
    }
    let report = bounded(shutdown).await.unwrap().unwrap();
    assert_eq!(refused + closed, CLIENTS);
    assert_eq!(report.handshakes_refused, refused, "{report}");
    assert_eq!(report.connections, closed, "{report}");
    assert_eq!(report.handshakes_cut, 0, "{report}");
    assert_eq!(registry.connecting(), 0);
    server.abort();
}

/// A drain's grace period ends with handshakes still waiting for their request: they are cut,
/// and the report says how many.
#[tokio::test]
async fn a_drain_cuts_handshakes_that_never_send_their_request() {
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = {
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let config = config.clone();
                let outcomes = outcomes.clone();
                tokio::spawn(async move {
                    let end = config.accept(tcp).await.map(|_| ()).unwrap_err();
                    outcomes.lock().unwrap().push(end.handshake());
                });
            }
        })
    };
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(HALF_REQUEST).await.unwrap();
        stalled.push(tcp);
    }
    until(|| registry.connecting() >= 3).await;
    let report = bounded(registry.shutdown(1001, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(report.handshakes_cut, 3, "{report}");
    assert_eq!(registry.connecting(), 0);
    assert!(
        report.to_string().ends_with("handshakes refused 0, cut 3"),
        "{report}"
    );
    until(|| outcomes.lock().unwrap().len() >= 3).await;
    assert!(
        outcomes
            .lock()
            .unwrap()
            .iter()
            .all(|o| *o == Some(HandshakeOutcome::Timeout))
    );
    for mut tcp in stalled {
        assert_eq!(read_to_close(&mut tcp).await, b"", "cut without an answer");
    }
    server.abort();
}

/// axum upgrades through `Config::on_upgrade` and `Config::reject_upgrade`.
#[cfg(feature = "axum")]
mod axum_upgrades {
    use axum::Router;
    use axum::extract::State;
    use axum::extract::ws::WebSocketUpgrade;
    use axum::http::HeaderMap;
    use axum::response::Response;
    use axum::routing::get;

    use super::*;

    async fn handler(
        State(config): State<Config>,
        headers: HeaderMap,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        if !headers.contains_key("authorization") {
            return config.reject_upgrade(axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down");
        }
        config.on_upgrade(upgrade, |mut ws| async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
        })
    }

    async fn serve(config: Config) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let (listener, addr) = listener().await;
        let app = Router::new().route("/ws", get(handler)).with_state(config);
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, server)
    }

    fn request(
        addr: SocketAddr,
        auth: bool,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        if auth {
            req.headers_mut()
                .insert("authorization", "token".parse().unwrap());
        }
        req
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_axum_upgrade_is_accepted_refused_or_refused_during_a_drain() {
        let (logs, _g) = logs::capture();
        let registry = Registry::new();
        let (addr, server) = serve(Config::new().with_registry(registry.clone())).await;

        // Accepted: an echo through the wrapped socket.
        let (mut ws, _) = bounded(Config::new().connect(request(addr, true)))
            .await
            .unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
            .await
            .unwrap();
        assert_eq!(
            bounded(ws.recv())
                .await
                .unwrap()
                .unwrap()
                .to_text()
                .unwrap(),
            "hi"
        );
        assert_eq!(registry.len(), 1);

        // Refused by the application: the client sees 429.
        let err = bounded(Config::new().connect(request(addr, false)))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(429), "{err}");

        // During a drain: 503, counted in the report; the open connection gets 1001.
        let shutdown = {
            let registry = registry.clone();
            tokio::spawn(async move { registry.shutdown(1001, Duration::from_secs(10)).await })
        };
        while let Some(Ok(_)) = bounded(ws.recv()).await {}
        let report = ws.report().unwrap();
        assert_eq!(report.code_received, Some(wsclose::WireCode::Valid(1001)));
        let err = bounded(Config::new().connect(request(addr, true)))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        let report = bounded(shutdown).await.unwrap().unwrap();
        assert_eq!(report.connections, 1, "{report}");
        let refused_late = registry.connecting();
        assert_eq!(refused_late, 0);

        let server_ends: Vec<_> = logs
            .with_message("websocket handshake ended")
            .into_iter()
            .filter(|r| r.field("role") == Some("server"))
            .map(|r| {
                (
                    r.field("outcome").unwrap().to_owned(),
                    r.field("status").map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            server_ends,
            [
                ("accepted".to_owned(), None),
                ("rejected".to_owned(), Some("429".to_owned())),
                ("rejected".to_owned(), Some("503".to_owned())),
            ],
            "{:?}",
            logs.records()
        );
        server.abort();
    }

    /// Between the handler and the upgraded socket an axum connection is `Connecting` in its
    /// registry; a close through that handle is applied right after the upgrade.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_axum_upgrade_is_connecting_in_its_registry_until_upgraded() {
        async fn closes_while_connecting(
            State((config, registry)): State<(Config, Registry)>,
            upgrade: WebSocketUpgrade,
        ) -> Response {
            let response = config.on_upgrade(upgrade, |mut ws| async move {
                while let Some(Ok(_)) = ws.recv().await {}
            });
            let connecting: Vec<_> = registry
                .handles()
                .into_iter()
                .filter(|h| h.state() == wsclose::State::Connecting)
                .collect();
            assert_eq!(connecting.len(), 1, "this upgrade, before its 101");
            assert!(connecting[0].start_close(4001, "not now").unwrap());
            response
        }
        let registry = Registry::new();
        let config = Config::new().with_registry(registry.clone());
        let (listener, addr) = listener().await;
        let app = Router::new()
            .route("/ws", get(closes_while_connecting))
            .with_state((config, registry.clone()));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (mut ws, response) = bounded(tokio_tungstenite::connect_async(request(addr, true)))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        let frame = match bounded(ws.next()).await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => frame.unwrap(),
            other => panic!("expected a Close frame, got {other:?}"),
        };
        assert_eq!(u16::from(frame.code), 4001);
        assert_eq!(frame.reason.as_str(), "not now");
        while bounded(ws.next()).await.is_some() {}
        until(|| registry.is_empty() && registry.connecting() == 0).await;
        server.abort();
    }
}

/// Every outcome is counted once, with its duration, and `accepted` equals `opened_total` for
/// connections whose handshake the crate ran.
#[tokio::test(flavor = "current_thread")]
async fn each_outcome_is_counted_once_and_accepted_equals_opened() {
    let (m, _g) = support::recorder::install();
    let (listener, addr) = listener().await;
    let config = Config::new()
        .with_handshake_timeout(Duration::from_millis(200))
        .unwrap();
    let server = tokio::spawn(async move {
        let mut ends = Vec::new();
        // accepted, then rejected, then failed (malformed), then timeout (half a request).
        for i in 0..4 {
            let (tcp, _) = listener.accept().await.unwrap();
            #[allow(clippy::result_large_err)] // tungstenite's `Callback` signature
            let refuse_second = move |_: &Request, resp: Response| {
                if i == 1 {
                    Err(wsclose::reject(StatusCode::TOO_MANY_REQUESTS, "later"))
                } else {
                    Ok(resp)
                }
            };
            match config.accept_with(tcp, refuse_second).await {
                Ok(mut ws) => {
                    while let Some(Ok(_)) = ws.recv().await {}
                    ends.push(HandshakeOutcome::Accepted);
                }
                Err(e) => ends.push(e.handshake().unwrap()),
            }
        }
        ends
    });
    let (mut ws, _) = bounded(Config::new().connect(format!("ws://{addr}/")))
        .await
        .unwrap();
    bounded(ws.close(1000, "")).await.unwrap();
    let refused = bounded(Config::new().connect(format!("ws://{addr}/"))).await;
    assert_eq!(refused.unwrap_err().status(), Some(429));
    let mut malformed = TcpStream::connect(addr).await.unwrap();
    malformed
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(HALF_REQUEST).await.unwrap();
    let ends = bounded(server).await.unwrap();
    assert_eq!(
        ends,
        [
            HandshakeOutcome::Accepted,
            HandshakeOutcome::Rejected,
            HandshakeOutcome::Failed,
            HandshakeOutcome::Timeout
        ]
    );
    drop((malformed, stalled));

    let handshakes = |role: &str, outcome: HandshakeOutcome| {
        m.counter(
            "websocket_handshakes_total",
            &[("role", role), ("outcome", outcome.as_str())],
        )
    };
    for &outcome in HandshakeOutcome::ALL {
        assert_eq!(handshakes("server", outcome), 1, "{outcome}\n{}", m.dump());
        let durations = m.histogram(
            "websocket_handshake_duration_seconds",
            &[("role", "server"), ("outcome", outcome.as_str())],
        );
        assert_eq!(durations.len(), 1, "{outcome}");
    }
    assert_eq!(handshakes("client", HandshakeOutcome::Accepted), 1);
    assert_eq!(handshakes("client", HandshakeOutcome::Rejected), 1);
    for role in ["server", "client"] {
        let opened = m.counter("websocket_connections_opened_total", &[("role", role)]);
        assert_eq!(
            handshakes(role, HandshakeOutcome::Accepted),
            opened,
            "{role}: accepted = opened_total"
        );
        m.assert_balanced(role);
    }
}

/// The duration runs from the request's first byte (a server on a TCP stream), not from the
/// call: a client that connects and waits before it sends its request does not inflate it.
/// A peer that sends nothing is timed from the call, and ends at the deadline.
#[tokio::test(flavor = "current_thread")]
async fn the_duration_runs_from_the_first_byte_of_the_request() {
    let (m, _g) = support::recorder::install();
    let (listener, addr) = listener().await;
    // The idle client's handshake has the default 10 s deadline; the silent peer's is short.
    let short = Config::new()
        .with_handshake_timeout(Duration::from_millis(1500))
        .unwrap();
    let server = tokio::spawn(async move {
        let mut ends = Vec::new();
        for config in [Config::new(), short] {
            let (tcp, _) = listener.accept().await.unwrap();
            ends.push(
                config
                    .accept(tcp)
                    .await
                    .map(drop)
                    .map_err(|e| e.handshake()),
            );
        }
        ends
    });
    // Connects, idles 1 s, then upgrades.
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = std::time::Instant::now();
    let (ws, _) = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await
    .unwrap();
    let answered = sent.elapsed().as_secs_f64();
    // Sends nothing at all.
    let silent = TcpStream::connect(addr).await.unwrap();
    let ends = bounded(server).await.unwrap();
    assert_eq!(ends, [Ok(()), Err(Some(HandshakeOutcome::Timeout))]);
    drop((ws, silent));

    let duration = |outcome: &str| {
        m.histogram(
            "websocket_handshake_duration_seconds",
            &[("role", "server"), ("outcome", outcome)],
        )
    };
    let accepted = duration("accepted");
    assert_eq!(accepted.len(), 1);
    // The first byte left after `sent`, the answer arrived before `answered`: from the call,
    // it would include the idle second.
    assert!(
        accepted[0] <= answered,
        "{} s recorded, {answered} s from the request to the answer",
        accepted[0]
    );
    let timeout = duration("timeout");
    assert!(
        timeout[0] >= 1.5,
        "{timeout:?}: timed from the call, not before the deadline"
    );
}
