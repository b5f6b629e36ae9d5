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
//!
//! # How axum's errors are classified
//!
//! axum wraps the error of its own tungstenite, a private dependency whose version can change
//! in a patch release of axum. The error is classified, in this order:
//!
//! 1. as the tungstenite version axum 0.8.9 uses (0.29), or as the one this crate uses (0.30):
//!    the same table as tokio-tungstenite's errors;
//! 2. otherwise, by the error's `Debug` name (`Protocol(..)`, `Capacity(..)`, `Utf8(..)`,
//!    `Io(..)`…), which tungstenite has kept across its versions, or an I/O error found in
//!    its source chain. The first such error logs one WARN naming the problem, so that an
//!    axum upgrade that needs a new tungstenite here does not go unnoticed.
//!
//! `tests/axum_serve.rs` makes a real protocol error through a real axum server and checks
//! that it is classified by step 1, so the test suite fails on such an upgrade.

use std::error::Error as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ::axum::extract::ws::{CloseFrame, Message, WebSocket};

use crate::classify::{Verdict, classify_io, classify_ws, classify_ws_axum};
use crate::transport::{KEEPALIVE_PAYLOAD, Transport};

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
        let inner = err.source();
        if let Some(ws) = inner.and_then(|e| e.downcast_ref::<tungstenite_axum::Error>()) {
            return crate::classify::malformed_close!(ws, tungstenite_axum);
        }
        if let Some(ws) =
            inner.and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        {
            return crate::classify::malformed_close!(ws, tokio_tungstenite::tungstenite);
        }
        inner.is_some_and(|e| format!("{e:?}") == "Protocol(InvalidCloseSequence)")
    }

    fn verdict(err: &::axum::Error) -> Verdict {
        match classify_known(err) {
            Some(verdict) => verdict,
            None => {
                warn_unknown_once(err);
                classify_by_name(err)
            }
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The upgraded connection closes when the socket is dropped, right after this.
        Poll::Ready(Ok(()))
    }
}

/// Classifies `err` when it wraps the error of a tungstenite version this crate knows.
pub(crate) fn classify_known(err: &::axum::Error) -> Option<Verdict> {
    let inner = err.source()?;
    if let Some(ws) = inner.downcast_ref::<tungstenite_axum::Error>() {
        return Some(classify_ws_axum(ws));
    }
    inner
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .map(classify_ws)
}

/// The version-independent fallback: an I/O error in the chain, else tungstenite's variant name.
fn classify_by_name(err: &::axum::Error) -> Verdict {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return classify_io(io.kind());
        }
        source = e.source();
    }
    let Some(inner) = err.source() else {
        return Verdict::internal();
    };
    let name = format!("{inner:?}");
    let variant = name.split(['(', ' ', '{']).next().unwrap_or_default();
    match variant {
        "ConnectionClosed" => Verdict::Fatal {
            outcome: crate::Outcome::Clean,
            cause: crate::Cause::Transport,
            reply: None,
        },
        "Protocol" if name.contains("ResetWithoutClosingHandshake") => Verdict::peer_gone(),
        "Protocol" if name.contains("SendAfterClosing") => Verdict::internal(),
        "Protocol" if name.contains("ReceivedAfterClosing") => Verdict::protocol_error(None),
        "Protocol" => Verdict::protocol_error(Some(1002)),
        "Capacity" => Verdict::protocol_error(Some(1009)),
        "Utf8" => Verdict::protocol_error(Some(1007)),
        "AttackAttempt" => Verdict::protocol_error(Some(1008)),
        "Http" | "HttpFormat" => Verdict::protocol_error(None),
        "Tls" => Verdict::io_error(),
        "WriteBufferFull" => Verdict::Recoverable,
        _ => Verdict::internal(),
    }
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_unknown_once(err: &::axum::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        let source = err.source().map(|e| format!("{e:?}")).unwrap_or_default();
        tracing::warn!(
            error = %err,
            source = %source,
            "wsclose: axum's WebSocket error is not of a tungstenite version this build knows \
             (axum's tungstenite changed?); it is classified by its name instead. Update wsclose \
             (its `tungstenite_axum` dependency) to match axum's tungstenite."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cause, Outcome};

    /// An error as a future axum would give: tungstenite's variant names, another type.
    #[derive(Debug)]
    #[allow(dead_code, reason = "the fields are read through `Debug`")]
    enum Foreign {
        Protocol(&'static str),
        Capacity(&'static str),
        Utf8(String),
        ConnectionClosed,
        AlreadyClosed,
        Io(io::Error),
    }
    impl std::fmt::Display for Foreign {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }
    impl std::error::Error for Foreign {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                Foreign::Io(e) => Some(e),
                _ => None,
            }
        }
    }

    fn axum_err(e: impl std::error::Error + Send + Sync + 'static) -> ::axum::Error {
        ::axum::Error::new(e)
    }

    #[test]
    fn known_versions_are_classified_by_type() {
        use tungstenite_axum::error::ProtocolError as P29;
        let e = axum_err(tungstenite_axum::Error::Protocol(P29::InvalidOpcode(3)));
        assert_eq!(
            classify_known(&e),
            Some(Verdict::protocol_error(Some(1002)))
        );
        assert!(!WebSocket::is_malformed_close(&e));
        let e = axum_err(tungstenite_axum::Error::Protocol(P29::InvalidCloseSequence));
        assert!(WebSocket::is_malformed_close(&e));
        use tokio_tungstenite::tungstenite::error::ProtocolError as P30;
        let e = axum_err(tokio_tungstenite::tungstenite::Error::Protocol(
            P30::ResetWithoutClosingHandshake,
        ));
        assert_eq!(classify_known(&e), Some(Verdict::peer_gone()));
    }

    #[test]
    fn unknown_versions_fall_back_on_the_name() {
        let rows = [
            (
                Foreign::Protocol("InvalidOpcode(3)"),
                Verdict::protocol_error(Some(1002)),
            ),
            (
                Foreign::Protocol("ResetWithoutClosingHandshake"),
                Verdict::peer_gone(),
            ),
            (
                Foreign::Capacity("MessageTooLong"),
                Verdict::protocol_error(Some(1009)),
            ),
            (
                Foreign::Utf8("bad".into()),
                Verdict::protocol_error(Some(1007)),
            ),
            (
                Foreign::ConnectionClosed,
                Verdict::Fatal {
                    outcome: Outcome::Clean,
                    cause: Cause::Transport,
                    reply: None,
                },
            ),
            (Foreign::AlreadyClosed, Verdict::internal()),
            (
                Foreign::Io(io::ErrorKind::ConnectionReset.into()),
                Verdict::peer_gone(),
            ),
            (
                Foreign::Io(io::ErrorKind::PermissionDenied.into()),
                Verdict::io_error(),
            ),
        ];
        for (foreign, want) in rows {
            let name = format!("{foreign:?}");
            let e = axum_err(foreign);
            assert_eq!(classify_known(&e), None, "{name}");
            assert_eq!(WebSocket::verdict(&e), want, "{name}");
        }
        assert!(WARNED.load(Ordering::Relaxed), "the fallback warns");
    }
}
