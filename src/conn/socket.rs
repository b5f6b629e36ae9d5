//! The application's side: [`WebSocket`] and its halves [`Sender`] and [`Receiver`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};

use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::{Cause, CloseReport, Config, Error, IntoCloseCode, Role, State, Transport};

use super::handle::Handle;
use super::plan::{Plan, validate, validate_frame};
use super::{OutFrame, Shared};

/// Ends the connection with `1001 going away` when the last application handle
/// ([`WebSocket`], [`Sender`], [`Receiver`]) is dropped without a close.
struct Owner<T: Transport>(Arc<Shared<T>>);

impl<T: Transport> Drop for Owner<T> {
    fn drop(&mut self) {
        self.0.begin(&mut self.0.gate.lock(), Plan::dropped());
    }
}

/// A WebSocket connection whose close is idempotent, race-free and deadline-bounded, and
/// whose end is classified and measured.
///
/// It is a [`Stream`] of messages and a [`Sink`] for them, like tokio-tungstenite's
/// `WebSocketStream`, so `split`, `forward` and `SinkExt::send` keep working. The differences:
///
/// - the stream ends (`None`) once the connection is fully closed, and yields an error only
///   when the connection ended with one ([`Error::outcome`] says which);
/// - sending on a closing or closed connection returns [`Error::is_closed`], never panics;
/// - `SinkExt::close`, a `Message::Close` written to the sink, [`WebSocket::close`] and
///   [`Handle::close`] are the same idempotent close; `send(Message::Close(..))` returns once
///   that Close frame is written, as with tokio-tungstenite, while `close` waits for the end;
/// - a Close from the peer is answered at once and the handshake finishes in the background
///   even if nobody polls the stream again;
/// - dropping it without closing closes with `1001 going away`.
///
/// # Examples
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use tokio_tungstenite::tungstenite::Message;
///
/// # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// let ws = tokio_tungstenite::accept_async(tcp).await?;
/// let mut ws = wsclose::WebSocket::server(ws);
/// while let Some(msg) = ws.next().await {
///     let msg = msg?;
///     if msg.is_text() {
///         ws.send(msg).await?;
///     }
/// }
/// // The stream ended: the connection is closed and the report is final.
/// println!("{}", ws.report().unwrap());
/// # Ok(()) }
/// ```
pub struct WebSocket<T: Transport> {
    owner: Arc<Owner<T>>,
    close_requested: bool,
}

impl<T: Transport> std::fmt::Debug for WebSocket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.owner.0.id)
            .field("role", &self.owner.0.role)
            .field("state", &self.owner.0.state())
            .finish()
    }
}

impl<T: Transport> WebSocket<T> {
    /// Wraps the server side of an established connection with the default [`Config`].
    pub fn server(ws: T) -> Self {
        Self::with_config(ws, Role::Server, Config::default())
    }

    /// Wraps the client side of an established connection with the default [`Config`].
    pub fn client(ws: T) -> Self {
        Self::with_config(ws, Role::Client, Config::default())
    }

    pub(crate) fn with_config(ws: T, role: Role, config: Config) -> Self {
        Self::wrap(ws, role, config, None)
    }

    /// Wraps a connection whose handshake the crate ran, with the id it had while connecting.
    pub(crate) fn with_config_id(ws: T, role: Role, config: Config, id: u64) -> Self {
        Self::wrap(ws, role, config, Some(id))
    }

    fn wrap(ws: T, role: Role, config: Config, id: Option<u64>) -> Self {
        let shared = Shared::open(ws, role, config, id);
        WebSocket {
            owner: Arc::new(Owner(shared)),
            close_requested: false,
        }
    }

    pub(super) fn shared(&self) -> &Arc<Shared<T>> {
        &self.owner.0
    }

