//! The harness every section shares: the plan (how much to measure, which rows), the clocks,
//! the A/B interleaving, the statistics, the `compare` line and the table, and the runtimes the
//! rows run on.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// Measures the cost of a stretch of work. On a current-thread runtime: the CPU time of this
/// thread (every task, both ends of every connection and the kernel's loopback work run on
/// it), or wall time with `WSCLOSE_BENCH_CLOCK=wall`. CPU time is what the current-thread rates
/// report by default: on a shared 2-core machine it is far less disturbed by other processes
/// than wall time, and with everything on one thread it equals wall time on an idle machine.
/// On the multi-thread runtime the work is spread over two workers (and a task may move between
/// them), so those rows always use wall time.
pub(crate) struct Timer {
    wall: Instant,
    /// This thread's CPU time at the start (a `Duration`, not a `ThreadTime`, which is not
    /// `Send`: the multi-thread rows' futures hold a `Timer` across awaits, with `Clock::Wall`).
    cpu: Option<Duration>,
}

/// Which clock a [`Timer`] reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Clock {
    /// This thread's CPU time, unless `WSCLOSE_BENCH_CLOCK=wall`.
    Thread,
    /// Wall time.
    Wall,
}

impl Timer {
    pub(crate) fn start(clock: Clock) -> Timer {
        let cpu = (clock == Clock::Thread && !use_wall_clock())
            .then(|| cpu_time::ThreadTime::now().as_duration());
        Timer {
            wall: Instant::now(),
            cpu,
        }
    }

    pub(crate) fn secs(&self) -> f64 {
        match &self.cpu {
            Some(cpu) => (cpu_time::ThreadTime::now().as_duration() - *cpu).as_secs_f64(),
            None => self.wall.elapsed().as_secs_f64(),
        }
    }
}

fn use_wall_clock() -> bool {
    static WALL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WALL.get_or_init(|| std::env::var("WSCLOSE_BENCH_CLOCK").is_ok_and(|v| v == "wall"))
}

// ---------------------------------------------------------------------------------------------
// Modes and sizes
// ---------------------------------------------------------------------------------------------

/// How much the run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// `WSCLOSE_BENCH_SMOKE=1`: tiny sizes; proves the harness works and every line prints.
    Smoke,
    /// `-- --quick`: the documented run.
    Quick,
    /// No flag: more repetitions and samples.
    Full,
}

/// What a run measures and how much: the sizes and repetitions of its mode, and the rows it
/// keeps (`WSCLOSE_BENCH_ONLY`).
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) mode: Mode,
    /// Raw/wsclose pairs of repetitions for the rate benchmarks.
    pub(crate) reps: usize,
    pub(crate) echo_round_trips: usize,
    pub(crate) echo_round_trips_per_conn_64: usize,
    pub(crate) send_small: usize,
    pub(crate) send_large: usize,
    pub(crate) close_samples: usize,
    pub(crate) storm_conns: usize,
    pub(crate) storm_reps: usize,
    pub(crate) memory_conns: usize,
    pub(crate) memory_reps: usize,
    pub(crate) instr_closes: usize,
    pub(crate) instr_messages: usize,
    pub(crate) instr_reps: usize,
    pub(crate) only: Option<String>,
}

impl Plan {
    pub(crate) fn from_env() -> Plan {
        let smoke = std::env::var("WSCLOSE_BENCH_SMOKE").is_ok_and(|v| v != "0" && !v.is_empty());
        let quick = std::env::args().any(|a| a == "--quick");
        let mode = if smoke {
            Mode::Smoke
        } else if quick {
            Mode::Quick
        } else {
            Mode::Full
        };
        let only = std::env::var("WSCLOSE_BENCH_ONLY")
            .ok()
            .filter(|s| !s.is_empty());
        // (smoke, quick, full)
        let pick = |s: usize, q: usize, f: usize| match mode {
            Mode::Smoke => s,
            Mode::Quick => q,
            Mode::Full => f,
        };
        Plan {
            mode,
            reps: pick(1, 9, 21),
            echo_round_trips: pick(200, 4_000, 10_000),
            echo_round_trips_per_conn_64: pick(10, 150, 400),
            send_small: pick(2_000, 200_000, 500_000),
            send_large: pick(20, 1_000, 2_000),
            close_samples: pick(20, 2_000, 5_000),
            storm_conns: pick(300, 10_000, 10_000),
            storm_reps: pick(1, 5, 7),
            memory_conns: pick(300, 10_000, 10_000),
            memory_reps: pick(1, 3, 5),
            instr_closes: pick(50, 2_000, 4_000),
            instr_messages: pick(2_000, 100_000, 200_000),
            instr_reps: pick(1, 15, 31),
            only,
        }
    }

