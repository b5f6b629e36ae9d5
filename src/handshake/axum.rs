//! The opening phase of axum upgrades: [`Config::on_upgrade`] and [`Config::reject_upgrade`].
//!
//! axum (hyper) reads the upgrade request and answers it; the crate sees the phase from the
//! handler to the upgraded socket: it refuses upgrades during a drain with 503, counts and logs
//! refusals, and a failed upgrade (the client vanished between the 101 and the upgrade, an I/O
//! error). Reading the request headers belongs to hyper, before the handler runs: bound it
//! there (a slow client that never completes its request never reaches the handler).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::{OnFailedUpgrade, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::{DRAIN_BODY, HandshakeOutcome, never_opened};
use crate::conn::Opening;
use crate::registry::HandshakeGuard;
use crate::telemetry::{self, HandshakeEnd, Series};
use crate::{Cause, Config, Outcome, Role, WebSocket};

/// Records an axum handshake's end.
fn record(
    series: Series,
    conn_id: u64,
    outcome: HandshakeOutcome,
    status: Option<u16>,
    started: Instant,
    error: Option<&axum::Error>,
) {
    telemetry::on_handshake(&HandshakeEnd {
        series,
        conn_id,
        outcome,
        status,
        duration: started.elapsed(),
        error: error.map(|e| e as &(dyn std::error::Error + 'static)),
        // As for tokio-tungstenite's handshake: a peer that went away is expected.
        warn: outcome == HandshakeOutcome::Failed
            && error.is_some_and(|e| upgrade_failure(e).0 == Outcome::IoError),
    });
}

/// How a failed axum upgrade reads as the end of a connection, classified as the rest of the
/// crate classifies it: an I/O error in hyper's chain by its kind (`classify_io`: a reset is
/// `peer_gone`); hyper's upgrade canceled, or the connection closed or cut before the upgrade
/// completed (the client went away between its request and the 101), `peer_gone`; anything
/// else an `io_error`.
fn upgrade_failure(error: &axum::Error) -> (Outcome, Cause) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let crate::classify::Verdict::Fatal { outcome, cause, .. } =
                crate::classify::classify_io(io.kind())
            {
                return (outcome, cause);
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_canceled() || h.is_closed() || h.is_incomplete_message() {
                return (Outcome::PeerGone, Cause::Transport);
            }
        }
        source = e.source();
    }
    (Outcome::IoError, Cause::Transport)
}

/// An axum upgrade between the handler and the upgraded socket: a connection `Connecting`.
/// Dropped without either callback having run (hyper gave up on the connection), it records
/// a failure.
struct Pending {
    series: Series,
    started: Instant,
    done: AtomicBool,
    opening: Arc<Opening>,
    _guard: Option<HandshakeGuard>,
}

impl Pending {
    /// Records the end once; `false` if it was already recorded. A failure ends the
    /// connection's handles too.
    fn end(&self, outcome: HandshakeOutcome, error: Option<&axum::Error>) -> bool {
        if self.done.swap(true, Ordering::AcqRel) {
            return false;
        }
        let id = self.opening.id();
        record(self.series, id, outcome, None, self.started, error);
        if outcome != HandshakeOutcome::Accepted {
            let (outcome, cause) =
                error.map_or((Outcome::IoError, Cause::Transport), upgrade_failure);
            self.opening.end(never_opened(outcome, cause));
        }
        true
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.end(HandshakeOutcome::Failed, None);
    }
}

impl Config {
    /// axum's `WebSocketUpgrade::on_upgrade`, with this config: the upgraded socket is wrapped
    /// (`Config::server`) and handed to `callback`. During a drain of this config's registry
    /// the upgrade is refused with `503 Service Unavailable` instead; a failed upgrade is
    /// counted and logged (and `upgrade`'s own `on_failed_upgrade` callback still runs).
    ///
    /// ```no_run
    /// use axum::extract::ws::{Message, WebSocketUpgrade};
    /// use axum::extract::State;
    /// use axum::response::Response;
    ///
    /// async fn ws(State(config): State<wsclose::Config>, upgrade: WebSocketUpgrade) -> Response {
    ///     config.on_upgrade(upgrade, |mut ws| async move {
    ///         while let Some(Ok(msg)) = ws.recv().await {
    ///             if let Message::Text(_) = msg {
    ///                 if ws.send(msg).await.is_err() {
    ///                     return;
    ///                 }
    ///             }
    ///         }
    ///     })
    /// }
    /// ```
    pub fn on_upgrade<F, C, Fut>(&self, upgrade: WebSocketUpgrade<F>, callback: C) -> Response
    where
        F: OnFailedUpgrade,
        C: FnOnce(WebSocket<axum::extract::ws::WebSocket>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let started = Instant::now();
        let opening = Opening::new(self.series(Role::Server), self.close_timeout);
        let guard = self
            .registry
            .as_ref()
            .map(|r| r.handshake_started(opening.handle()));
        if self
            .registry
            .as_ref()
            .is_some_and(crate::Registry::refuse_if_draining)
        {
            let series = self.series(Role::Server);
            let id = opening.id();
            record(
                series,
                id,
                HandshakeOutcome::Rejected,
                Some(503),
                started,
                None,
            );
            opening.end(never_opened(Outcome::Clean, Cause::Shutdown));
            return (StatusCode::SERVICE_UNAVAILABLE, DRAIN_BODY).into_response();
        }
        let pending = Arc::new(Pending {
            series: self.series(Role::Server),
            started,
            done: AtomicBool::new(false),
            opening,
            _guard: guard,
        });
        let failed = pending.clone();
        let config = self.clone();
        upgrade
            .on_failed_upgrade(move |error: axum::Error| {
                failed.end(HandshakeOutcome::Failed, Some(&error));
            })
            .on_upgrade(move |socket| async move {
                if !pending.opening.claim() {
                    // Given up meanwhile (a close not acted on within its deadline): dropped.
                    pending.end(HandshakeOutcome::Rejected, None);
                    return;
                }
                pending.end(HandshakeOutcome::Accepted, None);
                // A close through a registry's handle meanwhile is applied at once.
                let ws = pending.opening.open(socket, &config);
                drop(pending); // after the wrap: a drain sees it either here or registered
                callback(ws).await;
            })
    }

    /// Refuses an axum upgrade with `status` and a short plain-text `body`: counted and logged
    /// as a `rejected` handshake. Return it from the handler instead of upgrading (auth, rate
    /// limits, overload).
    pub fn reject_upgrade(&self, status: StatusCode, body: &'static str) -> Response {
        let series = self.series(Role::Server);
        let code = Some(status.as_u16());
        record(
            series,
            crate::conn::next_id(),
            HandshakeOutcome::Rejected,
            code,
            Instant::now(),
            None,
        );
        (status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_upgrade_is_classified_by_its_cause() {
        let reset = axum::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            upgrade_failure(&reset),
            (Outcome::PeerGone, Cause::Transport)
        );
        let other = axum::Error::new(std::io::Error::other("disk on fire"));
        assert_eq!(
            upgrade_failure(&other),
            (Outcome::IoError, Cause::Transport)
        );
        let plain = axum::Error::new("no cause");
        assert_eq!(
            upgrade_failure(&plain),
            (Outcome::IoError, Cause::Transport)
        );
    }
}
