//! The opening handshake, run by the crate: bounded by a deadline, its end classified, refused
//! during a drain.
//!
//! [`Config::accept`], [`Config::accept_with`] (server) and [`Config::connect`],
//! [`Config::client_handshake`] (client) run tokio-tungstenite's handshake under
//! [`Config::with_handshake_timeout`] (10 s by default) and wrap the connection when it is
//! accepted. Every handshake ends with one [`HandshakeOutcome`]: `accepted`, `rejected` (an HTTP
//! status instead of the upgrade: the application's callback refused it, a drain refused it with
//! 503, or, for a client, the server answered something else than 101), `failed` (a malformed
//! upgrade, a peer that went away, an I/O error) or `timeout` (the deadline passed: a peer that
//! sent half a request and stalled). Its file descriptor is released at once in every case but
//! `accepted`.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response as ServerResponse,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Error as WsError, error::ProtocolError};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::Kind;
use crate::registry::HandshakeGuard;
use crate::{Config, Error, HandshakeOutcome, Role, WebSocket, telemetry};

#[cfg(feature = "axum")]
mod axum;

/// The reason body of a refusal during a drain.
const DRAIN_BODY: &str = "server shutting down";

/// An answer that refuses an upgrade, for an [`accept_with`](Config::accept_with) callback:
/// `status` (4xx or 5xx) with a short plain-text `body`.
///
/// ```
/// use wsclose::tokio_tungstenite::tungstenite::http::StatusCode;
///
/// let refusal = wsclose::reject(StatusCode::TOO_MANY_REQUESTS, "slow down");
/// assert_eq!(refusal.status(), 429);
/// assert_eq!(refusal.body().as_deref(), Some("slow down"));
/// ```
pub fn reject(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        tokio_tungstenite::tungstenite::http::header::CONTENT_TYPE,
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The application's callback, behind the drain check: during a drain, every upgrade is refused
/// with 503 before the callback sees it.
struct Gatekeeper<C> {
    callback: C,
    guard: Option<HandshakeGuard>,
}

impl<C: Callback> Callback for Gatekeeper<C> {
    fn on_request(
        self,
        request: &Request,
        response: ServerResponse,
    ) -> Result<ServerResponse, ErrorResponse> {
        if let Some(guard) = &self.guard {
            if guard.refuse_if_draining() {
                let mut refusal = reject(StatusCode::SERVICE_UNAVAILABLE, DRAIN_BODY);
                refusal.headers_mut().insert(
                    tokio_tungstenite::tungstenite::http::header::CONNECTION,
                    tokio_tungstenite::tungstenite::http::HeaderValue::from_static("close"),
                );
                return Err(refusal);
            }
        }
        self.callback.on_request(request, response)
    }
}

/// Accepts every upgrade.
struct AcceptAll;

impl Callback for AcceptAll {
    fn on_request(
        self,
        _request: &Request,
        response: ServerResponse,
    ) -> Result<ServerResponse, ErrorResponse> {
        Ok(response)
    }
}

impl Config {
    /// The default deadline of an opening handshake: 10 seconds.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Sets the deadline of the opening handshake run by [`accept`](Self::accept),
    /// [`accept_with`](Self::accept_with), [`connect`](Self::connect) and
    /// [`client_handshake`](Self::client_handshake): from the call to the upgrade answered.
    /// When it passes, the transport is dropped (its file descriptor released) and the outcome
    /// is `timeout`.
    ///
    /// # Errors
    ///
    /// A value outside 1 ms..=10 min ([`Error::is_config`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        let range = Duration::from_millis(1)..=Duration::from_secs(600);
        if !range.contains(&timeout) {
            return Err(Error::config(
                "handshake_timeout",
                format!("{timeout:?} is outside 1ms..=600s"),
            ));
        }
        self.handshake_timeout = timeout;
        Ok(self)
    }

    /// The handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The series a handshake of `role` with this config moves.
    pub(crate) fn series(&self, role: Role) -> telemetry::Series {
        telemetry::Series {
            role,
            labels: self.labels,
        }
    }

    /// Runs the server side of the opening handshake on `stream` (a TCP or TLS stream just
    /// accepted) within the handshake deadline, and wraps the connection.
    ///
    /// During a [`Registry::shutdown`](crate::Registry::shutdown) of this config's registry,
    /// the upgrade is refused with `503 Service Unavailable`.
    ///
    /// # Errors
    ///
    /// The handshake did not end `accepted`: [`Error::handshake`] says how it ended,
    /// [`Error::status`] the HTTP status of a rejection; the source is tungstenite's error.
    pub async fn accept<S>(&self, stream: S) -> Result<WebSocket<WebSocketStream<S>>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.accept_with(stream, AcceptAll).await
    }

    /// [`accept`](Self::accept) with tokio-tungstenite's request callback: inspect the request
    /// (path, headers, `Sec-WebSocket-Protocol`), add response headers, or refuse with
    /// `Err(wsclose::reject(status, body))`, which is answered, counted and logged as a
    /// rejection.
    ///
    /// ```no_run
    /// use wsclose::tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    /// use wsclose::tokio_tungstenite::tungstenite::http::StatusCode;
    ///
    /// # async fn run(config: wsclose::Config, tcp: tokio::net::TcpStream) {
    /// let auth = |req: &Request, resp: Response| {
    ///     if req.headers().contains_key("authorization") {
    ///         Ok(resp)
    ///     } else {
    ///         Err(wsclose::reject(StatusCode::UNAUTHORIZED, "token required"))
    ///     }
    /// };
    /// match config.accept_with(tcp, auth).await {
    ///     Ok(ws) => { /* serve */ }
    ///     Err(e) => eprintln!("handshake {}: {e}", e.handshake().unwrap()),
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    pub async fn accept_with<S, C>(
        &self,
        stream: S,
        callback: C,
    ) -> Result<WebSocket<WebSocketStream<S>>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        C: Callback + Unpin,
    {
        let guard = self.registry.as_ref().map(|r| r.handshake_started());
        let callback = Gatekeeper {
            callback,
            guard: guard.clone(),
        };
        let handshake = tokio_tungstenite::accept_hdr_async(stream, callback);
        let ws = self
            .bounded(Role::Server, guard.as_ref(), handshake)
            .await?;
        let ws = self.server(ws);
        drop(guard); // after the wrap: a drain sees this connection either here or registered
        Ok(ws)
    }

    /// Connects to `request` (a `ws://` URL or a request with headers), runs the client side of
    /// the opening handshake, both within the handshake deadline, and wraps the connection.
    /// Returns the server's response too (its headers, the negotiated subprotocol).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept): a server's refusal is `rejected` with its
    /// [`status`](Error::status).
    pub async fn connect<R>(
        &self,
        request: R,
    ) -> Result<
        (
            WebSocket<WebSocketStream<MaybeTlsStream<TcpStream>>>,
            Response,
        ),
        Error,
    >
    where
        R: IntoClientRequest + Unpin,
    {
        let handshake = tokio_tungstenite::connect_async(request);
        let (ws, response) = self.bounded(Role::Client, None, handshake).await?;
        Ok((self.client(ws), response))
    }

    /// The client side of the opening handshake on an established `stream`, within the
    /// handshake deadline; wraps the connection.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn client_handshake<R, S>(
        &self,
        request: R,
        stream: S,
    ) -> Result<(WebSocket<WebSocketStream<S>>, Response), Error>
    where
        R: IntoClientRequest + Unpin,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = tokio_tungstenite::client_async(request, stream);
        let (ws, response) = self.bounded(Role::Client, None, handshake).await?;
        Ok((self.client(ws), response))
    }

    /// Runs `handshake` within the deadline (and until a drain cuts it), classifies and records
    /// its end.
    async fn bounded<T>(
        &self,
        role: Role,
        guard: Option<&HandshakeGuard>,
        handshake: impl Future<Output = Result<T, WsError>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let cut = async {
            match guard {
                Some(guard) => guard.cut().await,
                None => std::future::pending().await,
            }
        };
        // Without a timer, there is no deadline (close deadlines say so at WARN once).
        let timer =
            tokio::runtime::Handle::try_current().is_ok_and(|rt| crate::deadline::has_timer(&rt));
        let deadline = async {
            if timer {
                tokio::time::sleep(self.handshake_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            biased;
            r = handshake => r.map_err(Some),
            () = deadline => Err(None),
            () = cut => {
                guard.inspect(|g| g.count_cut());
                Err(None)
            }
        };
        let (outcome, error) = match result {
            Ok(ws) => {
                record(self, role, HandshakeOutcome::Accepted, None, started, None);
                return Ok(ws);
            }
            Err(None) => (HandshakeOutcome::Timeout, None),
            Err(Some(e)) => (classify(&e), Some(e)),
        };
        let status = match &error {
            Some(WsError::Http(response)) => Some(response.status().as_u16()),
            _ => None,
        };
        record(self, role, outcome, status, started, error.as_ref());
        let err = Error::new(Kind::Handshake { outcome, status });
        Err(match error {
            Some(e) => err.with_source(e),
            None => err,
        })
    }
}

/// How a handshake error ends the phase.
fn classify(e: &WsError) -> HandshakeOutcome {
    match e {
        WsError::Http(_) => HandshakeOutcome::Rejected,
        _ => HandshakeOutcome::Failed,
    }
}

/// Whether a failed handshake is the peer going away (an expected end, logged at DEBUG).
fn peer_went_away(e: &WsError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        WsError::Io(io) => matches!(
            io.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        ),
        WsError::Protocol(ProtocolError::HandshakeIncomplete) | WsError::ConnectionClosed => true,
        _ => false,
    }
}

/// Records the end of a handshake (metrics and the log event; see `telemetry::on_handshake`).
fn record(
    config: &Config,
    role: Role,
    outcome: HandshakeOutcome,
    status: Option<u16>,
    started: Instant,
    error: Option<&WsError>,
) {
    // WARN for failures that may point at the server's side; a peer that went away is expected.
    let warn = outcome == HandshakeOutcome::Failed && !error.is_some_and(peer_went_away);
    let error = error.map(|e| e as &(dyn std::error::Error + 'static));
    telemetry::on_handshake(&telemetry::HandshakeEnd {
        series: config.series(role),
        outcome,
        status,
        duration: started.elapsed(),
        error,
        warn,
    });
}
