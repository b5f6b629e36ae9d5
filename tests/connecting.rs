//! The `Connecting` state: a connection's handle from the start of the handshake the crate
//! runs, in a registry's list, through the upgrade (the same handle, the same id) or its
//! failure; a close while connecting is a rejection.
//!
//! Peers are real sockets: tokio-tungstenite clients and servers, raw TCP peers.

// tungstenite's `Callback` signature returns its `ErrorResponse` by value.
#![allow(clippy::result_large_err)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wsclose::{Cause, Config, Handle, HandshakeOutcome, Outcome, Registry, State, WireCode};

/// A server connection wrapped after the crate's handshake.
type Ws = wsclose::WebSocket<WebSocketStream<TcpStream>>;

use support::logs;
use support::pairs::{bounded, until};

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// The server's handshake on a fresh TCP connection to `listener`, spawned: the peer's end,
/// the connection's handle (still connecting), and the task that ends with the handshake.
async fn accepting(
    config: &Config,
    listener: &TcpListener,
    addr: SocketAddr,
) -> (TcpStream, Handle, JoinHandle<Result<Ws, wsclose::Error>>) {
    let (peer, server_tcp) = tcp_pair(listener, addr).await;
    let handshake = config.accept(server_tcp);
    let handle = handshake.handle();
    (peer, handle, tokio::spawn(handshake))
}

/// A configuration whose close deadline outlasts any step of a test (each step is bounded
/// by `bounded`, 10 s): a close that waits for the peer never ends at its deadline on a slow
/// machine.
fn patient() -> Config {
    Config::new()
        .with_close_timeout(Duration::from_secs(60))
        .unwrap()
}

/// A TCP connection to `listener`: the peer's end and the server's.
async fn tcp_pair(listener: &TcpListener, addr: SocketAddr) -> (TcpStream, TcpStream) {
    let peer = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (peer, server)
}

/// A server connection is `Connecting` (in its handle and its registry) until the upgrade;
/// then the same handle, with the same id, is the open connection's, and closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connecting_handle_becomes_the_open_connections_handle() {
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let (tcp, server_tcp) = tcp_pair(&listener, addr).await;

    let handshake = config.accept(server_tcp);
    let handle = handshake.handle();
    assert_eq!(handle.state(), State::Connecting);
    assert_eq!(handle.state().to_string(), "connecting");
    assert_eq!(handle.report(), None);
    assert!(format!("{handle:?}").contains("Connecting"), "{handle:?}");
    let debug = format!("{handshake:?}");
    assert!(
        debug.starts_with("Handshake") && debug.contains(&format!("id: {}", handle.id())),
        "{debug}"
    );
    // Like any future, it starts when polled: listed from then on.
    assert_eq!(registry.connecting(), 0, "not polled yet");
    let server = tokio::spawn(handshake);
    until(|| registry.connecting() == 1).await;
    assert_eq!(registry.len(), 0, "not open yet");
    let listed = registry.handles();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), handle.id());
    assert_eq!(listed[0].state(), State::Connecting);

    let (mut client, _) = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await
    .unwrap();
    let ws = bounded(server).await.unwrap().unwrap();
    assert_eq!(ws.handle().id(), handle.id(), "one connection, one id");
    assert_eq!(handle.state(), State::Open);
    assert_eq!(registry.connecting(), 0);
    let listed = registry.handles();
    assert_eq!(listed.len(), 1, "listed once");
    assert_eq!(listed[0].id(), handle.id());

    // The handle taken while connecting closes the open connection.
    let closing = tokio::spawn({
        let handle = handle.clone();
        async move { handle.close(4000, "from the early handle").await }
    });
    let frame = loop {
        match bounded(client.next()).await {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a Close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 4000);
    assert_eq!(frame.reason.as_str(), "from the early handle");
    drop(client); // the reply is sent by the library when polled; dropping ends the TCP
    let report = bounded(closing).await.unwrap().unwrap();
    assert_eq!(report.cause, Cause::App);
    assert_eq!(report.code_sent, Some(WireCode::Valid(4000)));
    assert_eq!(handle.state(), State::Closed);
    drop(ws);
}

