//! The same hostile peers against every supported library (tokio-tungstenite, and axum,
//! tokio-websockets and fastwebsockets behind their features), in every role each can play: a
//! Ping flood from a peer that reads nothing, a message over the library's limit (in one frame
//! and in fragments), a reset in the middle of the opening handshake and of the close, and an
//! upgrade head over the limit of the crate's own handshake. The ends, the wire and the metric
//! counts are checked exactly, and none of these peers may make the crate log a WARN when the
//! end is one any peer can cause.

mod support;

#[path = "support/libraries.rs"]
mod libraries;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Level;
use wsclose::{Cause, Config, HandshakeOutcome, Outcome, Role, Transport, WebSocket, WireCode};

use support::flavor::Flavor;
use support::logs::{self, Logs};
use support::pairs::{Tt, bounded};
use support::raw::{OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, RawPeer, parse_frame};
use support::recorder;
use support::timing::{DEADLINE, assert_at_deadline};

fn r(role: Role) -> &'static str {
    role.as_str()
}

/// Instantiates `fn name<F: Hostile>()` once per library compiled in; `name = $why` ignores
/// the tokio-websockets case (the only library with a known defect here) with that reason.
macro_rules! library_tests {
    ($($name:ident $(= $why:literal)?),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn tungstenite() {
                    super::$name::<crate::support::flavor::Tungstenite>().await
                }
                #[cfg(feature = "axum")]
                #[tokio::test]
                async fn axum() {
                    super::$name::<crate::support::flavor::Axum>().await
                }
                #[cfg(feature = "tokio-websockets")]
                $(#[ignore = $why])?
                #[tokio::test]
                async fn tokio_websockets() {
                    super::$name::<crate::libraries::TokioWebsockets>().await
                }
                #[cfg(feature = "fastwebsockets")]
                #[tokio::test]
                async fn fastwebsockets() {
                    super::$name::<crate::libraries::Fast>().await
                }
            }
        )*
    };
}

library_tests!(
    a_ping_flood_from_a_peer_that_reads_nothing_is_bounded = "defect: tokio-websockets queues \
        a Pong for every Ping and reads on, so a peer that sends Pings and reads nothing has every \
        Pong held (20000 of 20000, never pushed back); the adapter adds no bound",
    a_ping_flood_from_a_peer_that_never_reads_ends_at_the_close_deadline,
    one_frame_over_the_message_limit_fails_with_1009 = "defect: the 1009 tokio-websockets \
        queues is sent but not counted: code_sent None, no sent message_too_big frame \
        (src/tokio_websockets.rs says code_sent stays empty)",
    fragments_over_the_message_limit_fail_with_1009 = "defect: fragments over \
        tokio-websockets' max_payload_len fail the connection with no Close at all (its \
        message-level PayloadTooLong queues none; src/tokio_websockets.rs expects a 1009)",
    a_reset_mid_close_is_peer_gone_quietly,
);

/// The message limit every library is given here; fastwebsockets keeps its default.
const SMALL_LIMIT: usize = 64 << 10;

/// A library's connection with its protocol limits set as a service would set them.
#[allow(async_fn_in_trait)]
trait Hostile: Flavor {
    /// The largest message the connection accepts.
    const LIMIT: usize;
    /// Whether a peer that sends Pings and reads nothing is pushed back (the reader stops
    /// reading once a bounded number of Pongs is owed), rather than having the Pongs past a
    /// bounded write buffer dropped.
    const PUSHES_BACK: bool;
    /// `role` wrapped with `config`, with [`LIMIT`](Self::LIMIT) and a bounded write buffer
    /// where the library has one; the other side is a raw peer.
    async fn limited(role: Role, config: &Config) -> (WebSocket<Self::T>, RawPeer);
}