    /// A cloneable handle for closing and watching this connection from other tasks.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared().clone())
    }

    /// Splits into a sending and a receiving half, each usable from its own task. The
    /// connection closes with 1001 when both halves (and this value) are dropped without a
    /// close.
    pub fn split(self) -> (Sender<T>, Receiver<T>) {
        let owner = self.owner;
        (
            Sender {
                owner: owner.clone(),
                close_requested: self.close_requested,
            },
            Receiver { owner },
        )
    }

    /// Closes the connection with `code` and `reason` and waits for the end, at most the close
    /// deadline; see [`Handle::close`].
    ///
    /// `code` is a `u16` or tungstenite's `CloseCode` (`CloseCode::Normal`). The close begins
    /// when this is called (the Close frame is on its way before it returns); the returned
    /// future only waits for the end and does not borrow the connection, so it may be spawned
    /// and the connection dropped: this Close goes out, not the drop's 1001. This method takes `&mut self` so that it is the one
    /// `ws.close(…)` calls even with `SinkExt` in scope (whose argument-less `close` is the same
    /// idempotent close, with no code).
    ///
    /// # Errors
    ///
    /// A forbidden `code` ([`Error::is_invalid_close_code`]); nothing is sent.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn close<C: IntoCloseCode>(
        &mut self,
        code: C,
        reason: &str,
    ) -> impl Future<Output = Result<CloseReport, Error>> + Send + use<T, C> {
        close_owned(
            self.shared().clone(),
            validate(Some((code.into_close_code(), reason))),
        )
    }

    /// [`close`](Self::close) with tokio-tungstenite's argument: `None` sends a Close frame
    /// without a status code, `Some(frame)` the frame's code and reason (checked as `close`
    /// checks them).
    ///
    /// ```no_run
    /// # async fn run(mut ws: wsclose::WebSocket<wsclose::tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>) {
    /// // Was: ws.close(None).await
    /// let report = ws.close_with(None).await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub fn close_with(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> impl Future<Output = Result<CloseReport, Error>> + Send + use<T> {
        close_owned(self.shared().clone(), validate_frame(frame))
    }

    /// The next message, as axum's `WebSocket::recv`: `StreamExt::next`, as a method.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is never lost to a dropped `recv`.
    pub async fn recv(&mut self) -> Option<Result<T::Message, Error>> {
        futures_util::StreamExt::next(self).await
    }

    /// Sends a message, as axum's `WebSocket::send`: `SinkExt::send`, as a method (the same
    /// one with `SinkExt` in scope). A send on a closing or closed connection is refused with
    /// [`Error::is_closed`].
    ///
    /// # Errors
    ///
    /// See [`Error`]: refused after a close, or the connection ended.
    pub async fn send(&mut self, msg: T::Message) -> Result<(), Error> {
        futures_util::SinkExt::send(self, msg).await
    }

    /// Runs `f` on the wrapped connection of the WebSocket library (tokio-tungstenite's
    /// `WebSocketStream`, axum's `WebSocket`, …) while no close has begun: the peer address,
    /// TLS details, the negotiated subprotocol. `None` once a close has begun, because the close
    /// owns the transport from then on.
    ///
    /// `f` runs under this connection's lock: keep it short, and do not call into this
    /// connection from it (its halves and handles included), which would deadlock.
    ///
    /// ```no_run
    /// # fn run(ws: wsclose::WebSocket<wsclose::tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>) {
    /// let peer = ws.with_inner(|s| s.get_ref().peer_addr().ok()).flatten();
    /// # }
    /// ```
    pub fn with_inner<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.shared().gate.lock().as_ref().map(|io| f(&io.t))
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared().state()
    }

    /// The final report once the connection is `Closed`.
    pub fn report(&self) -> Option<CloseReport> {
        self.shared().gate.report()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.shared().role
    }
}

impl<T: Transport> Stream for WebSocket<T> {
    type Item = Result<T::Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.owner.0.poll_next(cx)
    }
}

