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

use std::any::Any;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
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

use crate::conn::Opening;
use crate::error::Kind;
use crate::registry::HandshakeGuard;
use crate::{
    Cause, CloseReport, Config, Error, Handle, HandshakeOutcome, Outcome, Registry, Role,
    WebSocket, telemetry,
};

#[cfg(feature = "axum")]
mod axum;

/// The body of a refusal during a drain.
const DRAIN_BODY: &str = "server shutting down";

/// The body of a refusal after a close through the handle, without a reason.
const CLOSED_BODY: &str = "closed while connecting";

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

/// The application's callback, behind the checks that refuse an upgrade first: during a drain,
/// or after a close through the connection's handle, the upgrade is refused with 503 before
/// the callback sees it.
struct Gatekeeper<C> {
    callback: C,
    opening: Arc<Opening>,
    registry: Option<Registry>,
    /// Who refused the upgrade, when it was refused here or by the callback.
    refused: Arc<OnceLock<Cause>>,
}

impl<C: Callback> Callback for Gatekeeper<C> {
    fn on_request(
        self,
        request: &Request,
        response: ServerResponse,
    ) -> Result<ServerResponse, ErrorResponse> {
        let refusal = if self
            .registry
            .as_ref()
            .is_some_and(Registry::refuse_if_draining)
        {
            Some((Cause::Shutdown, DRAIN_BODY.to_owned()))
        } else {
            self.opening.close_requested().map(|(cause, frame)| {
                let reason = frame.map(|(_, reason)| reason).unwrap_or_default();
                let body = if reason.is_empty() {
                    CLOSED_BODY.to_owned()
                } else {
                    reason
                };
                (cause, body)
            })
        };
        if let Some((cause, body)) = refusal {
            let _ = self.refused.set(cause);
            let mut refusal = reject(StatusCode::SERVICE_UNAVAILABLE, &body);
            refusal.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::header::CONNECTION,
                tokio_tungstenite::tungstenite::http::HeaderValue::from_static("close"),
            );
            return Err(refusal);
        }
        let answer = self.callback.on_request(request, response);
        if answer.is_err() {
            let _ = self.refused.set(Cause::App);
        }
        answer
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
    /// [`client_handshake`](Self::client_handshake): from the start of the handshake (the first
    /// poll of its [`Handshake`], normally right after the call) to the upgrade answered.
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
    /// The connection is `Connecting` from this call: [`Handshake::handle`] (and a registry's
    /// [`handles`](crate::Registry::handles)) see it, and a close through that handle refuses
    /// the upgrade with `503 Service Unavailable` (or closes the connection right after it,
    /// when the upgrade was already answered). During a
    /// [`Registry::shutdown`](crate::Registry::shutdown) of this config's registry, the
    /// upgrade is refused with 503 too.
    ///
    /// # Errors
    ///
    /// The handshake did not end `accepted`: [`Error::handshake`] says how it ended,
    /// [`Error::status`] the HTTP status of a rejection; the source is tungstenite's error.
    pub fn accept<S>(&self, stream: S) -> Handshake<WebSocket<WebSocketStream<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.accept_with(stream, AcceptAll)
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
    pub fn accept_with<S, C>(
        &self,
        stream: S,
        callback: C,
    ) -> Handshake<WebSocket<WebSocketStream<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        C: Callback + Unpin + Send + 'static,
    {
        let attempt = Attempt::new(self.with_peer_of(&stream), Role::Server);
        let refused = Arc::new(OnceLock::new());
        let callback = Gatekeeper {
            callback,
            opening: attempt.opening.clone(),
            registry: self.registry.clone(),
            refused: refused.clone(),
        };
        let first_byte = attempt.first_byte.clone();
        let limits = self.websocket.as_deref().copied();
        let handshake = async move {
            // The duration is timed from the request's first byte when the stream is a plain
            // TCP stream (peeked, not consumed); from the start otherwise.
            if let Some(tcp) = (&stream as &dyn Any).downcast_ref::<TcpStream>() {
                let _ = tcp.peek(&mut [0; 1]).await;
                let _ = first_byte.set(Instant::now());
            }
            tokio_tungstenite::accept_hdr_async_with_config(stream, callback, limits).await
        };
        attempt.run(handshake, refused, |opening, config, ws| {
            opening.open(ws, config)
        })
    }

