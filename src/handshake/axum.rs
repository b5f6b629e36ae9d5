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

use super::{DRAIN_BODY, HandshakeOutcome};
use crate::registry::HandshakeGuard;
use crate::telemetry::{self, HandshakeEnd, Series};
use crate::{Config, Role, WebSocket};

/// Records an axum handshake's end.
fn record(
    series: Series,
    outcome: HandshakeOutcome,
    status: Option<u16>,
    started: Instant,
    error: Option<&axum::Error>,
) {
    telemetry::on_handshake(&HandshakeEnd {
        series,
        outcome,
        status,
        duration: started.elapsed(),
        error: error.map(|e| e as &(dyn std::error::Error + 'static)),
        // A failed axum upgrade is an I/O error after the 101, or hyper giving up on it.
        warn: outcome == HandshakeOutcome::Failed,
    });
}

/// An axum upgrade between the handler and the upgraded socket. Dropped without either
/// callback having run (hyper gave up on the connection), it records a failure.
struct Pending {
    series: Series,
    started: Instant,
    done: AtomicBool,
    _guard: Option<HandshakeGuard>,
}

impl Pending {
    /// Records the end once; `false` if it was already recorded.
    fn end(&self, outcome: HandshakeOutcome, error: Option<&axum::Error>) -> bool {
        if self.done.swap(true, Ordering::AcqRel) {
            return false;
        }
        record(self.series, outcome, None, self.started, error);
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
        let guard = self.registry.as_ref().map(|r| r.handshake_started());
        if guard
            .as_ref()
            .is_some_and(HandshakeGuard::refuse_if_draining)
        {
            let series = self.series(Role::Server);
            record(series, HandshakeOutcome::Rejected, Some(503), started, None);
            return (StatusCode::SERVICE_UNAVAILABLE, DRAIN_BODY).into_response();
        }
        let pending = Arc::new(Pending {
            series: self.series(Role::Server),
            started,
            done: AtomicBool::new(false),
            _guard: guard,
        });
        let failed = pending.clone();
        let config = self.clone();
        upgrade
            .on_failed_upgrade(move |error: axum::Error| {
                failed.end(HandshakeOutcome::Failed, Some(&error));
            })
            .on_upgrade(move |socket| async move {
                pending.end(HandshakeOutcome::Accepted, None);
                let ws = config.server(socket);
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
            HandshakeOutcome::Rejected,
            code,
            Instant::now(),
            None,
        );
        (status, body).into_response()
    }
}
