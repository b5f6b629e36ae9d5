//! The wsclose demo: a WebSocket server and a fleet of in-process clients that keep producing
//! every way a connection can end, with live metrics, a summary table, and a graceful shutdown.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release --example demo
//! cargo run --release --example demo -- --duration 30 --clients 40
//! cargo run --release --example demo -- --server-only   # for external clients
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:9001`), `--metrics ADDR` (default
//! `127.0.0.1:9898`, serves `/metrics`), `--clients N` (default 24), `--duration SECS` (run that
//! long, then shut down gracefully and exit 0; without it, run until SIGTERM or Ctrl-C), and
//! `--server-only` (no fleet), `--healthy` (only the scenarios a healthy service sees: no
//! silent peers, keepalive timeouts or protocol errors; used by the alerting end-to-end test).
//!
//! The server echoes text and binary messages and understands two control messages:
//! `!close CODE [REASON]` (the server closes with that code and reason) and `!race` (the server
//! starts a close and sends at once, twice: one send refused as send-after-close, one close
//! counted as redundant).
//!
//! The fleet's scenarios, and what the server records for each (cause / outcome):
//!
//! | scenario | server end |
//! |---|---|
//! | server closes on request | app / clean |
//! | client closes | peer / clean |
//! | client resets the TCP connection | transport / peer_gone |
//! | client drops TCP without a Close (EOF) | transport / peer_gone |
//! | client asks for a close, then never answers | app / timeout |
//! | client sends an invalid close code (1005) | peer / protocol_error |
//! | send-after-close race (`!race`) | app / clean, +1 send after close, +1 redundant close |
//! | client stops reading (pings unanswered) | keepalive / timeout |
//! | client stays connected past the maximum lifetime | lifetime / clean |
//! | the final graceful shutdown | shutdown / clean |
//!
//! `io_error` and `internal_error` need a broken network stack or a bug; the fleet does not fake
//! them. The well-behaved clients are wrapped with wsclose too, so `role="client"` series move.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tracing_subscriber::EnvFilter;
use wsclose::{Cause, CloseReport, Config, Outcome, Registry};

struct Args {
    listen: SocketAddr,
    metrics: SocketAddr,
    clients: usize,
    duration: Option<Duration>,
    server_only: bool,
    healthy: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9001".parse().expect("valid default"),
        metrics: "127.0.0.1:9898".parse().expect("valid default"),
        clients: 24,
        duration: None,
        server_only: false,
        healthy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--metrics" => {
                args.metrics = value()?.parse().map_err(|e| format!("--metrics: {e}"))?
            }
            "--clients" => {
                args.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?
            }
            "--duration" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--duration: {e}"))?;
                args.duration = Some(Duration::from_secs_f64(secs));
            }
            "--server-only" => args.server_only = true,
            "--healthy" => args.healthy = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

const USAGE: &str = "usage: demo [--listen ADDR] [--metrics ADDR] [--clients N] [--duration SECS] [--server-only] [--healthy]";

/// What the server saw end, for the periodic table: from each connection's `CloseReport`.
#[derive(Default)]
struct Stats {
    ends: BTreeMap<(Cause, Outcome), u64>,
    close_ms: Vec<f64>,
}

impl Stats {
    fn record(&mut self, r: &CloseReport) {
        *self.ends.entry((r.cause, r.outcome)).or_default() += 1;
        if let Some(d) = r.close_duration {
            self.close_ms.push(d.as_secs_f64() * 1e3);
        }
    }

    fn table(&mut self, active: usize) -> String {
        let mut out = String::from("\n  cause      outcome          ends\n");
        for ((cause, outcome), n) in &self.ends {
            out += &format!("  {:<10} {:<15} {n:>6}\n", cause.as_str(), outcome.as_str());
        }
        self.close_ms.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let v = &self.close_ms;
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * p).round() as usize]
            }
        };
        out += &format!(
            "  close latency p50 {:.2} ms, p99 {:.2} ms ({} closes) | active connections {active}\n",
            pct(0.50),
            pct(0.99),
            self.close_ms.len()
        );
        out
    }
}

type SharedStats = Arc<Mutex<Stats>>;

/// `!close CODE [REASON]`.
fn close_command(text: &str) -> Option<(u16, &str)> {
    let rest = text.strip_prefix("!close ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((code.parse().ok()?, reason))
}

async fn serve(tcp: TcpStream, config: Config, stats: SharedStats) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let mut ws = config.server(ws);
    let handle = ws.handle();
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match &msg {
            Message::Text(t) if t.as_str() == "!race" => {
                // Two tasks at once would do this; one task shows it deterministically.
                let _ = handle.start_close(1000, "race");
                if let Err(e) = ws.send(Message::text("too late")).await {
                    tracing::debug!(error = %e, "refused as expected");
                }
                let _ = handle.start_close(1000, "again"); // redundant
                continue;
            }
            Message::Text(t) => match close_command(t) {
                Some((code, reason)) => match handle.start_close(code, reason) {
                    Ok(_) => continue,
                    Err(e) => Message::text(format!("error: {e}")),
                },
                None => msg,
            },
            Message::Binary(_) => msg,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    let report = handle.closed().await;
    stats.lock().unwrap().record(&report);
}

// ---- the fleet ---------------------------------------------------------------------------------

async fn connect(addr: SocketAddr) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    Some(
        tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .ok()?
            .0,
    )
}

/// Reads a client until it ends (answering pings and the server's Close).
async fn drain<S: StreamExt + Unpin>(ws: &mut S) {
    while ws.next().await.is_some() {}
}

const SCENARIOS: usize = 9;
/// The scenarios that end as a healthy service's connections do: no silent peers, no keepalive
/// timeouts, no protocol errors (so no alert should fire).
const HEALTHY: [usize; 6] = [0, 1, 2, 3, 6, 8];

async fn scenario(n: usize, addr: SocketAddr, client: &Config, long: Duration) -> Option<()> {
    match n % SCENARIOS {
        // The server closes on request; the client is a wsclose client.
        0 => {
            let mut ws = client.client(connect(addr).await?);
            ws.send(Message::text("!close 4000 demo")).await.ok()?;
            drain(&mut ws).await;
        }
        // The client closes (wsclose client, app close).
        1 => {
            let mut ws = client.client(connect(addr).await?);
            ws.send(Message::text("hello")).await.ok()?;
            ws.next().await;
            ws.close(1000, "bye").await.ok()?;
        }
        // The client resets the TCP connection.
        2 => {
            let ws = connect(addr).await?;
            let tcp = ws.into_inner();
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .ok()?;
        }
        // The client drops TCP without a Close frame.
        3 => {
            let mut tcp = connect(addr).await?.into_inner();
            tokio::io::AsyncWriteExt::shutdown(&mut tcp).await.ok()?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The client asks for a close, then never reads or answers: the server times out.
        4 => {
            let mut ws = connect(addr).await?;
            ws.send(Message::text("!close 1000 silent")).await.ok()?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // An invalid close code (1005 may never be sent on the wire).
        5 => {
            let mut ws = connect(addr).await?;
            let frame = CloseFrame {
                code: 1005.into(),
                reason: "invalid".into(),
            };
            ws.close(Some(frame)).await.ok()?;
            drain(&mut ws).await;
        }
        // The send-after-close race.
        6 => {
            let mut ws = client.client(connect(addr).await?);
            ws.send(Message::text("!race")).await.ok()?;
            drain(&mut ws).await;
        }
        // The client stops reading, so it never answers pings.
        7 => {
            let _ws = connect(addr).await?;
            tokio::time::sleep(Duration::from_millis(2600)).await;
        }
        // The client stays until the server's maximum lifetime closes it.
        _ => {
            let mut ws = client.client(connect(addr).await?);
            let _ = tokio::time::timeout(long, drain(&mut ws)).await;
        }
    }
    Some(())
}

async fn fleet(id: usize, addr: SocketAddr, long: Duration, stop: Arc<AtomicBool>, healthy: bool) {
    let client = Config::new()
        .with_close_timeout(Duration::from_secs(1))
        .expect("valid");
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let n = if healthy {
            HEALTHY[(id + round) % HEALTHY.len()]
        } else {
            id + round
        };
        if scenario(n, addr, &client, long).await.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await; // server gone or draining
        }
        tokio::time::sleep(Duration::from_millis(100 + (n % 7) as u64 * 50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // The table is the demo's output; logs go to stderr. `RUST_LOG=wsclose=debug` shows one
    // event per end (WARN for unexpected ones, which the default hides here).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wsclose=error".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    wsclose::prometheus::install(args.metrics)?;
    let listener = TcpListener::bind(args.listen).await?;
    let registry = Registry::new();
    // Short timings so every path shows within seconds (production: 5 s close, 20 s / 20 s
    // keepalive, lifetime just under the platform's request limit).
    let lifetime = Duration::from_secs(6);
    let config = Config::new()
        .with_registry(registry.clone())
        .with_close_timeout(Duration::from_secs(1))?
        .with_keepalive(Duration::from_secs(1), Duration::from_secs(1))?
        .with_max_lifetime(lifetime, Duration::from_secs(2))?;
    let stats = SharedStats::default();
    println!(
        "wsclose demo: ws://{} , metrics http://{}/metrics , {} clients",
        args.listen,
        args.metrics,
        if args.server_only { 0 } else { args.clients }
    );

    let server = {
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let config = config.clone().with_peer_addr(peer);
                tokio::spawn(serve(tcp, config, stats.clone()));
            }
        })
    };
    let mut clients = tokio::task::JoinSet::new();
    let fleet_stop = Arc::new(AtomicBool::new(false));
    if !args.server_only {
        for id in 0..args.clients {
            let long = lifetime + Duration::from_secs(1);
            clients.spawn(fleet(
                id,
                args.listen,
                long,
                fleet_stop.clone(),
                args.healthy,
            ));
        }
    }

    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => wsclose::shutdown_signal().await,
        }
    };
    tokio::pin!(stop);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(3));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let table = stats.lock().unwrap().table(registry.len());
                println!("after {:.0} s:{table}", started.elapsed().as_secs_f64());
            }
        }
    }

    println!(
        "shutting down: closing {} connections with 1001",
        registry.len()
    );
    fleet_stop.store(true, Ordering::Relaxed);
    let report = registry.shutdown(1001, Duration::from_secs(5)).await?;
    server.abort();
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    // Let the last reports land in the table.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let table = stats.lock().unwrap().table(registry.len());
    println!("final:{table}");
    println!("shutdown report: {report}");
    Ok(())
}