    /// Connects to `request` (a `ws://` URL or a request with headers), runs the client side of
    /// the opening handshake, both within the handshake deadline, and wraps the connection.
    /// Returns the server's response too (its headers, the negotiated subprotocol).
    ///
    /// The connection is `Connecting` from this call; a close through
    /// [`Handshake::handle`] gives the handshake up at once (the socket is dropped).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept): a server's refusal is `rejected` with its
    /// [`status`](Error::status); a request that is not a valid WebSocket URL or request is
    /// `failed`.
    pub fn connect<R>(
        &self,
        request: R,
    ) -> Handshake<(
        WebSocket<WebSocketStream<MaybeTlsStream<TcpStream>>>,
        Response,
    )>
    where
        R: IntoClientRequest,
    {
        let attempt = Attempt::new(self.clone(), Role::Client);
        let request = request.into_client_request();
        let limits = self.websocket.as_deref().copied();
        let handshake = async move {
            tokio_tungstenite::connect_async_with_config(request?, limits, false).await
        };
        attempt.run(
            handshake,
            Arc::default(),
            |opening, config, (ws, response)| (opening.open(ws, config), response),
        )
    }

    /// The client side of the opening handshake on an established `stream`, within the
    /// handshake deadline; wraps the connection.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn client_handshake<R, S>(
        &self,
        request: R,
        stream: S,
    ) -> Handshake<(WebSocket<WebSocketStream<S>>, Response)>
    where
        R: IntoClientRequest,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let attempt = Attempt::new(self.with_peer_of(&stream), Role::Client);
        let request = request.into_client_request();
        let limits = self.websocket.as_deref().copied();
        let handshake = async move {
            tokio_tungstenite::client_async_with_config(request?, stream, limits).await
        };
        attempt.run(
            handshake,
            Arc::default(),
            |opening, config, (ws, response)| (opening.open(ws, config), response),
        )
    }
}

impl Config {
    /// This config with the peer address of `stream` when it is a plain TCP stream and no
    /// address was given ([`Config::with_peer_addr`] wins: behind a proxy it is the client's).
    fn with_peer_of<S: 'static>(&self, stream: &S) -> Config {
        let peer = (stream as &dyn Any)
            .downcast_ref::<TcpStream>()
            .and_then(|tcp| tcp.peer_addr().ok());
        match peer {
            Some(addr) if self.peer_addr.is_none() => self.clone().with_peer_addr(addr),
            _ => self.clone(),
        }
    }
}

/// An opening handshake under way: a future of the wrapped connection (await it), and the
/// [`handle`](Self::handle) of that connection while it is still
/// [`Connecting`](crate::State::Connecting).
///
/// Like any future it does nothing until polled: the handshake, its deadline and its place in
/// a registry start at the first poll. Dropped before it completes, the handshake is given up
/// (the socket is dropped) and counted `rejected`: a connection closed while connecting.
#[must_use = "a handshake does nothing unless awaited"]
pub struct Handshake<T> {
    handle: Handle,
    run: Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>,
}

impl<T> Handshake<T> {
    /// The connection's handle, from the start of the handshake: `Connecting`, then the open
    /// connection's state (the same handle, the same id), or `Closed` with a report when the
    /// handshake did not end `accepted`. That report has no Close frame either way and no time
    /// open: `clean` for a refusal answered with a status or a handshake given up (cause `app`,
    /// `shutdown` for a drain's, `peer` for a server's refusal seen by a client), `timeout`,
    /// or the `failed` handshake's `peer_gone`, `protocol_error` or `io_error`.
    ///
    /// A close through it while connecting reads `Closing(cause)`, as the WebSocket API's
    /// `readyState`, and is a rejection: a server answers the upgrade
    /// `503 Service Unavailable` with the reason as body when the request arrives (within the
    /// close deadline; a peer that sends nothing by then is dropped, `timeout`), or closes
    /// the connection with the given code right after the upgrade when it was already
    /// answered (then the upgrade and the close each have a close deadline); a client gives
    /// the handshake up at once. The close waits for the [`Handshake`] to be polled (or
    /// dropped): it is the handshake that ends.
    ///
    /// ```no_run
    /// # async fn run(config: wsclose::Config, tcp: tokio::net::TcpStream) {
    /// let handshake = config.accept(tcp);
    /// let handle = handshake.handle();
    /// assert_eq!(handle.state(), wsclose::State::Connecting);
    /// let ws = handshake.await;
    /// # }
    /// ```
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl<T> Future for Handshake<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.run.as_mut().poll(cx)
    }
}

impl<T> std::fmt::Debug for Handshake<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// How the bounded handshake came out.
enum Ended<T> {
    Done(Result<T, WsError>),
    /// The handshake deadline (or, after a close request, the close deadline) passed.
    Timeout,
    /// A drain's grace period ended first.
    Cut,
    /// A close through the handle gave the (client) handshake up.
    GivenUp,
}

