//! The libraries added behind features, as [`Flavor`]s: tokio-websockets
//! (`tokio_websockets::WebSocketStream`, both roles) and fastwebsockets (through
//! `wsclose::fastwebsockets::Socket`, both roles; its HTTP upgrade is answered here, since
//! fastwebsockets' own needs hyper).

#![allow(dead_code, unreachable_pub)]
// Without either feature only the handshake helpers are left.
#![cfg_attr(
    not(any(feature = "tokio-websockets", feature = "fastwebsockets")),
    allow(unused_imports, unused_macros)
)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use wsclose::{Config, Role, WebSocket};

use crate::support::flavor::Flavor;
use crate::support::pairs::Tt;
use crate::support::raw::RawPeer;

/// A listener on 127.0.0.1:0 and its address.
async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Reads an HTTP head byte by byte (nothing after it is consumed).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8192, "HTTP head too long");
        head.push(tcp.read_u8().await.expect("HTTP head"));
    }
    String::from_utf8(head).expect("HTTP head is text")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The server side of the opening handshake on an accepted socket.
pub async fn http_accept(tcp: &mut TcpStream) {
    let head = read_head(tcp).await;
    let key = header(&head, "sec-websocket-key").expect("Sec-WebSocket-Key");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
}

/// The client side of the opening handshake.
pub async fn http_connect(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(derive_accept_key(key.as_bytes()).as_str())
    );
    tcp
}

async fn tt_client(addr: SocketAddr) -> Tt {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap()
        .0
}

async fn tt_server(listener: &TcpListener) -> Tt {
    let (tcp, _) = listener.accept().await.unwrap();
    tokio_tungstenite::accept_async(tcp).await.unwrap()
}

/// A connected pair: `role`'s side is a `TcpStream` after `ours`' handshake, the other side is
/// built by `server` (when we are the client) or `client` (when we are the server).
macro_rules! pair {
    ($role:expr, $ours_server:expr, $ours_client:expr, $their_server:expr, $their_client:expr) => {{
        let (listener, addr) = listen().await;
        match $role {
            Role::Server => {
                tokio::join!(
                    async {
                        let (tcp, _) = listener.accept().await.unwrap();
                        $ours_server(tcp).await
                    },
                    $their_client(addr)
                )
            }
            _ => {
                let (theirs, ours) = tokio::join!($their_server(&listener), $ours_client(addr));
                (ours, theirs)
            }
        }
    }};
}

#[cfg(feature = "tokio-websockets")]
pub use tws::TokioWebsockets;

#[cfg(feature = "tokio-websockets")]
mod tws {
    use super::*;
    use tokio_websockets::{ClientBuilder, Message, ServerBuilder, WebSocketStream};

    pub type Stream = WebSocketStream<TcpStream>;

    async fn server(tcp: TcpStream) -> Stream {
        ServerBuilder::new().accept(tcp).await.unwrap().1
    }

    async fn client(addr: SocketAddr) -> Stream {
        let tcp = TcpStream::connect(addr).await.unwrap();
        ClientBuilder::new()
            .uri(&format!("ws://{addr}/"))
            .unwrap()
            .connect_on(tcp)
            .await
            .unwrap()
            .0
    }

    /// tokio-websockets' `WebSocketStream`, both roles.
    pub struct TokioWebsockets;

    impl Flavor for TokioWebsockets {
        type T = Stream;
        const ROLES: &'static [Role] = &[Role::Server, Role::Client];

        async fn with_raw(role: Role, config: &Config) -> (WebSocket<Stream>, RawPeer) {
            let (ours, raw) = pair!(role, server, client, RawPeer::accept, RawPeer::connect);
            (wrap(role, config, ours), raw.unwrap())
        }
        async fn with_tt(role: Role, config: &Config) -> (WebSocket<Stream>, Tt) {
            let (ours, tt) = pair!(role, server, client, tt_server, tt_client);
            (wrap(role, config, ours), tt)
        }
        fn text(s: &str) -> Message {
            Message::text(s.to_owned())
        }
        fn binary(b: Vec<u8>) -> Message {
            Message::binary(b)
        }
        fn close(code: u16, reason: &str) -> Message {
            Message::close(Some(code.try_into().unwrap()), reason)
        }
        fn close_code(msg: &Message) -> Option<Option<u16>> {
            let (code, _) = msg.as_close()?;
            Some((!msg.as_payload().is_empty()).then(|| code.into()))
        }
    }
}

#[cfg(feature = "fastwebsockets")]
pub use fws::Fast;

#[cfg(feature = "fastwebsockets")]
mod fws {
    use super::*;
    use wsclose::fastwebsockets::{Message, Socket};

    pub type S = Socket<TcpStream>;

    async fn server(mut tcp: TcpStream) -> S {
        http_accept(&mut tcp).await;
        Socket::new(fastwebsockets::WebSocket::after_handshake(
            tcp,
            fastwebsockets::Role::Server,
        ))
    }

    async fn client(addr: SocketAddr) -> S {
        let tcp = http_connect(addr).await;
        Socket::new(fastwebsockets::WebSocket::after_handshake(
            tcp,
            fastwebsockets::Role::Client,
        ))
    }

    /// fastwebsockets through `wsclose::fastwebsockets::Socket`, both roles.
    pub struct Fast;

    impl Flavor for Fast {
        type T = S;
        const ROLES: &'static [Role] = &[Role::Server, Role::Client];

        async fn with_raw(role: Role, config: &Config) -> (WebSocket<S>, RawPeer) {
            let (ours, raw) = pair!(role, server, client, RawPeer::accept, RawPeer::connect);
            (wrap(role, config, ours), raw.unwrap())
        }
        async fn with_tt(role: Role, config: &Config) -> (WebSocket<S>, Tt) {
            let (ours, tt) = pair!(role, server, client, tt_server, tt_client);
            (wrap(role, config, ours), tt)
        }
        fn text(s: &str) -> Message {
            Message::Text(s.to_owned())
        }
        fn binary(b: Vec<u8>) -> Message {
            Message::Binary(b.into())
        }
        fn close(code: u16, reason: &str) -> Message {
            Message::Close(Some((code, reason.to_owned())))
        }
        fn close_code(msg: &Message) -> Option<Option<u16>> {
            match msg {
                Message::Close(f) => Some(f.as_ref().map(|f| f.0)),
                _ => None,
            }
        }
    }
}

fn wrap<T: wsclose::Transport>(role: Role, config: &Config, t: T) -> WebSocket<T> {
    match role {
        Role::Server => config.server(t),
        _ => config.client(t),
    }
}