/// The application-facing halves all poll the same shared connection; this writes their
/// `Sink` impl once.
macro_rules! sink_impl {
    ($ty:ident) => {
        impl<T: Transport> Sink<T::Message> for $ty<T> {
            type Error = Error;

            fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                self.owner.0.poll_ready(cx)
            }

            fn start_send(self: Pin<&mut Self>, item: T::Message) -> Result<(), Error> {
                let this = self.get_mut();
                this.owner.0.start_send(item, &mut this.close_requested)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                self.owner.0.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
                let this = self.get_mut();
                this.owner.0.poll_close(cx, &mut this.close_requested)
            }
        }
    };
}

sink_impl!(WebSocket);

/// The sending half of a [`WebSocket`] (a [`Sink`]).
pub struct Sender<T: Transport> {
    owner: Arc<Owner<T>>,
    close_requested: bool,
}

impl<T: Transport> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("id", &self.owner.0.id)
            .finish()
    }
}

impl<T: Transport> Sender<T> {
    /// A cloneable handle for closing and watching the connection.
    pub fn handle(&self) -> Handle {
        Handle::new(self.owner.0.clone())
    }

    /// As [`WebSocket::close`].
    ///
    /// # Errors
    ///
    /// A forbidden `code` ([`Error::is_invalid_close_code`]); nothing is sent.
    pub fn close<C: IntoCloseCode>(
        &mut self,
        code: C,
        reason: &str,
    ) -> impl Future<Output = Result<CloseReport, Error>> + Send + use<T, C> {
        close_owned(
            self.owner.0.clone(),
            validate(Some((code.into_close_code(), reason))),
        )
    }

    /// As [`WebSocket::close_with`].
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub fn close_with(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> impl Future<Output = Result<CloseReport, Error>> + Send + use<T> {
        close_owned(self.owner.0.clone(), validate_frame(frame))
    }

    /// As [`WebSocket::send`].
    ///
    /// # Errors
    ///
    /// See [`Error`]: refused after a close, or the connection ended.
    pub async fn send(&mut self, msg: T::Message) -> Result<(), Error> {
        futures_util::SinkExt::send(self, msg).await
    }
}

sink_impl!(Sender);

/// The receiving half of a [`WebSocket`] (a [`Stream`]).
pub struct Receiver<T: Transport> {
    owner: Arc<Owner<T>>,
}

impl<T: Transport> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("id", &self.owner.0.id)
            .finish()
    }
}

impl<T: Transport> Receiver<T> {
    /// A cloneable handle for closing and watching the connection.
    pub fn handle(&self) -> Handle {
        Handle::new(self.owner.0.clone())
    }

    /// As [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<T::Message, Error>> {
        futures_util::StreamExt::next(self).await
    }
}

/// The close of [`WebSocket::close`] and [`Sender::close`]: it owns what it needs, so the
/// connection is not borrowed while it runs, and begins the close on its first poll.
/// Begins the close now (when `frame` is valid) and returns the wait for its end: a future
/// spawned and the connection dropped before it runs still sends this Close, not the drop's.
fn close_owned<T: Transport>(
    shared: Arc<Shared<T>>,
    frame: Result<OutFrame, Error>,
) -> impl Future<Output = Result<CloseReport, Error>> + Send + 'static {
    // As `Handle::close`, without the handle's boxed, type-erased future.
    let begun = frame.map(|frame| {
        shared.request_close(Cause::App, frame);
        shared
    });
    async move { Ok(begun?.close_driven().await) }
}

#[cfg(feature = "axum")]
impl WebSocket<axum::extract::ws::WebSocket> {
    /// The subprotocol the upgrade negotiated, as axum's `WebSocket::protocol` (a copy). `None`
    /// also once a close has begun; see [`with_inner`](Self::with_inner).
    pub fn protocol(&self) -> Option<axum::http::HeaderValue> {
        self.with_inner(|ws| ws.protocol().cloned()).flatten()
    }
}

impl<T: Transport> Stream for Receiver<T> {
    type Item = Result<T::Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.owner.0.poll_next(cx)
    }
}