/// One handshake: its connection while connecting, its registry entry, its start. Its end is
/// recorded once; dropped before that, it records a handshake given up (`rejected`).
struct Attempt {
    config: Config,
    role: Role,
    opening: Arc<Opening>,
    guard: Option<HandshakeGuard>,
    started: Instant,
    /// When the upgrade request's first byte arrived, when that is known (a server on a plain
    /// TCP stream): the duration is timed from it.
    first_byte: Arc<OnceLock<Instant>>,
    recorded: bool,
}

impl Attempt {
    fn new(config: Config, role: Role) -> Self {
        Attempt {
            opening: Opening::new(config.series(role), config.close_timeout),
            config,
            role,
            guard: None,
            started: Instant::now(),
            first_byte: Arc::default(),
            recorded: false,
        }
    }

    /// The [`Handshake`] that runs `handshake` within the deadlines and `wrap`s its result.
    fn run<T, U>(
        mut self,
        handshake: impl Future<Output = Result<T, WsError>> + Send + 'static,
        refused: Arc<OnceLock<Cause>>,
        wrap: impl FnOnce(&Opening, &Config, T) -> U + Send + 'static,
    ) -> Handshake<U>
    where
        T: Send + 'static,
        U: Send + 'static,
    {
        let handle = self.opening.handle();
        let run = async move {
            self.start();
            let (ended, closing) = self.bounded(handshake).await;
            // The handshake's outcome, and how the connection's handles report it (who ended
            // it, and how). A close requested through the handle is the cause when there is one.
            let (outcome, error, (close_outcome, cause)) = match ended {
                // Given up from outside meanwhile (a close through the handle not acted on within
                // its deadline): the connection is dropped, as a given-up handshake's.
                Ended::Done(Ok(_)) if !self.opening.claim() => (
                    HandshakeOutcome::Rejected,
                    None,
                    (Outcome::Clean, closing.unwrap_or(Cause::App)),
                ),
                Ended::Done(Ok(t)) => {
                    self.record(HandshakeOutcome::Accepted, None, None);
                    let ws = wrap(&self.opening, &self.config, t);
                    // After the wrap: a drain sees this connection either here or registered.
                    drop(self.guard.take());
                    return Ok(ws);
                }
                // An HTTP answer instead of the upgrade. A server knows who refused it (a
                // drain, a close through the handle, the callback); a client was refused by
                // its server.
                Ended::Done(Err(e @ WsError::Http(_))) => {
                    let by = match self.role {
                        Role::Server => refused.get().copied().or(closing).unwrap_or(Cause::App),
                        Role::Client => Cause::Peer,
                    };
                    (HandshakeOutcome::Rejected, Some(e), (Outcome::Clean, by))
                }
                Ended::Done(Err(e)) => {
                    let end = close_outcome(&e);
                    (HandshakeOutcome::Failed, Some(e), end)
                }
                Ended::Timeout => (
                    HandshakeOutcome::Timeout,
                    None,
                    (Outcome::Timeout, closing.unwrap_or(Cause::Transport)),
                ),
                Ended::Cut => (
                    HandshakeOutcome::Timeout,
                    None,
                    (Outcome::Timeout, closing.unwrap_or(Cause::Shutdown)),
                ),
                Ended::GivenUp => (
                    HandshakeOutcome::Rejected,
                    None,
                    (Outcome::Clean, closing.unwrap_or(Cause::App)),
                ),
            };
            let status = match &error {
                Some(WsError::Http(response)) => Some(response.status().as_u16()),
                _ => None,
            };
            self.record(outcome, status, error.as_ref());
            self.opening.end(never_opened(close_outcome, cause));
            let err = Error::new(Kind::Handshake { outcome, status });
            Err(match error {
                Some(e) => err.with_source(e),
                None => err,
            })
        };
        Handshake {
            handle,
            run: Box::pin(run),
        }
    }

    /// The handshake starts on the first poll of its `Handshake` (like any future: one never
    /// polled does nothing, and holds no place in a registry): the clock starts, and with a
    /// registry the connection is listed as connecting. A client's handshake that starts
    /// during a drain is given up at once.
    fn start(&mut self) {
        self.started = Instant::now();
        let Some(registry) = &self.config.registry else {
            return;
        };
        self.guard = Some(registry.handshake_started(self.opening.handle()));
        if self.role == Role::Client && registry.is_draining() {
            let handle = self.opening.handle();
            handle.begin_close_quietly(Cause::Shutdown, 1001, "");
        }
    }

