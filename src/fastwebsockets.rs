//! fastwebsockets integration: [`Socket`] presents a `fastwebsockets::WebSocket` as a stream of
//! [`Message`]s and a sink, so that it gets the same close logic, metrics and logs as the
//! other libraries.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use wsclose::fastwebsockets::{Message, Socket};
//!
//! # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! // After the HTTP upgrade (fastwebsockets' `upgrade` feature, or your own):
//! let ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Server);
//! let mut ws = wsclose::WebSocket::server(Socket::new(ws));
//! while let Some(Ok(msg)) = ws.next().await {
//!     if let Message::Text(_) = msg {
//!         if ws.send(msg).await.is_err() {
//!             break;
//!         }
//!     }
//! }
//! let report = ws.close(1000, "bye").await?;
//! # Ok(())
//! # }
//! ```
//!
//! fastwebsockets reads and writes frames with `async fn`s that borrow the socket, so a read
//! waiting for the peer would hold up every write. [`Socket`] splits the socket
//! (fastwebsockets' `unstable-split`) and keeps the read half in one boxed future and the write
//! half in another: a pending read never blocks a write, the close frame included.
//!
//! Fragmented messages are reassembled up to the message limit
//! ([`Socket::with_max_message_size`], 64 MiB by default as in tungstenite): a message whose
//! fragments pass it fails the connection with Close 1009 as soon as they do. fastwebsockets'
//! own `set_max_message_size` limits each frame, not a message.
//!
//! The Pong and Close replies fastwebsockets owes the peer ("obligated sends") are queued behind
//! the messages already accepted and written by the read that received their cause or by the
//! next flush, whichever comes first. At most 64 of them, and at most 4 KiB of their payload,
//! are held: past that the socket reads nothing more until the peer takes some of them, so that
//! a peer that sends Pings and reads nothing is pushed back (fastwebsockets used alone pushes it
//! back by awaiting each Pong's write).
//!
//! The socket must keep fastwebsockets' defaults `auto_close` and `auto_pong`: the close logic
//! relies on the library answering the peer's Close. fastwebsockets gives no access to the
//! byte stream after the split, so a TLS stream's `close_notify` is not sent: the stream is
//! dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker, ready};

use bytes::{Bytes, BytesMut};
use fastwebsockets::{
    Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite,
};
use futures_util::task::AtomicWaker;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

use crate::classify::{Verdict, classify_io};
use crate::transport::{KEEPALIVE_PAYLOAD, Transport};

/// A WebSocket message, as [`Socket`] reads and writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (reassembled, valid UTF-8).
    Text(String),
    /// A binary message (reassembled).
    Binary(Bytes),
    /// A Ping sent by the application (fastwebsockets answers the peer's Pings itself and
    /// does not hand them over).
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// A Close frame: its code and reason, or `None` for a Close without a status code.
    Close(Option<(u16, String)>),
}

impl Message {
    fn from_frame(frame: Frame<'static>) -> Result<Self, WebSocketError> {
        let payload = into_bytes(frame.payload);
        Ok(match frame.opcode {
            OpCode::Text => Message::Text(
                String::from_utf8(Vec::from(payload)).map_err(|_| WebSocketError::InvalidUTF8)?,
            ),
            OpCode::Binary | OpCode::Continuation => Message::Binary(payload),
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            OpCode::Close => match payload.len() {
                // fastwebsockets checked the code and the reason's UTF-8 (`auto_close`).
                0 => Message::Close(None),
                1 => return Err(WebSocketError::InvalidCloseFrame),
                _ => Message::Close(Some((
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8(payload[2..].to_vec())
                        .map_err(|_| WebSocketError::InvalidUTF8)?,
                ))),
            },
        })
    }

    fn into_frame(self) -> Frame<'static> {
        match self {
            Message::Text(text) => Frame::text(Payload::Owned(text.into_bytes())),
            Message::Binary(data) => Frame::binary(Payload::Bytes(BytesMut::from(data))),
            Message::Ping(data) => Frame::new(
                true,
                OpCode::Ping,
                None,
                Payload::Bytes(BytesMut::from(data)),
            ),
            Message::Pong(data) => Frame::pong(Payload::Bytes(BytesMut::from(data))),
            Message::Close(None) => Frame::close_raw(Payload::Owned(Vec::new())),
            Message::Close(Some((code, reason))) => Frame::close(code, reason.as_bytes()),
        }
    }
}

fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// `frame` as a `'static` one (fastwebsockets types the frames it reads as borrowing its read
/// half).
fn owned(frame: Frame<'_>) -> Frame<'static> {
    let payload = match frame.payload {
        Payload::Bytes(b) => Payload::Bytes(b),
        Payload::Owned(v) => Payload::Owned(v),
        other => Payload::Owned(other.to_vec()),
    };
    Frame::new(frame.fin, frame.opcode, None, payload)
}

/// The default of [`Socket::with_max_message_size`]: tungstenite's `max_message_size`.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// How many owed frames (Pongs, the Close reply) are held before the socket stops reading, and
/// how many payload bytes: a Ping's payload is at most 125 bytes, an empty one has none, so both
/// are counted.
const OWED_FRAMES: usize = 64;
const OWED_BYTES: usize = 4 * 1024;

/// The frames fastwebsockets' reader owes the peer, shared by the read future that produces
/// them and the socket that writes them.
#[derive(Default)]
struct Owed {
    /// Produced by the reader, not yet queued behind the accepted messages.
    frames: VecDeque<Frame<'static>>,
    /// The owed frames not yet handed to the writer (in `frames` or in the socket's `out`), and
    /// their payload bytes.
    held: usize,
    held_bytes: usize,
    /// The reader waits in [`Room`] for the writes to take some.
    parked: bool,
    /// No more are written (our Close is, or the writes failed): what is owed from now on is
    /// dropped, and the reader never waits.
    closed: bool,
}

impl Owed {
    /// Whether the reader must wait for the writes before it reads on.
    fn blocks(&self) -> bool {
        !self.closed && (self.held >= OWED_FRAMES || self.held_bytes >= OWED_BYTES)
    }

    fn release(&mut self, bytes: usize) {
        self.held -= 1;
        self.held_bytes -= bytes;
    }
}

type Shared = Arc<Mutex<Owed>>;

fn lock(owed: &Shared) -> MutexGuard<'_, Owed> {
    owed.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The read future's "send" of an owed frame: queues it and then, while the owed frames are at
/// their bound, stays pending, so that the reader reads nothing more. It registers no waker:
/// `poll_next` sees `parked`, moves the writes on and registers its own for their progress. A
/// Close never waits (fastwebsockets returns right after it, an error included).
struct Room {
    owed: Shared,
    frame: Option<Frame<'static>>,
}

impl Future for Room {
    type Output = Result<(), Infallible>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut owed = lock(&this.owed);
        if let Some(frame) = this.frame.take() {
            if owed.closed {
                return Poll::Ready(Ok(()));
            }
            let close = frame.opcode == OpCode::Close;
            owed.held += 1;
            owed.held_bytes += frame.payload.len();
            owed.frames.push_back(frame);
            if close {
                return Poll::Ready(Ok(()));
            }
        }
        owed.parked = owed.blocks();
        if owed.parked {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// For a text message, how much of `data` is known to be UTF-8: the rest is the start of a
    /// character cut by the end of a fragment.
    valid: usize,
}

impl Partial {
    /// Checks the text received so far, failing at the first fragment with invalid UTF-8 (as
    /// fastwebsockets does); at the last one, a cut character is invalid too.
    fn check(&mut self, fin: bool) -> Result<(), WebSocketError> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.valid..]) {
            Ok(_) => self.valid = self.data.len(),
            Err(e) if e.error_len().is_none() && !fin => self.valid += e.valid_up_to(),
            Err(_) => return Err(WebSocketError::InvalidUTF8),
        }
        Ok(())
    }
}