/// tungstenite's limits for the tokio-tungstenite and axum connections: [`SMALL_LIMIT`], and
/// the write buffer bounded as docs/security.md recommends. Without `max_write_buffer_size`
/// (tungstenite's default: unbounded) a peer that sends Pings and reads nothing grows the
/// connection by every Pong owed: the documented cost of that default, not checked here.
fn small_tungstenite() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(SMALL_LIMIT))
        .max_frame_size(Some(SMALL_LIMIT))
        .write_buffer_size(16 << 10)
        .max_write_buffer_size(64 << 10)
}

/// The kernel buffers of both ends of every connection here. Loopback's autotuned buffers take
/// megabytes (a flood of 10 MB of Pongs fits in them whole), which would hide a connection that
/// holds every Pong owed behind the kernel's.
const SOCKET_BUFFER: u32 = 16 * 1024;

fn small_socket() -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket
}

/// A listener whose accepted sockets inherit [`SOCKET_BUFFER`].
fn small_listener() -> (TcpListener, SocketAddr) {
    let socket = small_socket();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn small_connect(addr: SocketAddr) -> TcpStream {
    small_socket().connect(addr).await.unwrap()
}

/// A connection over small buffers: `ours` runs our side's handshake (of `role`) on its TCP
/// stream, given the listener's address; the other side is a raw peer.
async fn small_pair<O, Fut>(
    role: Role,
    ours: impl FnOnce(TcpStream, SocketAddr) -> Fut,
) -> (O, RawPeer)
where
    Fut: std::future::Future<Output = O>,
{
    let (listener, addr) = small_listener();
    match role {
        Role::Server => {
            let (ours, raw) = tokio::join!(
                async {
                    let (tcp, _) = listener.accept().await.unwrap();
                    ours(tcp, addr).await
                },
                async { RawPeer::connect_on(small_connect(addr).await, addr).await }
            );
            (ours, raw.unwrap())
        }
        _ => {
            let (raw, ours) = tokio::join!(RawPeer::accept(&listener), async {
                ours(small_connect(addr).await, addr).await
            });
            (ours, raw.unwrap())
        }
    }
}

fn wrap<T: Transport>(role: Role, config: &Config, t: T) -> WebSocket<T> {
    match role {
        Role::Server => config.server(t),
        _ => config.client(t),
    }
}

impl Hostile for support::flavor::Tungstenite {
    const LIMIT: usize = SMALL_LIMIT;
    // tungstenite keeps reading; a Pong that does not fit the write buffer replaces the one
    // still owed (RFC 6455 §5.5.3 lets an endpoint answer only the most recent Ping).
    const PUSHES_BACK: bool = false;

    async fn limited(role: Role, config: &Config) -> (WebSocket<Tt>, RawPeer) {
        let limits = Some(small_tungstenite());
        let (ws, raw) = small_pair(role, |tcp, addr| async move {
            match role {
                Role::Server => tokio_tungstenite::accept_async_with_config(tcp, limits)
                    .await
                    .unwrap(),
                _ => {
                    tokio_tungstenite::client_async_with_config(
                        format!("ws://{addr}/"),
                        tcp,
                        limits,
                    )
                    .await
                    .unwrap()
                    .0
                }
            }
        })
        .await;
        (wrap(role, config, ws), raw)
    }
}

#[cfg(feature = "axum")]
impl Hostile for support::flavor::Axum {
    const LIMIT: usize = SMALL_LIMIT;
    // axum's socket is tokio-tungstenite's: the same as above.
    const PUSHES_BACK: bool = false;

    async fn limited(
        role: Role,
        config: &Config,
    ) -> (WebSocket<axum::extract::ws::WebSocket>, RawPeer) {
        use axum::Router;
        use axum::extract::ws::WebSocketUpgrade;
        use axum::routing::get;
        assert_eq!(role, Role::Server);
        let (listener, addr) = small_listener();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let app = Router::new().route(
            "/",
            get(move |upgrade: WebSocketUpgrade| {
                let tx = tx.clone();
                async move {
                    upgrade
                        .max_message_size(SMALL_LIMIT)
                        .max_frame_size(SMALL_LIMIT)
                        .write_buffer_size(16 << 10)
                        .max_write_buffer_size(64 << 10)
                        .on_upgrade(move |socket| async move {
                            let _ = tx.send(socket);
                        })
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (raw, socket) = tokio::join!(
            async { RawPeer::connect_on(small_connect(addr).await, addr).await },
            rx.recv()
        );
        (config.server(socket.expect("upgraded")), raw.unwrap())
    }
}

#[cfg(feature = "tokio-websockets")]
impl Hostile for libraries::TokioWebsockets {
    const LIMIT: usize = SMALL_LIMIT;
    // tokio-websockets has no bound on the Pongs it queues (nor a write buffer limit to set):
    // see the flood test's ignore.
    const PUSHES_BACK: bool = false;

    async fn limited(
        role: Role,
        config: &Config,
    ) -> (
        WebSocket<tokio_websockets::WebSocketStream<TcpStream>>,
        RawPeer,
    ) {
        use tokio_websockets::{ClientBuilder, Limits, ServerBuilder};
        let limits = Limits::default().max_payload_len(Some(SMALL_LIMIT));
        let (ws, raw) = small_pair(role, |tcp, addr| async move {
            match role {
                Role::Server => {
                    ServerBuilder::new()
                        .limits(limits)
                        .accept(tcp)
                        .await
                        .unwrap()
                        .1
                }
                _ => {
                    ClientBuilder::new()
                        .limits(limits)
                        .uri(&format!("ws://{addr}/"))
                        .unwrap()
                        .connect_on(tcp)
                        .await
                        .unwrap()
                        .0
                }
            }
        })
        .await;
        (wrap(role, config, ws), raw)
    }
}

/// The client side of the opening handshake on a connected stream (fastwebsockets' own needs
/// hyper).
#[cfg(feature = "fastwebsockets")]
async fn http_connect_on(tcp: &mut TcpStream, addr: SocketAddr) {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8192, "HTTP head too long");
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
}

#[cfg(feature = "fastwebsockets")]
impl Hostile for libraries::Fast {
    /// The adapter's default (`Socket::with_max_message_size`): tungstenite's 64 MiB.
    const LIMIT: usize = 64 << 20;
    // At most 64 owed Pongs (4 KiB of payload) are held; past that the adapter reads nothing
    // more until the peer takes some (docs/security.md).
    const PUSHES_BACK: bool = true;

    async fn limited(
        role: Role,
        config: &Config,
    ) -> (
        WebSocket<wsclose::fastwebsockets::Socket<TcpStream>>,
        RawPeer,
    ) {
        let (socket, raw) = small_pair(role, |mut tcp, addr| async move {
            let fws_role = match role {
                Role::Server => {
                    libraries::http_accept(&mut tcp).await;
                    fastwebsockets::Role::Server
                }
                _ => {
                    http_connect_on(&mut tcp, addr).await;
                    fastwebsockets::Role::Client
                }
            };
            wsclose::fastwebsockets::Socket::new(fastwebsockets::WebSocket::after_handshake(
                tcp, fws_role,
            ))
        })
        .await;
        (wrap(role, config, socket), raw)
    }
}

/// One frame as a raw peer of `role`'s connection sends it: masked (with a zero key, so the
/// payload goes as it is and no time goes into masking it) when `role` is the server.
fn frame(role: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let masked = role == Role::Server;
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&[0; 4]);
    }
    out.extend_from_slice(payload);
    out
}

/// No record at WARN or above.
#[track_caller]
fn assert_no_warn(logs: &Logs, what: impl std::fmt::Display) {
    let loud: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.level <= Level::WARN)
        .collect();
    assert!(loud.is_empty(), "{what}: {loud:?}");
}

// --- 1. A Ping flood from a peer that reads nothing -------------------------------------------

/// The Pings of a flood: 125-byte payloads (the largest a Ping may carry), so that the Pongs
/// owed for all of them (about 2.5 MB) are far past what the connection's kernel buffers
/// ([`SOCKET_BUFFER`] at each end) and a bounded write buffer (64 KiB) take. A connection that
/// held every owed Pong answers every Ping once the peer reads, without having pushed the peer
/// back; one that is bounded either pushed the peer back (its writes blocked before the last
/// Ping) or dropped Pongs.
const PINGS: usize = 20_000;
const BATCH: usize = 100;
const PING_PAYLOAD: [u8; 125] = [b'p'; 125];

/// The peer's writes are taken as blocked after this long without a batch written: far above
/// what writing one batch takes on a busy machine.
const STALL: Duration = Duration::from_secs(1);

/// A bound on a flood test's steps: ten megabytes through a debug build on a busy machine.
const FLOOD_LIMIT: Duration = Duration::from_secs(90);

/// What the flooding peer saw.
#[derive(Debug)]
struct Flood {
    pongs: usize,
    /// The code of the Close received (the echo of the peer's 1000).
    close: Option<u16>,
}

/// Starts the flood: a task writes [`PINGS`] Pings (then, with `close`, a Close 1000) and
/// returns the write half. Returns that task, the read half with the bytes already read, and
/// the count of Pings written so far.
fn start_flood(
    role: Role,
    raw: RawPeer,
    close: bool,
) -> (
    tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>,
    tokio::net::tcp::OwnedReadHalf,
    Vec<u8>,
    Arc<AtomicUsize>,
) {
    let (tcp, buf) = raw.into_parts();
    let (rd, mut wr) = tcp.into_split();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let batch = frame(role, true, OP_PING, &PING_PAYLOAD).repeat(BATCH);
        for _ in 0..PINGS / BATCH {
            if wr.write_all(&batch).await.is_err() {
                return wr;
            }
            counter.fetch_add(BATCH, Ordering::Relaxed);
        }
        if close {
            let _ = wr
                .write_all(&frame(role, true, OP_CLOSE, &1000u16.to_be_bytes()))
                .await;
        }
        wr
    });
    (writer, rd, buf, written)
}