    /// Runs `handshake` within the deadline, until a drain cuts it or a close through the
    /// handle ends it. Returns how it came out, and the cause of a close requested meanwhile.
    async fn bounded<T>(
        &self,
        handshake: impl Future<Output = Result<T, WsError>>,
    ) -> (Ended<T>, Option<Cause>) {
        let cut = async {
            match &self.guard {
                Some(guard) => guard.cut().await,
                None => std::future::pending().await,
            }
        };
        // Without a timer, there is no deadline (close deadlines say so at WARN once).
        let timer =
            tokio::runtime::Handle::try_current().is_ok_and(|rt| crate::deadline::has_timer(&rt));
        let deadline = self.started + self.config.handshake_timeout;
        let mut sleep = timer.then(|| Box::pin(tokio::time::sleep_until(deadline)));
        let mut closing = None;
        let mut watching = true;
        let mut handshake = pin!(handshake);
        let mut cut = pin!(cut);
        loop {
            let expired = std::future::poll_fn(|cx| match sleep.as_mut() {
                Some(sleep) => sleep.as_mut().poll(cx),
                None => Poll::Pending,
            });
            tokio::select! {
                biased;
                r = &mut handshake => return (Ended::Done(r), closing),
                () = expired => return (Ended::Timeout, closing),
                () = &mut cut => {
                    if let Some(guard) = &self.guard {
                        guard.count_cut();
                    }
                    return (Ended::Cut, closing);
                }
                () = self.opening.close_request(), if watching => {
                    watching = false; // once: a close is requested (or, never here, it is over)
                    let Some((cause, _)) = self.opening.close_requested() else {
                        if self.opening.given_up() {
                            return (Ended::GivenUp, closing);
                        }
                        continue;
                    };
                    closing = Some(cause);
                    if self.role == Role::Client {
                        return (Ended::GivenUp, closing);
                    }
                    // A server answers the request with 503 when it arrives: within the close
                    // deadline, as every close.
                    let by = Instant::now() + self.config.close_timeout;
                    if let Some(sleep) = sleep.as_mut().filter(|_| by < deadline) {
                        sleep.as_mut().reset(by);
                    }
                }
            }
        }
    }

    /// Records the end of the handshake (metrics and the log event; see
    /// `telemetry::on_handshake`).
    fn record(&mut self, outcome: HandshakeOutcome, status: Option<u16>, error: Option<&WsError>) {
        self.recorded = true;
        // WARN for failures that may point at the server's side; a peer that went away is
        // expected.
        let warn = outcome == HandshakeOutcome::Failed && error.is_some_and(worth_a_warning);
        let error = error.map(|e| e as &(dyn std::error::Error + 'static));
        telemetry::on_handshake(&telemetry::HandshakeEnd {
            series: self.config.series(self.role),
            conn_id: self.opening.id(),
            outcome,
            status,
            duration: self.first_byte.get().unwrap_or(&self.started).elapsed(),
            error,
            warn,
        });
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.recorded {
            // The handshake future was dropped: the application gave the connection up while
            // it was connecting.
            self.record(HandshakeOutcome::Rejected, None, None);
            self.opening.end(never_opened(Outcome::Clean, Cause::App));
        }
    }
}

/// The report of a connection whose handshake ended without opening: no Close frame either
/// way, no time open.
pub(crate) fn never_opened(outcome: Outcome, cause: Cause) -> CloseReport {
    CloseReport {
        outcome,
        cause,
        code_sent: None,
        code_received: None,
        reason_received: None,
        close_duration: None,
        connection_duration: Duration::ZERO,
        messages_dropped: 0,
    }
}

/// How a failed handshake reads as the end of a connection.
fn close_outcome(e: &WsError) -> (Outcome, Cause) {
    if peer_went_away(e) {
        return (Outcome::PeerGone, Cause::Transport);
    }
    // The connection's own table (`classify.rs`): the same error ends a handshake as it would
    // end an open connection (an oversized head, `AttackAttempt`, is the peer's protocol error).
    match crate::classify::classify_ws(e) {
        crate::classify::Verdict::Fatal { outcome, cause, .. } => (outcome, cause),
        crate::classify::Verdict::Recoverable => (Outcome::IoError, Cause::Transport),
    }
}

/// Whether a failed handshake is logged at WARN: when it may point at the server's side (an
/// I/O or TLS error, a proxy that strips the upgrade headers), not when the peer went away or
/// sent a request over tungstenite's limits (any peer can: DEBUG, counted `failed`).
fn worth_a_warning(e: &WsError) -> bool {
    !peer_went_away(e) && !matches!(e, WsError::AttackAttempt | WsError::Capacity(_))
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
