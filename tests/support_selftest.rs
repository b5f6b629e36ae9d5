//! Self-test of `tests/support`: the raw peer and the fault proxy against real
//! tokio-tungstenite peers and plain TCP over 127.0.0.1.

mod support;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::proxy::{Direction, FaultProxy};
use support::raw::{self, OP_CLOSE, OP_TEXT, RawPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, accept_async, client_async};

/// Bound for anything that should happen promptly.
const T: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

type ServerWs = WebSocketStream<TcpStream>;

/// Accepts one connection on `listener` as a tokio-tungstenite server.
async fn ws_accept(listener: &TcpListener) -> ServerWs {
    let (tcp, _) = timeout(T, listener.accept()).await.unwrap().unwrap();
    timeout(T, accept_async(tcp)).await.unwrap().unwrap()
}

/// Next item from a tungstenite stream, bounded.
async fn ws_next<S>(ws: &mut WebSocketStream<S>) -> Option<Result<Message, WsError>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    timeout(T, ws.next())
        .await
        .expect("tungstenite read timed out")
}

fn close_of(msg: Message) -> Option<CloseFrame> {
    match msg {
        Message::Close(frame) => frame,
        other => panic!("expected Close, got {other:?}"),
    }
}

#[tokio::test]
async fn raw_client_against_tungstenite_server() {
    let (listener, addr) = raw::listener().await;
    let server = tokio::spawn(async move {
        let mut ws = ws_accept(&listener).await;
        let msg = ws_next(&mut ws).await.unwrap().unwrap();
        assert_eq!(msg, Message::text("hello from raw"));
        ws.send(Message::text("hello from server")).await.unwrap();
        let close = close_of(ws_next(&mut ws).await.unwrap().unwrap()).unwrap();
        assert_eq!(close.code, CloseCode::Normal);
        assert_eq!(close.reason.as_str(), "bye");
        // Driving the stream flushes the queued close reply; the handshake is then complete.
        let after = ws_next(&mut ws).await;
        assert!(after.is_none(), "after close handshake: {after:?}");
        drop(ws);
    });

    let mut peer = timeout(T, RawPeer::connect(addr)).await.unwrap().unwrap();
    peer.send_text("hello from raw").await.unwrap();
    let frame = peer.read_frame_timeout(T).await.unwrap().unwrap();
    assert_eq!(
        (frame.fin, frame.opcode, frame.masked),
        (true, OP_TEXT, false)
    );
    assert_eq!(frame.text(), Some("hello from server"));

    peer.send_close(Some(1000), b"bye").await.unwrap();
    let frames = peer.read_all_until_eof(T).await.unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(frames[0].is_close());
    assert_eq!(frames[0].close_code(), Some(1000));
    assert_eq!(frames[0].close_reason(), b"bye");
    assert!(!frames[0].masked);
    timeout(T, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn raw_server_against_tungstenite_client() {
    let (listener, addr) = raw::listener().await;
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, response) = timeout(T, client_async(format!("ws://{addr}/"), tcp))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 101);
        ws.send(Message::text("hello from client")).await.unwrap();
        ws.close(None).await.unwrap();
        // The raw server's close reply, then the end of the stream.
        let reply = ws_next(&mut ws).await.unwrap().unwrap();
        assert_eq!(reply, Message::Close(None));
        let after = ws_next(&mut ws).await;
        assert!(after.is_none(), "after close handshake: {after:?}");
    });

    let mut peer = timeout(T, RawPeer::accept(&listener))
        .await
        .unwrap()
        .unwrap();
    let text = peer.read_frame_timeout(T).await.unwrap().unwrap();
    assert_eq!((text.fin, text.opcode, text.masked), (true, OP_TEXT, true));
    assert_eq!(text.text(), Some("hello from client"));

    let close = peer.read_frame_timeout(T).await.unwrap().unwrap();
    assert_eq!(
        (close.fin, close.opcode, close.masked),
        (true, OP_CLOSE, true)
    );
    assert_eq!(close.close_code(), None);
    assert!(close.payload.is_empty());

    peer.send_close(None, b"").await.unwrap();
    peer.shutdown_write().await.unwrap();
    let rest = peer.read_all_until_eof(T).await.unwrap();
    assert!(rest.is_empty(), "frames after the client's close: {rest:?}");
    timeout(T, client).await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_close_code_is_answered_with_1002() {
    let (listener, addr) = raw::listener().await;
    let server = tokio::spawn(async move {
        let mut ws = ws_accept(&listener).await;
        // tungstenite reports the close it replied with, not the invalid one it received.
        let close = close_of(ws_next(&mut ws).await.unwrap().unwrap()).unwrap();
        assert_eq!(close.code, CloseCode::Protocol);
        assert_eq!(close.reason.as_str(), "Protocol violation");
        let after = ws_next(&mut ws).await;
        assert!(after.is_none(), "after close handshake: {after:?}");
    });

    let mut peer = timeout(T, RawPeer::connect(addr)).await.unwrap().unwrap();
    peer.send_close(Some(999), b"").await.unwrap();
    let frames = peer.read_all_until_eof(T).await.unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1002));
    assert_eq!(frames[0].close_reason(), b"Protocol violation");
    timeout(T, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn raw_reset_is_seen_as_connection_reset() {
    let (listener, addr) = raw::listener().await;
    let server = tokio::spawn(async move {
        let mut ws = ws_accept(&listener).await;
        assert_eq!(ws_next(&mut ws).await.unwrap().unwrap(), Message::text("x"));
        ws_next(&mut ws).await
    });

    let mut peer = timeout(T, RawPeer::connect(addr)).await.unwrap().unwrap();
    peer.send_text("x").await.unwrap();
    peer.reset();
    match timeout(T, server).await.unwrap().unwrap() {
        Some(Err(WsError::Io(e))) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Io(ConnectionReset), got {other:?}"),
    }
}

#[tokio::test]
async fn raw_peer_fin_without_close_is_reset_without_closing_handshake() {
    let (listener, addr) = raw::listener().await;
    let server = tokio::spawn(async move {
        let mut ws = ws_accept(&listener).await;
        ws_next(&mut ws).await
    });
    let mut peer = timeout(T, RawPeer::connect(addr)).await.unwrap().unwrap();
    peer.shutdown_write().await.unwrap();
    match timeout(T, server).await.unwrap().unwrap() {
        Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {}
        other => panic!("expected ResetWithoutClosingHandshake, got {other:?}"),
    }
    assert_eq!(peer.read_all_until_eof(T).await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// proxy

/// A plain TCP upstream: accepts `conns` connections and runs `serve` on each.
fn tcp_upstream<F, Fut>(
    listener: TcpListener,
    conns: usize,
    serve: F,
) -> JoinHandle<Vec<Fut::Output>>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (tcp, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(serve(tcp)));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    })
}

