//! fastwebsockets through `wsclose::fastwebsockets::Socket`: what a peer can make the adapter
//! hold. A peer that sends Pings and reads nothing is pushed back once a few replies are owed
//! (the reader stops reading until the socket takes them, as fastwebsockets used alone does),
//! and a message whose fragments pass the message limit fails the connection with 1009.

mod support;

// Its handshake helpers only: the flavors go unused here.
#[allow(unused_imports)]
#[path = "support/libraries.rs"]
mod libraries;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wsclose::fastwebsockets::{Message, Socket};
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::pairs::bounded;
use support::raw::{OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RawPeer};
use support::recorder;

/// The kernel buffers of both ends of a flooded connection. Loopback's autotuned buffers hold
/// MiBs, which would take a flood of millions of Pings to fill.
const SOCKET_BUFFER: u32 = 16 * 1024;

/// How many Pings the flooding peer sends: far more than the buffers above hold, so that a
/// peer that is pushed back cannot write them all before it reads.
const PINGS: usize = 200_000;

/// The most owed frames the adapter holds (docs/security.md): 64 frames, and at most 4 KiB of
/// their payload.
const OWED_FRAMES: usize = 64;
const OWED_BYTES: usize = 4096;

/// The peer's writes are taken as blocked after this long without progress.
const STALL: Duration = Duration::from_millis(300);

fn small_buffers(socket: &TcpSocket) {
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
}

/// A listener whose accepted sockets inherit [`SOCKET_BUFFER`].
fn small_listener() -> (TcpListener, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    small_buffers(&socket);
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A client socket with [`SOCKET_BUFFER`], after the opening handshake.
async fn small_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    small_buffers(&socket);
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tcp
}

/// A fastwebsockets server socket on a connection from [`small_client`].
async fn small_server(listener: &TcpListener) -> Socket<TcpStream> {
    let (mut tcp, _) = listener.accept().await.unwrap();
    libraries::http_accept(&mut tcp).await;
    Socket::new(fastwebsockets::WebSocket::after_handshake(
        tcp,
        fastwebsockets::Role::Server,
    ))
}

/// A masked client frame (the key is zero: the payload goes as it is).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// What the flooding peer saw.
#[derive(Debug)]
struct Flood {
    /// The Pings written before its writes blocked (all of them if they never did).
    written_before_reading: usize,
    pongs: usize,
    texts: usize,
    /// The code of the server's Close (the echo of the peer's 1000).
    close: Option<u16>,
}

/// How far the flooding peer got, for the failure messages.
#[derive(Debug, Default)]
struct Progress {
    written: AtomicUsize,
    pongs: AtomicUsize,
    texts: AtomicUsize,
}

/// Sends [`PINGS`] Pings with `payload` and reads nothing until its writes block (or all are
/// written); then reads until every Ping is answered and `texts` Text messages arrived, closes
/// with 1000 and reads the echo and the end of the connection.
async fn flood(
    tcp: TcpStream,
    payload: &'static [u8],
    texts: usize,
    progress: Arc<Progress>,
) -> Flood {
    let (mut rd, mut wr) = tcp.into_split();
    let counter = progress.clone();
    let writer = tokio::spawn(async move {
        let batch: Vec<u8> = client_frame(OP_PING, payload).repeat(1000);
        for _ in 0..PINGS / 1000 {
            wr.write_all(&batch).await.unwrap();
            counter.written.fetch_add(1000, Ordering::Relaxed);
        }
        wr
    });
    let mut last = usize::MAX;
    let written_before_reading = loop {
        tokio::time::sleep(STALL).await;
        let now = progress.written.load(Ordering::Relaxed);
        if now == PINGS || now == last {
            break now;
        }
        last = now;
    };
    let mut seen = Flood {
        written_before_reading,
        pongs: 0,
        texts: 0,
        close: None,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer = Some(writer);
    loop {
        // Server frames: unmasked, with payloads below 64 KiB here.
        while buf.len() >= 2 {
            let (len, head) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                126 => break,
                127 => panic!("no frame of 64 KiB or more is sent here"),
                n => (usize::from(n), 2),
            };
            if buf.len() < head + len {
                break;
            }
            match buf[0] & 0x0F {
                0xA => {
                    seen.pongs += 1;
                    progress.pongs.store(seen.pongs, Ordering::Relaxed);
                }
                0x1 => {
                    seen.texts += 1;
                    progress.texts.store(seen.texts, Ordering::Relaxed);
                }
                0x8 => {
                    seen.close = (len >= 2).then(|| u16::from_be_bytes([buf[2], buf[3]]));
                }
                other => panic!("unexpected opcode {other}"),
            }
            buf.drain(..head + len);
        }
        if seen.pongs == PINGS && seen.texts == texts && seen.close.is_none() {
            if let Some(writer) = writer.take() {
                let mut wr = writer.await.unwrap();
                wr.write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
                    .await
                    .unwrap();
                wr.shutdown().await.unwrap();
            }
        }
        if rd.read_buf(&mut buf).await.unwrap() == 0 {
            assert!(buf.is_empty(), "EOF inside a frame");
            return seen;
        }
    }
}

