//! Mapping of transport errors and received Close frames onto the taxonomy.
//!
//! The table in `docs/design.md` mirrors this file; the tests below check the functions against
//! every tungstenite error variant and close code.

use std::io;

use crate::{Cause, Outcome, WireCode};

/// What a transport error means for the connection: the answer of
/// [`Transport::verdict`](crate::Transport::verdict).
///
/// The constructors cover the taxonomy a transport maps its errors onto: [`peer_gone`]
/// (reset, EOF), [`protocol_error`] (the peer broke RFC 6455), [`io_error`] (any other I/O
/// failure), [`internal`] (a bug on this side: a write after the library closed, a misuse) and
/// [`from_io`] for an `std::io::ErrorKind`.
///
/// [`peer_gone`]: Verdict::peer_gone
/// [`protocol_error`]: Verdict::protocol_error
/// [`io_error`]: Verdict::io_error
/// [`internal`]: Verdict::internal
/// [`from_io`]: Verdict::from_io
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The connection is over: it ends with `outcome`, started by `cause`.
    Fatal {
        /// How the connection ends (the report's and the metrics' `outcome`).
        outcome: Outcome,
        /// Who ended it (the report's and the metrics' `cause`).
        cause: Cause,
        /// A Close frame with this code is sent (best effort) before the transport is shut
        /// down. `None` when the library already queued or sent its own Close frame for this
        /// error, or when nothing can be sent any more.
        reply: Option<u16>,
    },
    /// The operation failed but the connection goes on (the caller gets the error back, the
    /// connection stays open): a full write buffer, for instance.
    Recoverable,
}

impl Verdict {
    /// The peer went away without a closing handshake: a reset, an EOF, a broken pipe.
    pub const fn peer_gone() -> Self {
        fatal(Outcome::PeerGone, Cause::Transport, None)
    }

    /// The peer broke the protocol; `reply` is the Close code to send it (1002, 1007, 1009…),
    /// or `None` when the library already queued its own.
    pub const fn protocol_error(reply: Option<u16>) -> Self {
        fatal(Outcome::ProtocolError, Cause::Peer, reply)
    }

    /// An I/O failure that is not the peer going away.
    pub const fn io_error() -> Self {
        fatal(Outcome::IoError, Cause::Transport, None)
    }

    /// A failure on this side: the library was used after it closed, or an error that has no
    /// place in the taxonomy.
    pub const fn internal() -> Self {
        fatal(Outcome::InternalError, Cause::App, None)
    }

    /// Classifies an I/O error kind: reset, aborted, broken pipe, EOF and not connected are
    /// [`peer_gone`](Verdict::peer_gone), a timeout is `timeout`, anything else
    /// [`io_error`](Verdict::io_error).
    pub fn from_io(kind: io::ErrorKind) -> Self {
        classify_io(kind)
    }
}

const fn fatal(outcome: Outcome, cause: Cause, reply: Option<u16>) -> Verdict {
    Verdict::Fatal {
        outcome,
        cause,
        reply,
    }
}

/// Classifies an I/O error kind.
pub(crate) fn classify_io(kind: io::ErrorKind) -> Verdict {
    use io::ErrorKind::*;
    match kind {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
            fatal(Outcome::PeerGone, Cause::Transport, None)
        }
        TimedOut => fatal(Outcome::Timeout, Cause::Transport, None),
        _ => fatal(Outcome::IoError, Cause::Transport, None),
    }
}