    /// Whether the row `name` runs: `WSCLOSE_BENCH_ONLY` unset, or a part of the name.
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

/// One `compare` line plus what the human table shows.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) raw: f64,
    pub(crate) wsclose: f64,
    pub(crate) unit: &'static str,
    pub(crate) cost_ratio: f64,
    pub(crate) extra: Vec<(&'static str, String)>,
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn print(&self) {
        let mut line = format!(
            "compare {} raw={}{} wsclose={}{} cost_ratio={:.3}",
            self.name,
            fmt_value(self.raw),
            self.unit,
            fmt_value(self.wsclose),
            self.unit,
            self.cost_ratio
        );
        for (k, v) in &self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        println!("{line}");
    }
}

/// A value as the `compare` lines and the table print it: no decimals from 100 up, two from 1,
/// four below.
pub(crate) fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A rate row: samples are events per second; cost is time per event.
pub(crate) fn rate_row(
    name: &str,
    unit: &'static str,
    raw: &[f64],
    ws: &[f64],
    note: String,
) -> Row {
    let ratios: Vec<f64> = raw.iter().zip(ws).map(|(r, w)| r / w).collect();
    if std::env::var_os("WSCLOSE_BENCH_SAMPLES").is_some() {
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| fmt_value(*x))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!("samples {name} raw: {}", show(raw));
        eprintln!("samples {name} wsclose: {}", show(ws));
        eprintln!("samples {name} cost_ratio: {}", show(&ratios));
    }
    Row {
        name: name.into(),
        raw: median(raw),
        wsclose: median(ws),
        unit,
        cost_ratio: median(&ratios),
        extra: Vec::new(),
        note,
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p`th percentile (0–100) by nearest rank.
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// A/B interleaving
// ---------------------------------------------------------------------------------------------

/// Runs `raw` and `ws` `reps` times each, alternating which goes first (A B, B A, …) so that
/// drift and warm-up hit both equally. Returns the samples of each, in order. Every raw/wsclose
/// (or without/with) comparison of the bench alternates through here, or through
/// [`interleave_blocking`] when its measurements block the thread.
pub(crate) async fn interleave<T, A, B, FA, FB>(
    reps: usize,
    mut raw: A,
    mut ws: B,
) -> (Vec<T>, Vec<T>)
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = T>,
    FB: Future<Output = T>,
{
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..reps {
        if i % 2 == 0 {
            a.push(raw().await);
            b.push(ws().await);
        } else {
            b.push(ws().await);
            a.push(raw().await);
        }
    }
    (a, b)
}

/// [`interleave`] for measurements that run outside any runtime and block this thread until
/// they have their value (a child process, or a `block_on` of their own), in the same order.
/// Each repetition's future is ready as soon as it is made, so the whole interleaving completes
/// in one poll, with no runtime and a waker that is never used.
pub(crate) fn interleave_blocking<T>(
    reps: usize,
    mut raw: impl FnMut() -> T,
    mut ws: impl FnMut() -> T,
) -> (Vec<T>, Vec<T>) {
    let all = pin!(interleave(
        reps,
        || std::future::ready(raw()),
        || std::future::ready(ws())
    ));
    match all.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(samples) => samples,
        Poll::Pending => unreachable!("every repetition is ready at once"),
    }
}

// ---------------------------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------------------------

pub(crate) fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The runtime a row runs on. The current-thread rows keep their names; the same rows on a
/// 2-worker multi-thread runtime (as services run) end in `_mt`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flavor {
    Current,
    Multi,
}

/// The p50 and p99 rows (`<name>_p50`, `<name>_p99`, with the flavor's suffix) of two sets of
/// latency samples in µs; `what` goes into the note.
pub(crate) fn latency_rows(
    name: &str,
    flavor: Flavor,
    raw: &[f64],
    ws: &[f64],
    what: &str,
) -> Vec<Row> {
    let runtime = match flavor {
        Flavor::Current => "current-thread runtime",
        Flavor::Multi => "2-worker multi-thread runtime",
    };
    [50.0, 99.0]
        .into_iter()
        .map(|p| {
            let (r, w) = (percentile(raw, p), percentile(ws, p));
            Row {
                name: format!("{name}_p{p:.0}{}", flavor.suffix()),
                raw: r,
                wsclose: w,
                unit: "us",
                cost_ratio: w / r,
                extra: Vec::new(),
                note: format!(
                    "{} raw and {} wsclose samples, interleaved; {what}{runtime}",
                    raw.len(),
                    ws.len()
                ),
            }
        })
        .collect()
}

impl Flavor {
    /// The row name's suffix.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Flavor::Current => "",
            Flavor::Multi => "_mt",
        }
    }

    pub(crate) fn clock(self) -> Clock {
        match self {
            Flavor::Current => Clock::Thread,
            Flavor::Multi => Clock::Wall,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Flavor::Current => "current-thread runtime",
            Flavor::Multi => "2-worker multi-thread runtime, wall time",
        }
    }

    /// Runs a measurement. On the multi-thread runtime it runs in a spawned task, on a worker
    /// like a service's tasks (`block_on` would poll it on this thread, a third one next to the
    /// two workers); on the current-thread runtime everything runs on this thread either way.
    pub(crate) fn run<T: Send + 'static>(
        self,
        rt: &Runtime,
        f: impl Future<Output = T> + Send + 'static,
    ) -> T {
        match self {
            Flavor::Current => rt.block_on(f),
            Flavor::Multi => rt.block_on(async { tokio::spawn(f).await.expect("bench task") }),
        }
    }
}
