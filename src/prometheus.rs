//! One-line Prometheus setup: metrics-exporter-prometheus with this crate's buckets.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Error;
use crate::telemetry::{Kind, TABLE, describe_metrics};

/// A [`PrometheusBuilder`] with explicit buckets for both wsclose histograms, so they render
/// as Prometheus histograms (`_bucket` lines), not summaries. Add your own settings to it.
///
/// # Errors
///
/// Never in practice (the bucket lists are non-empty constants); the error is the builder's.
pub fn builder() -> Result<PrometheusBuilder, Error> {
    let wrap = |e: metrics_exporter_prometheus::BuildError| {
        Error::config("prometheus buckets", e.to_string()).with_source(e)
    };
    let mut builder = PrometheusBuilder::new();
    for i in TABLE.iter().filter(|i| i.kind == Kind::Histogram) {
        if let Some(buckets) = i.buckets {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(i.prometheus.into()), buckets)
                .map_err(wrap)?;
        }
    }
    Ok(builder)
}

/// Installs the Prometheus recorder as the global `metrics` recorder and serves `/metrics`
/// over HTTP on `addr` (bind it to loopback or a private interface).
///
/// Must be called from within a Tokio runtime (the listener runs as a task).
///
/// # Errors
///
/// When a global recorder is already installed or the address cannot be bound.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), wsclose::Error> {
/// wsclose::prometheus::install("127.0.0.1:9898".parse().unwrap())?;
/// # Ok(()) }
/// ```
pub fn install(addr: SocketAddr) -> Result<(), Error> {
    builder()?
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::config("prometheus exporter", e.to_string()).with_source(e))?;
    describe_metrics();
    Ok(())
}

/// Installs the Prometheus recorder as the global `metrics` recorder without an HTTP
/// listener; serve [`PrometheusHandle::render`] from your own route (e.g. axum's `/metrics`).
///
/// # Errors
///
/// When a global recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, Error> {
    let handle = builder()?
        .install_recorder()
        .map_err(|e| Error::config("prometheus recorder", e.to_string()).with_source(e))?;
    describe_metrics();
    Ok(handle)
}
