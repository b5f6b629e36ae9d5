//! Connected pairs over real loopback sockets: one side wrapped by wsclose, the other a plain
//! tokio-tungstenite peer or a frame-level [`RawPeer`](super::raw::RawPeer).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use wsclose::{Config, Role, WebSocket};

use super::raw::RawPeer;

pub type Ws = WebSocket<WebSocketStream<TcpStream>>;
pub type Tt = WebSocketStream<TcpStream>;

pub const BOTH: [Role; 2] = [Role::Server, Role::Client];

/// A bound on every wait in the tests; far above what any scenario needs.
pub const LIMIT: Duration = Duration::from_secs(10);

pub async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step exceeded its time limit")
}

/// Waits until `cond` holds, polling every 5 ms, at most [`LIMIT`].
pub async fn until(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A tokio-tungstenite connection pair: (server side, client side).
pub async fn tt_pair() -> (Tt, Tt) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (server, client) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(tcp).await.unwrap()
        },
        async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .unwrap()
                .0
        }
    );
    (server, client)
}

/// `role` is wrapped with `config`; the other side is a plain tokio-tungstenite peer.
pub async fn wrapped_and_tt(role: Role, config: &Config) -> (Ws, Tt) {
    let (server, client) = tt_pair().await;
    match role {
        Role::Server => (config.server(server), client),
        _ => (config.client(client), server),
    }
}

/// `role` is wrapped with `config`; the other side is a frame-level raw peer.
pub async fn wrapped_and_raw(role: Role, config: &Config) -> (Ws, RawPeer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match role {
        Role::Server => {
            let (ws, raw) = tokio::join!(
                async {
                    let (tcp, _) = listener.accept().await.unwrap();
                    tokio_tungstenite::accept_async(tcp).await.unwrap()
                },
                RawPeer::connect(addr)
            );
            (config.server(ws), raw.unwrap())
        }
        _ => {
            let (raw, ws) = tokio::join!(RawPeer::accept(&listener), async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                tokio_tungstenite::client_async_with_config(format!("ws://{addr}/"), tcp, None)
                    .await
                    .unwrap()
                    .0
            });
            (config.client(ws), raw.unwrap())
        }
    }
}

/// Which side a tokio-tungstenite stream is on (for messages in assertions).
pub fn other(role: Role) -> WsRole {
    match role {
        Role::Server => WsRole::Client,
        _ => WsRole::Server,
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