/// Defines a classifier for one tungstenite version's `Error` (axum may pin another version
/// than tokio-tungstenite; the variants are the same, so the table is written once).
macro_rules! tungstenite_classifier {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($ws:ident)::+)) => {
        $(#[$meta])*
        $vis fn $name(err: &$($ws)::+::Error) -> Verdict {
            use $($ws)::+::Error as E;
            use $($ws)::+::error::ProtocolError as P;
            match err {
                // tungstenite's "closed normally": the handshake finished.
                E::ConnectionClosed => fatal(Outcome::Clean, Cause::Transport, None),
                // Using a connection tungstenite already closed: a bug on this side.
                E::AlreadyClosed => fatal(Outcome::InternalError, Cause::App, None),
                E::Io(e) => classify_io(e.kind()),
                E::Tls(_) => fatal(Outcome::IoError, Cause::Transport, None),
                E::Capacity(_) => fatal(Outcome::ProtocolError, Cause::Peer, Some(1009)),
                E::Protocol(P::ResetWithoutClosingHandshake) => {
                    fatal(Outcome::PeerGone, Cause::Transport, None)
                }
                E::Protocol(P::SendAfterClosing) => fatal(Outcome::InternalError, Cause::App, None),
                E::Protocol(P::ReceivedAfterClosing) => {
                    fatal(Outcome::ProtocolError, Cause::Peer, None)
                }
                E::Protocol(_) => fatal(Outcome::ProtocolError, Cause::Peer, Some(1002)),
                E::WriteBufferFull(_) => Verdict::Recoverable,
                E::Utf8(_) => fatal(Outcome::ProtocolError, Cause::Peer, Some(1007)),
                E::AttackAttempt => fatal(Outcome::ProtocolError, Cause::Peer, Some(1008)),
                E::Url(_) => fatal(Outcome::InternalError, Cause::App, None),
                E::Http(_) | E::HttpFormat(_) => fatal(Outcome::ProtocolError, Cause::Peer, None),
            }
        }
    };
}

/// Whether `err` is tungstenite's error for a Close frame whose payload it could not parse
/// (one byte: half a status code). That Close frame counts as received with an invalid code.
///
/// tungstenite reports the other malformed Close frames (fragmented, a payload over 125 bytes,
/// a reason that is not UTF-8) with the same errors as a malformed Ping, Pong or Text frame,
/// without the opcode, so they cannot be told apart here and are not counted as Close frames.
macro_rules! malformed_close {
    ($err:expr, $($ws:ident)::+) => {
        matches!(
            $err,
            $($ws)::+::Error::Protocol($($ws)::+::error::ProtocolError::InvalidCloseSequence)
        )
    };
}
pub(crate) use malformed_close;

tungstenite_classifier!(
    /// Classifies an error of tokio-tungstenite's tungstenite.
    pub(crate) fn classify_ws(tokio_tungstenite::tungstenite)
);

#[cfg(feature = "axum")]
tungstenite_classifier!(
    /// Classifies an error of the tungstenite version axum uses.
    pub(crate) fn classify_ws_axum(tungstenite_axum)
);

/// The reason tungstenite substitutes, together with code 1002, for a peer's invalid code.
pub(crate) const SUBSTITUTED_REASON: &str = "Protocol violation";

