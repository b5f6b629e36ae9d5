//! Instrumentation cost, Prometheus (`instr_prometheus_per_close`, `instr_prometheus_per_message`):
//! what wsclose's metrics cost with a Prometheus recorder installed, against no recorder at all.
//! Here `raw=` is wsclose with no `metrics` recorder and `wsclose=` is wsclose with the
//! recorder. The connections run over an in-memory duplex transport, so that the network does
//! not drown a difference of a few hundred nanoseconds. The batches are shared with the
//! OpenTelemetry rows ([`crate::otel`]).

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role as TtRole, WebSocketConfig};
use wsclose::WebSocket;

use crate::harness::{Clock, Plan, Row, Timer, interleave_blocking, median};
use crate::net::read_to_end;
use crate::throughput::one_way;

type Mem = WebSocketStream<DuplexStream>;

/// A `metrics` recorder configured as the crate's `prometheus::builder()` configures it (same
/// histogram buckets), built from the dev-dependency so the bench does not need the
/// `prometheus` feature. It is set per batch as the thread's local recorder, so that "with" and
/// "without" interleave. OpenTelemetry is installed for the rest of a process and cannot be
/// switched off again: it is measured in child processes of its own, see [`crate::otel`].
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

pub(crate) async fn mem_pair() -> (Mem, Mem) {
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
pub(crate) async fn lifecycle_batch(n: usize) -> f64 {
    let mut ps = Vec::with_capacity(n);
    for _ in 0..n {
        ps.push(mem_pair().await);
    }
    let start = Timer::start(Clock::Thread);
    for (s, c) in ps {
        let s = WebSocket::server(s);
        let peer = tokio::spawn(read_to_end(c));
        let report = s.close(1000, "").await.expect("valid code");
        debug_assert_eq!(report.outcome, wsclose::Outcome::Clean);
        peer.await.expect("peer");
    }
    start.secs() * 1e9 / n as f64
}

/// `n` messages one way between two wrapped ends: returns ns per message.
pub(crate) async fn message_batch(pair: &mut (WebSocket<Mem>, WebSocket<Mem>), n: usize) -> f64 {
    let (tx, rx) = pair;
    let msgs_per_s = one_way::<_, _, (), _>(tx, rx, n, 16, Clock::Thread).await;
    1e9 / msgs_per_s
}

fn with_recorder<T>(
    rt: &Runtime,
    rec: Option<&dyn metrics::Recorder>,
    f: impl Future<Output = T>,
) -> T {
    // The runtime is current-thread, so every task (the close tasks included) runs on this
    // thread and sees the thread-local recorder.
    let _guard = rec.map(metrics::set_default_local_recorder);
    rt.block_on(f)
}

pub(crate) fn bench_instrumentation(rt: &Runtime, plan: &Plan, rows: &mut Vec<Row>) {
    let rec = prometheus_recorder();
    let rec: Option<&dyn metrics::Recorder> = Some(&rec);
    let name = "instr_prometheus_per_close";
    if plan.wants(name) {
        // Warm-up: registers every series once, as a long-running server would have.
        with_recorder(rt, rec, lifecycle_batch(50));
        with_recorder(rt, None, lifecycle_batch(50));
        let (off, on) = interleave_blocking(
            plan.instr_reps,
            || with_recorder(rt, None, lifecycle_batch(plan.instr_closes)),
            || with_recorder(rt, rec, lifecycle_batch(plan.instr_closes)),
        );
        let diffs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
        let (a, b) = (median(&off), median(&on));
        rows.push(Row {
            name: name.into(),
            raw: a,
            wsclose: b,
            unit: "ns",
            cost_ratio: b / a,
            extra: vec![("per_close_ns", format!("{:.0}", median(&diffs)))],
            note: format!(
                "open+close+end per conn over an in-memory duplex; {} x {} conns",
                plan.instr_reps, plan.instr_closes
            ),
        });
    }
    let name = "instr_prometheus_per_message";
    if plan.wants(name) {
        let pair = rt.block_on(async {
            let (s, c) = mem_pair().await;
            (WebSocket::server(s), WebSocket::client(c))
        });
        // Both sides' batches use the one pair, lent out per batch (outside the timed stretch).
        let pair = RefCell::new(pair);
        let batch = |rec, n| with_recorder(rt, rec, message_batch(&mut pair.borrow_mut(), n));
        batch(rec, plan.instr_messages / 10 + 1);
        batch(None, plan.instr_messages / 10 + 1);
        let (off, on) = interleave_blocking(
            plan.instr_reps,
            || batch(None, plan.instr_messages),
            || batch(rec, plan.instr_messages),
        );
        let diffs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
        let (a, b) = (median(&off), median(&on));
        rows.push(Row {
            name: name.into(),
            raw: a,
            wsclose: b,
            unit: "ns",
            cost_ratio: b / a,
            extra: vec![("per_message_ns", format!("{:.0}", median(&diffs)))],
            note: format!(
                "16 B one way, both ends wrapped, in-memory duplex; {} x {} msgs",
                plan.instr_reps, plan.instr_messages
            ),
        });
        drop(pair);
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    }
}
