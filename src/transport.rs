//! What the close logic needs from a WebSocket implementation.
//!
//! The close logic in `conn/` is written once against [`Transport`]; each supported library
//! (tokio-tungstenite here; axum, tokio-websockets and fastwebsockets behind their features)
//! is one small impl of it.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::classify::{Verdict, classify_ws};

/// The payload of keepalive pings.
pub(crate) const KEEPALIVE_PAYLOAD: &[u8] = b"wsclose";

/// A WebSocket connection this crate can wrap, after its opening handshake.
///
/// Implemented for tokio-tungstenite's [`WebSocketStream`], axum's `WebSocket` (feature
/// `axum`), tokio-websockets' `WebSocketStream` (feature `tokio-websockets`) and
/// [`fastwebsockets::Socket`] (feature `fastwebsockets`). Another
/// library is supported by one impl of this trait; `docs/design.md` ("Supported libraries and
/// adding one") walks through one.
///
/// # The stream and the sink
///
/// The connection is a `Stream` of received messages and a `Sink` of messages to send, in the
/// library's own message and error types. The close logic polls them under its own lock, one
/// poll at a time, from whichever task reads, writes or closes; a read that is pending must
/// not hold up a write (the library keeps one read waker and one write waker, as
/// tokio-tungstenite does). The library answers Pings itself.
///
/// - `poll_next` yields data, Pong and Close messages. When it yields the peer's Close, the
///   library has already **queued its reply** (the echo of the peer's Close, RFC 6455 §5.5.1);
///   the close logic sends it with one `poll_flush` and sends no Close of its own. After the
///   peer's Close the stream ends (`None`) or fails with an error that [`verdict`] maps to
///   `peer_gone` once the peer's TCP close arrives. `None` before any Close frame counts as
///   `peer_gone`.
/// - `start_send` of a [`close_message`] writes our Close frame behind the messages already
///   accepted; `poll_flush` puts everything accepted on the wire.
///
/// [`verdict`]: Transport::verdict
/// [`close_message`]: Transport::close_message
#[cfg_attr(
    feature = "fastwebsockets",
    doc = "[`fastwebsockets::Socket`]: crate::fastwebsockets::Socket"
)]
#[cfg_attr(
    not(feature = "fastwebsockets"),
    doc = "[`fastwebsockets::Socket`]: https://docs.rs/wsclose/latest/wsclose/fastwebsockets/struct.Socket.html"
)]
pub trait Transport:
    Stream<Item = Result<Self::Message, Self::WsError>>
    + Sink<Self::Message, Error = Self::WsError>
    + Unpin
    + Send
    + 'static
{
    /// The library's message type.
    type Message: Send + std::fmt::Debug + 'static;
    /// The library's error type.
    type WsError: std::error::Error + Send + Sync + 'static;

    /// The Close frame inside `msg`, if it is one: `Some(Some((code, reason)))`, or
    /// `Some(None)` for a Close frame without a status code; `None` for every other message.
    ///
    /// Called on every received message (a Close begins the close) and on every message the
    /// application sends (a Close written to the sink is a close request: it is validated and
    /// never reaches the library's sink directly). It must recognise every Close message the
    /// library hands over or accepts.
    fn close_frame(msg: &Self::Message) -> Option<Option<(u16, &str)>>;

    /// Builds a Close message with `frame`'s code and reason (`None`: no status code). The code
    /// has been validated (a code an endpoint may send) and the reason is at most 123 bytes.
    fn close_message(frame: Option<(u16, &str)>) -> Self::Message;

    /// Whether `msg` is a Pong (the keepalive counts them).
    fn is_pong(msg: &Self::Message) -> bool;

    /// A Ping for the keepalive (any payload of at most 125 bytes).
    fn ping_message() -> Self::Message;

    /// What `err`, returned by the stream or the sink, means for the connection.
    ///
    /// Map the library's errors onto the taxonomy with [`Verdict`]'s constructors: the peer
    /// gone (reset, EOF, broken pipe: [`Verdict::peer_gone`] or [`Verdict::from_io`]), the peer
    /// breaking the protocol ([`Verdict::protocol_error`], with the Close code to send unless
    /// the library already queued its own, which the close then flushes once), another I/O failure ([`Verdict::io_error`]), a
    /// failure on this side ([`Verdict::internal`]: the library used after it closed), or
    /// [`Verdict::Recoverable`] when the connection goes on. The classification is what the
    /// `outcome` label of `websocket_closes_total` reports, so prefer matching the library's
    /// error enum to matching its messages; an error with no better place is
    /// [`Verdict::internal`].
    fn verdict(err: &Self::WsError) -> Verdict;

    /// Whether `err` reports a Close frame from the peer that the library refused (an invalid
    /// status code, half a status code): that Close frame then counts as received with an
    /// invalid code (`websocket_close_frames_total{direction="received",code="invalid"}`).
    /// `false` for every other error.
    fn is_malformed_close(err: &Self::WsError) -> bool;

    /// Shuts the underlying byte stream down where that does more than dropping it: a TLS
    /// stream sends its `close_notify`. Called once, after a close handshake that ended well,
    /// bounded by what is left of the close deadline; the transport is dropped right after.
    /// A transport with nothing to do here returns `Poll::Ready(Ok(()))`.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<S> Transport for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Message = Message;
    type WsError = WsError;

    fn close_frame(msg: &Message) -> Option<Option<(u16, &str)>> {
        match msg {
            Message::Close(frame) => Some(
                frame
                    .as_ref()
                    .map(|f| (u16::from(f.code), f.reason.as_str())),
            ),
            _ => None,
        }
    }

    fn close_message(frame: Option<(u16, &str)>) -> Message {
        Message::Close(frame.map(|(code, reason)| CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        }))
    }

    fn is_pong(msg: &Message) -> bool {
        matches!(msg, Message::Pong(_))
    }

    fn ping_message() -> Message {
        Message::Ping(KEEPALIVE_PAYLOAD.into())
    }

    fn verdict(err: &WsError) -> Verdict {
        classify_ws(err)
    }

    fn is_malformed_close(err: &WsError) -> bool {
        crate::classify::malformed_close!(err, tokio_tungstenite::tungstenite)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if is_plain_tcp(self.get_ref()) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.get_mut()).poll_shutdown(cx)
    }
}

/// Whether `stream` is a plain TCP socket (as `accept_async` and `connect_async` without TLS
/// give): one whose close after the last write sends the same FIN as `shutdown(SHUT_WR)`.
pub(crate) fn is_plain_tcp<S: 'static>(stream: &S) -> bool {
    let stream: &dyn Any = stream;
    stream.is::<TcpStream>()
        || matches!(
            stream.downcast_ref::<MaybeTlsStream<TcpStream>>(),
            Some(MaybeTlsStream::Plain(_))
        )
}