/// The server's owed replies, as its `Debug` shows them: `(queued, owed)` (`owed` is absent
/// from an adapter that does not count them).
fn held(socket: &Socket<TcpStream>) -> (usize, Option<usize>) {
    let debug = format!("{socket:?}");
    let field = |name: &str| {
        let start = debug.find(&format!("{name}: "))? + name.len() + 2;
        let digits: String = debug[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    (field("queued").expect(&debug), field("owed"))
}

/// A server that reads as usual while its peer floods it with Pings and reads nothing: the
/// replies it holds stay within the bound, every Ping is answered once the peer reads, and the
/// peer's Close is echoed.
async fn flooded_server_holds_a_bounded_queue(payload: &'static [u8]) {
    let (listener, addr) = small_listener();
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let peer = tokio::spawn(async move { flood(small_client(addr).await, payload, 0, p).await });
    let mut socket = small_server(&listener).await;
    let started = Instant::now();
    let (mut max_queued, mut max_owed) = (0, 0);
    let mut close = None;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(5), socket.next()).await;
        let (queued, owed) = held(&socket);
        max_queued = max_queued.max(queued);
        max_owed = max_owed.max(owed.unwrap_or(0));
        match next {
            Err(_) => {}
            Ok(Some(Ok(Message::Close(frame)))) => {
                close = frame;
                bounded(socket.flush()).await.unwrap();
            }
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no end: {socket:?}, at most {max_queued} queued; the peer: {progress:?}"
        );
    }
    // The end of the connection for the peer.
    drop(socket);
    let seen = bounded(peer).await.unwrap();
    eprintln!(
        "{}-byte Pings: the peer wrote {} of {PINGS} before it read; the server queued at most \
         {max_queued} frames ({max_owed} owed) and ended after {:?}",
        payload.len(),
        seen.written_before_reading,
        started.elapsed()
    );
    let bound = OWED_FRAMES.min(OWED_BYTES / payload.len().max(1) + 1);
    assert!(
        max_queued <= bound,
        "the server queued {max_queued} frames, more than {bound}"
    );
    assert!(max_owed <= bound, "{max_owed} owed frames");
    assert!(
        seen.written_before_reading < PINGS,
        "the peer was never pushed back: {seen:?}"
    );
    assert_eq!(seen.pongs, PINGS, "every Ping is answered: {seen:?}");
    assert_eq!(close.map(|f| f.0), Some(1000));
    assert_eq!(seen.close, Some(1000), "{seen:?}");
}

#[tokio::test]
async fn a_ping_flood_is_pushed_back_at_64_owed_pongs() {
    flooded_server_holds_a_bounded_queue(b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_pushed_back_at_64_owed_pongs_multi_thread() {
    flooded_server_holds_a_bounded_queue(b"").await;
}

/// 125-byte Pings: the 4 KiB of payload are reached first (33 Pongs).
#[tokio::test]
async fn a_ping_flood_is_pushed_back_at_4_kib_of_owed_payload() {
    static PAYLOAD: [u8; 125] = [b'p'; 125];
    flooded_server_holds_a_bounded_queue(&PAYLOAD).await;
}

/// Through `wsclose::WebSocket`, split: the reader parks on the owed Pongs while the writer
/// parks on its own flush, both on the same stalled socket. Once the peer reads, both must be
/// woken: every message is sent, every Ping answered, and the close is clean.
async fn a_parked_reader_and_a_parked_writer_both_resume() {
    const TEXTS: usize = 300;
    let (m, _g) = recorder::install();
    let (listener, addr) = small_listener();
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let peer = tokio::spawn(async move { flood(small_client(addr).await, b"", TEXTS, p).await });
    let ws = Config::new().server(small_server(&listener).await);
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let mut closes = Vec::new();
        while let Some(msg) = rx.next().await {
            match msg.unwrap() {
                Message::Close(frame) => closes.push(frame.map(|f| f.0)),
                other => panic!("unexpected {other:?}"),
            }
        }
        closes
    });
    let text = "t".repeat(1024);
    let writer = tokio::spawn(async move {
        for _ in 0..TEXTS {
            tx.send(Message::Text(text.clone())).await.unwrap();
        }
        tx
    });
    let seen = tokio::time::timeout(Duration::from_secs(60), peer)
        .await
        .unwrap_or_else(|_| panic!("the peer's flood never ended: {progress:?}"))
        .unwrap();
    eprintln!(
        "the peer wrote {} of {PINGS} Pings before it read",
        seen.written_before_reading
    );
    let tx = bounded(writer).await.unwrap();
    assert_eq!(bounded(reader).await.unwrap(), [Some(1000)]);
    let report = bounded(tx.handle().closed()).await;
    assert!(
        seen.written_before_reading < PINGS,
        "the peer was never pushed back: {seen:?}"
    );
    assert_eq!((seen.pongs, seen.texts), (PINGS, TEXTS), "{seen:?}");
    assert_eq!(seen.close, Some(1000));
    assert_eq!(report.outcome, Outcome::Clean, "{report:?}");
    assert_eq!(report.cause, Cause::Peer);
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        // The recorder is the test thread's: complete on a current-thread runtime only.
        assert_eq!(m.closes("server", "peer", "clean"), 1, "{}", m.dump());
        m.assert_balanced("server");
    }
}

