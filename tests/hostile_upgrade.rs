//! An upgrade request over tungstenite's limits (a head over 64 KiB: `AttackAttempt`) is the
//! peer's protocol error, not an I/O error: counted as a `failed` handshake whose connection
//! reads `protocol_error`/`peer`, logged at DEBUG (any peer can send one: no WARN for it).

mod support;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Level;
use wsclose::{Cause, Config, HandshakeOutcome, Outcome};

use support::logs;
use support::pairs::bounded;

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_upgrade_head_is_a_quiet_protocol_error() {
    let (logs, _g) = logs::capture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let handshake = Config::new().accept(tcp);
        let handle = handshake.handle();
        (handshake.await.map(drop), handle)
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 80 * 1024));
    // The server may stop reading (and close) before all of it is written.
    let _ = peer.write_all(&head).await;
    let (result, handle) = bounded(server).await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
    let report = handle.report().expect("ended");
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{report:?}"
    );
    assert!(
        logs.at_level(Level::WARN).is_empty(),
        "{:?}",
        logs.records()
    );
    let ends = logs.with_message("websocket handshake ended");
    assert_eq!(ends.len(), 1, "{:?}", logs.records());
    assert_eq!(ends[0].level, Level::DEBUG);
    drop(peer);
}

/// The same from a server: a response head over the limit, to a client handshake.
#[tokio::test(flavor = "current_thread")]
async fn an_oversized_response_head_is_a_quiet_protocol_error() {
    use tokio::io::AsyncReadExt;
    let (logs, _g) = logs::capture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = tcp.read(&mut request).await;
        let mut head = b"HTTP/1.1 101 Switching Protocols\r\nX-Padding: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 80 * 1024));
        let _ = tcp.write_all(&head).await;
        tcp
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let handshake = Config::new().client_handshake(format!("ws://{addr}/"), tcp);
    let handle = handshake.handle();
    let err = bounded(handshake).await.map(drop).unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
    let report = handle.report().expect("ended");
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{report:?}"
    );
    assert!(
        logs.at_level(Level::WARN).is_empty(),
        "{:?}",
        logs.records()
    );
    drop(bounded(server).await);
}
