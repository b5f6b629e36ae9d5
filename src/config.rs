//! Per-connection settings.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::telemetry::labels::{LabelSet, MAX_STATIC_LABELS, MAX_VALUE_BYTES};
use crate::{Error, Registry, Role, Transport, WebSocket, telemetry};

/// Settings for wrapped connections. Build one per server (it is cheap to clone) and wrap
/// every accepted connection with it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let config = wsclose::Config::new().with_close_timeout(Duration::from_secs(2))?;
/// assert_eq!(config.close_timeout(), Duration::from_secs(2));
///
/// // Out-of-range values are refused with a clear error.
/// let err = wsclose::Config::new().with_close_timeout(Duration::ZERO).unwrap_err();
/// assert!(err.is_config());
/// # Ok::<(), wsclose::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Config {
    pub(crate) close_timeout: Duration,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) registry: Option<Registry>,
    /// (interval, timeout)
    pub(crate) keepalive: Option<(Duration, Duration)>,
    /// (max, jitter)
    pub(crate) max_lifetime: Option<(Duration, Duration)>,
    pub(crate) lifetime_code: u16,
    pub(crate) handshake_timeout: Duration,
    /// The static labels, interned once per distinct set.
    pub(crate) labels: &'static LabelSet,
    /// The protocol limits of the crate's own handshake (`None`: tungstenite's defaults). Behind
    /// an `Arc`: every connection keeps its `Config`, and this is set once for a service.
    pub(crate) websocket: Option<std::sync::Arc<WebSocketConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            close_timeout: Config::DEFAULT_CLOSE_TIMEOUT,
            peer_addr: None,
            registry: None,
            keepalive: None,
            max_lifetime: None,
            lifetime_code: 1001,
            handshake_timeout: Config::DEFAULT_HANDSHAKE_TIMEOUT,
            labels: LabelSet::empty(),
            websocket: None,
        }
    }
}

impl Config {
    /// Recommended keepalive ping interval: 20 seconds.
    pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
    /// Recommended keepalive pong timeout: 20 seconds.
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

    /// The default deadline for a whole close: 5 seconds.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The shortest close deadline accepted: 1 millisecond.
    pub const MIN_CLOSE_TIMEOUT: Duration = Duration::from_millis(1);
    /// The longest close deadline accepted: 10 minutes.
    pub const MAX_CLOSE_TIMEOUT: Duration = Duration::from_secs(600);