/// A close through the handle of a connection still connecting: the upgrade request, when it
/// arrives, is answered 503 with the reason as body; the handle reports a clean end without
/// a Close frame; the handshake is counted and logged once as `rejected`.
#[tokio::test(flavor = "current_thread")]
async fn a_close_while_connecting_refuses_the_upgrade_with_503() {
    let (logs, _g) = logs::capture();
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = patient().with_registry(registry.clone());
    let (tcp, handle, server) = accepting(&config, &listener, addr).await;

    // The request has not arrived: the close waits for it (within the close deadline).
    let closing = tokio::spawn({
        let handle = handle.clone();
        async move { handle.close(1013, "try again later").await }
    });
    // Like the WebSocket API's `readyState`: a close while connecting is `Closing`.
    until(|| handle.state() == State::Closing(Cause::App)).await;
    assert!(!closing.is_finished());
    let err = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await
    .unwrap_err();
    let WsError::Http(response) = err else {
        panic!("expected an HTTP answer, got {err}");
    };
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.body().as_deref(),
        Some(&b"try again later"[..]),
        "the reason is the body"
    );

    let server_err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(server_err.handshake(), Some(HandshakeOutcome::Rejected));
    assert_eq!(server_err.status(), Some(503));
    let report = bounded(closing).await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.cause, Cause::App);
    assert_eq!(report.code_sent, None, "no Close frame while connecting");
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.report(), Some(report.clone()));
    assert_eq!(bounded(handle.closed()).await, report);
    assert_eq!(registry.connecting(), 0);
    assert!(registry.handles().is_empty());
    // A second close is a no-op.
    assert!(!handle.start_close(1000, "again").unwrap());

    let ends = logs.with_message("websocket handshake ended");
    assert_eq!(ends.len(), 1, "{:?}", logs.records());
    assert_eq!(ends[0].field("outcome"), Some("rejected"));
    assert_eq!(ends[0].field("status"), Some("503"));
    assert_eq!(ends[0].field("conn_id"), Some(&*handle.id().to_string()));
}

/// A close through the handle after the application's callback accepted the upgrade: the
/// upgrade completes and the connection is closed with that code right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_after_the_upgrade_was_answered_closes_with_its_code() {
    let (listener, addr) = listener().await;
    let (tcp, server_tcp) = tcp_pair(&listener, addr).await;
    let config = patient();
    let (tx, rx) = std::sync::mpsc::channel();
    // The callback accepts, then (as another task could) closes through the handle.
    let callback = move |_: &Request, response: Response| {
        let handle: wsclose::Handle = rx.recv().unwrap();
        assert!(handle.start_close(1012, "restarting").unwrap());
        assert_eq!(handle.state(), State::Closing(Cause::App));
        Ok(response)
    };
    let handshake = config.accept_with(server_tcp, callback);
    let handle = handshake.handle();
    tx.send(handle.clone()).unwrap();
    let server = tokio::spawn(async move {
        let mut ws = handshake.await.unwrap();
        // Closing at once: the stream ends with the report.
        while let Some(Ok(_)) = ws.next().await {}
        ws.report().unwrap()
    });
    let (mut client, response) = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    let frame = match bounded(client.next()).await {
        Some(Ok(Message::Close(frame))) => frame.unwrap(),
        other => panic!("expected a Close frame, got {other:?}"),
    };
    assert_eq!(u16::from(frame.code), 1012);
    assert_eq!(frame.reason.as_str(), "restarting");
    while bounded(client.next()).await.is_some() {} // the reply goes out; then EOF
    let report = bounded(server).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.cause, Cause::App);
    assert_eq!(report.code_sent, Some(WireCode::Valid(1012)));
    assert_eq!(bounded(handle.closed()).await, report);
}

/// A close while connecting to a peer that never sends its request ends at the close
/// deadline, not the (much longer) handshake deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_close_while_connecting_is_bounded_by_the_close_deadline() {
    let (listener, addr) = listener().await;
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(200))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(600))
        .unwrap();
    let (_silent, handle, server) = accepting(&config, &listener, addr).await;
    let report = bounded(handle.close(1001, "")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Timeout);
    assert_eq!(report.cause, Cause::App);
    let err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Timeout), "{err}");
}

/// A client gives its handshake up at once when closed through its handle.
#[tokio::test(flavor = "current_thread")]
async fn a_client_closed_while_connecting_gives_the_handshake_up_at_once() {
    let (listener, addr) = listener().await;
    let (got_request, request_seen) = tokio::sync::oneshot::channel();
    let hold = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // Reads the request and never answers; then reads until the client goes away.
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                .await
                .unwrap();
            assert!(n > 0, "EOF before the whole request");
            request.extend_from_slice(&buf[..n]);
        }
        got_request.send(request).unwrap();
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
            .await
            .unwrap()
    });
    let config = Config::new()
        .with_handshake_timeout(Duration::from_secs(600))
        .unwrap();
    let handshake = config.connect(format!("ws://{addr}/"));
    let handle = handshake.handle();
    assert_eq!(handle.role(), wsclose::Role::Client);
    assert_eq!(handle.state(), State::Connecting);
    let client = tokio::spawn(handshake);
    let request = bounded(request_seen).await.unwrap();
    assert!(request.starts_with(b"GET / HTTP/1.1"), "{request:?}");
    let report = bounded(handle.close(1000, "never mind")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.cause, Cause::App);
    let err = bounded(client).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Rejected), "{err}");
    assert_eq!(err.status(), None);
    // The socket is closed: the server reads EOF.
    assert_eq!(bounded(hold).await.unwrap(), 0);
}

