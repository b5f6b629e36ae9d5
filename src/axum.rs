//! axum integration: wrap `axum::extract::ws::WebSocket` with the same close logic, metrics
//! and logs as tokio-tungstenite connections.
//!
//! ```no_run
//! use axum::extract::ws::{Message, WebSocketUpgrade};
//! use axum::{Router, routing::get, response::Response};
//! use futures_util::{SinkExt, StreamExt};
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(|socket| async move {
//!         let mut ws = wsclose::WebSocket::server(socket);
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if let Message::Text(_) = msg {
//!                 if ws.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     })
//! }
//!
//! let app: Router = Router::new().route("/ws", get(ws));
//! ```
//!
//! axum hides the byte stream under its `WebSocket`, so the transport is closed by dropping it
//! (which ends the upgraded HTTP connection) rather than by an explicit TCP shutdown; everything
//! else is identical.

use std::error::Error as _;
use std::io;
use std::task::{Context, Poll};

use ::axum::extract::ws::{CloseFrame, Message, WebSocket};

use crate::classify::{Verdict, classify_io, classify_ws_axum};
use crate::transport::{KEEPALIVE_PAYLOAD, Transport};
use crate::{Cause, Outcome};


impl Transport for WebSocket {
    type Message = Message;
    type WsError = ::axum::Error;

    fn close_frame(msg: &Message) -> Option<Option<(u16, &str)>> {
        match msg {
            Message::Close(frame) => Some(frame.as_ref().map(|f| (f.code, f.reason.as_str()))),
            _ => None,
        }
    }

    fn close_message(frame: Option<(u16, &str)>) -> Message {
        Message::Close(frame.map(|(code, reason)| CloseFrame {
            code,
            reason: reason.to_owned().into(),
        }))
    }

    fn is_pong(msg: &Message) -> bool {
        matches!(msg, Message::Pong(_))
    }

    fn ping_message() -> Message {
        Message::Ping(KEEPALIVE_PAYLOAD.into())
    }

    fn is_malformed_close(err: &::axum::Error) -> bool {
        err.source()
            .and_then(|e| e.downcast_ref::<tungstenite_axum::Error>())
            .is_some_and(|ws| crate::classify::malformed_close!(ws, tungstenite_axum))
    }

    fn verdict(err: &::axum::Error) -> Verdict {
        // axum wraps tungstenite's error; classify that, or an I/O error found in the chain.
        let inner = err.source();
        if let Some(ws) = inner.and_then(|e| e.downcast_ref::<tungstenite_axum::Error>()) {
            return classify_ws_axum(ws);
        }
        let mut source = inner;
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return classify_io(io.kind());
            }
            source = e.source();
        }
        Verdict::Fatal {
            outcome: Outcome::InternalError,
            cause: Cause::App,
            reply: None,
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The upgraded connection closes when the socket is dropped, right after this.
        Poll::Ready(Ok(()))
    }
}
