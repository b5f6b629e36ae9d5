//! What the close logic needs from a WebSocket implementation.
//!
//! The close logic in `conn/` is written once against [`Transport`]; each supported library
//! (tokio-tungstenite here, axum behind its feature) is one small impl of it.

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

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A WebSocket connection this crate can wrap: tokio-tungstenite's [`WebSocketStream`]
/// (and axum's `WebSocket` with the `axum` feature).
///
/// This trait is sealed; its methods are an implementation detail.
pub trait Transport:
    sealed::Sealed
    + Stream<Item = Result<Self::Message, Self::WsError>>
    + Sink<Self::Message, Error = Self::WsError>
    + Unpin
    + Send
    + 'static
{
    /// The library's message type.
    type Message: Send + std::fmt::Debug + 'static;
    /// The library's error type.
    type WsError: std::error::Error + Send + Sync + 'static;

    /// The Close frame inside `msg`, if it is one: `Some(None)` for an empty Close frame.
    #[doc(hidden)]
    fn close_frame(msg: &Self::Message) -> Option<Option<(u16, &str)>>;

    /// Builds a Close message (`None`: no status code).
    #[doc(hidden)]
    fn close_message(frame: Option<(u16, &str)>) -> Self::Message;

    /// Whether `msg` is a Pong.
    #[doc(hidden)]
    fn is_pong(msg: &Self::Message) -> bool;

    /// A keepalive Ping.
    #[doc(hidden)]
    fn ping_message() -> Self::Message;

    /// What `err` means for the connection.
    #[doc(hidden)]
    fn verdict(err: &Self::WsError) -> Verdict;

    /// Whether `err` reports a Close frame from the peer that could not be parsed (it then
    /// counts as a received Close frame with an invalid code).
    #[doc(hidden)]
    fn is_malformed_close(err: &Self::WsError) -> bool;

    /// Shuts the underlying byte stream down where that does more than dropping it: a TLS
    /// stream sends its `close_notify`. A plain TCP socket is left to the drop that follows
    /// (closing it sends the same FIN, without one more system call).
    #[doc(hidden)]
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<S> sealed::Sealed for WebSocketStream<S> {}

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
fn is_plain_tcp<S: 'static>(stream: &S) -> bool {
    let stream: &dyn Any = stream;
    stream.is::<TcpStream>()
        || matches!(
            stream.downcast_ref::<MaybeTlsStream<TcpStream>>(),
            Some(MaybeTlsStream::Plain(_))
        )
}
