//! One test suite, every supported WebSocket library: a [`Flavor`] says how to build a wrapped
//! connection of that library (with a tokio-tungstenite or a raw frame-level peer on the other
//! side) and how to make and inspect its messages. Tests are written once, generic over the
//! flavor, and instantiated for each with [`flavor_tests!`](crate::flavor_tests).

use wsclose::{Config, Role, Transport, WebSocket};

use super::pairs::{Tt, wrapped_and_raw, wrapped_and_tt};
use super::raw::RawPeer;

pub type Msg<F> = <<F as Flavor>::T as Transport>::Message;

#[allow(async_fn_in_trait)]
pub trait Flavor {
    type T: Transport;
    /// The roles this library can play.
    const ROLES: &'static [Role];
    async fn with_raw(role: Role, config: &Config) -> (WebSocket<Self::T>, RawPeer);
    async fn with_tt(role: Role, config: &Config) -> (WebSocket<Self::T>, Tt);
    fn text(s: &str) -> Msg<Self>;
    fn binary(b: Vec<u8>) -> Msg<Self>;
    fn close(code: u16, reason: &str) -> Msg<Self>;
    /// `Some(code)` when `msg` is a Close frame (`Some(None)`: without a code).
    fn close_code(msg: &Msg<Self>) -> Option<Option<u16>>;
}

/// tokio-tungstenite's `WebSocketStream`, both roles.
pub struct Tungstenite;

impl Flavor for Tungstenite {
    type T = Tt;
    const ROLES: &'static [Role] = &[Role::Server, Role::Client];

    async fn with_raw(role: Role, config: &Config) -> (WebSocket<Tt>, RawPeer) {
        wrapped_and_raw(role, config).await
    }
    async fn with_tt(role: Role, config: &Config) -> (WebSocket<Tt>, Tt) {
        wrapped_and_tt(role, config).await
    }
    fn text(s: &str) -> Msg<Self> {
        tokio_tungstenite::tungstenite::Message::text(s)
    }
    fn binary(b: Vec<u8>) -> Msg<Self> {
        tokio_tungstenite::tungstenite::Message::binary(b)
    }
    fn close(code: u16, reason: &str) -> Msg<Self> {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        }))
    }
    fn close_code(msg: &Msg<Self>) -> Option<Option<u16>> {
        match msg {
            tokio_tungstenite::tungstenite::Message::Close(f) => {
                Some(f.as_ref().map(|f| u16::from(f.code)))
            }
            _ => None,
        }
    }
}

#[cfg(feature = "axum")]
#[allow(unused_imports)]
pub use axum_flavor::{Axum, axum_socket};

#[cfg(feature = "axum")]
mod axum_flavor {
    use std::future::Future;
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::ws::{CloseFrame, Message, WebSocket as AxumSocket, WebSocketUpgrade};
    use axum::routing::get;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;

    /// An axum server on 127.0.0.1:0 whose `/` route upgrades and hands the socket over; `peer`
    /// connects to it. Returns the server side's axum socket and the peer.
    pub async fn axum_socket<P, Fut>(peer: P) -> (AxumSocket, Fut::Output)
    where
        P: FnOnce(SocketAddr) -> Fut,
        Fut: Future,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/",
            get(move |upgrade: WebSocketUpgrade| {
                let tx = tx.clone();
                async move {
                    upgrade.on_upgrade(move |socket| async move {
                        let _ = tx.send(socket);
                    })
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (out, socket) = tokio::join!(peer(addr), rx.recv());
        (socket.expect("the upgrade reached the handler"), out)
    }

    /// axum's `WebSocket`: server role only.
    pub struct Axum;

    impl Flavor for Axum {
        type T = AxumSocket;
        const ROLES: &'static [Role] = &[Role::Server];

        async fn with_raw(role: Role, config: &Config) -> (WebSocket<AxumSocket>, RawPeer) {
            assert_eq!(role, Role::Server);
            let (socket, raw) = axum_socket(RawPeer::connect).await;
            (config.server(socket), raw.unwrap())
        }
        async fn with_tt(role: Role, config: &Config) -> (WebSocket<AxumSocket>, Tt) {
            assert_eq!(role, Role::Server);
            let (socket, tt) = axum_socket(|addr| async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                    .await
                    .unwrap()
                    .0
            })
            .await;
            (config.server(socket), tt)
        }
        fn text(s: &str) -> Message {
            Message::Text(s.into())
        }
        fn binary(b: Vec<u8>) -> Message {
            Message::Binary(b.into())
        }
        fn close(code: u16, reason: &str) -> Message {
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
        }
        fn close_code(msg: &Message) -> Option<Option<u16>> {
            match msg {
                Message::Close(f) => Some(f.as_ref().map(|f| f.code)),
                _ => None,
            }
        }
    }
}

/// Instantiates generic tests `fn name<F: Flavor>()` once per flavor:
/// `name::tungstenite` and, with the `axum` feature, `name::axum`.
#[macro_export]
macro_rules! flavor_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn tungstenite() {
                    super::$name::<$crate::support::flavor::Tungstenite>().await
                }
                #[cfg(feature = "axum")]
                #[tokio::test]
                async fn axum() {
                    super::$name::<$crate::support::flavor::Axum>().await
                }
            }
        )*
    };
}