#[tokio::test]
async fn a_flooded_reader_and_a_writer_both_resume() {
    a_parked_reader_and_a_parked_writer_both_resume().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_reader_and_a_writer_both_resume_multi_thread() {
    a_parked_reader_and_a_parked_writer_both_resume().await;
}

/// A connection between our `role` (a `Socket` built by `build`) and a raw peer.
async fn with_raw(
    role: Role,
    build: impl FnOnce(Socket<TcpStream>) -> Socket<TcpStream>,
) -> (wsclose::WebSocket<Socket<TcpStream>>, RawPeer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tcp, raw) = match role {
        Role::Server => {
            let (ours, raw) = tokio::join!(
                async {
                    let (mut tcp, _) = listener.accept().await.unwrap();
                    libraries::http_accept(&mut tcp).await;
                    tcp
                },
                RawPeer::connect(addr)
            );
            (ours, raw)
        }
        _ => {
            let (raw, ours) =
                tokio::join!(RawPeer::accept(&listener), libraries::http_connect(addr));
            (ours, raw)
        }
    };
    let fws_role = match role {
        Role::Server => fastwebsockets::Role::Server,
        _ => fastwebsockets::Role::Client,
    };
    let socket = build(Socket::new(fastwebsockets::WebSocket::after_handshake(
        tcp, fws_role,
    )));
    let config = Config::new();
    let ws = match role {
        Role::Server => config.server(socket),
        _ => config.client(socket),
    };
    (ws, raw.unwrap())
}

