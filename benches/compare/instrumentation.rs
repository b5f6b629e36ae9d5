//! Instrumentation cost (`instr_prometheus_per_close`, `instr_prometheus_per_message`, and with
//! the `otel` feature `instr_otel_per_close`, `instr_otel_per_message`): what wsclose's metrics
//! cost with a backend installed, against none. Here `raw=` is wsclose with no backend and
//! `wsclose=` is wsclose with it. The connections run over an in-memory duplex transport, so
//! that the network does not drown a difference of a few hundred nanoseconds.
//!
//! Both backends are installed as a service installs them, for the rest of the process: the
//! Prometheus recorder as the global `metrics` recorder (whose series handles wsclose keeps
//! from event to event; a thread-local recorder's are registered again at each event), and
//! OpenTelemetry with `wsclose::otel::install`. Neither can be switched off again, so each
//! measurement runs in a child process of its own ([`crate::child`]).
//!
//! `WSCLOSE_BENCH_LABELS=endpoint=/chat,tier=gold` wraps every measured connection with those
//! static labels (`Config::with_label`), to compare their cost with a run without.

use std::sync::OnceLock;

use tokio::io::DuplexStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role as TtRole, WebSocketConfig};
use wsclose::{Config, WebSocket};

use crate::child;
use crate::harness::{Clock, Mode, Plan, Row, Timer, current_thread, interleave_blocking, median};
use crate::net::read_to_end;
use crate::throughput::one_way;

type Mem = WebSocketStream<DuplexStream>;

/// A metrics backend, installed for the rest of a process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Backend {
    /// metrics-exporter-prometheus's recorder as the global `metrics` recorder.
    Prometheus,
    /// `wsclose::otel::install` with an SDK meter provider.
    #[cfg(feature = "otel")]
    Otel,
}

impl Backend {
    pub(crate) const ALL: &[Backend] = &[
        Backend::Prometheus,
        #[cfg(feature = "otel")]
        Backend::Otel,
    ];

    /// As the rows and the child modes spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Prometheus => "prometheus",
            #[cfg(feature = "otel")]
            Backend::Otel => "otel",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Backend::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Installs the backend; what is returned must live as long as the measurements.
    fn install(self) -> Box<dyn std::any::Any> {
        match self {
            Backend::Prometheus => {
                metrics::set_global_recorder(prometheus_recorder()).expect("first recorder");
                Box::new(())
            }
            #[cfg(feature = "otel")]
            Backend::Otel => {
                use opentelemetry_sdk::metrics::{
                    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
                };
                // The SDK aggregates every measurement as it is recorded; the periodic reader
                // exports from its own thread (every 60 s by default, so not during these
                // batches), as with OTLP.
                let provider = SdkMeterProvider::builder()
                    .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
                    .build();
                wsclose::otel::install(&provider).expect("first install");
                Box::new(provider)
            }
        }
    }

    fn description(self) -> &'static str {
        match self {
            Backend::Prometheus => "the Prometheus recorder installed as the global recorder",
            #[cfg(feature = "otel")]
            Backend::Otel => "wsclose::otel installed (SDK meter provider, periodic reader)",
        }
    }
}

/// A `metrics` recorder configured as the crate's `prometheus::builder()` configures it (same
/// histogram buckets), built from the dev-dependency so the bench does not need the
/// `prometheus` feature.
fn prometheus_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(wsclose::names::CLOSE_DURATION.into()),
            wsclose::CLOSE_DURATION_BUCKETS,
        )
        .expect("buckets")
        .set_buckets_for_metric(
            Matcher::Full(wsclose::names::CONNECTION_DURATION.into()),
            wsclose::CONNECTION_DURATION_BUCKETS,
        )
        .expect("buckets")
        .build_recorder()
}

/// The configuration every measured connection is wrapped with: the default, plus the static
/// labels of `WSCLOSE_BENCH_LABELS` (`name=value,…`) when it is set.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let labels = std::env::var("WSCLOSE_BENCH_LABELS").unwrap_or_default();
        labels
            .split(',')
            .filter(|l| !l.is_empty())
            .fold(Config::new(), |c, l| {
                let (k, v) = l
                    .split_once('=')
                    .expect("WSCLOSE_BENCH_LABELS: name=value,...");
                c.with_label(k, v).expect("a valid static label")
            })
    })
}

async fn mem_pair() -> (Mem, Mem) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    // A small read buffer: tungstenite's default 128 KiB is allocated with mmap and faulted in
    // on first read, which would bury a 1 µs difference under ~80 µs of page faults.
    let config = || Some(WebSocketConfig::default().read_buffer_size(4096));
    tokio::join!(
        WebSocketStream::from_raw_socket(a, TtRole::Server, config()),
        WebSocketStream::from_raw_socket(b, TtRole::Client, config()),
    )
}

