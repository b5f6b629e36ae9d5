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
        // A failed axum upgrade is an I/O error after the 101, or hyper giving up on it.
        warn: outcome == HandshakeOutcome::Failed,
    });
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
            self.opening
                .end(never_opened(Outcome::IoError, Cause::Transport));
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