/// Sends a binary message of `fragments` frames of `size` bytes, ignoring write errors (the
/// connection may be failed before the last one).
async fn send_fragmented(raw: &mut RawPeer, fragments: usize, size: usize) {
    let payload = vec![0x5A; size];
    for i in 0..fragments {
        let opcode = if i == 0 { OP_BINARY } else { OP_CONT };
        if raw
            .send_frame(i + 1 == fragments, opcode, &payload)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The peer sends a message at the limit (delivered) and then one of `fragments` × `size`
/// bytes past it: the connection fails with 1009, counted as a protocol error of the peer's.
async fn a_message_past_the_limit_fails_with_1009(
    role: Role,
    limit: Option<usize>,
    fragments: usize,
    size: usize,
) {
    let (m, _g) = recorder::install();
    let started = Instant::now();
    let (mut ws, mut raw) = with_raw(role, |s| match limit {
        Some(limit) => s.with_max_message_size(limit),
        None => s,
    })
    .await;
    let limit = limit.unwrap_or(64 << 20);
    assert!(fragments * size > limit);
    let (_, (first, past)) = tokio::join!(
        async {
            // Exactly the limit, in fragments of 1 MiB at most.
            let piece = limit.min(1 << 20);
            send_fragmented(&mut raw, limit / piece, piece).await;
            send_fragmented(&mut raw, fragments, size).await;
        },
        async {
            let first = bounded(ws.next()).await;
            (first, bounded(ws.next()).await)
        }
    );
    match first {
        Some(Ok(Message::Binary(data))) => assert_eq!(data.len(), limit, "{role}"),
        other => panic!("{role}: the message at the limit: {other:?}"),
    }
    assert!(
        matches!(past, Some(Err(_))),
        "{role}: a message of {} bytes against a limit of {limit}: {:?}",
        fragments * size,
        past.map(|r| r.map(|msg| match msg {
            Message::Binary(b) => format!("Binary({} bytes)", b.len()),
            other => format!("{other:?}"),
        }))
    );
    let report = bounded(ws.handle().closed()).await;
    let mut close = None;
    while let Ok(Some(frame)) = raw.read_frame_timeout(Duration::from_secs(5)).await {
        if frame.is_close() {
            close = frame.close_code();
            break;
        }
    }
    eprintln!("{role}: {:?}", started.elapsed());
    assert_eq!(close, Some(1009), "{role}: the peer is told");
    assert_eq!(report.outcome, Outcome::ProtocolError, "{role}: {report:?}");
    assert_eq!(report.cause, Cause::Peer, "{role}: {report:?}");
    assert_eq!(report.code_sent, Some(WireCode::Valid(1009)), "{role}");
    let r = role.as_str();
    assert_eq!(m.frames(r, "sent", "message_too_big"), 1, "{}", m.dump());
    assert_eq!(m.closes(r, "peer", "protocol_error"), 1, "{}", m.dump());
    m.assert_balanced(r);
}

/// The default limit, 64 MiB (tungstenite's): 80 fragments of 1 MiB are refused. The client
/// role, so that the peer's frames are not masked (quicker in a debug build).
#[tokio::test]
async fn a_message_past_64_mib_in_1_mib_fragments_fails_with_1009() {
    a_message_past_the_limit_fails_with_1009(Role::Client, None, 80, 1 << 20).await;
}

/// A lower limit set with `with_max_message_size`, in both roles.
#[tokio::test]
async fn a_message_past_a_lower_limit_fails_with_1009() {
    for role in [Role::Server, Role::Client] {
        a_message_past_the_limit_fails_with_1009(role, Some(1 << 20), 4, 512 << 10).await;
    }
}

/// One frame past a lower limit is refused before it is buffered whole, with the same end.
#[tokio::test]
async fn a_single_frame_past_a_lower_limit_fails_with_1009() {
    for role in [Role::Server, Role::Client] {
        a_message_past_the_limit_fails_with_1009(role, Some(1 << 20), 1, (1 << 20) + 1).await;
    }
}

/// Fragmented text is reassembled whole, a character cut between two fragments included, with
/// control frames between the fragments; invalid UTF-8 in a fragment fails the connection with
/// 1007 at once, without waiting for the last fragment.
#[tokio::test]
async fn fragmented_text_is_reassembled_and_checked() {
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut raw) = with_raw(role, |s| s.with_max_message_size(1 << 20)).await;
        let text = "héllo wörld ✓".as_bytes();
        let (a, rest) = text.split_at(2); // "h" and the first byte of "é"
        let (b, c) = rest.split_at(rest.len() - 2); // the last two bytes of "✓" last
        raw.send_frame(false, OP_TEXT, a).await.unwrap();
        raw.send_frame(true, OP_PING, b"between").await.unwrap();
        raw.send_frame(false, OP_CONT, b).await.unwrap();
        raw.send_frame(true, OP_CONT, c).await.unwrap();
        let msg = bounded(ws.next()).await.unwrap().unwrap();
        assert_eq!(msg, Message::Text("héllo wörld ✓".into()), "{role}");
        let pong = bounded(raw.read_frame()).await.unwrap().unwrap();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (0xA, &b"between"[..])
        );

        raw.send_frame(false, OP_TEXT, b"ok \xFF").await.unwrap();
        let got = bounded(ws.next()).await.unwrap();
        assert!(got.is_err(), "{role}: {got:?}");
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.code_sent, Some(WireCode::Valid(1007)), "{role}");
        assert_eq!(report.outcome, Outcome::ProtocolError, "{role}");
    }
}

/// A Ping is answered while the application only reads and no message follows it: the Pong
/// does not wait for the next message or flush.
#[tokio::test]
async fn a_ping_is_answered_while_the_application_only_reads() {
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut raw) = with_raw(role, |s| s).await;
        raw.send_frame(true, OP_PING, b"alive?").await.unwrap();
        let (read, pong) = tokio::join!(
            tokio::time::timeout(Duration::from_millis(500), ws.next()),
            raw.read_frame_timeout(Duration::from_secs(2))
        );
        assert!(read.is_err(), "{role}: no message: {read:?}");
        let pong = pong.unwrap().expect("a Pong");
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (0xA, &b"alive?"[..]),
            "{role}"
        );
    }
}