/// Waits until every Ping is written or the writes made no progress for [`STALL`]; returns how
/// many were written.
async fn until_written_or_blocked(written: &AtomicUsize) -> usize {
    let mut last = usize::MAX;
    tokio::time::timeout(FLOOD_LIMIT, async {
        loop {
            tokio::time::sleep(STALL).await;
            let now = written.load(Ordering::Relaxed);
            if now == PINGS || now == last {
                return now;
            }
            last = now;
        }
    })
    .await
    .expect("the flood neither ended nor blocked")
}

/// The application reads on (and ignores what it reads) until the stream ends.
fn keep_reading<T>(mut ws: WebSocket<T>) -> tokio::task::JoinHandle<()>
where
    T: Transport + Send + 'static,
    WebSocket<T>: Send,
{
    tokio::spawn(async move { while ws.next().await.is_some() {} })
}

/// The peer floods the connection with Pings and reads nothing while the application keeps
/// reading; then it reads everything, sends its Close (after the last Ping) and reads to the
/// end. The connection must not have held every Pong owed: a library that pushes back blocked
/// the peer's writes (and answers every Ping in the end), one with a bounded write buffer
/// dropped Pongs. The Close is answered: `clean`, `cause="peer"`, quietly.
async fn a_ping_flood_from_a_peer_that_reads_nothing_is_bounded<F: Hostile>()
where
    WebSocket<F::T>: Send,
    F::T: Send + 'static,
{
    for &role in F::ROLES {
        let (logs, _l) = logs::capture();
        let (m, _g) = recorder::install();
        let started = Instant::now();
        let (ws, raw) = F::limited(role, &Config::new()).await;
        let handle = ws.handle();
        let reader = keep_reading(ws);
        let (writer, mut rd, mut buf, written) = start_flood(role, raw, true);
        let written_before_reading = until_written_or_blocked(&written).await;
        let mut seen = Flood {
            pongs: 0,
            close: None,
        };
        let mut writer = Some(writer);
        tokio::time::timeout(FLOOD_LIMIT, async {
            loop {
                while let Some((f, used)) = parse_frame(&buf).unwrap() {
                    buf.drain(..used);
                    match f.opcode {
                        OP_PONG => seen.pongs += 1,
                        OP_CLOSE => seen.close = f.close_code(),
                        other => panic!("{role}: unexpected opcode {other}"),
                    }
                }
                if seen.close.is_some() {
                    if let Some(writer) = writer.take() {
                        // The client waits for the server's end of TCP.
                        writer.await.unwrap().shutdown().await.unwrap();
                    }
                }
                buf.reserve(64 << 10);
                match rd.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{role}: {e}; {seen:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{role}: the flood never ended: {seen:?}"));
        assert!(buf.is_empty(), "{role}: EOF inside a frame");
        let report = bounded(handle.closed()).await;
        bounded(reader).await.unwrap();
        eprintln!(
            "{role}: the peer wrote {written_before_reading} of {PINGS} Pings before it read and \
             got {} Pongs; {:?}",
            seen.pongs,
            started.elapsed()
        );
        assert_eq!(seen.close, Some(1000), "{role}: {seen:?}");
        if F::PUSHES_BACK {
            assert!(
                written_before_reading < PINGS,
                "{role}: the peer was never pushed back: {seen:?}, {written_before_reading} written"
            );
            assert_eq!(
                seen.pongs, PINGS,
                "{role}: every Ping is answered: {seen:?}"
            );
        } else {
            assert!(
                seen.pongs < PINGS,
                "{role}: every owed Pong was held ({written_before_reading} Pings written before the \
                 peer read): {seen:?}"
            );
        }
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::Peer, "{role}: {report:?}");
        assert_eq!(m.closes(r(role), "peer", "clean"), 1, "{}", m.dump());
        assert_eq!(
            m.frames(r(role), "received", "normal_closure"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
        assert_no_warn(&logs, role);
    }
}

/// The same flood, and the peer never reads at all: the application's close cannot reach the
/// peer past the Pongs in the way, so it ends at the close deadline as `timeout` (an expected
/// end: quiet), whether the library pushed the peer back (its reader parked), dropped Pongs or
/// held them all. Per library: tokio-tungstenite and axum put the Close where the owed Pong was
/// (tungstenite's one frame owed), behind a full write buffer and full kernel buffers;
/// tokio-websockets queues it behind every Pong it holds; fastwebsockets' adapter queues it
/// behind at most 64 owed Pongs, with its reader parked. None of them can write it, so none
/// ends `clean`, and the peer is still there, so none ends `peer_gone`.
async fn a_ping_flood_from_a_peer_that_never_reads_ends_at_the_close_deadline<F: Hostile>()
where
    WebSocket<F::T>: Send,
    F::T: Send + 'static,
{
    for &role in F::ROLES {
        let (logs, _l) = logs::capture();
        let (m, _g) = recorder::install();
        let config = Config::new().with_close_timeout(DEADLINE).unwrap();
        let (ws, raw) = F::limited(role, &config).await;
        let handle = ws.handle();
        let reader = keep_reading(ws);
        let (writer, rd, _, written) = start_flood(role, raw, false);
        until_written_or_blocked(&written).await;
        let started = Instant::now();
        let report = bounded(handle.close(1000, "")).await.unwrap();
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App, "{role}: {report:?}");
        assert_at_deadline(took, DEADLINE, role);
        bounded(reader).await.unwrap();
        assert_eq!(m.closes(r(role), "app", "timeout"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
        assert_no_warn(&logs, role);
        // The transport is gone: the writer's next write fails, if it was still writing.
        drop(rd);
        drop(tokio::time::timeout(FLOOD_LIMIT, writer).await);
    }
}

// --- 2. A message over the library's limit -----------------------------------------------------

/// The peer sends one binary message of more than [`Hostile::LIMIT`] bytes, in one frame or in
/// fragments of at most 1 MiB each: the connection fails with Close 1009, a protocol error of
/// the peer's.
async fn over_the_limit<F: Hostile>(fragmented: bool) {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::limited(role, &Config::new()).await;
        let total = F::LIMIT + 1;
        let (_, saw_error) = tokio::join!(
            async {
                // The connection may be failed before the last byte is written.
                if fragmented {
                    let piece = (F::LIMIT / 4).min(1 << 20);
                    let pieces = total.div_ceil(piece);
                    let payload = vec![0x5A; piece];
                    for i in 0..pieces {
                        let opcode = if i == 0 { OP_BINARY } else { OP_CONT };
                        let f = frame(role, i + 1 == pieces, opcode, &payload);
                        if raw.send_raw(&f).await.is_err() {
                            break;
                        }
                    }
                } else {
                    let _ = raw
                        .send_raw(&frame(role, true, OP_BINARY, &vec![0x5A; total]))
                        .await;
                }
            },
            async {
                let mut saw_error = false;
                while let Some(item) = bounded(ws.next()).await {
                    assert!(item.is_err(), "{role}: no message gets through");
                    saw_error = true;
                }
                saw_error
            }
        );
        assert!(saw_error, "{role}");
        let mut close = None;
        while let Ok(Some(f)) = raw.read_frame_timeout(Duration::from_secs(5)).await {
            if f.is_close() {
                close = f.close_code();
                break;
            }
        }
        drop(raw);
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(close, Some(1009), "{role}: the peer is told why");
        assert_eq!(report.outcome, Outcome::ProtocolError, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::Peer, "{role}: {report:?}");
        assert_eq!(
            report.code_sent,
            Some(WireCode::Valid(1009)),
            "{role}: {report:?}"
        );
        assert_eq!(
            m.frames(r(role), "sent", "message_too_big"),
            1,
            "{}",
            m.dump()
        );
        assert_eq!(
            m.closes(r(role), "peer", "protocol_error"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
    }
}

async fn one_frame_over_the_message_limit_fails_with_1009<F: Hostile>() {
    over_the_limit::<F>(false).await;
}

async fn fragments_over_the_message_limit_fail_with_1009<F: Hostile>() {
    over_the_limit::<F>(true).await;
}

// --- 3. Resets mid-handshake and mid-close -----------------------------------------------------

/// Our Close is sent; the peer reads it and resets instead of answering: `peer_gone` (a peer
/// that went away: expected), `cause="app"` (the close was the application's), at DEBUG only.
async fn a_reset_mid_close_is_peer_gone_quietly<F: Hostile>() {
    for &role in F::ROLES {
        let (logs, _l) = logs::capture();
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let f = bounded(raw.read_frame()).await.unwrap().expect("our Close");
        assert_eq!(f.close_code(), Some(1000), "{role}");
        raw.reset();
        let report = bounded(handle.closed()).await;
        drop(ws);
        assert_eq!(report.outcome, Outcome::PeerGone, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App, "{role}: {report:?}");
        assert_eq!(report.code_sent, Some(WireCode::Valid(1000)));
        assert_eq!(report.code_received, None);
        assert_eq!(m.closes(r(role), "app", "peer_gone"), 1, "{}", m.dump());
        assert_eq!(
            m.frames(r(role), "sent", "normal_closure"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
        let loud: Vec<_> = logs
            .records()
            .into_iter()
            .filter(|r| r.level < Level::DEBUG)
            .collect();
        assert!(loud.is_empty(), "{role}: {loud:?}");
    }
}

/// The upgrade request cut by a reset, in the handshake the crate runs (`Config::accept`):
/// a `failed` handshake whose connection is `peer_gone`, at DEBUG only, with nothing left open.
/// The crate runs no handshake for tokio-websockets and fastwebsockets (the application wraps
/// an open connection), so there is nothing of theirs to test; axum's upgrade through
/// `Config::on_upgrade` is reset in tests/axum_upgrade_reset.rs.
#[tokio::test]
async fn a_reset_mid_handshake_is_a_quiet_failed_handshake() {
    let (logs, _l) = logs::capture();
    let (m, _g) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let handshake = Config::new().accept(tcp);
        let handle = handshake.handle();
        (handshake.await.map(drop), handle)
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer); // RST
    let (result, handle) = bounded(server).await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
    let report = handle.report().expect("ended");
    assert_eq!(report.outcome, Outcome::PeerGone, "{report:?}");
    assert_eq!(report.cause, Cause::Transport, "{report:?}");
    assert_eq!(
        m.counter(
            "websocket_handshakes_total",
            &[("role", "server"), ("outcome", "failed")]
        ),
        1,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.counter_sum("websocket_handshakes_total", &[("role", "server")]),
        1,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.counter("websocket_connections_opened_total", &[("role", "server")]),
        0,
        "{}",
        m.dump()
    );
    m.assert_balanced("server");
    let loud: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.level < Level::DEBUG)
        .collect();
    assert!(loud.is_empty(), "{loud:?}");
    let ends = logs.with_message("websocket handshake ended");
    assert_eq!(ends.len(), 1, "{:?}", logs.records());
    assert_eq!(ends[0].level, Level::DEBUG);
}

// --- 4. An upgrade head over the limit ---------------------------------------------------------

/// An upgrade request whose head passes `size` bytes (it never ends).
fn oversized_head(size: usize) -> Vec<u8> {
    let mut head =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Padding: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', size));
    head
}

/// A head over tungstenite's 64 KiB, to the crate's own server handshake: a `failed`
/// handshake whose connection is `protocol_error`/`peer` (any peer can send one: no WARN).
#[tokio::test]
async fn an_upgrade_head_over_64_kib_is_a_quiet_failed_handshake() {
    let (logs, _l) = logs::capture();
    let (m, _g) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let handshake = Config::new().accept(tcp);
        let handle = handshake.handle();
        (handshake.await.map(drop), handle)
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    // The server may stop reading (and close) before all of it is written.
    let _ = peer.write_all(&oversized_head(80 << 10)).await;
    let (result, handle) = bounded(server).await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Failed), "{err}");
    let report = handle.report().expect("ended");
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{report:?}"
    );
    assert_eq!(
        m.counter(
            "websocket_handshakes_total",
            &[("role", "server"), ("outcome", "failed")]
        ),
        1,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.counter_sum("websocket_handshakes_total", &[("role", "server")]),
        1,
        "{}",
        m.dump()
    );
    m.assert_balanced("server");
    assert_no_warn(&logs, "an oversized head");
    drop(peer);
}

/// Through axum and `Config::on_upgrade`, the head is hyper's to parse: one over hyper's limit
/// (about 400 KiB) is refused with 431 before any handler runs, so the crate sees no handshake
/// and logs nothing. (A head between 64 KiB and hyper's limit is a valid request to hyper, and
/// upgrades.)
#[cfg(feature = "axum")]
#[tokio::test]
async fn an_upgrade_head_over_hypers_limit_never_reaches_on_upgrade() {
    use axum::Router;
    use axum::extract::ws::WebSocketUpgrade;
    use axum::routing::get;
    let (logs, _l) = logs::capture();
    let (m, _g) = recorder::install();
    let config = Config::new();
    let app = Router::new().route(
        "/",
        get(move |upgrade: WebSocketUpgrade| {
            let config = config.clone();
            async move { config.on_upgrade(upgrade, |ws| async move { drop(ws) }) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let _ = peer.write_all(&oversized_head(512 << 10)).await;
    let mut answer = Vec::new();
    let _ = bounded(peer.read_to_end(&mut answer)).await;
    let status = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    assert_eq!(
        status,
        "HTTP/1.1 431",
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        m.counter_sum("websocket_handshakes_total", &[("role", "server")]),
        0,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.counter("websocket_connections_opened_total", &[("role", "server")]),
        0
    );
    assert_no_warn(&logs, "an oversized head to axum");
}
