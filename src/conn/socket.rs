//! The application's side: [`WebSocket`] and its halves [`Sender`] and [`Receiver`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};

use crate::{Cause, CloseReport, Config, Error, Role, State, Transport};

use super::Shared;
use super::handle::Handle;
use super::plan::{Plan, validate};

/// Ends the connection with `1001 going away` when the last application handle
/// ([`WebSocket`], [`Sender`], [`Receiver`]) is dropped without a close.
struct Owner<T: Transport>(Arc<Shared<T>>);

impl<T: Transport> Drop for Owner<T> {
    fn drop(&mut self) {
        self.0.begin(
            &mut self.0.gate.lock(),
            Plan::close(Cause::App, Some((1001, String::new()))),
        );
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
///   [`Handle::close`] are the same idempotent close;
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
        let shared = Shared::open(ws, role, config);
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

    /// Closes the connection and waits for the end; see [`Handle::close`].
    ///
    /// # Errors
    ///
    /// A forbidden `code` ([`Error::is_invalid_close_code`]); nothing is sent.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn close(&self, code: u16, reason: &str) -> Result<CloseReport, Error> {
        // As `Handle::close`, without the handle's boxed, type-erased future.
        let frame = validate(Some((code, reason)))?;
        let shared = self.shared();
        shared.request_close(Cause::App, frame);
        Ok(shared.clone().close_driven().await)
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
}

impl<T: Transport> Stream for Receiver<T> {
    type Item = Result<T::Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.owner.0.poll_next(cx)
    }
}
