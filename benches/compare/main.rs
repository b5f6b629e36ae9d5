//! Side-by-side benchmarks: raw tokio-tungstenite against wsclose, measured in the same run over
//! loopback TCP, raw and wsclose interleaved (A/B/B/A…) and reported as medians.
//!
//! ```sh
//! cargo bench --bench compare -- --quick          # the documented run (< 5 min on 2 cores)
//! cargo bench --bench compare --features otel -- --quick   # plus the OpenTelemetry rows
//! cargo bench --bench compare                     # more repetitions
//! WSCLOSE_BENCH_SMOKE=1 cargo bench --bench compare   # seconds; checks the harness, not speed
//! WSCLOSE_BENCH_ONLY=echo cargo bench --bench compare -- --quick   # a subset (for profiling)
//! WSCLOSE_BENCH_SAMPLES=1 cargo bench --bench compare -- --quick   # also each repetition (stderr)
//! ```
//!
//! Every benchmark prints one line in a fixed form that scripts read:
//!
//! ```text
//! compare <name> raw=<value><unit> wsclose=<value><unit> cost_ratio=<x.xxx> [extra=<n> …]
//! ```
//!
//! `cost_ratio` is wsclose's cost over raw's (time per message, latency, wall time or bytes):
//! above 1 means wsclose is slower or bigger. For rates it is the median of the per-repetition
//! ratios of back-to-back raw/wsclose pairs, which cancels drift better than the ratio of the
//! two medians printed beside it. For the instrumentation lines `raw=` is wsclose with no
//! metrics backend and `wsclose=` is wsclose with one installed (Prometheus, OpenTelemetry).
//!
//! "raw" is plain tokio-tungstenite on both ends; "wsclose" wraps both ends (server and client
//! roles), except the memory and instrumentation rows, which wrap the server end only so that
//! the numbers are per wrapped connection. See `docs/performance.md`.
//!
//! The harness (plan, clocks, interleaving, statistics, rows) is in `harness.rs`, the loopback
//! connections in `net.rs`, the child processes in `child.rs`, and each benchmark in a module
//! of its own: `echo.rs`, `throughput.rs`, `close.rs`, `handshake.rs`, `storm.rs`, `memory.rs`,
//! `instrumentation.rs` (Prometheus and OpenTelemetry). This file runs them in
//! order and prints the table.

mod child;
mod close;
mod echo;
mod handshake;
mod harness;
mod instrumentation;
mod memory;
mod net;
mod storm;
mod throughput;

use std::time::Instant;

use harness::{Flavor, Plan, Row, current_thread, fmt_value, multi_thread};

/// The table for people, after every `compare` line (the lines scripts read).
fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<36} {:>14} {:>14} {:>10}  notes",
        "benchmark", "raw", "wsclose", "cost_ratio"
    );
    for r in rows {
        println!(
            "{:<36} {:>14} {:>14} {:>10.3}  {}",
            r.name,
            format!("{}{}", fmt_value(r.raw), r.unit),
            format!("{}{}", fmt_value(r.wsclose), r.unit),
            r.cost_ratio,
            r.note
        );
    }
}

fn main() {
    // A child process runs its mode and exits here.
    child::run_if_child();
    let plan = Plan::from_env();
    let started = Instant::now();
    eprintln!("compare: mode {:?}", plan.mode);
    let mut rows = Vec::new();
    let rt = current_thread();
    // Each section prints its lines as soon as they are measured.
    let emit = |rows: &mut Vec<Row>, from: usize| {
        for r in &rows[from..] {
            r.print();
        }
    };
    type Section<'a> = &'a dyn Fn(&mut Vec<Row>);
    // The multi-thread rows (`_mt`) each get a fresh 2-worker runtime, dropped after its section.
    let sections: [Section<'_>; 11] = [
        &|rows| echo::bench_echo(&rt, Flavor::Current, &plan, rows),
        &|rows| throughput::bench_send(&rt, Flavor::Current, &plan, rows),
        &|rows| close::bench_close_latency(&rt, Flavor::Current, &plan, rows),
        &|rows| echo::bench_echo(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| throughput::bench_send(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| close::bench_close_latency(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| handshake::bench_handshake(&rt, Flavor::Current, &plan, rows),
        &|rows| handshake::bench_handshake(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| storm::bench_storm(&plan, rows),
        &|rows| memory::bench_memory(&plan, rows),
        &|rows| instrumentation::bench_instrumentation(&plan, rows),
    ];
    for section in sections {
        let from = rows.len();
        section(&mut rows);
        emit(&mut rows, from);
    }
    print_table(&rows);
    eprintln!(
        "compare: {} rows in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    drop(rt);
    echo::criterion_echo(&plan);
}