    /// The defaults: a 5 s close deadline, no peer address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline for a whole close: flushing queued messages, the Close handshake and
    /// the transport shutdown. When it passes, the transport is terminated and the outcome is
    /// `timeout`.
    ///
    /// The deadlines of all closes on a Tokio runtime share one timer, held by a small task that
    /// the runtime's first close starts (on a multi-thread runtime, from a blocking-pool thread,
    /// so it may appear shortly after that close) and that lives as long as the runtime (it shows
    /// in `RuntimeMetrics::num_alive_tasks` as one task). On a runtime built without a timer,
    /// closes have no deadline; a WARN says so once.
    ///
    /// # Errors
    ///
    /// A value outside [`MIN_CLOSE_TIMEOUT`](Self::MIN_CLOSE_TIMEOUT)..=
    /// [`MAX_CLOSE_TIMEOUT`](Self::MAX_CLOSE_TIMEOUT) is refused ([`Error::is_config`]).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if !(Self::MIN_CLOSE_TIMEOUT..=Self::MAX_CLOSE_TIMEOUT).contains(&timeout) {
            return Err(Error::config(
                "close_timeout",
                format!(
                    "{timeout:?} is outside {:?}..={:?}",
                    Self::MIN_CLOSE_TIMEOUT,
                    Self::MAX_CLOSE_TIMEOUT
                ),
            ));
        }
        self.close_timeout = timeout;
        Ok(self)
    }

    /// Registers every connection wrapped with this config in `registry`, for
    /// [`Registry::shutdown`] (graceful shutdown on SIGTERM).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Pings the peer every `interval`; when no pong arrives within `timeout`, the connection
    /// is closed with 1011 and ends as `cause="keepalive"`, `outcome="timeout"`, within
    /// `interval + timeout` of the last sign of life (plus at most 250 ms to put the Close frame
    /// on the wire).
    ///
    /// Off by default. [`DEFAULT_KEEPALIVE_INTERVAL`](Self::DEFAULT_KEEPALIVE_INTERVAL) and
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`](Self::DEFAULT_KEEPALIVE_TIMEOUT) (20 s / 20 s, like Python's
    /// `websockets`) are good values behind load balancers with a 60 s idle timeout. Pongs are
    /// seen by the connection's reader, so the application must keep polling the stream (as
    /// any tokio-tungstenite application does to receive messages). Runs one small task per
    /// connection.
    ///
    /// # Errors
    ///
    /// `interval` or `timeout` outside 10 ms..=1 h ([`Error::is_config`]).
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Result<Self, Error> {
        let range = Duration::from_millis(10)..=Duration::from_secs(3600);
        for (what, d) in [
            ("keepalive interval", interval),
            ("keepalive timeout", timeout),
        ] {
            if !range.contains(&d) {
                return Err(Error::config(
                    what,
                    format!("{d:?} is outside 10ms..=3600s"),
                ));
            }
        }
        self.keepalive = Some((interval, timeout));
        Ok(self)
    }

    /// Closes each connection after a lifetime drawn uniformly from `[max - jitter, max]`, with
    /// 1001 *going away* (see [`with_lifetime_close_code`](Self::with_lifetime_close_code)),
    /// `cause="lifetime"`: set `max` below a platform's request limit (Cloud Run: 60 min) so
    /// clients reconnect cleanly, and `jitter` so they do not all reconnect at once.
    ///
    /// # Errors
    ///
    /// `max` below 10 ms, or `jitter` above `max` ([`Error::is_config`]).
    pub fn with_max_lifetime(mut self, max: Duration, jitter: Duration) -> Result<Self, Error> {
        if max < Duration::from_millis(10) {
            return Err(Error::config(
                "max lifetime",
                format!("{max:?} is below 10ms"),
            ));
        }
        if jitter > max {
            let why = format!("{jitter:?} exceeds the maximum {max:?}");
            return Err(Error::config("lifetime jitter", why));
        }
        self.max_lifetime = Some((max, jitter));
        Ok(self)
    }

    /// The close code of lifetime closes (default 1001 *going away*; 1012 *service restart*
    /// and 4xxx application codes are other choices).
    ///
    /// # Errors
    ///
    /// A code the protocol forbids ([`Error::is_invalid_close_code`]).
    pub fn with_lifetime_close_code(mut self, code: u16) -> Result<Self, Error> {
        crate::check_close_code(code)?;
        self.lifetime_code = code;
        Ok(self)
    }

    /// The protocol limits of the connections whose handshake the crate runs
    /// ([`accept`](Self::accept), [`accept_with`](Self::accept_with),
    /// [`connect`](Self::connect), [`client_handshake`](Self::client_handshake)): tungstenite's
    /// `WebSocketConfig` (message and frame size, read and write buffers). Without it they are
    /// tungstenite's defaults: 64 MiB messages, 16 MiB frames, 128 KiB buffers and an unbounded
    /// write buffer. A connection you wrap yourself ([`server`](Self::server)) keeps whatever
    /// its library was given; for axum, set them on `WebSocketUpgrade`. docs/security.md
    /// recommends values.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] when `max_write_buffer_size` is not above `write_buffer_size`
    /// (tungstenite would panic on it at the handshake), when `max_frame_size` is above
    /// `max_message_size`, or when a size limit is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use wsclose::tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    ///
    /// // A chat service: small messages, and a peer that stops reading is pushed back on
    /// // after 1 MiB queued rather than growing the server.
    /// let limits = WebSocketConfig::default()
    ///     .max_message_size(Some(64 << 10))
    ///     .max_frame_size(Some(64 << 10))
    ///     .write_buffer_size(16 << 10)
    ///     .max_write_buffer_size(1 << 20);
    /// let config = wsclose::Config::new().with_websocket_config(limits)?;
    /// assert_eq!(config.websocket_config().max_message_size, Some(64 << 10));
    /// # Ok::<(), wsclose::Error>(())
    /// ```
    pub fn with_websocket_config(mut self, limits: WebSocketConfig) -> Result<Self, Error> {
        let why = if limits.max_write_buffer_size <= limits.write_buffer_size {
            Some("max_write_buffer_size must be greater than write_buffer_size")
        } else if limits.max_message_size == Some(0) || limits.max_frame_size == Some(0) {
            Some("a size limit of 0 refuses every message; use None for no limit")
        } else if matches!(
            (limits.max_frame_size, limits.max_message_size),
            (Some(frame), Some(message)) if frame > message
        ) {
            Some("max_frame_size is above max_message_size")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::config("websocket config", why));
        }
        self.websocket = Some(std::sync::Arc::new(limits));
        Ok(self)
    }

    /// The protocol limits of the crate's handshake ([`with_websocket_config`](Self::with_websocket_config);
    /// tungstenite's defaults unless set).
    pub fn websocket_config(&self) -> WebSocketConfig {
        self.websocket.as_deref().copied().unwrap_or_default()
    }

    /// Records the peer's address in the connection's tracing span (`peer` field). The crate's
    /// handshake (`accept`, `accept_with`, `client_handshake`) fills it in by itself from a
    /// plain `TcpStream`; this address wins over that one (behind a proxy, give the client's).
    pub fn with_peer_addr(mut self, addr: SocketAddr) -> Self {
        self.peer_addr = Some(addr);
        self
    }

    /// The most static labels a configuration may carry: 4.
    pub const MAX_LABELS: usize = MAX_STATIC_LABELS;
    /// The longest static label value accepted, in bytes: 128.
    pub const MAX_LABEL_VALUE_BYTES: usize = MAX_VALUE_BYTES;

    /// Adds a static label: `name="value"` on every metric series (and every OpenTelemetry
    /// attribute set) of the connections wrapped with this configuration, and in their
    /// connection span's `labels` field. Setting a name again replaces its value.
    ///
    /// For a few labels that tell the service's parts apart, for example
    /// `with_label("endpoint", "/chat")` with one configuration per route. Each distinct set of
    /// static labels multiplies the number of series (docs/metrics.md, *Cardinality*): take
    /// values from a small fixed list (routes, not request data), never from peer input.
    /// Distinct sets are interned when the configuration is built and live for the rest of the
    /// process; a WARN says so when 64 of them are in use.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] when `name` is not a Prometheus label name
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`), starts with `__`, is one of wsclose's own labels (`role`,
    /// `cause`, `outcome`, `expected`, `direction`, `code`) or one Prometheus sets (`le`,
    /// `quantile`, `job`, `instance`); when `value` is empty, longer than
    /// [`MAX_LABEL_VALUE_BYTES`](Self::MAX_LABEL_VALUE_BYTES) or holds a control character (a
    /// newline would forge a log line; `,`, `=` and `\` are escaped in the span's `labels`
    /// field); and when the configuration
    /// already has [`MAX_LABELS`](Self::MAX_LABELS) other labels.
    ///
    /// # Examples
    ///
    /// ```
    /// let chat = wsclose::Config::new().with_label("endpoint", "/chat")?;
    /// assert_eq!(chat.labels().collect::<Vec<_>>(), [("endpoint", "/chat")]);
    ///
    /// let err = wsclose::Config::new().with_label("role", "x").unwrap_err();
    /// assert!(err.is_config());
    /// # Ok::<(), wsclose::Error>(())
    /// ```
    pub fn with_label(mut self, name: &str, value: &str) -> Result<Self, Error> {
        self.labels = self.labels.with(name, value)?;
        Ok(self)
    }

    /// The static labels, sorted by name.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.labels.iter().copied()
    }

    /// Creates now, at 0, every series that the connections of `role` wrapped with this
    /// configuration can produce (with its static labels), in the `metrics` recorder and the
    /// OpenTelemetry instruments installed.
    ///
    /// The first connection of a role and label set does this by itself, so `increase()` and
    /// `rate()` see every end after it. Call this at startup, after installing the metrics, to
    /// have the series from the start: then even an error that ends the very first connection
    /// before Prometheus scraped anything is seen. Once per role and label set in the process;
    /// later calls cost one atomic load.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = wsclose::Config::new().with_label("endpoint", "/chat")?;
    /// config.init_metrics(wsclose::Role::Server);
    /// # Ok::<(), wsclose::Error>(())
    /// ```
    pub fn init_metrics(&self, role: Role) {
        telemetry::init_series(telemetry::Series {
            role,
            labels: self.labels,
        });
    }

    /// The close deadline.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Wraps the server side of an established connection.
    pub fn server<T: Transport>(&self, ws: T) -> WebSocket<T> {
        WebSocket::with_config(ws, Role::Server, self.clone())
    }

    /// Wraps the client side of an established connection.
    pub fn client<T: Transport>(&self, ws: T) -> WebSocket<T> {
        WebSocket::with_config(ws, Role::Client, self.clone())
    }
}
