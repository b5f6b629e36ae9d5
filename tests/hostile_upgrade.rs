//! A head over tungstenite's limits (64 KiB: `AttackAttempt`) is the peer's protocol error, not
//! an I/O error: counted as a `failed` handshake whose connection reads `protocol_error`/`peer`,
//! logged at DEBUG (any peer can send one: no WARN for it). The server's side, an upgrade
//! request, is in tests/hostile.rs with the other hostile peers; this is the client's side.

mod support;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Level;
use wsclose::{Cause, Config, HandshakeOutcome, Outcome};

use support::logs;
use support::pairs::bounded;

/// A server's response head over the limit, to a client handshake.
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