/// Echoes until EOF; returns how many bytes it echoed.
async fn echo(mut tcp: TcpStream) -> io::Result<u64> {
    let (mut rx, mut tx) = tcp.split();
    tokio::io::copy(&mut rx, &mut tx).await
}

/// Reads until EOF or error; returns the byte count, or the error kind.
async fn sink(mut tcp: TcpStream) -> Result<u64, io::ErrorKind> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) => return Err(e.kind()),
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = timeout(T, TcpStream::connect(addr)).await.unwrap().unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

#[tokio::test]
async fn proxy_echo_counts_exact_bytes() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 1, echo);
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert!(proxy.wait_connections(1, T).await);
    assert_eq!(proxy.connections(), 1);

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rx, mut tx) = client.split();
    let write = async {
        tx.write_all(&data).await.unwrap();
        tx.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let read = rx.read_to_end(&mut back);
    timeout(T, async { tokio::join!(write, read).1 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, data);
    // Half-close was forwarded: the upstream saw EOF after exactly all the bytes.
    assert_eq!(
        timeout(T, upstream).await.unwrap().unwrap()[0]
            .as_ref()
            .unwrap(),
        &100_000
    );
    assert_eq!(proxy.bytes(Direction::ClientToServer), 100_000);
    assert_eq!(proxy.bytes(Direction::ServerToClient), 100_000);
    drop(client);
    assert!(proxy.wait_connections(0, T).await);
}

#[tokio::test]
async fn proxy_websocket_round_trip() {
    let (listener, up) = raw::listener().await;
    let server = tokio::spawn(async move {
        let mut ws = ws_accept(&listener).await;
        while let Some(msg) = ws_next(&mut ws).await {
            match msg.unwrap() {
                msg @ Message::Text(_) => ws.send(msg).await.unwrap(),
                Message::Close(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut peer = timeout(T, RawPeer::connect(proxy.addr()))
        .await
        .unwrap()
        .unwrap();
    peer.send_text("ping").await.unwrap();
    assert_eq!(
        peer.read_frame_timeout(T).await.unwrap().unwrap().text(),
        Some("ping")
    );
    peer.send_close(Some(1001), b"").await.unwrap();
    let frames = peer.read_all_until_eof(T).await.unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1001));
    timeout(T, server).await.unwrap().unwrap();
    drop(peer);
    assert!(proxy.wait_connections(0, T).await);
}

#[tokio::test]
async fn proxy_stall_and_resume() {
    let (listener, up) = raw::listener().await;
    let _upstream = tcp_upstream(listener, 1, echo);
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.stall(Direction::ServerToClient);
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"abc").await.unwrap();

    let mut buf = [0u8; 3];
    assert!(
        timeout(QUIET, client.read_exact(&mut buf)).await.is_err(),
        "read while stalled"
    );
    assert_eq!(proxy.bytes(Direction::ClientToServer), 3);
    assert_eq!(proxy.bytes(Direction::ServerToClient), 0);

    proxy.resume(Direction::ServerToClient);
    timeout(T, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"abc");
    assert_eq!(proxy.bytes(Direction::ServerToClient), 3);
}

#[tokio::test]
async fn proxy_stall_builds_backpressure() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 1, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.stall(Direction::ClientToServer);
    let client = connect(proxy.addr()).await;

    // Write until the socket stays unwritable for QUIET: the buffers are full.
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0u64;
    let cap = 512 * 1024 * 1024;
    while written < cap {
        match client.try_write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if timeout(QUIET, client.writable()).await.is_err() {
                    break;
                }
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(written < cap, "writer never blocked");
    assert_eq!(proxy.bytes(Direction::ClientToServer), 0);

    proxy.resume(Direction::ClientToServer);
    let mut client = client;
    client.shutdown().await.unwrap();
    let received = timeout(T, upstream).await.unwrap().unwrap()[0].unwrap();
    assert_eq!(received, written);
    assert_eq!(proxy.bytes(Direction::ClientToServer), written);
}

#[tokio::test]
async fn proxy_delay_holds_each_chunk() {
    let (listener, up) = raw::listener().await;
    let _upstream = tcp_upstream(listener, 1, echo);
    let proxy = FaultProxy::start(up).await.unwrap();
    // Long enough that an undelayed round trip on a busy machine stays well under it.
    let delay = Duration::from_secs(1);
    proxy.set_delay(Direction::ClientToServer, delay);
    let mut client = connect(proxy.addr()).await;
    let started = tokio::time::Instant::now();
    client.write_all(b"d").await.unwrap();
    let mut buf = [0u8; 1];
    timeout(T, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= delay, "took {took:?}");

    proxy.set_delay(Direction::ClientToServer, Duration::ZERO);
    let started = tokio::time::Instant::now();
    client.write_all(b"e").await.unwrap();
    timeout(T, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < delay, "took {:?}", started.elapsed());
    assert_eq!(proxy.bytes(Direction::ServerToClient), 2);
}

#[tokio::test]
async fn proxy_cut_after_exact_bytes() {
    let (listener, up) = raw::listener().await;
    let data: Vec<u8> = (0..100u8).collect();
    let sent = data.clone();
    let upstream = tcp_upstream(listener, 1, move |mut tcp: TcpStream| {
        let data = sent.clone();
        async move {
            tcp.write_all(&data).await.unwrap();
            sink(tcp).await
        }
    });
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.cut_after(Direction::ServerToClient, 37);
    let mut client = connect(proxy.addr()).await;
    let mut got = Vec::new();
    timeout(T, client.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, data[..37]);
    assert_eq!(proxy.bytes(Direction::ServerToClient), 37);
    assert_eq!(proxy.bytes(Direction::ClientToServer), 0);
    assert!(proxy.wait_connections(0, T).await);
    // The upstream socket was closed too: the upstream read EOF after 0 bytes from the client.
    assert_eq!(timeout(T, upstream).await.unwrap().unwrap(), vec![Ok(0)]);
}

#[tokio::test]
async fn proxy_cut_after_client_to_server_fires_once() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 2, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.cut_after(Direction::ClientToServer, 5);

    let mut first = connect(proxy.addr()).await;
    first.write_all(b"0123456789").await.unwrap();
    let mut got = Vec::new();
    timeout(T, first.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty());
    assert!(proxy.wait_connections(0, T).await);
    assert_eq!(proxy.bytes(Direction::ClientToServer), 5);

    // The cut fired once: the next connection goes through whole.
    let mut second = connect(proxy.addr()).await;
    second.write_all(b"abcdefghij").await.unwrap();
    second.shutdown().await.unwrap();
    assert_eq!(
        timeout(T, upstream).await.unwrap().unwrap(),
        vec![Ok(5), Ok(10)]
    );
    assert_eq!(proxy.bytes(Direction::ClientToServer), 15);
}

#[tokio::test]
async fn proxy_reset_all_resets_both_sides() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 1, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"hi").await.unwrap();
    assert!(proxy.wait_bytes(Direction::ClientToServer, 2, T).await);
    assert_eq!(proxy.connections(), 1);
    proxy.reset_all();

    let mut buf = [0u8; 16];
    let err = timeout(T, client.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let up_result = timeout(T, upstream).await.unwrap().unwrap();
    assert_eq!(up_result, vec![Err(io::ErrorKind::ConnectionReset)]);
    assert!(proxy.wait_connections(0, T).await);
    assert_eq!(proxy.bytes(Direction::ClientToServer), 2);
}

#[tokio::test]
async fn proxy_forwards_a_peer_reset() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 1, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    let client = connect(proxy.addr()).await;
    assert!(proxy.wait_connections(1, T).await);
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let up_result = timeout(T, upstream).await.unwrap().unwrap();
    assert_eq!(up_result, vec![Err(io::ErrorKind::ConnectionReset)]);
    assert!(proxy.wait_connections(0, T).await);
}