/// fastwebsockets' read half and the message it is in the middle of.
struct Reader<S> {
    ws: WebSocketRead<ReadHalf<S>>,
    partial: Option<Partial>,
    max_message_size: usize,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// The next message or control frame, reassembled.
    async fn read(&mut self, owed: &Shared) -> Result<Frame<'static>, WebSocketError> {
        let result = self.read_message(owed).await;
        if result.is_err() {
            self.partial = None;
        }
        result
    }

    async fn read_message(&mut self, owed: &Shared) -> Result<Frame<'static>, WebSocketError> {
        let mut send = |frame: Frame<'static>| Room {
            owed: owed.clone(),
            // Its own payload: a Pong made of a Ping's would keep the whole read buffer alive.
            frame: Some(Frame::new(
                frame.fin,
                frame.opcode,
                None,
                Payload::Owned(frame.payload.to_vec()),
            )),
        };
        let max = self.max_message_size;
        loop {
            let frame = self.ws.read_frame(&mut send).await?;
            match frame.opcode {
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(WebSocketError::InvalidFragment);
                    }
                    if frame.payload.len() > max {
                        return Err(WebSocketError::FrameTooLarge);
                    }
                    if frame.fin {
                        // fastwebsockets checked a final text frame's UTF-8.
                        return Ok(owned(frame));
                    }
                    let mut partial = Partial {
                        text: frame.opcode == OpCode::Text,
                        data: frame.payload.to_vec(),
                        valid: 0,
                    };
                    partial.check(false)?;
                    self.partial = Some(partial);
                }
                OpCode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(WebSocketError::InvalidContinuationFrame);
                    };
                    if frame.payload.len() > max - partial.data.len() {
                        return Err(WebSocketError::FrameTooLarge);
                    }
                    partial.data.extend_from_slice(&frame.payload);
                    partial.check(frame.fin)?;
                    if frame.fin {
                        let Partial { text, data, .. } = self.partial.take().expect("a message");
                        let opcode = if text { OpCode::Text } else { OpCode::Binary };
                        return Ok(Frame::new(true, opcode, None, Payload::Owned(data)));
                    }
                }
                // Close and Pong, between two fragments or not.
                _ => return Ok(owned(frame)),
            }
        }
    }
}

type Writer<S> = WebSocketWrite<WriteHalf<S>>;
type ReadFuture<S> =
    Pin<Box<dyn Future<Output = (Reader<S>, Result<Frame<'static>, WebSocketError>)> + Send>>;
type WriteFuture<S> = Pin<Box<dyn Future<Output = (Writer<S>, Result<(), WebSocketError>)> + Send>>;

enum ReadSide<S> {
    Idle(Reader<S>),
    Busy(ReadFuture<S>),
    /// The stream ended (EOF after the peer's Close) or the half was lost.
    Done,
}

enum WriteSide<S> {
    Idle(Writer<S>),
    Busy(WriteFuture<S>),
    Lost,
}

/// A frame accepted for writing; `owed` for the frames the reader owes the peer.
struct Queued {
    frame: Frame<'static>,
    owed: bool,
}

/// The tasks to wake when the writes move on. Every write is polled with this fan-out as its
/// waker, whoever polls it, so that the socket's single write waker reaches both the task that
/// flushes and the reader that left writes pending or waits for room for the owed frames:
/// neither takes the other's wake-up.
#[derive(Default)]
struct WriteWakers {
    flush: AtomicWaker,
    read: AtomicWaker,
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flush.wake();
        self.read.wake();
    }
}

/// A `fastwebsockets::WebSocket` as a `Stream` of [`Message`]s and a `Sink` of them, for
/// [`WebSocket::server`](crate::WebSocket::server) and
/// [`WebSocket::client`](crate::WebSocket::client) (see the module's documentation).
pub struct Socket<S> {
    read: ReadSide<S>,
    write: WriteSide<S>,
    owed: Shared,
    /// Frames accepted by the sink (and obligations moved behind them), not yet written.
    out: VecDeque<Queued>,
    /// The payload bytes in `out`.
    queued: usize,
    /// Bytes were written since the last flush of the stream.
    dirty: bool,
    close_sent: bool,
    close_received: bool,
    /// Set by [`Socket::with_max_message_size`], applied when the next read begins.
    max_message_size: Option<usize>,
    wakers: Arc<WriteWakers>,
    /// `wakers` as a waker.
    write_waker: Waker,
}

impl<S> fmt::Debug for Socket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("queued", &self.out.len())
            .field("owed", &lock(&self.owed).held)
            .field("close_sent", &self.close_sent)
            .field("close_received", &self.close_received)
            .finish_non_exhaustive()
    }
}

