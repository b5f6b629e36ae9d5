//! The fixed vocabulary of a connection's end: [`Outcome`], [`Cause`], [`Role`], [`State`],
//! and the [`CloseReport`] every closer receives.

use std::fmt;
use std::time::Duration;

macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The metric label (bounded, stable).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            /// The position of this value in [`ALL`](Self::ALL): its slot in a metric backend's
            /// per-label arrays.
            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// How a connection ended. Each connection ends exactly once, with one outcome.
    pub enum Outcome {
        /// Both Close frames exchanged and the transport closed within the deadline. (For a
        /// handle of a connection that never opened: its upgrade was refused with an HTTP
        /// status, or given up by the application; never counted as a close.)
        Clean => "clean",
        /// The transport ended without a complete handshake: reset, EOF, broken pipe.
        PeerGone => "peer_gone",
        /// The close deadline passed before the handshake completed; the transport was
        /// terminated.
        Timeout => "timeout",
        /// The peer violated the protocol (invalid close code, bad frame, data after close).
        ProtocolError => "protocol_error",
        /// Any other I/O error on the transport.
        IoError => "io_error",
        /// Anything else: a bug in this crate or in the application.
        InternalError => "internal_error",
    }
}

impl Outcome {
    /// Whether this end is part of normal life for a WebSocket service (`clean`,
    /// `peer_gone`, `timeout`) rather than an error someone should look at.
    pub const fn is_expected(self) -> bool {
        matches!(self, Outcome::Clean | Outcome::PeerGone | Outcome::Timeout)
    }
}

label_enum! {
    /// How an opening handshake run by the crate ended (the `outcome` label of
    /// `websocket_handshakes_total`).
    pub enum HandshakeOutcome {
        /// The upgrade completed: the connection is open and wrapped.
        Accepted => "accepted",
        /// An HTTP status was answered instead of the upgrade (the server refused it).
        Rejected => "rejected",
        /// The upgrade was malformed, the peer went away, or the transport failed.
        Failed => "failed",
        /// The handshake deadline passed (or a drain's grace period ended) first.
        Timeout => "timeout",
    }
}

label_enum! {
    /// Who or what started the end of a connection.
    pub enum Cause {
        /// The application asked to close (or dropped every handle).
        App => "app",
        /// A server-wide drain closed the connection.
        Shutdown => "shutdown",
        /// A ping went unanswered.
        Keepalive => "keepalive",
        /// The connection reached its maximum lifetime.
        Lifetime => "lifetime",
        /// The peer sent a Close frame first, or broke the protocol.
        Peer => "peer",
        /// The transport ended with no Close frame either way.
        Transport => "transport",
    }
}

label_enum! {
    /// Which side of the connection this endpoint is.
    pub enum Role {
        /// The endpoint accepted the connection.
        Server => "server",
        /// The endpoint opened the connection.
        Client => "client",
    }
}

/// The life cycle of a connection: `Connecting → Open → Closing → Closed`.
///
/// `Connecting` is the opening handshake when the crate runs it ([`Config::accept`],
/// [`Config::connect`] and their kin, axum's `Config::on_upgrade`): a handle taken then
/// ([`Handshake::handle`], [`Registry::handles`]) follows the connection through every state.
/// A connection wrapped after a handshake run elsewhere starts `Open`.
///
/// [`Config::accept`]: crate::Config::accept
/// [`Config::connect`]: crate::Config::connect
/// [`Handshake::handle`]: crate::Handshake::handle
/// [`Registry::handles`]: crate::Registry::handles
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// The opening handshake is under way.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// The close has started; it records who started it.
    Closing(Cause),
    /// The transport is closed and the [`CloseReport`] is final.
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Connecting => f.write_str("connecting"),
            State::Open => f.write_str("open"),
            State::Closing(cause) => write!(f, "closing({cause})"),
            State::Closed => f.write_str("closed"),
        }
    }
}

/// A close code seen on the wire, in one direction, as a [`CloseReport`] records it.
///
/// Named apart from tungstenite's `CloseCode` (the code to send) on purpose: this one is what
/// was observed, including codes the protocol forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireCode {
    /// A Close frame without a status code (reported as 1005 by WebSocket APIs).
    NoStatus,
    /// A code the protocol allows.
    Valid(u16),
    /// A code the protocol forbids on the wire. The value is the peer's when the protocol
    /// layer let it through, `None` when tungstenite had already replaced it.
    Invalid(Option<u16>),
}

