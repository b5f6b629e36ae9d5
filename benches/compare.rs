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
//! `metrics` recorder and `wsclose=` is wsclose with the Prometheus recorder installed.
//!
//! "raw" is plain tokio-tungstenite on both ends; "wsclose" wraps both ends (server and client
//! roles), except the memory and instrumentation rows, which wrap the server end only so that
//! the numbers are per wrapped connection. See `docs/performance.md`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures_util::future::join_all;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::DuplexStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TtCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as TtRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsclose::{Handle, Registry, WebSocket};

type Tt = WebSocketStream<TcpStream>;
type Ws = WebSocket<Tt>;

/// Measures the cost of a stretch of work. On a current-thread runtime: the CPU time of this
/// thread (every task, both ends of every connection and the kernel's loopback work run on
/// it), or wall time with `WSCLOSE_BENCH_CLOCK=wall`. CPU time is what the current-thread rates
/// report by default: on a shared 2-core machine it is far less disturbed by other processes
/// than wall time, and with everything on one thread it equals wall time on an idle machine.
/// On the multi-thread runtime the work is spread over two workers (and a task may move between
/// them), so those rows always use wall time.
struct Timer {
    wall: Instant,
    /// This thread's CPU time at the start (a `Duration`, not a `ThreadTime`, which is not
    /// `Send`: the multi-thread rows' futures hold a `Timer` across awaits, with `Clock::Wall`).
    cpu: Option<Duration>,
}

/// Which clock a [`Timer`] reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Clock {
    /// This thread's CPU time, unless `WSCLOSE_BENCH_CLOCK=wall`.
    Thread,
    /// Wall time.
    Wall,
}

impl Timer {
    fn start(clock: Clock) -> Timer {
        let cpu = (clock == Clock::Thread && !use_wall_clock())
            .then(|| cpu_time::ThreadTime::now().as_duration());
        Timer {
            wall: Instant::now(),
            cpu,
        }
    }

