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
//! Fragmented messages are reassembled (`FragmentCollectorRead`). The Pong and Close replies
//! fastwebsockets owes the peer ("obligated sends") are queued behind the messages already
//! accepted and written by the next read or flush.
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
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead,
    WebSocketWrite,
};
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

fn into_bytes(payload: Payload<'static>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// The frames fastwebsockets' reader asks to send (Pongs, the Close reply).
type Obligations = Arc<Mutex<VecDeque<Frame<'static>>>>;

type Reader<S> = FragmentCollectorRead<ReadHalf<S>>;
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

/// A `fastwebsockets::WebSocket` as a `Stream` of [`Message`]s and a `Sink` of them, for
/// [`WebSocket::server`](crate::WebSocket::server) and
/// [`WebSocket::client`](crate::WebSocket::client) (see the module's documentation).
pub struct Socket<S> {
    read: ReadSide<S>,
    write: WriteSide<S>,
    obligations: Obligations,
    /// Frames accepted by the sink (and obligations moved behind them), not yet written.
    out: VecDeque<Frame<'static>>,
    /// The payload bytes in `out`.
    queued: usize,
    /// Bytes were written since the last flush of the stream.
    dirty: bool,
    close_sent: bool,
    close_received: bool,
    /// The waker of the task that flushes, while one does: a read that moves the writes on
    /// polls them with it, so the flushing task is not forgotten.
    flushing: Option<Waker>,
}

impl<S> fmt::Debug for Socket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("queued", &self.out.len())
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
        Socket {
            read: ReadSide::Idle(FragmentCollectorRead::new(read)),
            write: WriteSide::Idle(write),
            obligations: Arc::default(),
            out: VecDeque::new(),
            queued: 0,
            dirty: false,
            close_sent: false,
            close_received: false,
            flushing: None,
        }
    }

    /// Moves the reader's obligations behind the frames already accepted.
    fn take_obligations(&mut self) {
        let mut obligations = self
            .obligations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for frame in obligations.drain(..) {
            self.queued += frame.payload.len();
            self.out.push_back(frame);
        }
    }

    /// Writes every queued frame and flushes the stream.
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WebSocketError>> {
        loop {
            match &mut self.write {
                WriteSide::Lost => return Poll::Ready(Err(WebSocketError::ConnectionClosed)),
                WriteSide::Busy(fut) => {
                    let (writer, result) = ready!(fut.as_mut().poll(cx));
                    self.write = WriteSide::Idle(writer);
                    result?;
                }
                WriteSide::Idle(_) => {
                    self.take_obligations();
                    let frame = match self.out.pop_front() {
                        Some(frame) => {
                            self.queued -= frame.payload.len();
                            frame
                        }
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
                    self.close_sent = frame.opcode == OpCode::Close;
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

    /// Moves the writes on from the read side, without taking the flushing task's place.
    fn nudge_writes(&mut self, cx: &mut Context<'_>) {
        // An error here comes back to whoever flushes next.
        match self.flushing.clone() {
            Some(waker) => {
                let _ = self.poll_write_all(&mut Context::from_waker(&waker));
            }
            None => {
                let _ = self.poll_write_all(cx);
            }
        }
    }

    fn read_future(mut reader: Reader<S>, obligations: Obligations) -> ReadFuture<S> {
        Box::pin(async move {
            let mut send = |frame: Frame<'static>| {
                obligations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(frame);
                std::future::ready(Ok::<(), Infallible>(()))
            };
            let result = reader.read_frame(&mut send).await;
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
        if !this.out.is_empty() || matches!(this.write, WriteSide::Busy(_)) {
            this.nudge_writes(cx);
        }
        loop {
            match &mut this.read {
                ReadSide::Done => return Poll::Ready(None),
                ReadSide::Idle(_) => {
                    let ReadSide::Idle(reader) = std::mem::replace(&mut this.read, ReadSide::Done)
                    else {
                        unreachable!()
                    };
                    this.read = ReadSide::Busy(Self::read_future(reader, this.obligations.clone()));
                }
                ReadSide::Busy(fut) => {
                    let (reader, result) = ready!(fut.as_mut().poll(cx));
                    this.read = ReadSide::Idle(reader);
                    if matches!(result, Err(WebSocketError::InvalidCloseCode)) {
                        // fastwebsockets queued a 1002 reply; the close logic sends its own
                        // (the verdict's reply), so that the report names what was sent.
                        let mut obligations = this
                            .obligations
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        obligations.retain(|f| f.opcode != OpCode::Close);
                    }
                    this.nudge_writes(cx);
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
        this.flushing = Some(cx.waker().clone());
        let result = ready!(this.poll_write_all(cx));
        this.flushing = None;
        Poll::Ready(result)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let queued_close = this.out.iter().any(|f| f.opcode == OpCode::Close);
        if this.close_sent || queued_close {
            return Err(WebSocketError::ConnectionClosed);
        }
        this.take_obligations();
        let frame = item.into_frame();
        this.queued += frame.payload.len();
        this.out.push_back(frame);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        this.flushing = Some(cx.waker().clone());
        let result = ready!(this.poll_write_all(cx));
        this.flushing = None;
        Poll::Ready(result)
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