#[tokio::test]
async fn proxy_close_all_sends_fin_both_ways() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 1, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"hello").await.unwrap();
    // Wait until the bytes went through, so the upstream's count is exact.
    assert!(proxy.wait_bytes(Direction::ClientToServer, 5, T).await);
    assert_eq!(proxy.connections(), 1);
    proxy.close_all();

    let mut buf = [0u8; 16];
    assert_eq!(timeout(T, client.read(&mut buf)).await.unwrap().unwrap(), 0);
    assert_eq!(timeout(T, upstream).await.unwrap().unwrap(), vec![Ok(5)]);
    drop(client);
    assert!(proxy.wait_connections(0, T).await);
}

#[tokio::test]
async fn proxy_stop_ends_everything() {
    let (listener, up) = raw::listener().await;
    let upstream = tcp_upstream(listener, 2, sink);
    let proxy = FaultProxy::start(up).await.unwrap();
    let addr = proxy.addr();
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    assert!(proxy.wait_connections(2, T).await);
    timeout(T, proxy.stop()).await.unwrap();

    let mut buf = [0u8; 16];
    assert_eq!(timeout(T, a.read(&mut buf)).await.unwrap().unwrap(), 0);
    assert_eq!(timeout(T, b.read(&mut buf)).await.unwrap().unwrap(), 0);
    assert_eq!(
        timeout(T, upstream).await.unwrap().unwrap(),
        vec![Ok(0), Ok(0)]
    );
    let refused = timeout(T, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
