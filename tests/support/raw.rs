//! A deliberately raw WebSocket peer for tests.
//!
//! It does exactly what the test tells it: frames are built and parsed by hand, nothing is
//! validated, nothing is answered automatically (no pong, no close reply). Every frame received is
//! handed back as-is, so tests can count Close frames on the wire.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest HTTP upgrade head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest frame payload accepted by `read_frame` (guards against garbage lengths).
const MAX_PAYLOAD: u64 = 64 * 1024 * 1024;

/// One frame as it was on the wire (payload already unmasked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (low 4 bits of the first byte; RSV bits are dropped).
    pub opcode: u8,
    /// Whether the frame was masked on the wire (client-to-server frames must be).
    pub masked: bool,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// True for a Close frame.
    pub fn is_close(&self) -> bool {
        self.opcode == OP_CLOSE
    }

    /// The status code of a Close frame; `None` if this is not a Close frame or its payload is
    /// shorter than two bytes (an empty close payload carries no code).
    pub fn close_code(&self) -> Option<u16> {
        match (self.is_close(), self.payload.as_slice()) {
            (true, [hi, lo, ..]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }

    /// The raw reason bytes of a Close frame (everything after the code); empty otherwise.
    pub fn close_reason(&self) -> &[u8] {
        if self.is_close() && self.payload.len() >= 2 {
            &self.payload[2..]
        } else {
            &[]
        }
    }

    /// The payload of a Text frame if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.opcode == OP_TEXT {
            std::str::from_utf8(&self.payload).ok()
        } else {
            None
        }
    }
}

/// Binds a listener on 127.0.0.1 with an ephemeral port.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener local_addr");
    (listener, addr)
}

/// A frame-level WebSocket peer over a tokio `TcpStream`.
#[derive(Debug)]
pub struct RawPeer {
    stream: TcpStream,
    /// Client peers mask outgoing frames; server peers do not.
    client: bool,
    /// xorshift32 state for masking keys (never zero).
    mask_state: u32,
    /// Bytes read from the socket but not yet parsed.
    buf: Vec<u8>,
}

impl RawPeer {
    /// Connects to `addr` and performs the client side of the opening handshake
    /// (`GET / HTTP/1.1` with the Upgrade headers); checks for `101` and the accept key.
    pub async fn connect(addr: SocketAddr) -> io::Result<RawPeer> {
        RawPeer::connect_on(TcpStream::connect(addr).await?, addr).await
    }

