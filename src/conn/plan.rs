//! How a close begins: what to send, what was received, what is already decided. Whoever
//! takes the transport out of the gate builds the [`Plan`]; the close task carries it out.

use std::time::Duration;

use crate::classify::received_code;
use crate::code::{MAX_REASON_BYTES, check_close_code, sanitize_reason, truncate_utf8};
use crate::{Cause, Error, Outcome, WireCode};

use super::OutFrame;

/// How a close begins; built by whoever takes the transport.
pub(super) struct Plan {
    pub(super) cause: Cause,
    /// Our Close frame, when we send one.
    pub(super) send: Option<OutFrame>,
    /// tungstenite already queued this reply to the peer's Close; flush it at once.
    pub(super) reply: Option<WireCode>,
    /// The peer's Close frame, when the application's reader saw it.
    pub(super) received: Option<(WireCode, Option<String>)>,
    /// The outcome is already known (a fatal error began the close).
    pub(super) preset: Option<(Outcome, String)>,
    /// Read after sending, until the peer's Close or EOF.
    pub(super) drain: bool,
    /// A shorter deadline than the configured close timeout.
    pub(super) budget: Option<Duration>,
    /// Begun by the drop of the last application handle (see [`Plan::dropped`]).
    pub(super) dropped: bool,
}

impl Plan {
    pub(super) fn close(cause: Cause, frame: OutFrame) -> Self {
        Plan {
            cause,
            send: Some(frame),
            reply: None,
            received: None,
            preset: None,
            drain: true,
            budget: None,
            dropped: false,
        }
    }

    /// The last application handle was dropped without a close: `1001 going away`, counted as
    /// the application's, unless the runtime itself is being torn down (see `Closer`'s `Drop`).
    pub(super) fn dropped() -> Self {
        Plan {
            dropped: true,
            ..Plan::close(Cause::App, Some((1001, String::new())))
        }
    }

    pub(super) fn peer_closed(frame: Option<(u16, &str)>) -> Self {
        let code = received_code(frame, true);
        // tungstenite echoes the (possibly substituted) frame back as its reply.
        let reply = match frame {
            None => WireCode::NoStatus,
            Some((c, _)) => WireCode::Valid(c),
        };
        // A substituted frame carries tungstenite's reason, not the peer's: report none.
        let reason = match code {
            WireCode::Invalid(None) => None,
            _ => frame.map(|(_, r)| sanitize_reason(r)),
        };
        Plan {
            cause: Cause::Peer,
            send: None,
            reply: Some(reply),
            received: Some((code, reason)),
            preset: None,
            drain: true,
            budget: None,
            dropped: false,
        }
    }

    pub(super) fn failed(
        outcome: Outcome,
        cause: Cause,
        reply: Option<u16>,
        error: String,
    ) -> Self {
        Plan {
            cause,
            send: reply.map(|code| Some((code, String::new()))),
            reply: None,
            received: None,
            preset: Some((outcome, error)),
            drain: false,
            budget: None,
            dropped: false,
        }
    }

    /// No pong in time: the peer is presumed dead. Send 1011 if the socket takes it at once,
    /// then terminate; waiting out a handshake with a dead peer would only delay the end.
    pub(super) fn keepalive_timeout() -> Self {
        Plan {
            budget: Some(KEEPALIVE_CLOSE_BUDGET),
            ..Plan::failed(
                Outcome::Timeout,
                Cause::Keepalive,
                Some(1011),
                "no pong within the keepalive timeout".into(),
            )
        }
    }
}

/// How long a keepalive close may try to put its Close frame on the wire.
const KEEPALIVE_CLOSE_BUDGET: Duration = Duration::from_millis(250);

/// [`validate`] for tokio-tungstenite's form of a Close frame.
pub(super) fn validate_frame(
    frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) -> Result<OutFrame, Error> {
    validate(
        frame
            .as_ref()
            .map(|f| (u16::from(f.code), f.reason.as_str())),
    )
}

/// Checks an application-supplied Close frame: refuses forbidden codes, cuts the reason.
pub(super) fn validate(frame: Option<(u16, &str)>) -> Result<OutFrame, Error> {
    match frame {
        None => Ok(None),
        Some((code, reason)) => {
            check_close_code(code)?;
            Ok(Some((
                code,
                truncate_utf8(reason, MAX_REASON_BYTES).to_owned(),
            )))
        }
    }
}
