//! The core tests' scenario set, run back to back for one role, each asserting its own report
//! so a later metric comparison compares known ends: clean close each side, peer close with a
//! valid code, timeout, peer gone (reset and EOF), protocol error via an invalid code, send
//! after close, redundant closes, dropped messages, and dropping every handle.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use super::pairs::{Tt, bounded, wrapped_and_raw, wrapped_and_tt};

/// What [`run_all`] did, for exact expectations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub connections: u64,
    pub redundant: u64,
    pub send_after_close: u64,
    pub dropped: u64,
}

/// Reads a tokio-tungstenite peer to its end.
pub async fn drain_tt(peer: &mut Tt) {
    while let Some(msg) = bounded(peer.next()).await {
        if msg.is_err() {
            break;
        }
    }
}

async fn read_close(raw: &mut super::raw::RawPeer) -> Option<u16> {
    let f = raw
        .read_frame_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a frame");
    assert!(f.is_close(), "{f:?}");
    f.close_code()
}

/// Runs every scenario for `role`; every connection has ended when it returns.
pub async fn run_all(role: Role) -> Counts {
    let mut n = Counts::default();

    // Clean close started by us, then a send after close and two redundant closes.
    let (mut ws, mut peer) = wrapped_and_tt(role, &Config::new()).await;
    let peer_task = tokio::spawn(async move { drain_tt(&mut peer).await });
    let report = bounded(ws.close(1000, "bye")).await.unwrap();
    assert_eq!((report.outcome, report.cause), (Outcome::Clean, Cause::App));
    bounded(peer_task).await.unwrap();
    assert!(
        ws.send(Message::text("late"))
            .await
            .unwrap_err()
            .is_closed()
    );
    assert_eq!(bounded(ws.close(1000, "")).await.unwrap(), report);
    assert_eq!(bounded(ws.close(4000, "")).await.unwrap(), report);
    n.connections += 1;
    n.send_after_close += 1;
    n.redundant += 2;

    // The peer closes first with a valid application code; we answer at once.
    let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
    raw.send_close(Some(4001), b"why").await.unwrap();
    assert!(bounded(ws.next()).await.unwrap().unwrap().is_close());
    assert_eq!(read_close(&mut raw).await, Some(4001));
    if role == Role::Client {
        raw.shutdown_write().await.unwrap();
    }
    let report = bounded(ws.handle().closed()).await;
    assert_eq!(
        (report.outcome, report.cause, report.code_received),
        (Outcome::Clean, Cause::Peer, Some(WireCode::Valid(4001)))
    );
    n.connections += 1;

    // A silent peer: the close deadline passes.
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(200))
        .unwrap();
    let (mut ws, raw) = wrapped_and_raw(role, &config).await;
    let report = bounded(ws.close(1001, "")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Timeout);
    drop(raw);
    n.connections += 1;

    // The peer resets the connection while open.
    let (mut ws, raw) = wrapped_and_raw(role, &Config::new()).await;
    raw.reset();
    assert!(bounded(ws.next()).await.unwrap().is_err());
    assert!(bounded(ws.next()).await.is_none());
    assert_eq!(ws.report().unwrap().outcome, Outcome::PeerGone);
    n.connections += 1;

    // The peer's transport ends (EOF) without a Close frame.
    let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
    raw.shutdown_write().await.unwrap();
    assert!(bounded(ws.next()).await.unwrap().is_err());
    assert!(bounded(ws.next()).await.is_none());
    let report = ws.report().unwrap();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::PeerGone, Cause::Transport)
    );
    n.connections += 1;

    // An invalid close code from the peer: protocol_error, answered with 1002.
    let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
    raw.send_close(Some(5000), b"").await.unwrap();
    assert!(bounded(ws.next()).await.unwrap().unwrap().is_close());
    assert_eq!(read_close(&mut raw).await, Some(1002));
    if role == Role::Client {
        raw.shutdown_write().await.unwrap();
    }
    let report = bounded(ws.handle().closed()).await;
    assert_eq!(report.outcome, Outcome::ProtocolError, "{report:?}");
    n.connections += 1;

    // Messages the peer never reads: counted as dropped, the close times out.
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(300))
        .unwrap();
    let (mut ws, raw) = wrapped_and_raw(role, &config).await;
    let big = vec![7u8; 1 << 20];
    for _ in 0..20 {
        futures_util::Sink::start_send(std::pin::Pin::new(&mut ws), Message::binary(big.clone()))
            .unwrap();
    }
    let report = bounded(ws.close(1000, "")).await.unwrap();
    assert_eq!(
        (report.outcome, report.messages_dropped),
        (Outcome::Timeout, 20)
    );
    drop(raw);
    n.connections += 1;
    n.dropped += 20;

    // Every handle dropped without a close: 1001 going away.
    let (ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
    let handle = ws.handle();
    drop(ws);
    assert_eq!(read_close(&mut raw).await, Some(1001));
    raw.send_close(Some(1001), b"").await.unwrap();
    if role == Role::Client {
        raw.shutdown_write().await.unwrap();
    }
    let report = bounded(handle.closed()).await;
    assert_eq!(report.outcome, Outcome::Clean);
    n.connections += 1;

    // SinkExt::close on a closed connection only waits for the end (the sink's "flush, then
    // close", as at the end of `forward`): not a redundant close. A second close request is.
    let (mut ws, mut peer) = wrapped_and_tt(role, &Config::new()).await;
    let peer_task = tokio::spawn(async move { drain_tt(&mut peer).await });
    bounded(ws.close(1000, "")).await.unwrap();
    bounded(peer_task).await.unwrap();
    SinkExt::close(&mut ws).await.unwrap();
    bounded(ws.handle().close(1000, "again")).await.unwrap();
    n.connections += 1;
    n.redundant += 1;

    n
}
