//! The echo server, exporting wsclose's metrics and traces over OTLP/HTTP (protobuf).
//!
//! Run an OpenTelemetry Collector (or anything that accepts OTLP/HTTP) on port 4318, then:
//!
//! ```sh
//! cargo run -p wsclose-examples --bin otlp --features otel -- --listen 127.0.0.1:9002 --otlp http://127.0.0.1:4318
//! ```
//!
//! Connect any WebSocket client to `ws://127.0.0.1:9002/`; text and binary messages are echoed.
//! Every second, the `websocket.*` instruments go to `<otlp>/v1/metrics`; each connection's
//! `websocket` span, its `websocket.close` child span and the end event go to
//! `<otlp>/v1/traces`.
//!
//! The endpoint is, in order: `--otlp URL`; the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (and
//! the per-signal `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` / `..._TRACES_ENDPOINT`);
//! `http://127.0.0.1:4318`. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured
//! as usual. `RUST_LOG` sets what is printed (default `info`); spans at DEBUG under the
//! `wsclose` target are always exported. No `metrics` recorder is installed: this process
//! records through OpenTelemetry only. Ctrl-C or SIGTERM exports what is pending and exits 0.
//! See `docs/opentelemetry.md`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};
use wsclose::Config;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default OTLP/HTTP endpoint (the collector's standard port, on loopback).
pub const DEFAULT_OTLP: &str = "http://127.0.0.1:4318";

/// Command-line arguments.
#[derive(Debug)]
pub struct Args {
    /// Where the echo server listens.
    pub listen: SocketAddr,
    /// `--otlp URL`, when given.
    pub otlp: Option<String>,
}

/// How to run it.
pub const USAGE: &str = "usage: otlp [--listen ADDR] [--otlp URL]";

/// Parses `--listen ADDR` and `--otlp URL`: `Err(None)` for `--help`, `Err(Some(error))` for a
/// bad argument.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, Option<String>> {
    let mut out = Args {
        listen: "127.0.0.1:9002".parse().expect("valid default"),
        otlp: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| Some(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                out.listen = v
                    .parse()
                    .map_err(|e| Some(format!("--listen {v:?}: {e}")))?;
            }
            "--otlp" => out.otlp = Some(value()?),
            "-h" | "--help" => return Err(None),
            other => return Err(Some(format!("unknown argument {other:?} (try --help)"))),
        }
    }
    Ok(out)
}

/// The signal URL for `base` (`http://host:4318` → `http://host:4318/v1/metrics`), or `None`
/// to let the exporter read the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables.
pub fn signal_endpoint(flag: Option<&str>, path: &str) -> Option<String> {
    let from_env = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    match flag {
        Some(base) => Some(format!("{}/{path}", base.trim_end_matches('/'))),
        None if from_env => None,
        None => Some(format!("{DEFAULT_OTLP}/{path}")),
    }
}

/// The OpenTelemetry pipelines of this process.
#[derive(Debug)]
pub struct Telemetry {
    /// Metrics: a periodic reader pushing to `/v1/metrics`.
    pub meters: SdkMeterProvider,
    /// Traces: a batch processor pushing to `/v1/traces`.
    pub tracers: SdkTracerProvider,
}

impl Telemetry {
    /// Builds both OTLP/HTTP pipelines and installs wsclose's instruments on the meter
    /// provider (`wsclose::otel::install`).
    pub fn init(otlp: Option<&str>, export_every: Duration) -> Result<Telemetry, BoxError> {
        let resource = Resource::builder()
            .with_service_name("wsclose-echo")
            .build();

        let mut metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(url) = signal_endpoint(otlp, "v1/metrics") {
            metrics = metrics.with_endpoint(url);
        }
        let reader = PeriodicReader::builder(metrics.build()?)
            .with_interval(export_every)
            .build();
        let meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader)
            .build();

        let mut spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(url) = signal_endpoint(otlp, "v1/traces") {
            spans = spans.with_endpoint(url);
        }
        let tracers = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(spans.build()?)
            .build();

        // The one setting: wsclose records every instrument through this provider.
        wsclose::otel::install(&meters)?;
        Ok(Telemetry { meters, tracers })
    }

    /// A subscriber that prints `RUST_LOG` (default `info`) and exports wsclose's spans and
    /// events (target `wsclose`, DEBUG and up) through `tracing-opentelemetry`.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let print = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let export = EnvFilter::new("info,wsclose=debug");
        let tracer = self.tracers.tracer("wsclose-echo");
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(print),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(export),
            )
    }

    /// Exports what is pending and stops both pipelines.
    pub fn shutdown(&self) -> Result<(), BoxError> {
        self.tracers.force_flush()?;
        self.meters.force_flush()?;
        self.tracers.shutdown()?;
        self.meters.shutdown()?;
        Ok(())
    }
}

/// Runs the opening handshake (bounded, measured) and echoes text and binary messages until the
/// connection ends.
pub async fn serve(tcp: TcpStream, config: Config) {
    // A failed handshake is counted and logged by wsclose (`websocket.handshakes`).
    let Ok(mut ws) = config.accept(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Accepts connections on `listener` forever, serving each in its own task.
pub async fn accept_loop(listener: TcpListener, config: Config) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(serve(tcp, config.clone().with_peer_addr(peer)));
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(Some(msg)) => {
            eprintln!("{msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let telemetry = Telemetry::init(args.otlp.as_deref(), Duration::from_secs(1))?;
    tracing::subscriber::set_global_default(telemetry.subscriber())?;

    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "otlp: cannot listen on {} for WebSocket connections: {e}; stop whatever uses it \
                 or choose another address with --listen ADDR",
                args.listen
            );
            std::process::exit(1);
        }
    };
    let listen = listener.local_addr()?;
    let registry = wsclose::Registry::new();
    let config = Config::new().with_registry(registry.clone());
    config.init_metrics(wsclose::Role::Server);
    // SIGTERM (what a service manager sends) or Ctrl-C: a clean shutdown, exit 0. Listened for
    // from here on, before the ready line.
    let stop = wsclose::shutdown_signal();
    tracing::info!(%listen, "echo server ready, exporting over OTLP/HTTP");
    tokio::select! {
        result = accept_loop(listener, config) => result?,
        _ = stop => tracing::info!("stopping: draining, exporting, exiting"),
    }
    // Drain first, so that the export below carries every connection's end (docs/operations.md).
    let report = registry.shutdown(1001, Duration::from_secs(10)).await?;
    tracing::info!(%report, "drained");
    // Then flush, bounded: a collector that does not answer must not hold up the exit past the
    // platform's grace period. The blocking HTTP exporters must not run on the async runtime's
    // threads.
    let flush = tokio::task::spawn_blocking(move || telemetry.shutdown());
    // A collector that is down loses the last export; that is said, and the exit stays clean.
    match tokio::time::timeout(Duration::from_secs(5), flush).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("otlp: the final export failed: {e}"),
        Ok(Err(e)) => eprintln!("otlp: the final export panicked: {e}"),
        Err(_) => eprintln!("otlp: the final export did not finish within 5 s; exiting"),
    }
    Ok(())
}
