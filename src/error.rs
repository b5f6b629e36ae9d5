//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

use crate::{CloseReport, Outcome, State};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors from wrapped connections and their configuration.
///
/// Use the predicates (`is_closed`, `is_invalid_close_code`, ...) and accessors to tell
/// errors apart; the [`Display`](fmt::Display) text is for humans and is not a stable API.
/// The underlying tungstenite or I/O error, when there is one, is kept as [`source`].
///
/// A clean close is not an error: streams end with `None`, and `close` returns a
/// [`CloseReport`].
///
/// [`source`]: std::error::Error::source
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// A send on a connection that is closing or closed.
    Closed {
        state: State,
        report: Option<CloseReport>,
    },
    /// An outgoing close code the protocol forbids.
    InvalidCloseCode { code: u16, why: &'static str },
    /// The connection ended with an error while it was in use.
    Ended { outcome: Outcome },
    /// The message was refused but the connection goes on (e.g. a full write buffer).
    Rejected,
    /// A configuration value out of range.
    Config { what: &'static str, why: String },
    /// The opening handshake ended otherwise than `accepted`.
    Handshake {
        outcome: crate::HandshakeOutcome,
        status: Option<u16>,
    },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn closed(state: State, report: Option<CloseReport>) -> Self {
        Error::new(Kind::Closed { state, report })
    }

    pub(crate) fn config(what: &'static str, why: impl Into<String>) -> Self {
        Error::new(Kind::Config {
            what,
            why: why.into(),
        })
    }

    /// The connection is closing or closed: a send was refused (nothing was sent, nothing
    /// else happened). [`state`](Self::state) and [`report`](Self::report) say how it ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.inner.kind, Kind::Closed { .. })
    }

    /// A close code the protocol forbids was passed to `close`; nothing was sent.
    pub fn is_invalid_close_code(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidCloseCode { .. })
    }

    /// A configuration value was out of range.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config { .. })
    }

    /// The connection ended with an error while in use (read or write failed).
    pub fn is_connection_error(&self) -> bool {
        matches!(self.inner.kind, Kind::Ended { .. })
    }

    /// The message was refused and handed back in the source error, but the connection
    /// stays open (tungstenite's `WriteBufferFull`).
    pub fn is_rejected(&self) -> bool {
        matches!(self.inner.kind, Kind::Rejected)
    }

    /// How the opening handshake ended, when it did not end `accepted` (the connection was never
    /// open): `rejected`, `failed` or `timeout`.
    pub fn handshake(&self) -> Option<crate::HandshakeOutcome> {
        match self.inner.kind {
            Kind::Handshake { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    /// The HTTP status answered instead of the upgrade, for a `rejected` handshake (the server's
    /// own refusal, or the status a client received).
    pub fn status(&self) -> Option<u16> {
        match self.inner.kind {
            Kind::Handshake { status, .. } => status,
            _ => None,
        }
    }

    /// The connection's outcome when this error is about an ended connection.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.inner.kind {
            Kind::Ended { outcome } => Some(*outcome),
            Kind::Closed {
                report: Some(r), ..
            } => Some(r.outcome),
            _ => None,
        }
    }

    /// The connection's state when a send was refused.
    pub fn state(&self) -> Option<State> {
        match &self.inner.kind {
            Kind::Closed { state, .. } => Some(*state),
            _ => None,
        }
    }

    /// The final report, when the connection had already closed.
    pub fn report(&self) -> Option<&CloseReport> {
        match &self.inner.kind {
            Kind::Closed { report, .. } => report.as_ref(),
            _ => None,
        }
    }

    /// The refused close code, for [`is_invalid_close_code`](Self::is_invalid_close_code).
    pub fn close_code(&self) -> Option<u16> {
        match &self.inner.kind {
            Kind::InvalidCloseCode { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Closed {
                report: Some(report),
                ..
            } => {
                write!(f, "send refused: the connection is closed ({report})")
            }
            Kind::Closed {
                state,
                report: None,
            } => {
                write!(f, "send refused: the connection is {state}")
            }
            Kind::InvalidCloseCode { code, why } => {
                write!(f, "close code {code} may not be sent: {why}")
            }
            Kind::Ended { outcome } => write!(f, "the connection ended: {outcome}"),
            Kind::Rejected => f.write_str("message refused; the connection stays open"),
            Kind::Config { what, why } => write!(f, "invalid configuration for {what}: {why}"),
            Kind::Handshake {
                outcome,
                status: Some(status),
            } => write!(f, "websocket handshake {outcome}: HTTP {status}"),
            Kind::Handshake {
                outcome,
                status: None,
            } => write!(f, "websocket handshake {outcome}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("wsclose::Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source.as_ref().map(|e| &**e as _)
    }
}

/// For code written against tokio-tungstenite's error type (`?` in a function returning
/// `tungstenite::Result`, or [`compat::WebSocketStream`](crate::compat::WebSocketStream)).
///
/// - the library's own error, when this one carries it (an error that ended the connection, a
///   message refused with `WriteBufferFull`), is handed back as it was;
/// - a send refused because the connection is closing is `Protocol(SendAfterClosing)`, and
///   because it is closed `AlreadyClosed`, what tokio-tungstenite itself answers;
/// - an I/O error underneath is `Io`;
/// - anything else (a forbidden close code, a configuration error) is `Io` of kind
///   `InvalidInput` (or `Other`) wrapping this error, so it can be downcast back.
impl From<Error> for tokio_tungstenite::tungstenite::Error {
    fn from(e: Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::ProtocolError;

        match e.inner.kind {
            Kind::Closed {
                state: State::Closing(_),
                ..
            } => return WsError::Protocol(ProtocolError::SendAfterClosing),
            Kind::Closed { .. } => return WsError::AlreadyClosed,
            _ => {}
        }
        let Error { mut inner } = e;
        if let Some(source) = inner.source.take() {
            let source = match source.downcast::<WsError>() {
                Ok(ws) => return *ws,
                Err(other) => other,
            };
            match source.downcast::<std::io::Error>() {
                Ok(io) => return WsError::Io(*io),
                Err(other) => inner.source = Some(other),
            }
        }
        let kind = match inner.kind {
            Kind::InvalidCloseCode { .. } | Kind::Config { .. } => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        WsError::Io(std::io::Error::new(kind, Error { inner }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cause;

    #[test]
    fn predicates_match_kinds() {
        let e = Error::closed(State::Closing(Cause::App), None);
        assert!(e.is_closed() && !e.is_invalid_close_code());
        assert_eq!(e.state(), Some(State::Closing(Cause::App)));
        assert_eq!(
            e.to_string(),
            "send refused: the connection is closing(app)"
        );

        let e = Error::new(Kind::InvalidCloseCode {
            code: 1005,
            why: "reserved",
        });
        assert!(e.is_invalid_close_code());
        assert_eq!(e.close_code(), Some(1005));

        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::new(Kind::Ended {
            outcome: Outcome::PeerGone,
        })
        .with_source(io);
        assert_eq!(e.outcome(), Some(Outcome::PeerGone));
        let src = e
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(src.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