/// Classifies a Close frame received from the peer.
///
/// `may_be_substituted` is true while we had not sent our own Close: in that state tungstenite
/// replaces an invalid code by `1002 "Protocol violation"` before handing the frame over, so
/// that exact pair is read as an invalid code whose value is lost.
pub(crate) fn received_code(frame: Option<(u16, &str)>, may_be_substituted: bool) -> WireCode {
    match frame {
        None => WireCode::NoStatus,
        Some((1002, SUBSTITUTED_REASON)) if may_be_substituted => WireCode::Invalid(None),
        Some((code, _)) => WireCode::from_wire(Some(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError as P, UrlError};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message, http};

    fn io(kind: io::ErrorKind) -> WsError {
        WsError::Io(io::Error::from(kind))
    }

    #[test]
    fn every_tungstenite_variant() {
        use Cause::*;
        use Outcome::*;
        let resp = http::Response::builder().status(500).body(None).unwrap();
        let http_format = http::Request::builder().uri("\u{0}").body(()).unwrap_err();
        let rows: Vec<(WsError, Verdict)> = vec![
            (WsError::ConnectionClosed, fatal(Clean, Transport, None)),
            (WsError::AlreadyClosed, fatal(InternalError, App, None)),
            (
                io(io::ErrorKind::ConnectionReset),
                fatal(PeerGone, Transport, None),
            ),
            (
                WsError::Capacity(CapacityError::MessageTooLong {
                    size: 2,
                    max_size: 1,
                }),
                fatal(ProtocolError, Peer, Some(1009)),
            ),
            (
                WsError::Protocol(P::ResetWithoutClosingHandshake),
                fatal(PeerGone, Transport, None),
            ),
            (
                WsError::WriteBufferFull(Box::new(Message::text("x"))),
                Verdict::Recoverable,
            ),
            (
                WsError::Utf8("bad".into()),
                fatal(ProtocolError, Peer, Some(1007)),
            ),
            (
                WsError::AttackAttempt,
                fatal(ProtocolError, Peer, Some(1008)),
            ),
            (
                WsError::Url(UrlError::EmptyHostName),
                fatal(InternalError, App, None),
            ),
            (
                WsError::Http(Box::new(resp)),
                fatal(ProtocolError, Peer, None),
            ),
            (
                WsError::HttpFormat(http_format),
                fatal(ProtocolError, Peer, None),
            ),
        ];
        for (err, want) in rows {
            assert_eq!(classify_ws(&err), want, "{err:?}");
        }
    }

    #[test]
    fn protocol_errors() {
        use Cause::*;
        use Outcome::*;
        let rows = [
            (
                P::ResetWithoutClosingHandshake,
                fatal(PeerGone, Transport, None),
            ),
            (P::SendAfterClosing, fatal(InternalError, App, None)),
            (P::ReceivedAfterClosing, fatal(ProtocolError, Peer, None)),
            (
                P::NonZeroReservedBits,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::UnmaskedFrameFromClient,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::MaskedFrameFromServer,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::FragmentedControlFrame,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::ControlFrameTooBig,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::UnknownControlFrameType(11),
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::UnknownDataFrameType(3),
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::UnexpectedContinueFrame,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (
                P::ExpectedFragment(Data::Text),
                fatal(ProtocolError, Peer, Some(1002)),
            ),
            (P::InvalidOpcode(3), fatal(ProtocolError, Peer, Some(1002))),
            (
                P::InvalidCloseSequence,
                fatal(ProtocolError, Peer, Some(1002)),
            ),
        ];
        for (p, want) in rows {
            assert_eq!(classify_ws(&WsError::Protocol(p.clone())), want, "{p:?}");
        }
    }

    #[test]
    fn io_kinds() {
        use Cause::*;
        use Outcome::*;
        use io::ErrorKind as K;
        let rows = [
            (K::ConnectionReset, fatal(PeerGone, Transport, None)),
            (K::ConnectionAborted, fatal(PeerGone, Transport, None)),
            (K::BrokenPipe, fatal(PeerGone, Transport, None)),
            (K::UnexpectedEof, fatal(PeerGone, Transport, None)),
            (K::NotConnected, fatal(PeerGone, Transport, None)),
            (K::TimedOut, fatal(Timeout, Transport, None)),
            (K::PermissionDenied, fatal(IoError, Transport, None)),
            (K::Other, fatal(IoError, Transport, None)),
            (K::OutOfMemory, fatal(IoError, Transport, None)),
        ];
        for (kind, want) in rows {
            assert_eq!(classify_ws(&io(kind)), want, "{kind:?}");
        }
    }

    #[test]
    fn received_codes() {
        assert_eq!(received_code(None, true), WireCode::NoStatus);
        assert_eq!(received_code(Some((1000, "")), true), WireCode::Valid(1000));
        assert_eq!(
            received_code(Some((1011, "oops")), true),
            WireCode::Valid(1011)
        );
        assert_eq!(
            received_code(Some((4001, "")), false),
            WireCode::Valid(4001)
        );
        assert_eq!(
            received_code(Some((1002, SUBSTITUTED_REASON)), true),
            WireCode::Invalid(None)
        );
        assert_eq!(
            received_code(Some((1002, SUBSTITUTED_REASON)), false),
            WireCode::Valid(1002)
        );
        assert_eq!(
            received_code(Some((1002, "bad frame")), true),
            WireCode::Valid(1002)
        );
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                received_code(Some((code, "")), false),
                WireCode::Invalid(Some(code))
            );
        }
    }
}