/// Dropping the handshake future gives the connection up: counted `rejected` once, and its
/// handle reports the end. Failures and timeouts end the handle too.
#[tokio::test(flavor = "current_thread")]
async fn every_end_of_the_handshake_ends_the_handle() {
    let (logs, _g) = logs::capture();
    let (listener, addr) = listener().await;
    let config = Config::new()
        .with_handshake_timeout(Duration::from_millis(200))
        .unwrap();

    let mut handles = Vec::new();

    // Given up: the future is dropped before the handshake ends.
    let (_peer, tcp) = tcp_pair(&listener, addr).await;
    let handshake = config.accept(tcp);
    let handle = handshake.handle();
    handles.push(handle.id());
    drop(handshake);
    assert_eq!(handle.state(), State::Closed);
    let report = handle.report().unwrap();
    assert_eq!((report.outcome, report.cause), (Outcome::Clean, Cause::App));

    // Timed out: a peer that sends half a request.
    let (mut slow, tcp) = tcp_pair(&listener, addr).await;
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let handshake = config.accept(tcp);
    let handle = handshake.handle();
    handles.push(handle.id());
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.closed().await }
    });
    assert!(bounded(handshake).await.is_err());
    let report = bounded(waiter).await.unwrap();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Timeout, Cause::Transport)
    );

    // Failed: a malformed request.
    let (mut bad, tcp) = tcp_pair(&listener, addr).await;
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The default 10 s deadline: the request is read well before it.
    let handshake = Config::new().accept(tcp);
    let handle = handshake.handle();
    handles.push(handle.id());
    assert_eq!(
        bounded(handshake).await.unwrap_err().handshake(),
        Some(HandshakeOutcome::Failed)
    );
    let report = handle.report().unwrap();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::ProtocolError, Cause::Peer)
    );

    let ends = logs.with_message("websocket handshake ended");
    let failed = logs.with_message("websocket handshake failed");
    let outcomes: Vec<_> = ends
        .iter()
        .chain(&failed)
        .map(|r| r.field("outcome").unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["rejected", "timeout", "failed"], "{outcomes:?}");
    // Each event names its connection.
    let ids: Vec<_> = ends
        .iter()
        .chain(&failed)
        .map(|r| r.field("conn_id").unwrap().parse::<u64>().unwrap())
        .collect();
    assert_eq!(ids, handles, "{:?}", logs.records());
}

/// The metric invariants hold through closes while connecting: each handshake is counted
/// once, a connection that never opened counts no close, and `accepted` = `opened_total`.
#[tokio::test(flavor = "current_thread")]
async fn closes_while_connecting_keep_the_metric_invariants() {
    let (m, _g) = support::recorder::install();
    let (listener, addr) = listener().await;
    let config = patient()
        .with_handshake_timeout(Duration::from_secs(600))
        .unwrap();

    // Server: refused with 503 after a close through the handle.
    let (tcp, handle, server) = accepting(&config, &listener, addr).await;
    assert!(handle.start_close(1001, "").unwrap());
    assert!(!handle.start_close(1001, "again").unwrap(), "redundant");
    let refused = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await;
    assert!(matches!(refused, Err(WsError::Http(r)) if r.status() == 503));
    assert!(bounded(server).await.unwrap().is_err());

    // Server: a handshake future dropped.
    let (_peer, server_tcp) = tcp_pair(&listener, addr).await;
    drop(config.accept(server_tcp));

    // Client: given up through its handle, then a connection that opens and closes.
    let handshake = config.connect(format!("ws://{addr}/"));
    handshake.handle().start_close(1000, "").unwrap();
    assert!(bounded(handshake).await.is_err());
    let server = tokio::spawn({
        let config = config.clone();
        async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                if let Ok(mut ws) = config.accept(tcp).await {
                    while let Some(Ok(_)) = ws.recv().await {}
                    return;
                }
            }
        }
    });
    let (mut ws, _) = bounded(config.connect(format!("ws://{addr}/")))
        .await
        .unwrap();
    bounded(ws.close(1000, "")).await.unwrap();
    bounded(server).await.unwrap();

    let handshakes = |role: &str, outcome: &str| {
        m.counter(
            "websocket_handshakes_total",
            &[("role", role), ("outcome", outcome)],
        )
    };
    assert_eq!(handshakes("server", "rejected"), 2, "{}", m.dump());
    assert_eq!(handshakes("client", "rejected"), 1, "{}", m.dump());
    assert_eq!(handshakes("client", "accepted"), 1, "{}", m.dump());
    // The given-up client's socket may reach the server's accept loop first (it ends
    // `failed` there) or not at all; the one that opened is accepted once.
    assert_eq!(handshakes("server", "accepted"), 1, "{}", m.dump());
    // The repeated close while connecting (the given-up handle's close is its first).
    let redundant = |role| m.counter("websocket_close_redundant_total", &[("role", role)]);
    assert_eq!((redundant("server"), redundant("client")), (1, 0));
    for role in ["server", "client"] {
        let opened = m.counter("websocket_connections_opened_total", &[("role", role)]);
        assert_eq!(opened, 1, "{role}: only the connection that opened");
        m.assert_balanced(role);
    }
}

