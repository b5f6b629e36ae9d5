//! Loopback connections and what the sections read of this process: connected pairs on a
//! listener, the peer ends of a close (read to the end) and of an echo, open fds, RSS, and the
//! fd limit the 10,000-connection rows need.

use std::net::SocketAddr;

use futures_util::future::join_all;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TtCode;
use wsclose::WebSocket;

/// A raw tokio-tungstenite end over loopback TCP.
pub(crate) type Tt = WebSocketStream<TcpStream>;
/// The same end wrapped by wsclose.
pub(crate) type Ws = WebSocket<Tt>;

pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

pub(crate) async fn client_ws(addr: SocketAddr) -> Tt {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("client handshake")
        .0
}

async fn server_ws(listener: &TcpListener) -> Tt {
    let (tcp, _) = listener.accept().await.expect("accept");
    tcp.set_nodelay(true).expect("nodelay");
    tokio_tungstenite::accept_async(tcp)
        .await
        .expect("server handshake")
}

/// One connected pair on an existing listener: (server side, client side).
pub(crate) async fn pair_on(listener: &TcpListener, addr: SocketAddr) -> (Tt, Tt) {
    tokio::join!(server_ws(listener), client_ws(addr))
}

/// `n` connected pairs on a fresh listener (a fresh port, so TIME_WAIT sockets of earlier
/// runs never collide). Returns (server sides, client sides), not matched up.
pub(crate) async fn pairs(n: usize) -> (Vec<Tt>, Vec<Tt>) {
    let (listener, addr) = listener().await;
    let acceptor = tokio::spawn(accept_n(listener, n));
    let mut clients = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(256);
        clients.extend(join_all((0..batch).map(|_| client_ws(addr))).await);
        left -= batch;
    }
    (acceptor.await.expect("acceptor"), clients)
}

/// Accepts `n` connections and completes their handshakes concurrently.
pub(crate) async fn accept_n(listener: TcpListener, n: usize) -> Vec<Tt> {
    let mut handshakes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        handshakes.push(tokio::spawn(tokio_tungstenite::accept_async(tcp)));
    }
    let mut servers = Vec::with_capacity(n);
    for h in handshakes {
        servers.push(h.await.expect("join").expect("server handshake"));
    }
    servers
}

/// In a child process: the client ends of a storm. Connects `n` clients to `addr`, each
pub(crate) fn close_frame(code: u16) -> Option<CloseFrame> {
    Some(CloseFrame {
        code: TtCode::from(code),
        reason: "".into(),
    })
}

/// Reads until the stream ends (or errs): the peer side of every close.
pub(crate) async fn read_to_end<S, E>(mut ws: S)
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(Ok(_)) = ws.next().await {}
}

/// Echoes data messages until the stream ends.
pub(crate) async fn echo<S, E>(mut ws: S)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Raises the soft RLIMIT_NOFILE (and, where allowed, the hard one) so that `conns` sockets
/// fit in this process; returns how many fit when they cannot. Every 10,000-connection
/// benchmark keeps one end per process (the client ends live in a child process), so a hard
/// limit of 20,000 is enough.
pub(crate) fn raise_fd_limit(conns: usize) -> usize {
    use rlimit::Resource;
    const SPARE: u64 = 256;
    let want = conns as u64 + SPARE;
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((1_024, 1_024));
    if hard < want {
        // Raising the hard limit needs CAP_SYS_RESOURCE; carry on if refused.
        let _ = Resource::NOFILE.set(want, want);
    }
    let (_, hard) = Resource::NOFILE.get().unwrap_or((soft, hard));
    let _ = Resource::NOFILE.set(hard, hard);
    let (soft, _) = Resource::NOFILE.get().unwrap_or((soft, hard));
    let fit = soft.saturating_sub(SPARE) as usize;
    if fit < conns {
        eprintln!(
            "compare: RLIMIT_NOFILE is {soft}; running {fit} connections instead of {conns} \
             (raise the limit to reproduce the documented numbers)"
        );
    }
    fit.min(conns)
}
