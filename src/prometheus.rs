//! One-line Prometheus setup: metrics-exporter-prometheus with this crate's buckets, and a
//! `/metrics` listener that can wait for the last scrape of a drain.
//!
//! A deploy's drain closes every connection in milliseconds, and the process exits right
//! after: inside one scrape interval, so without a last scrape Prometheus never sees those
//! ends. [`install`] returns an [`Exporter`] whose [`linger`](Exporter::linger) keeps `/metrics`
//! up after the drain until one scrape has read the final values (or a bound has passed):
//!
//! ```no_run
//! # async fn f(registry: wsclose::Registry) -> Result<(), wsclose::Error> {
//! use std::time::Duration;
//!
//! let exporter = wsclose::prometheus::install("0.0.0.0:9898".parse().unwrap())?;
//! // ... serve until SIGTERM ...
//! wsclose::shutdown_signal().await;
//! registry.shutdown(1001, Duration::from_secs(10)).await?;
//! // The scrape interval plus the scrape timeout is enough; stay inside the grace period.
//! exporter.linger(Duration::from_secs(20)).await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::error::Error;
use crate::telemetry::describe_metrics;

/// The process start time, as every Prometheus client library's process collector names it:
/// the fleet alert on restarting instances counts its changes.
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// How often [`install`] runs the recorder's upkeep (histogram draining), as
/// metrics-exporter-prometheus' own listener does.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A [`PrometheusBuilder`] with explicit buckets for wsclose's histograms, so they render
/// as Prometheus histograms (`_bucket` lines), not summaries. Add your own settings to it.
///
/// # Errors
///
/// Never in practice (the bucket lists are non-empty constants); the error is the builder's.
pub fn builder() -> Result<PrometheusBuilder, Error> {
    with_buckets(PrometheusBuilder::new())
}

/// Your own [`PrometheusBuilder`] (one that already exports your metrics) with wsclose's
/// histogram buckets added ([`crate::histogram_buckets`]): without them its histograms
/// render as summaries and the dashboard's bucket panels and the slow-close rule find nothing.
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let mine = PrometheusBuilder::new().add_global_label("service", "chat");
/// let recorder = wsclose::prometheus::with_buckets(mine)?.build_recorder();
/// # Ok::<(), wsclose::Error>(())
/// ```
///
/// # Errors
///
/// Never in practice (the bucket lists are non-empty constants); the error is the builder's.
pub fn with_buckets(mut builder: PrometheusBuilder) -> Result<PrometheusBuilder, Error> {
    let wrap = |e: metrics_exporter_prometheus::BuildError| {
        Error::config("prometheus buckets", e.to_string()).with_source(e)
    };
    for (name, buckets) in crate::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .map_err(wrap)?;
    }
    Ok(builder)
}

/// Installs the Prometheus recorder as the global `metrics` recorder and serves `/metrics`
/// over HTTP/1 on `addr` (bind it to loopback or a private interface); `/health` answers `OK`.
/// Also sets [`PROCESS_START_TIME`] (`process_start_time_seconds`, the time of this call) for
/// the fleet's restart alert.
///
/// Must be called from within a Tokio runtime: the listener and the recorder's upkeep run as
/// tasks of it. Keep the returned [`Exporter`] to wait for the last scrape at shutdown
/// ([`Exporter::linger`]); dropping it leaves the listener running.
///
/// # Errors
///
/// When a global recorder is already installed, the address cannot be bound, or there is no
/// Tokio runtime ([`Error::is_config`]).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), wsclose::Error> {
/// let exporter = wsclose::prometheus::install("127.0.0.1:9898".parse().unwrap())?;
/// println!("metrics on http://{}/metrics", exporter.local_addr());
/// # Ok(()) }
/// ```
pub fn install(addr: SocketAddr) -> Result<Exporter, Error> {
    let rt = tokio::runtime::Handle::try_current().map_err(|e| {
        Error::config(
            "prometheus exporter",
            "must be called within a Tokio runtime",
        )
        .with_source(e)
    })?;
    let listener = {
        let _entered = rt.enter();
        let std = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std);
        std.map_err(|e| {
            Error::config(
                "prometheus exporter",
                format!("cannot listen on {addr}: {e}"),
            )
            .with_source(e)
        })?
    };
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::config("prometheus exporter", e.to_string()).with_source(e))?;
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| Error::config("prometheus exporter", e.to_string()).with_source(e))?;
    describe_metrics();
    record_start_time();

    let scrapes = Arc::new(Scrapes::default());
    let (stop, stopped) = watch::channel(None);
    rt.spawn(upkeep(handle.clone()));
    rt.spawn(serve(listener, handle.clone(), scrapes.clone(), stopped));
    Ok(Exporter {
        handle,
        local_addr,
        scrapes,
        stop,
    })
}

/// Installs the Prometheus recorder as the global `metrics` recorder without an HTTP
/// listener; serve [`PrometheusHandle::render`] from your own route (e.g. axum's `/metrics`).
/// Also sets [`PROCESS_START_TIME`], like [`install`].
///
/// No upkeep task runs: call [`PrometheusHandle::run_upkeep`] every few seconds (rendering
/// also does it), as metrics-exporter-prometheus documents. To let a drain's last values be
/// scraped, keep your route up after [`Registry::shutdown`](crate::Registry::shutdown) for a
/// scrape interval (docs/operations.md).
///
/// # Errors
///
/// When a global recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, Error> {
    let handle = builder()?
        .install_recorder()
        .map_err(|e| Error::config("prometheus recorder", e.to_string()).with_source(e))?;
    describe_metrics();
    record_start_time();
    Ok(handle)
}