/// A connection refused by a drain reports `shutdown` as its cause, even with a close through
/// its handle requested too: the drain answered first.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_refused_by_a_drain_reports_the_shutdown() {
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = patient().with_registry(registry.clone());
    let (tcp, handle, server) = accepting(&config, &listener, addr).await;
    let shutdown = tokio::spawn({
        let registry = registry.clone();
        async move { registry.shutdown(1001, Duration::from_secs(30)).await }
    });
    until(|| registry.is_draining()).await;
    handle.start_close(1000, "").unwrap();
    let refused = bounded(tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tcp,
    ))
    .await;
    assert!(matches!(refused, Err(WsError::Http(r)) if r.status() == 503));
    let err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(err.status(), Some(503));
    let report = handle.report().unwrap();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Clean, Cause::Shutdown)
    );
    let shutdown = bounded(shutdown).await.unwrap().unwrap();
    assert_eq!(shutdown.handshakes_refused, 1, "{shutdown}");
}

/// A `Handshake` that is never polled does nothing: it is not listed, a shutdown does not wait
/// for it, and dropped it reports a connection given up.
#[tokio::test(flavor = "current_thread")]
async fn an_unpolled_handshake_holds_up_no_shutdown() {
    let (listener, addr) = listener().await;
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let (_peer, server_tcp) = tcp_pair(&listener, addr).await;
    let handshake = config.accept(server_tcp);
    let handle = handshake.handle();
    assert_eq!(registry.connecting(), 0);
    assert!(registry.handles().is_empty());
    // A grace period far beyond the step's limit: the shutdown must not wait for it.
    let report = bounded(registry.shutdown(1001, Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!((report.connections, report.handshakes_cut), (0, 0));
    drop(handshake);
    assert_eq!(handle.report().unwrap().cause, Cause::App);
}

/// A client's handshake has no request to refuse: a drain of its registry gives it up, both
/// one in flight when the drain begins and one that starts during the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_gives_client_handshakes_up() {
    // A server that accepts TCP and never answers.
    let (silent_listener, addr) = listener().await;
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(silent_listener.accept().await.unwrap().0);
        }
    });
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_handshake_timeout(Duration::from_secs(600))
        .unwrap();
    let connect = |config: &Config| {
        let handshake = config.connect(format!("ws://{addr}/"));
        (handshake.handle(), tokio::spawn(handshake))
    };
    let (in_flight, first) = connect(&config);
    until(|| registry.connecting() == 1).await;

    // A server handshake that never gets its request keeps the drain running until its
    // grace period ends (it is then cut).
    let (server_listener, server_addr) = listener().await;
    let _stalled = TcpStream::connect(server_addr).await.unwrap();
    let (server_tcp, _) = server_listener.accept().await.unwrap();
    let stalled_server = tokio::spawn(config.accept(server_tcp));
    until(|| registry.connecting() == 2).await;

    let shutdown = tokio::spawn({
        let registry = registry.clone();
        async move { registry.shutdown(1001, Duration::from_secs(5)).await }
    });
    let err = bounded(first).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Rejected), "{err}");
    let report = in_flight.report().unwrap();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Clean, Cause::Shutdown)
    );

    // Started during the drain: given up at once, not cut when the grace period ends.
    assert!(registry.is_draining());
    let (late, second) = connect(&config);
    let err = bounded(second).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Rejected), "{err}");
    assert_eq!(late.report().unwrap().cause, Cause::Shutdown);
    assert!(
        !shutdown.is_finished(),
        "the stalled server handshake still holds the drain"
    );

    let report = tokio::time::timeout(Duration::from_secs(60), shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.handshakes_cut, 1, "only the server's: {report}");
    let cut = bounded(stalled_server).await.unwrap().unwrap_err();
    assert_eq!(cut.handshake(), Some(HandshakeOutcome::Timeout));
    silent.abort();
}