    /// [`connect`](Self::connect) on a stream already connected to `addr` (one whose socket
    /// options the test chose).
    pub async fn connect_on(stream: TcpStream, addr: SocketAddr) -> io::Result<RawPeer> {
        let mut peer = RawPeer::new(stream, true);
        let key = generate_key();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        peer.send_raw(request.as_bytes()).await?;
        let head = peer.read_http_head().await?;
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(invalid(format!("handshake refused: {status:?}")));
        }
        let expected = derive_accept_key(key.as_bytes());
        match header(&head, "sec-websocket-accept") {
            Some(accept) if accept == expected => Ok(peer),
            other => Err(invalid(format!(
                "bad Sec-WebSocket-Accept {other:?}, want {expected}"
            ))),
        }
    }

    /// Accepts one TCP connection from `listener` and performs the server side of the opening
    /// handshake (answers `101 Switching Protocols` to any request carrying a key).
    pub async fn accept(listener: &TcpListener) -> io::Result<RawPeer> {
        let (stream, _) = listener.accept().await?;
        let mut peer = RawPeer::new(stream, false);
        let head = peer.read_http_head().await?;
        let key = header(&head, "sec-websocket-key")
            .ok_or_else(|| invalid(format!("no Sec-WebSocket-Key in {head:?}")))?;
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        peer.send_raw(response.as_bytes()).await?;
        Ok(peer)
    }

    fn new(stream: TcpStream, client: bool) -> RawPeer {
        static COUNTER: AtomicU32 = AtomicU32::new(0x9E37_79B9);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = (COUNTER.fetch_add(0x6A09_E667, Ordering::Relaxed) ^ nanos) | 1;
        let _ = stream.set_nodelay(true);
        RawPeer {
            stream,
            client,
            mask_state: seed,
            buf: Vec::with_capacity(8192),
        }
    }

    /// Sends one frame. Client peers mask it with a fresh key; server peers send it unmasked.
    /// The opcode is used as given (only its low 4 bits fit); nothing is validated.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
        let mask_bit = if self.client { 0x80 } else { 0 };
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
        if self.client {
            let key = self.next_mask().to_be_bytes();
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        self.send_raw(&out).await
    }

    /// Sends one final Text frame.
    pub async fn send_text(&mut self, s: &str) -> io::Result<()> {
        self.send_frame(true, OP_TEXT, s.as_bytes()).await
    }

    /// Sends a Close frame whose payload is `code` (big-endian, if given) followed by `reason`,
    /// unvalidated: invalid codes, non-UTF-8 and over-long reasons go out as they are. With
    /// `code == None` the payload is just `reason` (so `(None, b"")` is an empty Close).
    pub async fn send_close(&mut self, code: Option<u16>, reason: &[u8]) -> io::Result<()> {
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            payload.extend_from_slice(&code.to_be_bytes());
        }
        payload.extend_from_slice(reason);
        self.send_frame(true, OP_CLOSE, &payload).await
    }

    /// Writes `bytes` to the socket as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads the next frame. `Ok(None)` on a clean EOF between frames; `UnexpectedEof` if the
    /// stream ends inside a frame. Cancel-safe: bytes already read stay buffered.
    pub async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            self.buf.reserve(8192);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF inside a frame ({} bytes buffered)", self.buf.len()),
                    ))
                };
            }
        }
    }

    /// [`read_frame`](Self::read_frame) bounded by `d`; `Err(TimedOut)` when it runs out.
    pub async fn read_frame_timeout(&mut self, d: Duration) -> io::Result<Option<Frame>> {
        match tokio::time::timeout(d, self.read_frame()).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(format!("no frame within {d:?}"))),
        }
    }

    /// Reads every frame until EOF and returns them. `Err` on a socket error (e.g.
    /// `ConnectionReset`), on EOF inside a frame, or `TimedOut` if EOF does not come within
    /// `limit`.
    pub async fn read_all_until_eof(&mut self, limit: Duration) -> io::Result<Vec<Frame>> {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Ok(Ok(Some(frame))) => frames.push(frame),
                Ok(Ok(None)) => return Ok(frames),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(timed_out(format!(
                        "no EOF within {limit:?}; frames so far: {frames:?}"
                    )));
                }
            }
        }
    }

    /// Shuts down the write side of the socket (sends a TCP FIN); reading still works.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// Drops the connection with SO_LINGER 0, so the kernel sends a RST: the other side sees
    /// `ECONNRESET` instead of an EOF.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("set SO_LINGER 0");
    }

    /// The TCP stream and the bytes read from it but not parsed yet, for a test that reads and
    /// writes at once (split the stream) and parses with [`parse_frame`].
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Local address of the socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    fn next_mask(&mut self) -> u32 {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x
    }

    /// Reads up to and including the blank line that ends an HTTP head; anything after it stays
    /// buffered for `read_frame`.
    async fn read_http_head(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(String::from_utf8_lossy(&head).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid(format!("HTTP head longer than {MAX_HEAD} bytes")));
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF during handshake: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }
}

/// Parses one frame from the front of `buf`: `Ok(None)` if more bytes are needed, otherwise the
/// frame and the number of bytes it took.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let (len, len_bytes) = match b1 & 0x7F {
        126 if rest.len() >= 2 => (u64::from(u16::from_be_bytes([rest[0], rest[1]])), 2),
        127 if rest.len() >= 8 => (
            u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
            8,
        ),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 0),
    };
    if len > MAX_PAYLOAD {
        return Err(invalid(format!(
            "frame payload of {len} bytes exceeds {MAX_PAYLOAD}"
        )));
    }
    let header = 2 + len_bytes + if masked { 4 } else { 0 };
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut payload = buf[header..total].to_vec();
    if masked {
        let key = &buf[header - 4..header];
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= key[i % 4]);
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        masked,
        payload,
    };
    Ok(Some((frame, total)))
}

/// Value of the first header called `name` (case-insensitive) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn timed_out(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}
