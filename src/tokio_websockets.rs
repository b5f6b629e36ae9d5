//! tokio-websockets integration: wrap `tokio_websockets::WebSocketStream` with the same close
//! logic, metrics and logs as tokio-tungstenite connections.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//!
//! # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! // Any handshake of tokio-websockets (its `server`/`client` features) gives the stream.
//! # let (_, stream) = tokio_websockets::ServerBuilder::new().accept(tcp).await?;
//! let mut ws = wsclose::WebSocket::server(stream);
//! while let Some(Ok(msg)) = ws.next().await {
//!     if msg.is_text() && ws.send(msg).await.is_err() {
//!         break;
//!     }
//! }
//! let report = ws.close(1000, "bye").await?;
//! # Ok(())
//! # }
//! ```
//!
//! tokio-websockets answers a peer's Close itself (with the peer's code, without its reason)
//! and, on a protocol violation, queues its own Close frame (1002, 1007 for invalid UTF-8, 1009
//! for a message over its limit) before it returns the error. The close logic therefore sends
//! no Close of its own for those errors ([`Verdict::protocol_error`] with no reply); it flushes
//! the library's queued frame once before dropping the transport, so the peer learns why
//! (the report's `code_sent` stays empty: the code is the library's).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::proto::ProtocolError as P;
use tokio_websockets::{CloseCode, Error, Message, WebSocketStream};

use crate::classify::{Verdict, classify_io};
use crate::transport::{KEEPALIVE_PAYLOAD, Transport, is_plain_tcp};

impl<S> Transport for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Message = Message;
    type WsError = Error;

    fn close_frame(msg: &Message) -> Option<Option<(u16, &str)>> {
        let (code, reason) = msg.as_close()?;
        Some((!msg.as_payload().is_empty()).then(|| (u16::from(code), reason)))
    }

    fn close_message(frame: Option<(u16, &str)>) -> Message {
        // The code is one an endpoint may send and the reason at most 123 bytes (checked by
        // the caller), which is what `Message::close` asserts.
        match frame.and_then(|(code, reason)| Some((CloseCode::try_from(code).ok()?, reason))) {
            Some((code, reason)) if !code.is_reserved() => Message::close(Some(code), reason),
            _ => Message::close(None, ""),
        }
    }

    fn is_pong(msg: &Message) -> bool {
        msg.is_pong()
    }

    fn ping_message() -> Message {
        Message::ping(KEEPALIVE_PAYLOAD)
    }

    fn verdict(err: &Error) -> Verdict {
        classify(err)
    }

    fn is_malformed_close(err: &Error) -> bool {
        matches!(err, Error::Protocol(P::InvalidCloseCode))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if is_plain_tcp(self.get_ref()) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.get_mut()).poll_shutdown(cx)
    }
}

/// The message tokio-util's framing gives for an EOF inside a frame.
const EOF_INSIDE_FRAME: &str = "bytes remaining on stream";

/// Classifies a tokio-websockets error.
fn classify(err: &Error) -> Verdict {
    match err {
        // tokio-websockets queued its own Close for these (see the module's documentation).
        Error::Protocol(_) | Error::PayloadTooLong { .. } => Verdict::protocol_error(None),
        // The peer hung up inside a frame: tokio-util reports it as `Other`.
        Error::Io(e) if e.kind() == io::ErrorKind::Other && e.to_string() == EOF_INSIDE_FRAME => {
            Verdict::peer_gone()
        }
        Error::Io(e) => classify_io(e.kind()),
        // A write after tokio-websockets closed: a bug on this side, as tungstenite's.
        Error::AlreadyClosed => Verdict::internal(),
        // The handshake's and the client's own errors (resolution, URI, headers, TLS) never
        // come out of an established stream; anything else has no better place.
        _ => Verdict::internal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cause, Outcome};

    #[test]
    fn every_error() {
        let protocol = [
            P::FragmentedControlFrame,
            P::InvalidCloseCode,
            P::InvalidOpcode,
            P::InvalidPayloadLength,
            P::InvalidRsv,
            P::InvalidUtf8,
            P::UnexpectedMaskedFrame,
            P::UnexpectedUnmaskedFrame,
        ];
        for p in protocol {
            let name = format!("{p:?}");
            let err = Error::Protocol(p);
            assert_eq!(classify(&err), Verdict::protocol_error(None), "{name}");
            assert_eq!(
                WebSocketStream::<tokio::net::TcpStream>::is_malformed_close(&err),
                name == "InvalidCloseCode"
            );
        }
        let too_long = Error::PayloadTooLong { len: 2, max_len: 1 };
        assert_eq!(classify(&too_long), Verdict::protocol_error(None));
        assert_eq!(classify(&Error::AlreadyClosed), Verdict::internal());
        assert_eq!(classify(&Error::CannotResolveHost), Verdict::internal());
        let rows = [
            (io::ErrorKind::ConnectionReset, Verdict::peer_gone()),
            (io::ErrorKind::BrokenPipe, Verdict::peer_gone()),
            (io::ErrorKind::UnexpectedEof, Verdict::peer_gone()),
            (io::ErrorKind::PermissionDenied, Verdict::io_error()),
            (
                io::ErrorKind::TimedOut,
                Verdict::Fatal {
                    outcome: Outcome::Timeout,
                    cause: Cause::Transport,
                    reply: None,
                },
            ),
        ];
        for (kind, want) in rows {
            assert_eq!(classify(&Error::Io(kind.into())), want, "{kind:?}");
        }
        let eof = io::Error::other(EOF_INSIDE_FRAME);
        assert_eq!(classify(&Error::Io(eof)), Verdict::peer_gone());
        let other = io::Error::other("something else");
        assert_eq!(classify(&Error::Io(other)), Verdict::io_error());
    }

    type T = WebSocketStream<tokio::net::TcpStream>;

    #[test]
    fn messages() {
        let close = T::close_message(Some((4000, "bye")));
        assert_eq!(T::close_frame(&close), Some(Some((4000, "bye"))));
        let empty = T::close_message(None);
        assert_eq!(T::close_frame(&empty), Some(None));
        assert_eq!(T::close_frame(&Message::text("x")), None);
        assert!(T::is_pong(&Message::pong(&b"p"[..])));
        assert!(!T::is_pong(&T::ping_message()));
        assert!(T::ping_message().is_ping());
    }
}
