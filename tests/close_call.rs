//! A close is requested when `close` is called, not when its future is first polled: a close
//! future spawned before its connection is dropped (the docs say the future borrows nothing,
//! which invites exactly this) still sends its own code and reason, once, with cause `app`,
//! and nothing counts as redundant. On a current-thread runtime the spawned task runs only
//! after the drop, which is what used to send the drop's 1001 instead.

mod support;

use wsclose::{Cause, Config, Role, WireCode};

use support::pairs::{bounded, wrapped_and_raw};
use support::recorder;

async fn the_close_called_goes_out(via_handle: bool) {
    let (metrics, _g) = recorder::install();
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut peer) = wrapped_and_raw(role, &Config::new()).await;
        let handle = ws.handle();
        let waiting = if via_handle {
            tokio::spawn(handle.close(4000, "bye"))
        } else {
            tokio::spawn(ws.close(4000, "bye"))
        };
        drop(ws);
        let frame = bounded(peer.read_frame()).await.unwrap().expect("a frame");
        assert_eq!(frame.close_code(), Some(4000), "{role:?}: {frame:?}");
        assert_eq!(frame.close_reason(), b"bye");
        peer.send_close(Some(4000), b"").await.unwrap();
        drop(peer); // the TCP close a client waits for, after the server's Close
        let report = bounded(waiting).await.unwrap().unwrap();
        assert_eq!(report.cause, Cause::App, "{report:?}");
        assert_eq!(report.code_sent, Some(WireCode::Valid(4000)), "{report:?}");
        let r = role.as_str();
        assert_eq!(
            metrics.counter("websocket_close_redundant_total", &[("role", r)]),
            0,
            "{}",
            metrics.dump()
        );
        assert_eq!(
            metrics.frames(r, "sent", "application"),
            1,
            "{}",
            metrics.dump()
        );
        assert_eq!(
            metrics.frames(r, "sent", "going_away"),
            0,
            "{}",
            metrics.dump()
        );
    }
}

#[tokio::test]
async fn a_spawned_socket_close_then_a_drop_sends_the_close_called() {
    the_close_called_goes_out(false).await;
}

#[tokio::test]
async fn a_spawned_handle_close_then_a_drop_sends_the_close_called() {
    the_close_called_goes_out(true).await;
}

/// A refused code is refused at the call, and nothing is begun: the drop's 1001 goes out.
#[tokio::test]
async fn a_refused_code_begins_nothing() {
    let (mut ws, mut peer) = wrapped_and_raw(Role::Server, &Config::new()).await;
    let refused = ws.close(1005, "no");
    assert!(ws.report().is_none() && ws.state() == wsclose::State::Open);
    assert!(bounded(refused).await.unwrap_err().is_invalid_close_code());
    drop(ws);
    let frame = bounded(peer.read_frame()).await.unwrap().expect("a frame");
    assert_eq!(frame.close_code(), Some(1001));
}