    fn secs(&self) -> f64 {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `WSCLOSE_BENCH_SMOKE=1`: tiny sizes; proves the harness works and every line prints.
    Smoke,
    /// `-- --quick`: the documented run.
    Quick,
    /// No flag: more repetitions and samples.
    Full,
}

#[derive(Debug)]
struct Plan {
    mode: Mode,
    /// Raw/wsclose pairs of repetitions for the rate benchmarks.
    reps: usize,
    echo_round_trips: usize,
    echo_round_trips_per_conn_64: usize,
    send_small: usize,
    send_large: usize,
    close_samples: usize,
    storm_conns: usize,
    storm_reps: usize,
    memory_conns: usize,
    memory_reps: usize,
    instr_closes: usize,
    instr_messages: usize,
    instr_reps: usize,
    only: Option<String>,
}

impl Plan {
    fn from_env() -> Plan {
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

    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

/// One `compare` line plus what the human table shows.
struct Row {
    name: String,
    raw: f64,
    wsclose: f64,
    unit: &'static str,
    cost_ratio: f64,
    extra: Vec<(&'static str, String)>,
    note: String,
}

impl Row {
    fn print(&self) {
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

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Runs `raw` and `wsclose` `reps` times each, alternating which goes first (A B, B A, …) so
/// that drift and warm-up hit both equally. Returns the samples of each, in order.
async fn interleave<A, B, FA, FB>(reps: usize, mut raw: A, mut ws: B) -> (Vec<f64>, Vec<f64>)
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = f64>,
    FB: Future<Output = f64>,
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

/// A rate row: samples are events per second; cost is time per event.
fn rate_row(name: &str, unit: &'static str, raw: &[f64], ws: &[f64], note: String) -> Row {
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
// Connections
// ---------------------------------------------------------------------------------------------

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The runtime a row runs on. The current-thread rows keep their names; the same rows on a
/// 2-worker multi-thread runtime (as services run) end in `_mt`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    Current,
    Multi,
}

impl Flavor {
    /// The row name's suffix.
    fn suffix(self) -> &'static str {
        match self {
            Flavor::Current => "",
            Flavor::Multi => "_mt",
        }
    }

    fn clock(self) -> Clock {
        match self {
            Flavor::Current => Clock::Thread,
            Flavor::Multi => Clock::Wall,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Flavor::Current => "current-thread runtime",
            Flavor::Multi => "2-worker multi-thread runtime, wall time",
        }
    }

    /// Runs a measurement. On the multi-thread runtime it runs in a spawned task, on a worker
    /// like a service's tasks (`block_on` would poll it on this thread, a third one next to the
    /// two workers); on the current-thread runtime everything runs on this thread either way.
    fn run<T: Send + 'static>(
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

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

async fn client_ws(addr: SocketAddr) -> Tt {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("client handshake")
        .0
}

async fn server_ws(listener: &TcpListener) -> Tt {
    let (tcp, _) = listener.accept().await.expect("accept");
    tcp.set_nodelay(true).expect("nodelay");
    tokio_tungstenite::accept_async(tcp)
        .await
        .expect("server handshake")
}

/// One connected pair on an existing listener: (server side, client side).
async fn pair_on(listener: &TcpListener, addr: SocketAddr) -> (Tt, Tt) {
    tokio::join!(server_ws(listener), client_ws(addr))
}

/// `n` connected pairs on a fresh listener (a fresh port, so TIME_WAIT sockets of earlier
/// runs never collide). Returns (server sides, client sides), not matched up.
async fn pairs(n: usize) -> (Vec<Tt>, Vec<Tt>) {
    let (listener, addr) = listener().await;
    let acceptor = tokio::spawn(accept_n(listener, n));
    let mut clients = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(256);
        clients.extend(join_all((0..batch).map(|_| client_ws(addr))).await);
        left -= batch;
    }
    (acceptor.await.expect("acceptor"), clients)
}

fn close_frame(code: u16) -> Option<CloseFrame> {
    Some(CloseFrame {
        code: TtCode::from(code),
        reason: "".into(),
    })
}

/// Reads until the stream ends (or errs): the peer side of every close.
async fn read_to_end<S, E>(mut ws: S)
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(Ok(_)) = ws.next().await {}
}

/// Echoes data messages until the stream ends.
async fn echo<S, E>(mut ws: S)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Raises the soft RLIMIT_NOFILE (and, where allowed, the hard one) so that `conns` sockets
/// fit in this process; returns how many fit when they cannot. Every 10,000-connection
/// benchmark keeps one end per process (the client ends live in a child process), so a hard
/// limit of 20,000 is enough.
fn raise_fd_limit(conns: usize) -> usize {
    use rlimit::Resource;
    const SPARE: u64 = 256;
    let want = conns as u64 + SPARE;
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((1_024, 1_024));
    if hard < want {
        // Raising the hard limit needs CAP_SYS_RESOURCE; carry on if refused.
        let _ = Resource::NOFILE.set(want, want);
    }
    let (_, hard) = Resource::NOFILE.get().unwrap_or((soft, hard));
    let _ = Resource::NOFILE.set(hard, hard);
    let (soft, _) = Resource::NOFILE.get().unwrap_or((soft, hard));
    let fit = soft.saturating_sub(SPARE) as usize;
    if fit < conns {
        eprintln!(
            "compare: RLIMIT_NOFILE is {soft}; running {fit} connections instead of {conns} \
             (raise the limit to reproduce the documented numbers)"
        );
    }
    fit.min(conns)
}

// ---------------------------------------------------------------------------------------------
// 1. Echo round-trip rate
// ---------------------------------------------------------------------------------------------

/// Drives `round_trips` sequential round trips on each client at once; returns round trips/s.
async fn echo_clients<S, E>(clients: &mut [S], round_trips: usize, size: usize, clock: Clock) -> f64
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let payload = Bytes::from(vec![0x5a; size]);
    let start = Timer::start(clock);
    join_all(clients.iter_mut().map(|c| {
        let payload = payload.clone();
        async move {
            for _ in 0..round_trips {
                if c.send(Message::Binary(payload.clone())).await.is_err() {
                    panic!("echo send failed");
                }
                match c.next().await {
                    Some(Ok(m)) if m.len() == size => {}
                    _ => panic!("echo reply missing"),
                }
            }
        }
    }))
    .await;
    (clients.len() * round_trips) as f64 / start.secs()
}

/// [`echo_clients`] on clients kept behind a lock, so that the raw and the wsclose closures of
/// [`interleave`] can each lend theirs out for one repetition (uncontended: one lock per
/// repetition, outside the timed stretch).
async fn echo_locked<S, E>(
    clients: &tokio::sync::Mutex<Vec<S>>,
    round_trips: usize,
    size: usize,
    clock: Clock,
) -> f64
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    echo_clients(&mut clients.lock().await, round_trips, size, clock).await
}

async fn echo_setup(conns: usize) -> (Vec<Tt>, Vec<Ws>) {
    let (servers, raw_clients) = pairs(conns).await;
    for s in servers {
        tokio::spawn(echo(s));
    }
    let (servers, clients) = pairs(conns).await;
    for s in servers {
        tokio::spawn(echo(WebSocket::server(s)));
    }
    let ws_clients = clients.into_iter().map(WebSocket::client).collect();
    (raw_clients, ws_clients)
}

fn bench_echo(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let (reps, clock) = (plan.reps, flavor.clock());
    for (conns, rts) in [
        (1, plan.echo_round_trips),
        (64, plan.echo_round_trips_per_conn_64),
    ] {
        for (size, label) in [(16, "16B"), (4096, "4KiB")] {
            let name = format!("echo_{label}_{conns}conn{}", flavor.suffix());
            if !plan.wants(&name) {
                continue;
            }
            let (raw, ws) = flavor.run(rt, async move {
                let (raw, ws) = echo_setup(conns).await;
                let (raw, ws) = (tokio::sync::Mutex::new(raw), tokio::sync::Mutex::new(ws));
                // Warm-up: allocations, socket buffers, branch predictors.
                echo_locked(&raw, rts / 10 + 1, size, clock).await;
                echo_locked(&ws, rts / 10 + 1, size, clock).await;
                interleave(
                    reps,
                    || echo_locked(&raw, rts, size, clock),
                    || echo_locked(&ws, rts, size, clock),
                )
                .await
            });
            rows.push(rate_row(
                &name,
                "rt/s",
                &raw,
                &ws,
                format!(
                    "{conns} conn x {rts} round trips, both ends wrapped; {}",
                    flavor.describe()
                ),
            ));
            // Dropping the clients ends the echo tasks; let them finish before the next row.
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. One-way send throughput
// ---------------------------------------------------------------------------------------------

/// Sends `count` messages of `size` bytes (`feed` per message, one flush at the end).
async fn feed_all<S: Sink<Message> + Unpin>(tx: &mut S, count: usize, size: usize) {
    let payload = Bytes::from(vec![0xa5; size]);
    for _ in 0..count {
        if tx.feed(Message::Binary(payload.clone())).await.is_err() {
            panic!("feed failed");
        }
    }
    if tx.flush().await.is_err() {
        panic!("flush failed");
    }
}

/// Reads until `count` messages of `size` bytes have arrived.
async fn receive_all<R, F>(rx: &mut R, count: usize, size: usize)
where
    R: Stream<Item = Result<Message, F>> + Unpin,
{
    let mut got = 0;
    while got < count {
        match rx.next().await {
            Some(Ok(m)) if m.len() == size => got += 1,
            _ => panic!("receiver ended early"),
        }
    }
}

/// Sends `count` messages (`feed`, one flush at the end) and waits until the receiver has them
/// all, both in this task; returns messages/s.
async fn one_way<S, R, E, F>(tx: &mut S, rx: &mut R, count: usize, size: usize, clock: Clock) -> f64
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, F>> + Unpin,
{
    let start = Timer::start(clock);
    tokio::join!(feed_all(tx, count, size), receive_all(rx, count, size));
    let _: Option<E> = None;
    count as f64 / start.secs()
}

/// [`one_way`] with the receiver in a task of its own, as two ends of a connection are in a
/// service: on the multi-thread runtime the two may run on different workers. Returns
/// (messages/s by wall time, the sender, the receiver).
async fn one_way_spawned<S, R, F>(mut tx: S, mut rx: R, count: usize, size: usize) -> (f64, S, R)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, F>> + Unpin + Send + 'static,
    F: Send + 'static,
{
    let start = Timer::start(Clock::Wall);
    let receiver = tokio::spawn(async move {
        receive_all(&mut rx, count, size).await;
        rx
    });
    feed_all(&mut tx, count, size).await;
    let rx = receiver.await.expect("receiver task");
    (count as f64 / start.secs(), tx, rx)
}

/// One message stream over a fresh connection (so that no run inherits another's socket state):
/// messages/s. Both ends are ended, untimed, before it returns.
async fn send_run(
    flavor: Flavor,
    wrapped: bool,
    l: &TcpListener,
    a: SocketAddr,
    s2c: bool,
    count: usize,
    size: usize,
) -> f64 {
    let (s, c) = pair_on(l, a).await;
    if wrapped {
        let (s, c) = (WebSocket::server(s), WebSocket::client(c));
        let (mut tx, mut rx) = if s2c { (s, c) } else { (c, s) };
        let rate = match flavor {
            Flavor::Current => {
                one_way::<_, _, (), _>(&mut tx, &mut rx, count, size, flavor.clock()).await
            }
            Flavor::Multi => {
                let (rate, t, r) = one_way_spawned(tx, rx, count, size).await;
                (tx, rx) = (t, r);
                rate
            }
        };
        let h = tx.handle();
        let _ = tokio::join!(h.close(1000, ""), read_to_end(rx));
        rate
    } else {
        let (mut tx, mut rx) = if s2c { (s, c) } else { (c, s) };
        let rate = match flavor {
            Flavor::Current => {
                one_way::<_, _, (), _>(&mut tx, &mut rx, count, size, flavor.clock()).await
            }
            Flavor::Multi => {
                let (rate, t, r) = one_way_spawned(tx, rx, count, size).await;
                (tx, rx) = (t, r);
                rate
            }
        };
        let _ = tx.close(close_frame(1000)).await;
        tokio::join!(read_to_end(tx), read_to_end(rx));
        rate
    }
}

fn bench_send(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let reps = plan.reps;
    for (size, label, count) in [
        (16, "16B", plan.send_small),
        (64 * 1024, "64KiB", plan.send_large),
    ] {
        for dir in ["server_to_client", "client_to_server"] {
            let name = format!("send_{label}_{dir}{}", flavor.suffix());
            if !plan.wants(&name) {
                continue;
            }
            let s2c = dir == "server_to_client";
            let (raw, ws) = flavor.run(rt, async move {
                let (l, a) = listener().await;
                let run = |wrapped| send_run(flavor, wrapped, &l, a, s2c, count, size);
                run(false).await;
                run(true).await;
                interleave(reps, || run(false), || run(true)).await
            });
            let mib = |v: &[f64]| -> Vec<f64> {
                v.iter()
                    .map(|r| r * size as f64 / (1024.0 * 1024.0))
                    .collect()
            };
            let mut row = if size >= 1024 {
                rate_row(&name, "MiB/s", &mib(&raw), &mib(&ws), String::new())
            } else {
                rate_row(&name, "msg/s", &raw, &ws, String::new())
            };
            let receiver = match flavor {
                Flavor::Current => "",
                Flavor::Multi => ", receiver in a task of its own",
            };
            row.note = format!(
                "{count} msgs; raw {:.0} msg/s {:.1} MiB/s, wsclose {:.0} msg/s {:.1} MiB/s; {}{receiver}",
                median(&raw),
                median(&mib(&raw)),
                median(&ws),
                median(&mib(&ws)),
                flavor.describe(),
            );
            rows.push(row);
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Clean close handshake latency
// ---------------------------------------------------------------------------------------------

/// One message each way before a close is timed. A connection's first read faults in its
/// 128 KiB read buffer; whether glibc serves that buffer from fresh pages or reused ones
/// depends on what the previous connection freed, which made the untouched-connection latency
/// bimodal (≈ 22 µs or ≈ 70 µs, for raw and wsclose alike). Closes in service follow traffic.
async fn warm_up<S, E>(a: &mut S, b: &mut S)
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    async fn pass<S, E>(from: &mut S, to: &mut S)
    where
        S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
    {
        assert!(
            from.send(Message::text("warm")).await.is_ok(),
            "warm-up send"
        );
        assert!(matches!(to.next().await, Some(Ok(_))), "warm-up message");
    }
    pass(a, b).await;
    pass(b, a).await;
}

/// Raw: `close()`, read until the stream ends, drop the socket.
async fn close_raw(l: &TcpListener, a: SocketAddr, server_first: bool) -> f64 {
    let (mut s, mut c) = pair_on(l, a).await;
    warm_up(&mut s, &mut c).await;
    let (mut init, peer) = if server_first { (s, c) } else { (c, s) };
    let peer = tokio::spawn(read_to_end(peer));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let _ = init.close(close_frame(1000)).await;
    while let Some(Ok(_)) = init.next().await {}
    drop(init);
    let d = start.elapsed();
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

/// wsclose: `close(1000, "")` returns once the transport is closed.
async fn close_ws(l: &TcpListener, a: SocketAddr, server_first: bool) -> f64 {
    let (s, c) = pair_on(l, a).await;
    let (mut s, mut c) = (WebSocket::server(s), WebSocket::client(c));
    warm_up(&mut s, &mut c).await;
    let (init, peer) = if server_first { (s, c) } else { (c, s) };
    let peer = tokio::spawn(read_to_end(peer));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let report = init.close(1000, "").await.expect("valid code");
    let d = start.elapsed();
    assert_eq!(report.outcome, wsclose::Outcome::Clean, "{report}");
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

fn bench_close_latency(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let samples = plan.close_samples;
    for (side, server_first) in [("server", true), ("client", false)] {
        let name = format!("close_latency_{side}_init");
        if !plan.wants(&format!("{name}{}", flavor.suffix())) {
            continue;
        }
        let (raw, ws) = flavor.run(rt, async move {
            let (l, a) = listener().await;
            for _ in 0..10 {
                close_raw(&l, a, server_first).await;
                close_ws(&l, a, server_first).await;
            }
            interleave(
                samples,
                || close_raw(&l, a, server_first),
                || close_ws(&l, a, server_first),
            )
            .await
        });
        for p in [50.0, 99.0] {
            let (r, w) = (percentile(&raw, p), percentile(&ws, p));
            rows.push(Row {
                name: format!("{name}_p{p:.0}{}", flavor.suffix()),
                raw: r,
                wsclose: w,
                unit: "us",
                cost_ratio: w / r,
                extra: Vec::new(),
                note: format!(
                    "{} raw and {} wsclose samples, interleaved; {}",
                    raw.len(),
                    ws.len(),
                    match flavor {
                        Flavor::Current => "current-thread runtime",
                        Flavor::Multi => "2-worker multi-thread runtime",
                    }
                ),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Close storm
// ---------------------------------------------------------------------------------------------

/// Closes every wsclose server connection at once and waits until all of them have ended:
/// the connection registry's graceful shutdown, as a server does on SIGTERM.
async fn wsclose_shutdown_all(registry: &Registry) {
    let report = registry
        .shutdown(1001, Duration::from_secs(30))
        .await
        .expect("valid code");
    assert_eq!(report.stragglers, 0, "{report}");
}

/// Raw: one task per connection, `close()` then read until the end, then drop.
async fn raw_shutdown_all(servers: Vec<Tt>) {
    let tasks: Vec<JoinHandle<()>> = servers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let _ = ws.close(close_frame(1001)).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("raw close task");
    }
}

/// Accepts `n` connections and completes their handshakes concurrently.
async fn accept_n(listener: TcpListener, n: usize) -> Vec<Tt> {
    let mut handshakes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        handshakes.push(tokio::spawn(tokio_tungstenite::accept_async(tcp)));
    }
    let mut servers = Vec::with_capacity(n);
    for h in handshakes {
        servers.push(h.await.expect("join").expect("server handshake"));
    }
    servers
}

/// In a child process: the client ends of a storm. Connects `n` clients to `addr`, each
/// reading until its end (raw, or wrapped by wsclose), prints `ready`, and when every client
/// has ended prints `done <n>`.
fn storm_clients_child(wrapped: bool, n: usize, addr: SocketAddr) {
    use std::io::Write;
    raise_fd_limit(n);
    let rt = current_thread();
    let ended = rt.block_on(async move {
        let mut readers: Vec<JoinHandle<()>> = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let batch = left.min(256);
            for c in join_all((0..batch).map(|_| client_ws(addr))).await {
                readers.push(if wrapped {
                    tokio::spawn(read_to_end(WebSocket::client(c)))
                } else {
                    tokio::spawn(read_to_end(c))
                });
            }
            left -= batch;
        }
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut ended = 0;
        for r in readers {
            if r.await.is_ok() {
                ended += 1;
            }
        }
        ended
    });
    println!("done {ended}");
    std::process::exit(0);
}

/// One storm: `conns` server-side connections in this process (the client ends in a child
/// process, so that 10,000 connections need 10,000 fds here, not 20,000), all closed at once.
/// Returns (wall seconds until every server-side transport is closed, connections left open:
/// fds not released here plus clients that did not end in the child).
async fn storm(conns: usize, wrapped: bool) -> (f64, usize) {
    use std::io::BufRead;
    let fds_before = open_fds();
    let (l, addr) = listener().await;
    let acceptor = tokio::spawn(accept_n(l, conns));
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .env(
            CHILD_ENV,
            format!(
                "storm-clients:{}:{conns}:{addr}",
                if wrapped { "wsclose" } else { "raw" }
            ),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("storm client child");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let servers = tokio::time::timeout(Duration::from_secs(120), acceptor)
        .await
        .expect("storm clients connect within 120 s")
        .expect("acceptor");
    let ready = tokio::task::block_in_place(|| lines.next());
    assert!(
        matches!(ready, Some(Ok(ref l)) if l == "ready"),
        "storm child: {ready:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let elapsed;
    if wrapped {
        let registry = Registry::new();
        let config = wsclose::Config::new().with_registry(registry.clone());
        let servers: Vec<Ws> = servers.into_iter().map(|s| config.server(s)).collect();
        let handles: Vec<Handle> = servers.iter().map(WebSocket::handle).collect();
        let start = Instant::now();
        wsclose_shutdown_all(&registry).await;
        elapsed = start.elapsed();
        let clean = handles
            .iter()
            .filter(|h| {
                h.report()
                    .is_some_and(|r| r.outcome == wsclose::Outcome::Clean)
            })
            .count();
        assert_eq!(clean, conns, "every wsclose connection ends clean");
        drop(servers);
    } else {
        let start = Instant::now();
        raw_shutdown_all(servers).await;
        elapsed = start.elapsed();
    }
    let done = tokio::task::block_in_place(|| {
        let done = lines.next();
        let _ = child.wait();
        done
    });
    drop(lines);
    let ended = match done {
        Some(Ok(l)) => l
            .strip_prefix("done ")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let left = open_fds().saturating_sub(fds_before) + conns.saturating_sub(ended);
    (elapsed.as_secs_f64(), left)
}

fn bench_storm(plan: &Plan, rows: &mut Vec<Row>) {
    if !plan.wants("close_storm") {
        return;
    }
    let conns = raise_fd_limit(plan.storm_conns);
    let rt = multi_thread();
    let left = std::cell::Cell::new(0);
    let (raw, ws) = rt.block_on(async {
        // One unmeasured storm each first: the first storm of a process is far slower for both
        // (the allocator, the socket tables and the child's page cache are cold), and with a
        // few repetitions one such outlier decides the median of the ratios.
        for wrapped in [false, true] {
            let (_, l) = storm(conns, wrapped).await;
            left.set(left.get() + l);
        }
        interleave(
            plan.storm_reps,
            || async {
                let (s, l) = storm(conns, false).await;
                left.set(left.get() + l);
                s * 1e3
            },
            || async {
                let (s, l) = storm(conns, true).await;
                left.set(left.get() + l);
                s * 1e3
            },
        )
        .await
    });
    drop(rt);
    let ratios: Vec<f64> = raw.iter().zip(&ws).map(|(r, w)| w / r).collect();
    rows.push(Row {
        name: "close_storm".into(),
        raw: median(&raw),
        wsclose: median(&ws),
        unit: "ms",
        cost_ratio: median(&ratios),
        extra: vec![
            ("conns", conns.to_string()),
            ("left_open", left.get().to_string()),
        ],
        note: format!(
            "{conns} conns, server: 2 workers, clients in a child; raw {raw:.0?} ms, wsclose {ws:.0?} ms"
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Memory per idle connection (each measurement in a fresh child process)
// ---------------------------------------------------------------------------------------------

const CHILD_ENV: &str = "WSCLOSE_BENCH_CHILD";

/// In a child process: RSS growth for `conns` idle server-side connections, each with a task
/// waiting in `next()` (raw, or wrapped by wsclose). The client ends live in another process.
fn memory_child(conns: usize, wrapped: bool) {
    raise_fd_limit(conns);
    let rt = current_thread();
    rt.block_on(async move {
        // Warm the runtime, the allocator and the handshake path before the baseline.
        let (s, c) = pairs(16).await;
        drop((s, c));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = rss_bytes();
        let (l, addr) = listener().await;
        let acceptor = tokio::spawn(accept_n(l, conns));
        let exe = std::env::current_exe().expect("current exe");
        let mut clients = std::process::Command::new(exe)
            .env(CHILD_ENV, format!("storm-clients:raw:{conns}:{addr}"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("client child");
        let servers = tokio::time::timeout(Duration::from_secs(120), acceptor)
            .await
            .expect("clients connect within 120 s")
            .expect("acceptor");
        for s in servers {
            if wrapped {
                tokio::spawn(read_to_end(WebSocket::server(s)));
            } else {
                tokio::spawn(read_to_end(s));
            }
        }
        // Let every server task reach its first `Pending`.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = rss_bytes();
        println!("rss_delta_bytes={}", after.saturating_sub(before));
        let _ = clients.kill();
        let _ = clients.wait();
    });
    // Exit without tearing the connections down one by one.
    std::process::exit(0);
}

fn spawn_memory_child(conns: usize, wrapped: bool) -> f64 {
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .env(
            CHILD_ENV,
            format!("memory:{}:{conns}", if wrapped { "wsclose" } else { "raw" }),
        )
        .output()
        .expect("memory child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rss_delta_bytes="))
        .and_then(|v| v.trim().parse::<f64>().ok());
    match value {
        Some(v) => v,
        None => panic!(
            "memory child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn bench_memory(plan: &Plan, rows: &mut Vec<Row>) {
    if !plan.wants("memory_idle") {
        return;
    }
    let conns = raise_fd_limit(plan.memory_conns);
    let (mut raw, mut ws) = (Vec::new(), Vec::new());
    for i in 0..plan.memory_reps {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for wrapped in order {
            let per_conn = spawn_memory_child(conns, wrapped) / conns as f64;
            if wrapped {
                ws.push(per_conn);
            } else {
                raw.push(per_conn);
            }
        }
    }
    let (r, w) = (median(&raw), median(&ws));
    rows.push(Row {
        name: "memory_idle_conn".into(),
        raw: r,
        wsclose: w,
        unit: "B",
        cost_ratio: w / r,
        extra: vec![
            ("extra_bytes_per_conn", format!("{:.0}", w - r)),
            ("conns", conns.to_string()),
        ],
        note: format!(
            "RSS delta / conn, server end wrapped, fresh process each; raw {raw:.0?}, wsclose {ws:.0?}"
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// 6. Instrumentation cost (in-memory duplex transport, so the network does not drown it)
// ---------------------------------------------------------------------------------------------

type Mem = WebSocketStream<DuplexStream>;

/// The `metrics` recorders compared against "no recorder" (set per batch as the thread's
/// local recorder, so "with" and "without" interleave). OpenTelemetry is installed for the
/// rest of a process and cannot be switched off again: it is measured in a child process of
/// its own, see [`bench_otel`].
#[derive(Clone, Copy, Debug)]
enum Backend {
    Prometheus,
}

const BACKENDS: [Backend; 1] = [Backend::Prometheus];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Prometheus => "prometheus",
        }
    }

    /// A `metrics` recorder configured as the crate's `prometheus::builder()` configures it
    /// (same histogram buckets), built from the dev-dependency so the bench does not need the
    /// `prometheus` feature.
    fn recorder(self) -> Box<dyn metrics::Recorder> {
        match self {
            Backend::Prometheus => {
                use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
                let b = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full(wsclose::names::CLOSE_DURATION.into()),
                        wsclose::CLOSE_DURATION_BUCKETS,
                    )
                    .expect("buckets")
                    .set_buckets_for_metric(
                        Matcher::Full(wsclose::names::CONNECTION_DURATION.into()),
                        wsclose::CONNECTION_DURATION_BUCKETS,
                    )
                    .expect("buckets");
                Box::new(b.build_recorder())
            }
        }
    }
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
        let s = WebSocket::server(s);
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

fn bench_instrumentation(rt: &Runtime, plan: &Plan, rows: &mut Vec<Row>) {
    for backend in BACKENDS {
        let rec = backend.recorder();
        let rec = Some(&*rec);
        let name = format!("instr_{}_per_close", backend.name());
        if plan.wants(&name) {
            // Warm-up: registers every series once, as a long-running server would have.
            with_recorder(rt, rec, lifecycle_batch(50));
            with_recorder(rt, None, lifecycle_batch(50));
            let (mut off, mut on) = (Vec::new(), Vec::new());
            for i in 0..plan.instr_reps {
                for with in if i % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                } {
                    let r = if with { rec } else { None };
                    let v = with_recorder(rt, r, lifecycle_batch(plan.instr_closes));
                    if with { on.push(v) } else { off.push(v) }
                }
            }
            let diffs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
            let (a, b) = (median(&off), median(&on));
            rows.push(Row {
                name,
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
        let name = format!("instr_{}_per_message", backend.name());
        if plan.wants(&name) {
            let mut pair = rt.block_on(async {
                let (s, c) = mem_pair().await;
                (WebSocket::server(s), WebSocket::client(c))
            });
            with_recorder(
                rt,
                rec,
                message_batch(&mut pair, plan.instr_messages / 10 + 1),
            );
            with_recorder(
                rt,
                None,
                message_batch(&mut pair, plan.instr_messages / 10 + 1),
            );
            let (mut off, mut on) = (Vec::new(), Vec::new());
            for i in 0..plan.instr_reps {
                for with in if i % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                } {
                    let r = if with { rec } else { None };
                    let v = with_recorder(rt, r, message_batch(&mut pair, plan.instr_messages));
                    if with { on.push(v) } else { off.push(v) }
                }
            }
            let diffs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
            let (a, b) = (median(&off), median(&on));
            rows.push(Row {
                name,
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
}

/// In a child process: the instrumentation rows' batches without OpenTelemetry, then (after
/// `wsclose::otel::install` with an SDK meter provider, unless `control`) again. Prints the
/// medians of both blocks.
#[cfg(feature = "otel")]
fn otel_child(plan: &Plan, control: bool) {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let rt = current_thread();
    let mut pair = rt.block_on(async {
        let (s, c) = mem_pair().await;
        (WebSocket::server(s), WebSocket::client(c))
    });
    let mut measure = |rt: &Runtime| {
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
    // The SDK aggregates every measurement as it is recorded; the periodic reader exports from
    // its own thread (every 60 s by default, so not during these batches), as with OTLP.
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    if !control {
        wsclose::otel::install(&provider).expect("first install");
    }
    let (close_on, message_on) = measure(&rt);
    println!(
        "otel close_off={close_off} close_on={close_on} message_off={message_off} message_on={message_on}"
    );
    drop(pair);
    std::process::exit(0);
}

/// OpenTelemetry's rows. Installing it is for the rest of a process, so a child process
/// measures a block of batches without it, installs it, and measures a second block. The
/// second block of a process is a little slower even with nothing installed (100–300 ns per
/// close here: the allocator and the runtime have grown), so control children run the same two
/// blocks without installing, and their difference is subtracted. Otel and control children
/// alternate, `storm_reps` of each.
#[cfg(feature = "otel")]
fn bench_otel(plan: &Plan, rows: &mut Vec<Row>) {
    let wants_close = plan.wants("instr_otel_per_close");
    let wants_message = plan.wants("instr_otel_per_message");
    if !wants_close && !wants_message {
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let child = |control: bool| -> [f64; 4] {
        let mut cmd = std::process::Command::new(&exe);
        let kind = if control {
            "instr-otel-control"
        } else {
            "instr-otel"
        };
        cmd.env(CHILD_ENV, kind);
        if plan.mode == Mode::Quick {
            cmd.arg("--quick");
        }
        let out = cmd.output().expect("otel child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let values: Option<Vec<f64>> =
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("otel "))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
                        .collect()
                });
        match values.as_deref() {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => panic!(
                "otel child failed: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let (mut otel, mut control) = (Vec::new(), Vec::new());
    for _ in 0..plan.storm_reps {
        otel.push(child(false));
        control.push(child(true));
    }
    // Columns: closes without, with (0, 1); messages without, with (2, 3).
    let second_minus_first = |runs: &[[f64; 4]], off: usize| -> f64 {
        median(&runs.iter().map(|r| r[off + 1] - r[off]).collect::<Vec<_>>())
    };
    let children = otel.len();
    let rows_wanted = [
        (
            wants_close,
            "instr_otel_per_close",
            "per_close_ns",
            0,
            "open+close+end per conn over an in-memory duplex",
        ),
        (
            wants_message,
            "instr_otel_per_message",
            "per_message_ns",
            2,
            "16 B one way, both ends wrapped, in-memory duplex",
        ),
    ];
    for (wanted, name, key, off, what) in rows_wanted {
        if !wanted {
            continue;
        }
        let cost = second_minus_first(&otel, off) - second_minus_first(&control, off);
        let raw = median(&otel.iter().map(|r| r[off]).collect::<Vec<_>>());
        rows.push(Row {
            name: name.into(),
            raw,
            wsclose: raw + cost,
            unit: "ns",
            cost_ratio: (raw + cost) / raw,
            extra: vec![(key, format!("{cost:.0}"))],
            note: format!(
                "{what}; without vs with wsclose::otel installed (SDK meter provider, periodic \
                 reader); {children} child processes, less {children} control ones"
            ),
        });
    }
}

#[cfg(not(feature = "otel"))]
fn bench_otel(plan: &Plan, _rows: &mut Vec<Row>) {
    if plan.wants("instr_otel") {
        eprintln!(
            "compare: instr_otel_per_close / instr_otel_per_message need the otel feature (cargo bench --bench compare --features otel)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion view (full and quick runs): the single-connection echo, with criterion's statistics
// ---------------------------------------------------------------------------------------------

fn criterion_echo(plan: &Plan) {
    if plan.mode == Mode::Smoke || !plan.wants("criterion") && plan.only.is_some() {
        return;
    }
    let rt = current_thread();
    let (raw, ws) = rt.block_on(echo_setup(1));
    let raw = std::cell::RefCell::new(raw);
    let ws = std::cell::RefCell::new(ws);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut g = c.benchmark_group("echo_16B_1conn");
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(echo_clients(
                &mut raw.borrow_mut(),
                iters as usize,
                16,
                Clock::Wall,
            ));
            start.elapsed()
        })
    });
    g.bench_function("wsclose", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(echo_clients(
                &mut ws.borrow_mut(),
                iters as usize,
                16,
                Clock::Wall,
            ));
            start.elapsed()
        })
    });
    g.finish();
    c.final_summary();
}

// ---------------------------------------------------------------------------------------------

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
    if let Ok(child) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = child.splitn(4, ':').collect();
        if let ["memory", kind, conns] = parts[..] {
            memory_child(conns.parse().expect("conns"), kind == "wsclose");
        }
        #[cfg(feature = "otel")]
        if let [kind @ ("instr-otel" | "instr-otel-control")] = parts[..] {
            otel_child(&Plan::from_env(), kind == "instr-otel-control");
        }
        if let ["storm-clients", kind, conns, addr] = parts[..] {
            storm_clients_child(
                kind == "wsclose",
                conns.parse().expect("conns"),
                addr.parse().expect("addr"),
            );
        }
        panic!("unknown {CHILD_ENV}={child}");
    }
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
    let sections: [Section<'_>; 10] = [
        &|rows| bench_echo(&rt, Flavor::Current, &plan, rows),
        &|rows| bench_send(&rt, Flavor::Current, &plan, rows),
        &|rows| bench_close_latency(&rt, Flavor::Current, &plan, rows),
        &|rows| bench_echo(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| bench_send(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| bench_close_latency(&multi_thread(), Flavor::Multi, &plan, rows),
        &|rows| bench_storm(&plan, rows),
        &|rows| bench_memory(&plan, rows),
        &|rows| bench_instrumentation(&rt, &plan, rows),
        &|rows| bench_otel(&plan, rows),
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
    criterion_echo(&plan);
}
