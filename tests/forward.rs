//! The most common echo loop, `read.forward(write)`: after the peer's Close ends the stream,
//! `forward` closes the sink. That close is the sink's "flush, then close", not a close request:
//! a clean connection counts no redundant close (`websocket_close_redundant_total` measures a
//! second close request, not the idiom). A second explicit close still counts.

mod support;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsclose::{Cause, Config, Outcome, Role};

use support::pairs::{bounded, wrapped_and_tt};
use support::recorder;

#[tokio::test]
async fn an_echo_by_forward_counts_no_redundant_close() {
    let (metrics, _g) = recorder::install();
    for role in [Role::Server, Role::Client] {
        let (ws, mut peer) = wrapped_and_tt(role, &Config::new()).await;
        let handle = ws.handle();
        let (tx, rx) = ws.split();
        let echo = tokio::spawn(async move {
            rx.filter_map(|m| async move { m.ok().filter(|m| m.is_text()).map(Ok) })
                .forward(tx)
                .await
        });
        peer.send(Message::text("hi")).await.unwrap();
        assert_eq!(
            bounded(peer.next()).await.unwrap().unwrap(),
            Message::text("hi")
        );
        let frame = CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        };
        peer.send(Message::Close(Some(frame))).await.unwrap();
        while let Some(Ok(_)) = bounded(peer.next()).await {}
        drop(peer); // a server closes the TCP connection after the handshake; a client waits for it
        bounded(echo).await.unwrap().unwrap();
        let report = bounded(handle.closed()).await;
        assert_eq!(
            (report.cause, report.outcome),
            (Cause::Peer, Outcome::Clean)
        );
        let r = role.as_str();
        assert_eq!(
            metrics.counter("websocket_close_redundant_total", &[("role", r)]),
            0,
            "{}",
            metrics.dump()
        );
        // An explicit close on the closed connection is a redundant request, and counts.
        bounded(handle.close(1000, "")).await.unwrap();
        assert_eq!(
            metrics.counter("websocket_close_redundant_total", &[("role", r)]),
            1
        );
    }
}