fn record_start_time() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    metrics::describe_gauge!(
        PROCESS_START_TIME,
        metrics::Unit::Seconds,
        "Start time of the process since the Unix epoch, in seconds."
    );
    metrics::gauge!(PROCESS_START_TIME).set(now.as_secs_f64());
}

/// The `/metrics` listener of [`install`]: its address, the handle to render from, and the
/// last scrape of a drain.
#[derive(Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
    local_addr: SocketAddr,
    scrapes: Arc<Scrapes>,
    /// `Some(deadline)` stops the listener: no new connections, and the open ones end once
    /// their response is written (or at the deadline).
    stop: watch::Sender<Option<Instant>>,
}

/// Scrapes are numbered as they begin to render; a scrape counts as served once its response
/// is written (hyper has polled its body to the end).
#[derive(Debug, Default)]
struct Scrapes {
    begun: AtomicU64,
    /// One more than the number of the latest scrape served (0: none yet).
    served_below: AtomicU64,
    served: Notify,
}

impl Exporter {
    /// The address `/metrics` is served on (the port chosen when `addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The recorder's handle (to render the text yourself, for example in a test).
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// Scrapes served so far (counted up to the latest one whose response was written).
    pub fn scrapes(&self) -> u64 {
        self.scrapes.served_below.load(Ordering::Acquire)
    }

    /// Keeps `/metrics` up until a scrape that began after this call has been served (its
    /// response written), or until `max` has passed; then stops the listener (in-flight
    /// responses finish, within what is left of `max`). Returns whether such a scrape was served.
    ///
    /// Call it after [`Registry::shutdown`](crate::Registry::shutdown): that scrape reads the
    /// drain's final values (its closes with `cause="shutdown"`, its 1001 frames), which a
    /// process that exits at once never lets Prometheus see. Choose `max` above the scrape
    /// interval plus the scrape timeout, inside what is left of the platform's grace period
    /// (docs/operations.md). Logged at INFO (served) or WARN (`max` passed first).
    ///
    /// The listener stops for good: a second call waits for `max` and returns false.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the scrape stops waiting and the listener keeps serving.
    pub async fn linger(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        let first = self.scrapes.begun.load(Ordering::Acquire);
        let served = loop {
            let mut notified = std::pin::pin!(self.scrapes.served.notified());
            notified.as_mut().enable();
            if self.scrapes.served_below.load(Ordering::Acquire) > first {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break false;
            }
        };
        let _ = self.stop.send(Some(deadline));
        // The listener ends once its connections have: their responses are on the wire.
        self.stop.closed().await;
        crate::telemetry::on_linger(served, self.scrapes(), max);
        served
    }
}

async fn upkeep(handle: PrometheusHandle) {
    loop {
        tokio::time::sleep(UPKEEP_EVERY).await;
        handle.run_upkeep();
    }
}

/// Accepts and serves until stopped; then lets the open connections finish their response,
/// until the stop's deadline.
async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    scrapes: Arc<Scrapes>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let graceful = GracefulShutdown::new();
    // The `Exporter` dropped: nobody can stop the listener any more; it serves for good.
    let mut orphaned = false;
    let deadline = loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (for example out of file descriptors) loses that connection
                // only; Prometheus retries at the next scrape.
                let Ok((tcp, _)) = accepted else { continue };
                let (handle, scrapes) = (handle.clone(), scrapes.clone());
                let service = hyper::service::service_fn(move |req| {
                    std::future::ready(Ok::<_, Infallible>(respond(&req, &handle, &scrapes)))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await; // a scraper that goes away is not an error here
                });
            }
            changed = stop.changed(), if !orphaned => match changed {
                Ok(()) => {
                    if let Some(deadline) = *stop.borrow_and_update() {
                        break deadline;
                    }
                }
                Err(_) => orphaned = true,
            },
        }
    };
    drop(listener);
    let _ = tokio::time::timeout_at(deadline, graceful.shutdown()).await;
    // `stop` is dropped here: `linger` returns.
}

fn respond(
    req: &Request<Incoming>,
    handle: &PrometheusHandle,
    scrapes: &Arc<Scrapes>,
) -> Response<Counted> {
    if req.uri().path() == "/health" {
        let mut response = Response::new(Counted::plain("OK"));
        let plain = HeaderValue::from_static("text/plain");
        response.headers_mut().insert(CONTENT_TYPE, plain);
        return response;
    }
    let number = scrapes.begun.fetch_add(1, Ordering::AcqRel);
    let body = handle.render();
    let mut response = Response::new(Counted {
        body: Full::new(Bytes::from(body)),
        scrape: Some((number, scrapes.clone())),
    });
    let text = HeaderValue::from_static("text/plain; version=0.0.4");
    response.headers_mut().insert(CONTENT_TYPE, text);
    response
}

/// A response body that marks its scrape served once hyper has taken all of it (the write
/// itself is waited for by the listener's graceful stop).
struct Counted {
    body: Full<Bytes>,
    scrape: Option<(u64, Arc<Scrapes>)>,
}

impl Counted {
    fn plain(text: &'static str) -> Self {
        Counted {
            body: Full::new(Bytes::from_static(text.as_bytes())),
            scrape: None,
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        // The last frame handed to hyper (it may not poll again once the length is reached);
        // `linger` then waits for the connection to have written it.
        let last = match &polled {
            std::task::Poll::Ready(Some(_)) => self.body.is_end_stream(),
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Pending => false,
        };
        if last {
            if let Some((number, scrapes)) = self.scrape.take() {
                scrapes.served_below.fetch_max(number + 1, Ordering::AcqRel);
                scrapes.served.notify_waiters();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