impl WireCode {
    /// Classifies a code as received on the wire (`None`: a Close frame without a code).
    ///
    /// ```
    /// use wsclose::WireCode;
    /// assert_eq!(WireCode::from_wire(Some(1000)), WireCode::Valid(1000));
    /// assert_eq!(WireCode::from_wire(Some(1005)), WireCode::Invalid(Some(1005)));
    /// assert_eq!(WireCode::from_wire(None), WireCode::NoStatus);
    /// ```
    pub fn from_wire(code: Option<u16>) -> WireCode {
        match code {
            None => WireCode::NoStatus,
            Some(c) if crate::code::is_valid_received(c) => WireCode::Valid(c),
            Some(c) => WireCode::Invalid(Some(c)),
        }
    }

    /// The numeric code, when known.
    pub fn code(self) -> Option<u16> {
        match self {
            WireCode::NoStatus | WireCode::Invalid(None) => None,
            WireCode::Valid(c) | WireCode::Invalid(Some(c)) => Some(c),
        }
    }

    /// The bounded metric label (see [`code_label`](crate::code_label)).
    pub fn as_str(self) -> &'static str {
        crate::CODE_LABELS[self.label_index()]
    }

    /// The position of [`as_str`](Self::as_str) in [`CODE_LABELS`](crate::CODE_LABELS).
    pub(crate) const fn label_index(self) -> usize {
        match self {
            WireCode::NoStatus => crate::code::code_index(None),
            WireCode::Valid(c) => crate::code::code_index(Some(c)),
            WireCode::Invalid(_) => crate::code::INVALID_INDEX,
        }
    }
}

impl fmt::Display for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(c) => write!(f, "{c} ({})", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

/// The final account of how a connection ended. Every caller of `close`, every handle and
/// every waiter sees the same report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Who or what started the end.
    pub cause: Cause,
    /// The Close frame this endpoint put on the wire, if one was sent.
    pub code_sent: Option<WireCode>,
    /// The Close frame the peer sent, if one arrived.
    pub code_received: Option<WireCode>,
    /// The peer's close reason, sanitized for display (escaped, at most 123 bytes).
    pub reason_received: Option<String>,
    /// From the first Close frame sent or received to the transport closed; `None` when no
    /// Close frame went either way.
    pub close_duration: Option<Duration>,
    /// From the wrap to the transport closed.
    pub connection_duration: Duration,
    /// Messages accepted for sending that were never confirmed delivered.
    pub messages_dropped: u64,
}

impl CloseReport {
    /// Shorthand for `self.outcome.is_expected()`.
    pub fn is_expected(&self) -> bool {
        self.outcome.is_expected()
    }
}

impl fmt::Display for CloseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (cause {})", self.outcome, self.cause)?;
        if let Some(code) = self.code_sent {
            write!(f, ", sent {code}")?;
        }
        if let Some(code) = self.code_received {
            write!(f, ", received {code}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_verdicts_follow_the_documented_taxonomy() {
        let expected: Vec<_> = Outcome::ALL.iter().filter(|o| o.is_expected()).collect();
        assert_eq!(
            expected,
            [&Outcome::Clean, &Outcome::PeerGone, &Outcome::Timeout]
        );
    }

    #[test]
    fn labels_are_exact() {
        let outcomes: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            outcomes,
            [
                "clean",
                "peer_gone",
                "timeout",
                "protocol_error",
                "io_error",
                "internal_error"
            ]
        );
        let causes: Vec<_> = Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            causes,
            [
                "app",
                "shutdown",
                "keepalive",
                "lifetime",
                "peer",
                "transport"
            ]
        );
        let roles: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, ["server", "client"]);
    }

    #[test]
    fn indices_are_positions_in_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, r) in Role::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn close_code_labels() {
        assert_eq!(WireCode::NoStatus.as_str(), "no_status");
        assert_eq!(WireCode::Valid(1011).as_str(), "internal_error");
        assert_eq!(WireCode::Valid(4001).as_str(), "application");
        assert_eq!(WireCode::Invalid(Some(1005)).as_str(), "invalid");
        assert_eq!(WireCode::Invalid(None).code(), None);
        assert_eq!(WireCode::Valid(1000).to_string(), "1000 (normal_closure)");
    }
}
