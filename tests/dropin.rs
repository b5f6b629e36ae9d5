//! Code written for tokio-tungstenite or axum keeps working when only the wrap line changes.
//!
//! Each test is a friction a new user hit, written as that user's code: before the API below
//! existed, each of these failed to compile (E0061, E0271, E0599) or behaved differently.

mod support;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::pairs::{Ws, bounded, wrapped_and_raw, wrapped_and_tt};
use support::scenarios::drain_tt;

/// `ws.close(1000, "bye")` on a `&mut WebSocket` with `SinkExt` in scope: the inherent close
/// wins over `SinkExt::close` (which takes no arguments), with a `u16` or tungstenite's
/// `CloseCode`.
async fn close_through_mut_ref(ws: &mut Ws, code: CloseCode) -> wsclose::CloseReport {
    if code == CloseCode::Normal {
        ws.close(1000, "bye").await.unwrap()
    } else {
        ws.close(code, "bye").await.unwrap()
    }
}

#[tokio::test]
async fn close_on_a_mut_ref_with_sinkext_in_scope_takes_a_code_and_a_reason() {
    for code in [CloseCode::Normal, CloseCode::Away] {
        let (mut ws, mut raw) = wrapped_and_raw(Role::Server, &Config::new()).await;
        let closing = tokio::spawn(async move {
            let report = close_through_mut_ref(&mut ws, code).await;
            (report, ws)
        });
        let frame = raw
            .read_frame_timeout(std::time::Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a Close frame");
        assert_eq!(frame.close_code(), Some(u16::from(code)));
        assert_eq!(frame.close_reason(), b"bye");
        raw.send_close(Some(u16::from(code)), b"").await.unwrap();
        let (report, _ws) = bounded(closing).await.unwrap();
        assert_eq!((report.outcome, report.cause), (Outcome::Clean, Cause::App));
        assert_eq!(report.code_sent, Some(WireCode::Valid(u16::from(code))));
    }
}

/// The close future does not borrow the connection: two closes at once on one value, and the
/// stream read while a close runs.
#[tokio::test]
async fn the_close_future_does_not_borrow_the_connection() {
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    let peer = tokio::spawn(async move { drain_tt(&mut peer).await });
    let first = ws.close(1000, "one");
    let second = ws.close(CloseCode::Away, "two");
    let rest = ws.next(); // still usable while both closes are pending
    let (a, b, rest) = bounded(async { tokio::join!(first, second, rest) }).await;
    assert_eq!(a.unwrap(), b.unwrap(), "one close, one report");
    assert!(rest.is_none_or(|m| m.is_ok_and(|m| m.is_close())));
    bounded(peer).await.unwrap();
}

/// tokio-tungstenite's `close(None)` form: a Close frame without a status code.
#[tokio::test]
async fn close_with_none_sends_a_close_frame_without_a_code() {
    let (mut ws, mut raw) = wrapped_and_raw(Role::Server, &Config::new()).await;
    let handle = ws.handle();
    let closing = tokio::spawn(async move { ws.close_with(None).await });
    let frame = raw
        .read_frame_timeout(std::time::Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a Close frame");
    assert!(frame.is_close());
    assert_eq!(frame.close_code(), None, "no status code");
    raw.send_close(None, b"").await.unwrap();
    let report = bounded(closing).await.unwrap().unwrap();
    assert_eq!(report.code_sent, Some(WireCode::NoStatus));
    assert_eq!(bounded(handle.closed()).await, report);

    // A frame with a forbidden code is refused as `close` refuses it.
    let (mut ws, _raw) = wrapped_and_raw(Role::Server, &Config::new()).await;
    let bad = CloseFrame {
        code: CloseCode::from(1005),
        reason: "".into(),
    };
    let err = ws.close_with(Some(bad)).await.unwrap_err();
    assert!(err.is_invalid_close_code(), "{err}");
    assert_eq!(ws.state(), wsclose::State::Open, "nothing was sent");
}

/// A function written for tokio-tungstenite, generic over its item and error types.
async fn echo_until_close<W>(mut ws: W) -> Result<u32, tungstenite::Error>
where
    W: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin,
{
    let mut echoed = 0;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() {
            ws.send(msg).await?;
            echoed += 1;
        }
    }
    Ok(echoed)
}

#[tokio::test]
async fn code_generic_over_tungstenites_types_takes_a_wrapped_connection() {
    let (ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    let handle = ws.handle();
    let server = tokio::spawn(echo_until_close(wsclose::compat::WebSocketStream::new(ws)));
    for text in ["a", "b", "c"] {
        peer.send(Message::text(text)).await.unwrap();
        let back = bounded(peer.next()).await.unwrap().unwrap();
        assert_eq!(back, Message::text(text));
    }
    peer.close(None).await.unwrap();
    drain_tt(&mut peer).await;
    assert_eq!(bounded(server).await.unwrap().unwrap(), 3);
    let report = bounded(handle.closed()).await;
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Clean, Cause::Peer)
    );
}