impl<S> Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps a socket whose opening handshake is done (fastwebsockets' defaults for
    /// `auto_close` and `auto_pong` kept).
    pub fn new(ws: WebSocket<S>) -> Self {
        let (read, write): (WebSocketRead<ReadHalf<S>>, Writer<S>) = ws.split(tokio::io::split);
        let wakers = Arc::<WriteWakers>::default();
        Socket {
            read: ReadSide::Idle(Reader {
                ws: read,
                partial: None,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            }),
            write: WriteSide::Idle(write),
            owed: Arc::default(),
            out: VecDeque::new(),
            queued: 0,
            dirty: false,
            close_sent: false,
            close_received: false,
            max_message_size: None,
            write_waker: Waker::from(wakers.clone()),
            wakers,
        }
    }

    /// Sets the largest message the peer may send, in bytes: 64 MiB unless set, as tungstenite's
    /// `max_message_size`. A message whose fragments pass it fails the connection with Close 1009
    /// (`protocol_error`, `code="message_too_big"` sent) as soon as they do. fastwebsockets'
    /// frame limit is set to the same, so that one frame past it is refused before it is read
    /// whole.
    pub fn with_max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = Some(max);
        self
    }

    /// Moves the reader's obligations behind the frames already accepted.
    fn take_obligations(&mut self) {
        let mut owed = lock(&self.owed);
        for frame in owed.frames.drain(..) {
            self.queued += frame.payload.len();
            self.out.push_back(Queued { frame, owed: true });
        }
    }

    fn pop(&mut self) -> Option<Frame<'static>> {
        let Queued { frame, owed } = self.out.pop_front()?;
        let len = frame.payload.len();
        self.queued -= len;
        if owed {
            lock(&self.owed).release(len);
        }
        Some(frame)
    }

    /// Writes every queued frame and flushes the stream, with the fan-out waker.
    fn poll_write_all(&mut self) -> Poll<Result<(), WebSocketError>> {
        let waker = self.write_waker.clone();
        let mut cx = Context::from_waker(&waker);
        loop {
            match &mut self.write {
                WriteSide::Lost => return Poll::Ready(Err(WebSocketError::ConnectionClosed)),
                WriteSide::Busy(fut) => {
                    let (writer, result) = ready!(fut.as_mut().poll(&mut cx));
                    self.write = WriteSide::Idle(writer);
                    result?;
                }
                WriteSide::Idle(_) => {
                    self.take_obligations();
                    let frame = match self.pop() {
                        Some(frame) => frame,
                        None if self.dirty => {
                            self.dirty = false;
                            let WriteSide::Idle(mut writer) =
                                std::mem::replace(&mut self.write, WriteSide::Lost)
                            else {
                                unreachable!()
                            };
                            self.write = WriteSide::Busy(Box::pin(async move {
                                let result = writer.flush().await;
                                (writer, result)
                            }));
                            continue;
                        }
                        None => return Poll::Ready(Ok(())),
                    };
                    if self.close_sent {
                        // A Close is the last frame: what the reader still owes (the echo
                        // of the peer's reply to our Close, a Pong) is not sent.
                        if frame.opcode != OpCode::Close && frame.opcode != OpCode::Pong {
                            return Poll::Ready(Err(WebSocketError::ConnectionClosed));
                        }
                        continue;
                    }
                    if frame.opcode == OpCode::Close {
                        self.close_sent = true;
                        lock(&self.owed).closed = true;
                    }
                    self.dirty = true;
                    let WriteSide::Idle(mut writer) =
                        std::mem::replace(&mut self.write, WriteSide::Lost)
                    else {
                        unreachable!()
                    };
                    self.write = WriteSide::Busy(Box::pin(async move {
                        let result = writer.write_frame(frame).await;
                        (writer, result)
                    }));
                }
            }
        }
    }

    /// [`poll_write_all`](Self::poll_write_all) for a sink method: on `Pending` its task is
    /// woken when the writes move on.
    fn poll_written(&mut self, cx: &Context<'_>) -> Poll<Result<(), WebSocketError>> {
        match self.poll_write_all() {
            Poll::Pending => {
                self.wakers.flush.register(cx.waker());
                // The writes may have moved on before the registration.
                self.poll_write_all()
            }
            ready => ready,
        }
    }

    /// Moves the writes on from the read side; the reader is woken when writes it left pending
    /// move on. Returns whether it may read on (the owed frames are below their bound).
    fn move_writes(&mut self, cx: &Context<'_>) -> bool {
        let mut result = self.poll_write_all();
        if result.is_pending() {
            self.wakers.read.register(cx.waker());
            result = self.poll_write_all();
        }
        let mut owed = lock(&self.owed);
        if let Poll::Ready(Err(_)) = result {
            // The error comes back to whoever flushes next; the reader does not wait for
            // writes that fail.
            owed.closed = true;
        }
        !owed.blocks()
    }

    fn read_future(&mut self, mut reader: Reader<S>) -> ReadFuture<S> {
        if let Some(max) = self.max_message_size.take() {
            reader.max_message_size = max;
            // fastwebsockets refuses a frame of its limit or more.
            reader.ws.set_max_message_size(max.saturating_add(1));
        }
        let owed = self.owed.clone();
        Box::pin(async move {
            let result = reader.read(&owed).await;
            (reader, result)
        })
    }
}

