//! Per-connection settings.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Error, Role, Transport, WebSocket};

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            close_timeout: Config::DEFAULT_CLOSE_TIMEOUT,
            peer_addr: None,
        }
    }
}

impl Config {
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

    /// Records the peer's address in the connection's tracing span (`peer` field).
    pub fn with_peer_addr(mut self, addr: SocketAddr) -> Self {
        self.peer_addr = Some(addr);
        self
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
