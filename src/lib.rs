//! Safe, observable WebSocket close for tokio-tungstenite, axum, tokio-websockets and
//! fastwebsockets.
//!
//! `wsclose` wraps an established WebSocket connection so that closing it is
//!
//! - **idempotent and race-free**: `close` may be called any number of times, from any task
//!   or [`Handle`], at once; exactly one Close frame goes on the wire and every caller gets the
//!   same [`CloseReport`];
//! - **deadline-bounded**: the whole close (flush, handshake, transport shutdown) ends within
//!   [`Config::with_close_timeout`] (5 s by default), after which the transport is terminated
//!   and the outcome is `timeout`;
//! - **complete**: a peer's Close is answered at once, and the handshake finishes in the
//!   background even when the application stops reading;
//!
//! and every end is **classified** ([`Outcome`], [`Cause`], expected or not) and **measured**
//! (Prometheus-style metrics through the [`metrics`] facade, and one `tracing` event per end).
//!
//! # Example
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! let config = wsclose::Config::new().with_close_timeout(std::time::Duration::from_secs(3))?;
//! loop {
//!     let (tcp, peer) = listener.accept().await?;
//!     let config = config.clone().with_peer_addr(peer);
//!     tokio::spawn(async move {
//!         let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
//!         let mut ws = config.server(ws);
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if msg.is_text() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!         // Idempotent: a no-op returning the same report if the peer already closed.
//!         let report = ws.close(1000, "bye").await.expect("1000 is a valid code");
//!         tracing::info!(%report, "connection ended");
//!     });
//! }
//! # }
//! ```
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `websocket_connections_active` | gauge | `role` |
//! | `websocket_connections_opened_total` | counter | `role` |
//! | `websocket_closes_total` | counter | `role`, `cause`, `outcome`, `expected` |
//! | `websocket_close_duration_seconds` | histogram | `role`, `outcome` |
//! | `websocket_connection_duration_seconds` | histogram | `role`, `outcome` |
//! | `websocket_close_frames_total` | counter | `role`, `direction`, `code` |
//! | `websocket_close_redundant_total` | counter | `role` |
//! | `websocket_send_after_close_total` | counter | `role` |
//! | `websocket_messages_dropped_total` | counter | `role` |
//! | `websocket_handshakes_total` | counter | `role`, `outcome` |
//! | `websocket_handshake_duration_seconds` | histogram | `role`, `outcome` |
//!
//! Every label value comes from a fixed list ([`Outcome::as_str`], [`Cause::as_str`],
//! [`code_label`]); a peer's close reason is never a label. See [`guide::metrics`].
//!
//! # Server lifecycle
//!
//! A [`Registry`] in the [`Config`] lets [`Registry::shutdown`] close every live connection
//! with 1001 on SIGTERM ([`shutdown_signal`]) within a grace period, terminate the stragglers
//! and report how each ended; [`Registry::graceful`] plugs it into axum's graceful shutdown.
//! [`Config::with_keepalive`] pings and closes dead peers; [`Config::with_max_lifetime`] closes
//! connections, with jitter, before a platform's request limit does.
//!
//! # Features
//!
//! No feature is on by default: wsclose then records through the [`metrics`] facade, for
//! whatever recorder the application installs, and logs through `tracing`, with no exporter and
//! no HTTP stack in the build.
//!
//! - `prometheus`: [`prometheus::install`], a one-liner that installs
//!   metrics-exporter-prometheus with this crate's histogram buckets (and its HTTP `/metrics`
//!   listener, which can wait for a drain's last scrape); [`prometheus::install_recorder`]
//!   without the listener. An application with its own exporter gives it the buckets with
//!   [`histogram_buckets`] (no feature needed).
//! - `axum`: the same close logic for `axum::extract::ws::WebSocket` (see the `axum` module).
//! - `tokio-websockets`: the same for `tokio_websockets::WebSocketStream` (see the
//!   `tokio_websockets` module).
//! - `fastwebsockets`: the same for `fastwebsockets::WebSocket`, through the adapter
//!   `fastwebsockets::Socket` (see the `fastwebsockets` module).
//! - `otel`: [`otel::install`], every metric recorded natively through an OpenTelemetry
//!   `Meter` (names, units and attributes after OpenTelemetry's general naming rules, the same buckets), alone or next to
//!   the `metrics` facade; spans export through `tracing-opentelemetry`. See
//!   [`guide::opentelemetry`].
//!
//! Another library is supported by implementing [`Transport`] (see its documentation).
//!
//! # Guides
//!
//! The repository's `docs/` pages are in [`guide`]: the metrics and how to read them, the
//! alert runbook, fleet operations, OpenTelemetry, the design, performance against raw
//! tokio-tungstenite, security notes and testing.
//!
// Built without a feature, its items are not in the crate: link to docs.rs, which builds them all.
#![cfg_attr(
    not(feature = "prometheus"),
    doc = "[`prometheus::install`]: https://docs.rs/wsclose/latest/wsclose/prometheus/fn.install.html",
    doc = "[`prometheus::install_recorder`]: https://docs.rs/wsclose/latest/wsclose/prometheus/fn.install_recorder.html"
)]
#![cfg_attr(
    not(feature = "otel"),
    doc = "[`otel::install`]: https://docs.rs/wsclose/latest/wsclose/otel/fn.install.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod classify;
mod code;
pub mod compat;
mod config;
mod conn;
mod deadline;
mod error;
mod gate;
mod handshake;
mod registry;
mod sync;
mod taxonomy;
mod telemetry;
mod transport;

#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;

#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;

#[cfg(feature = "tokio-websockets")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-websockets")))]
pub mod tokio_websockets;

#[cfg(feature = "fastwebsockets")]
#[cfg_attr(docsrs, doc(cfg(feature = "fastwebsockets")))]
pub mod fastwebsockets;

pub mod guide;

pub use classify::Verdict;
pub use code::{
    CODE_LABELS, IntoCloseCode, MAX_REASON_BYTES, check_close_code, code_label, sanitize_reason,
};
pub use config::Config;
pub use conn::{Handle, Receiver, Sender, WebSocket};
pub use error::Error;
pub use handshake::{Handshake, reject};
pub use registry::{Registry, ShutdownReport, shutdown_signal};
pub use taxonomy::{Cause, CloseReport, HandshakeOutcome, Outcome, Role, State, WireCode};
pub use telemetry::{
    CLOSE_DURATION_BUCKETS, CONNECTION_DURATION_BUCKETS, HANDSHAKE_DURATION_BUCKETS,
    describe_metrics, histogram_buckets, names,
};
pub use transport::Transport;

/// The WebSocket library this crate wraps.
pub use tokio_tungstenite;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