#[tokio::test]
async fn the_compat_stream_closes_and_refuses_sends_as_tokio_tungstenite_does() {
    let (ws, mut peer) = wrapped_and_tt(Role::Client, &Config::new()).await;
    let peer = tokio::spawn(async move { drain_tt(&mut peer).await });
    let mut ws = wsclose::compat::WebSocketStream::new(ws);
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    bounded(ws.close(Some(frame))).await.unwrap();
    bounded(ws.close(None)).await.unwrap(); // idempotent
    let report = ws.report().expect("closed");
    assert_eq!(report.code_sent, Some(WireCode::Valid(1000)));
    let err = ws.send(Message::text("late")).await.unwrap_err();
    assert!(
        matches!(err, tungstenite::Error::AlreadyClosed),
        "tokio-tungstenite's answer to a send after the end: {err:?}"
    );
    bounded(peer).await.unwrap();

    // A forbidden code: an `Io` error of kind `InvalidInput` wrapping wsclose's error.
    let (ws, _peer) = wrapped_and_tt(Role::Client, &Config::new()).await;
    let mut ws = wsclose::compat::WebSocketStream::new(ws);
    let bad = CloseFrame {
        code: CloseCode::from(1006),
        reason: "".into(),
    };
    match ws.close(Some(bad)).await.unwrap_err() {
        tungstenite::Error::Io(io) => {
            assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
            let inner = io.get_ref().unwrap().downcast_ref::<wsclose::Error>();
            assert_eq!(inner.and_then(wsclose::Error::close_code), Some(1006));
        }
        other => panic!("expected Io(InvalidInput), got {other:?}"),
    }
}

/// `?` on wsclose's error in a function returning tungstenite's `Result`.
#[tokio::test]
async fn wsclose_errors_convert_to_tungstenite_errors() {
    async fn send_after_close(ws: &mut Ws) -> tungstenite::Result<()> {
        ws.send(Message::text("late")).await?;
        Ok(())
    }
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    let peer = tokio::spawn(async move { drain_tt(&mut peer).await });
    ws.handle().start_close(1000, "").unwrap();
    // Closing: tungstenite's SendAfterClosing; closed: AlreadyClosed.
    match send_after_close(&mut ws).await.unwrap_err() {
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SendAfterClosing)
        | tungstenite::Error::AlreadyClosed => {}
        other => panic!("{other:?}"),
    }
    bounded(ws.handle().closed()).await;
    assert!(matches!(
        send_after_close(&mut ws).await.unwrap_err(),
        tungstenite::Error::AlreadyClosed
    ));
    bounded(peer).await.unwrap();
}

/// The inner transport, while open: the peer's address; `None` once a close began.
#[tokio::test]
async fn the_inner_transport_is_reachable_until_the_close_takes_it() {
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    let peer_local = peer.get_ref().local_addr().unwrap();
    let seen = ws.with_inner(|s| s.get_ref().peer_addr().unwrap());
    assert_eq!(seen, Some(peer_local));
    let peer = tokio::spawn(async move { drain_tt(&mut peer).await });
    bounded(ws.close(1000, "")).await.unwrap();
    assert_eq!(ws.with_inner(|s| s.get_ref().peer_addr().ok()), None);
    bounded(peer).await.unwrap();
}

/// axum's `recv`, `send` and `protocol` on the wrapper: a handler changes only at the wrap line.
#[cfg(feature = "axum")]
mod axum_handler {
    use axum::Router;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::get;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::support::pairs::bounded;

    /// A handler as axum's docs write it, with only the wrap line added.
    async fn handler(upgrade: WebSocketUpgrade) -> axum::response::Response {
        upgrade
            .protocols(["chat.v2", "chat.v1"])
            .on_upgrade(|socket| async move {
                let mut socket = wsclose::WebSocket::server(socket); // the only new line
                let protocol = socket.protocol();
                let greeting = format!("protocol={}", protocol.unwrap().to_str().unwrap());
                if socket.send(Message::Text(greeting.into())).await.is_err() {
                    return;
                }
                while let Some(msg) = socket.recv().await {
                    let Ok(msg) = msg else { return };
                    if socket.send(msg).await.is_err() {
                        return;
                    }
                }
            })
    }

    #[tokio::test]
    async fn an_axum_handler_changes_only_at_the_wrap_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, Router::new().route("/ws", get(handler)))
                .await
                .unwrap();
        });
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "chat.v1".parse().unwrap());
        let (mut client, response) = bounded(tokio_tungstenite::connect_async(request))
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            "chat.v1"
        );
        let hello = bounded(client.next()).await.unwrap().unwrap();
        assert_eq!(hello.to_text().unwrap(), "protocol=chat.v1");
        client
            .send(tokio_tungstenite::tungstenite::Message::text("ping"))
            .await
            .unwrap();
        let echo = bounded(client.next()).await.unwrap().unwrap();
        assert_eq!(echo.to_text().unwrap(), "ping");
        client.close(None).await.unwrap();
        while let Some(Ok(_)) = bounded(client.next()).await {}
        server.abort();
    }
}