impl<S> From<WebSocket<S>> for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn from(ws: WebSocket<S>) -> Self {
        Socket::new(ws)
    }
}

impl<S> Stream for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Item = Result<Message, WebSocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut may_read = this.move_writes(cx);
        loop {
            match &mut this.read {
                ReadSide::Done => return Poll::Ready(None),
                ReadSide::Idle(_) => {
                    if !may_read {
                        // Woken when the writes move on (`move_writes`).
                        return Poll::Pending;
                    }
                    let ReadSide::Idle(reader) = std::mem::replace(&mut this.read, ReadSide::Done)
                    else {
                        unreachable!()
                    };
                    this.read = ReadSide::Busy(this.read_future(reader));
                }
                ReadSide::Busy(fut) => {
                    let Poll::Ready((reader, result)) = fut.as_mut().poll(cx) else {
                        // What the read owes so far goes out now, not at the next message.
                        let parked = lock(&this.owed).parked;
                        may_read = this.move_writes(cx);
                        if parked && may_read {
                            // It waited for room for what it owes, and the writes made some.
                            continue;
                        }
                        return Poll::Pending;
                    };
                    this.read = ReadSide::Idle(reader);
                    if matches!(result, Err(WebSocketError::InvalidCloseCode)) {
                        // fastwebsockets queued a 1002 reply; the close logic sends its own
                        // (the verdict's reply), so that the report names what was sent.
                        let mut owed = lock(&this.owed);
                        while let Some(i) =
                            owed.frames.iter().position(|f| f.opcode == OpCode::Close)
                        {
                            let frame = owed.frames.remove(i).expect("a frame");
                            owed.release(frame.payload.len());
                        }
                    }
                    this.move_writes(cx);
                    return Poll::Ready(match result {
                        Ok(frame) => {
                            let msg = Message::from_frame(frame);
                            if let Ok(Message::Close(_)) = msg {
                                this.close_received = true;
                            }
                            Some(msg)
                        }
                        Err(WebSocketError::UnexpectedEOF) if this.close_received => {
                            this.read = ReadSide::Done;
                            None
                        }
                        Err(e) => Some(Err(e)),
                    });
                }
            }
        }
    }
}

/// How many payload bytes `poll_ready` lets queue up before it writes them (and waits for the
/// socket to take them: the push-back on a peer that does not read).
const QUEUE_LIMIT: usize = 64 * 1024;

impl<S> Sink<Message> for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Error = WebSocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.queued < QUEUE_LIMIT {
            return Poll::Ready(Ok(()));
        }
        this.poll_written(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let queued_close = this.out.iter().any(|q| q.frame.opcode == OpCode::Close);
        if this.close_sent || queued_close {
            return Err(WebSocketError::ConnectionClosed);
        }
        this.take_obligations();
        let frame = item.into_frame();
        this.queued += frame.payload.len();
        this.out.push_back(Queued { frame, owed: false });
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_written(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}

impl<S> Transport for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Message = Message;
    type WsError = WebSocketError;

    fn close_frame(msg: &Message) -> Option<Option<(u16, &str)>> {
        match msg {
            Message::Close(frame) => Some(frame.as_ref().map(|(c, r)| (*c, r.as_str()))),
            _ => None,
        }
    }

    fn close_message(frame: Option<(u16, &str)>) -> Message {
        Message::Close(frame.map(|(c, r)| (c, r.to_owned())))
    }

    fn is_pong(msg: &Message) -> bool {
        matches!(msg, Message::Pong(_))
    }

    fn ping_message() -> Message {
        Message::Ping(Bytes::from_static(KEEPALIVE_PAYLOAD))
    }

    fn verdict(err: &WebSocketError) -> Verdict {
        classify(err)
    }

    fn is_malformed_close(err: &WebSocketError) -> bool {
        matches!(
            err,
            WebSocketError::InvalidCloseCode | WebSocketError::InvalidCloseFrame
        )
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The split stream is out of reach; it is closed when the socket is dropped.
        Poll::Ready(Ok(()))
    }
}

