//! tokio-tungstenite's types at the edges, for code written against them.
//!
//! A wrapped connection yields `Result<Message, wsclose::Error>`. Code generic over
//! tokio-tungstenite's `Stream<Item = Result<Message, tungstenite::Error>> + Sink<Message, Error =
//! tungstenite::Error>` (a codec, a forwarder, a test helper) takes a [`WebSocketStream`]
//! instead: the same wrapped connection, with tungstenite's error type (converted as
//! `From<wsclose::Error> for tungstenite::Error` says) and tokio-tungstenite's
//! `close(Option<CloseFrame>)`.
//!
//! ```no_run
//! use futures_util::{Sink, SinkExt, Stream, StreamExt};
//! use wsclose::tokio_tungstenite::tungstenite::{Error, Message};
//!
//! // Written for tokio-tungstenite, unchanged.
//! async fn echo<W>(mut ws: W) -> Result<(), Error>
//! where
//!     W: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Unpin,
//! {
//!     while let Some(msg) = ws.next().await {
//!         ws.send(msg?).await?;
//!     }
//!     Ok(())
//! }
//!
//! # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Error> {
//! let ws = wsclose::tokio_tungstenite::accept_async(tcp).await?;
//! let ws = wsclose::WebSocket::server(ws);
//! let handle = ws.handle();
//! echo(wsclose::compat::WebSocketStream::new(ws)).await?;
//! println!("{}", handle.closed().await);
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::{CloseReport, Handle, State};

type Inner<S> = crate::WebSocket<tokio_tungstenite::WebSocketStream<S>>;

/// A wrapped tokio-tungstenite connection with tokio-tungstenite's item and error types: the
/// same idempotent, bounded, measured close, for code generic over tungstenite's error.
///
/// Errors convert as `From<wsclose::Error> for tungstenite::Error` documents; the
/// `wsclose::Error` of one that has no tungstenite form is its source.
pub struct WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ws: Inner<S>,
}

impl<S> std::fmt::Debug for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebSocketStream").field(&self.ws).finish()
    }
}

impl<S> From<Inner<S>> for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn from(ws: Inner<S>) -> Self {
        WebSocketStream { ws }
    }
}

impl<S> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Presents a wrapped connection with tokio-tungstenite's types.
    pub fn new(ws: Inner<S>) -> Self {
        WebSocketStream { ws }
    }

    /// As tokio-tungstenite's `WebSocketStream::close`: `None` closes without a status code.
    /// Returns once the close has ended (within the close deadline); the report is in
    /// [`report`](Self::report) and [`Handle::closed`]. Idempotent.
    ///
    /// # Errors
    ///
    /// A code the protocol forbids, as an `Io` error of kind `InvalidInput`; nothing is sent.
    pub async fn close(&mut self, msg: Option<CloseFrame>) -> Result<(), WsError> {
        self.ws.close_with(msg).await?;
        Ok(())
    }

    /// The wrapped connection.
    pub fn wrapped(&self) -> &Inner<S> {
        &self.ws
    }

    /// The wrapped connection, mutably (for `close(code, reason)`, `with_inner` …).
    pub fn wrapped_mut(&mut self) -> &mut Inner<S> {
        &mut self.ws
    }

    /// Back to the wrapped connection, with wsclose's error type.
    pub fn into_wrapped(self) -> Inner<S> {
        self.ws
    }

    /// A cloneable handle for closing and watching the connection.
    pub fn handle(&self) -> Handle {
        self.ws.handle()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.ws.state()
    }

    /// The final report once the connection is closed.
    pub fn report(&self) -> Option<CloseReport> {
        self.ws.report()
    }
}

impl<S> Stream for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.ws)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(WsError::from)))
    }
}

impl<S> Sink<Message> for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_ready(cx).map_err(WsError::from)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        Pin::new(&mut self.ws)
            .start_send(item)
            .map_err(WsError::from)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(WsError::from)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(WsError::from)
    }
}