/// A whole wrapped lifecycle per connection (wrap = open, server-initiated clean close, end):
/// returns ns per connection.
async fn lifecycle_batch(n: usize) -> f64 {
    let mut ps = Vec::with_capacity(n);
    for _ in 0..n {
        ps.push(mem_pair().await);
    }
    let start = Timer::start(Clock::Thread);
    for (s, c) in ps {
        let mut s = config().server(s);
        let peer = tokio::spawn(read_to_end(c));
        let report = s.close(1000, "").await.expect("valid code");
        debug_assert_eq!(report.outcome, wsclose::Outcome::Clean);
        peer.await.expect("peer");
    }
    start.secs() * 1e9 / n as f64
}

/// `n` messages one way between two wrapped ends: returns ns per message.
async fn message_batch(pair: &mut (WebSocket<Mem>, WebSocket<Mem>), n: usize) -> f64 {
    let (tx, rx) = pair;
    let msgs_per_s = one_way::<_, _, (), _>(tx, rx, n, 16, Clock::Thread).await;
    1e9 / msgs_per_s
}

/// In a child process: a block of batches without a backend, then (after installing `backend`,
/// unless `control`) a second block. Prints the medians of both blocks.
pub(crate) fn backend_child(plan: &Plan, backend: Backend, control: bool) {
    let rt = current_thread();
    let mut pair = rt.block_on(async {
        let (s, c) = mem_pair().await;
        (config().server(s), config().client(c))
    });
    let mut measure = |rt: &Runtime| {
        // Warm-up: registers every series once, as a long-running server would have.
        for _ in 0..3 {
            rt.block_on(lifecycle_batch(plan.instr_closes));
        }
        rt.block_on(message_batch(&mut pair, plan.instr_messages));
        let closes: Vec<f64> = (0..plan.instr_reps)
            .map(|_| rt.block_on(lifecycle_batch(plan.instr_closes)))
            .collect();
        let messages: Vec<f64> = (0..plan.instr_reps)
            .map(|_| rt.block_on(message_batch(&mut pair, plan.instr_messages)))
            .collect();
        (median(&closes), median(&messages))
    };
    let (close_off, message_off) = measure(&rt);
    let _installed = (!control).then(|| backend.install());
    let (close_on, message_on) = measure(&rt);
    println!(
        "instr close_off={close_off} close_on={close_on} message_off={message_off} message_on={message_on}"
    );
    drop(pair);
    std::process::exit(0);
}

/// The rows of every backend. A child process measures a block of batches without the
/// backend, installs it, and measures a second block. The second block of a process is a
/// little slower even with nothing installed (100–300 ns per close here: the allocator and the
/// runtime have grown), so control children run the same two blocks without installing, and
/// their difference is subtracted. Backend and control children alternate (A B, B A, …),
/// `storm_reps` of each.
pub(crate) fn bench_instrumentation(plan: &Plan, rows: &mut Vec<Row>) {
    for &backend in Backend::ALL {
        bench_backend(plan, backend, rows);
    }
    #[cfg(not(feature = "otel"))]
    if plan.wants("instr_otel") {
        eprintln!(
            "compare: instr_otel_per_close / instr_otel_per_message need the otel feature (cargo bench --bench compare --features otel)"
        );
    }
}

fn bench_backend(plan: &Plan, backend: Backend, rows: &mut Vec<Row>) {
    let name = backend.name();
    let close_row = format!("instr_{name}_per_close");
    let message_row = format!("instr_{name}_per_message");
    let wants_close = plan.wants(&close_row);
    let wants_message = plan.wants(&message_row);
    if !wants_close && !wants_message {
        return;
    }
    let run_child = |control: bool| -> [f64; 4] {
        let mut cmd = child::instr(backend, control);
        // The child measures with the same plan as this process (`Plan::from_env`).
        if plan.mode == Mode::Quick {
            cmd.arg("--quick");
        }
        let out = cmd.output().expect("instrumentation child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let values: Option<Vec<f64>> =
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("instr "))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
                        .collect()
                });
        match values.as_deref() {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => panic!(
                "{name} child failed: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let (with, control) =
        interleave_blocking(plan.storm_reps, || run_child(false), || run_child(true));
    // Columns: closes without, with (0, 1); messages without, with (2, 3).
    let second_minus_first = |runs: &[[f64; 4]], off: usize| -> f64 {
        median(&runs.iter().map(|r| r[off + 1] - r[off]).collect::<Vec<_>>())
    };
    let children = with.len();
    let rows_wanted = [
        (
            wants_close,
            close_row,
            "per_close_ns",
            0,
            "open+close+end per conn over an in-memory duplex",
        ),
        (
            wants_message,
            message_row,
            "per_message_ns",
            2,
            "16 B one way, both ends wrapped, in-memory duplex",
        ),
    ];
    for (wanted, row, key, off, what) in rows_wanted {
        if !wanted {
            continue;
        }
        let cost = second_minus_first(&with, off) - second_minus_first(&control, off);
        let raw = median(&with.iter().map(|r| r[off]).collect::<Vec<_>>());
        rows.push(Row {
            name: row,
            raw,
            wsclose: raw + cost,
            unit: "ns",
            cost_ratio: (raw + cost) / raw,
            extra: vec![(key, format!("{cost:.0}"))],
            note: format!(
                "{what}; without vs with {}; {children} child processes, less {children} control ones",
                backend.description()
            ),
        });
    }
}