/// Classifies a fastwebsockets error.
fn classify(err: &WebSocketError) -> Verdict {
    use WebSocketError as E;
    match err {
        // fastwebsockets reports every EOF, inside a frame or between two, as this.
        E::UnexpectedEOF => Verdict::peer_gone(),
        E::IoError(e) => classify_io(e.kind()),
        // A write after the Close was sent: a bug on this side.
        E::ConnectionClosed => Verdict::internal(),
        E::InvalidUTF8 => Verdict::protocol_error(Some(1007)),
        E::FrameTooLarge => Verdict::protocol_error(Some(1009)),
        E::InvalidFragment
        | E::InvalidContinuationFrame
        | E::InvalidCloseFrame
        | E::InvalidCloseCode
        | E::ReservedBitsNotZero
        | E::ControlFrameFragmented
        | E::PingFrameTooLarge
        | E::InvalidValue => Verdict::protocol_error(Some(1002)),
        // The opening handshake's errors: the peer's request or answer was not a WebSocket one.
        E::InvalidStatusCode(_)
        | E::InvalidUpgradeHeader
        | E::InvalidConnectionHeader
        | E::InvalidSecWebsocketVersion
        | E::MissingSecWebSocketKey => Verdict::protocol_error(None),
        // The obligated sends go to a queue that cannot fail.
        E::SendError(_) => Verdict::internal(),
        // hyper's errors, with fastwebsockets' `upgrade` feature.
        #[allow(unreachable_patterns)]
        _ => Verdict::io_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cause, Outcome};

    #[test]
    fn every_error() {
        use WebSocketError as E;
        let rows: Vec<(E, Verdict)> = vec![
            (E::UnexpectedEOF, Verdict::peer_gone()),
            (
                E::IoError(io::ErrorKind::ConnectionReset.into()),
                Verdict::peer_gone(),
            ),
            (
                E::IoError(io::ErrorKind::PermissionDenied.into()),
                Verdict::io_error(),
            ),
            (
                E::IoError(io::ErrorKind::TimedOut.into()),
                Verdict::Fatal {
                    outcome: Outcome::Timeout,
                    cause: Cause::Transport,
                    reply: None,
                },
            ),
            (E::ConnectionClosed, Verdict::internal()),
            (E::InvalidUTF8, Verdict::protocol_error(Some(1007))),
            (E::FrameTooLarge, Verdict::protocol_error(Some(1009))),
            (E::InvalidFragment, Verdict::protocol_error(Some(1002))),
            (
                E::InvalidContinuationFrame,
                Verdict::protocol_error(Some(1002)),
            ),
            (E::InvalidCloseFrame, Verdict::protocol_error(Some(1002))),
            (E::InvalidCloseCode, Verdict::protocol_error(Some(1002))),
            (E::ReservedBitsNotZero, Verdict::protocol_error(Some(1002))),
            (
                E::ControlFrameFragmented,
                Verdict::protocol_error(Some(1002)),
            ),
            (E::PingFrameTooLarge, Verdict::protocol_error(Some(1002))),
            (E::InvalidValue, Verdict::protocol_error(Some(1002))),
            (E::InvalidStatusCode(500), Verdict::protocol_error(None)),
            (E::MissingSecWebSocketKey, Verdict::protocol_error(None)),
            (E::SendError("x".into()), Verdict::internal()),
        ];
        for (err, want) in rows {
            assert_eq!(classify(&err), want, "{err:?}");
        }
        type T = Socket<tokio::net::TcpStream>;
        assert!(T::is_malformed_close(&E::InvalidCloseCode));
        assert!(T::is_malformed_close(&E::InvalidCloseFrame));
        assert!(!T::is_malformed_close(&E::InvalidUTF8));
    }

    #[test]
    fn frames_and_messages() {
        let msgs = [
            Message::Text("héllo".into()),
            Message::Binary(Bytes::from_static(b"\x00\x01")),
            Message::Pong(Bytes::from_static(b"p")),
            Message::Close(None),
            Message::Close(Some((4000, "bye".into()))),
        ];
        for msg in msgs {
            let frame = msg.clone().into_frame();
            // Frames built for sending carry no mask: they read back as they were.
            let back = Message::from_frame(frame).unwrap();
            assert_eq!(back, msg);
        }
        let half_code = Frame::close_raw(Payload::Owned(vec![3]));
        assert!(matches!(
            Message::from_frame(half_code),
            Err(WebSocketError::InvalidCloseFrame)
        ));
    }
}
