//! The wsclose demo: a WebSocket server and a fleet of in-process clients that keep producing
//! every way a connection can end, with live metrics, a summary table, and a graceful shutdown.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release -p wsclose-examples --bin demo
//! cargo run --release -p wsclose-examples --bin demo -- --duration 30 --clients 40
//! cargo run --release -p wsclose-examples --bin demo -- --server-only   # for external clients
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:9001`), `--metrics ADDR` (default
//! `127.0.0.1:9898`, serves `/metrics`), `--clients N` (default 24), `--duration SECS` (run that
//! long, then shut down gracefully and exit 0; SIGTERM or Ctrl-C do the same sooner), and
//! `--server-only` (no fleet, and production timings so that a person can type at a client:
//! 20 s / 20 s keepalive, no maximum lifetime, 5 s close deadline, 10 s handshake deadline),
//! `--healthy` (only the scenarios a healthy service sees: no silent peers, keepalive timeouts,
//! protocol errors, malformed or stalled upgrades; used by the alerting end-to-end test). Port 0
//! picks a free port; the first line printed names the address actually bound.
//!
//! The server runs the opening handshake through wsclose (`Config::accept_with`, a 2 s deadline
//! with the fleet) and refuses upgrades to the path `/refuse` with `429 Too Many Requests`; the
//! well-behaved clients connect through wsclose too (`Config::connect`), so both roles count
//! their handshakes.
//!
//! The server echoes text and binary messages and understands two control messages:
//! `!close CODE [REASON]` (the server closes with that code and reason) and `!race` (the server
//! starts a close and sends at once, twice: one send refused as send-after-close, one close
//! counted as redundant). A malformed `!close` (no code, not a number) and a code wsclose
//! refuses (e.g. 1005) are answered with an `error: …` text message; the connection stays open.
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
//! Every connection above opens with an `accepted` handshake. Three more scenarios end in the
//! opening handshake (`websocket_handshakes_total{outcome}`, server side):
//!
//! | scenario | server handshake |
//! |---|---|
//! | a wsclose client asks for `/refuse` (429) | rejected (the client counts rejected too) |
//! | a raw TCP client sends a plain GET without the upgrade headers | failed |
//! | a raw TCP client sends half a request and stalls past the 2 s deadline | timeout |
//!
//! `io_error` and `internal_error` need a broken network stack or a bug; the fleet does not fake
//! them. The well-behaved clients are wrapped with wsclose too, so `role="client"` series move.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsclose::{Cause, CloseReport, Config, HandshakeOutcome, Outcome, Registry, Role};
use wsclose_examples::{
    bind_websocket, close_command, count, fail, refused, serve_metrics, usage_exit,
};

struct Args {
    listen: SocketAddr,
    metrics: SocketAddr,
    clients: usize,
    duration: Option<Duration>,
    server_only: bool,
    healthy: bool,
}

/// The arguments, or `Err(None)` for `--help`, `Err(Some(error))` for a bad one.
fn parse_args() -> Result<Args, Option<String>> {
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
        let mut value = || {
            it.next()
                .ok_or_else(|| Some(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => {
                args.listen = value()?
                    .parse()
                    .map_err(|e| Some(format!("--listen: {e}")))?
            }
            "--metrics" => {
                args.metrics = value()?
                    .parse()
                    .map_err(|e| Some(format!("--metrics: {e}")))?
            }
            "--clients" => {
                args.clients = value()?
                    .parse()
                    .map_err(|e| Some(format!("--clients: {e}")))?
            }
            "--duration" => {
                let secs: f64 = value()?
                    .parse()
                    .map_err(|e| Some(format!("--duration: {e}")))?;
                args.duration = Some(Duration::from_secs_f64(secs));
            }
            "--server-only" => args.server_only = true,
            "--healthy" => args.healthy = true,
            "-h" | "--help" => return Err(None),
            other => return Err(Some(format!("unknown argument {other:?}"))),
        }
    }
    Ok(args)
}

const USAGE: &str = "usage: demo [--listen ADDR] [--metrics ADDR] [--clients N] [--duration SECS] [--server-only] [--healthy]";

/// What the server saw end, for the periodic table: from each connection's `CloseReport`, and
/// every opening handshake's outcome (both roles).
#[derive(Default)]
struct Stats {
    ends: BTreeMap<(Cause, Outcome), u64>,
    close_ms: Vec<f64>,
    handshakes: BTreeMap<(Role, HandshakeOutcome), u64>,
}

impl Stats {
    /// Counts a handshake of `role` that ended with `result`'s outcome (an error that is not
    /// about the handshake counts nothing).
    fn handshake<T>(&mut self, role: Role, result: &Result<T, wsclose::Error>) {
        let outcome = match result {
            Ok(_) => Some(HandshakeOutcome::Accepted),
            Err(e) => e.handshake(),
        };
        if let Some(outcome) = outcome {
            *self.handshakes.entry((role, outcome)).or_default() += 1;
        }
    }

    /// One line per role that ran handshakes: `handshakes (server): accepted N, rejected N, ...`.
    fn handshake_lines(&self) -> String {
        let mut out = String::new();
        for role in [Role::Server, Role::Client] {
            if !self.handshakes.keys().any(|(r, _)| *r == role) {
                continue;
            }
            let counts: Vec<String> = HandshakeOutcome::ALL
                .iter()
                .map(|&o| {
                    let n = self.handshakes.get(&(role, o)).copied().unwrap_or(0);
                    format!("{o} {n}")
                })
                .collect();
            out += &format!("  handshakes ({role}): {}\n", counts.join(", "));
        }
        out
    }

    fn record(&mut self, r: &CloseReport) {
        *self.ends.entry((r.cause, r.outcome)).or_default() += 1;
        if let Some(d) = r.close_duration {
            self.close_ms.push(d.as_secs_f64() * 1e3);
        }
    }

    /// The table, with the server's connections open (`active`) and still `connecting`.
    fn table(&mut self, active: usize, connecting: usize) -> String {
        let active = format!("active connections {active}, connecting {connecting}");
        if self.ends.is_empty() {
            return format!("\n  no closes yet | {active}\n{}", self.handshake_lines());
        }
        let mut out = String::from("\n  cause      outcome          ends\n");
        for ((cause, outcome), n) in &self.ends {
            out += &format!("  {:<10} {:<15} {n:>6}\n", cause.as_str(), outcome.as_str());
        }
        self.close_ms.sort_by(f64::total_cmp);
        let v = &self.close_ms;
        let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        out += &if v.is_empty() {
            format!("  close latency: no closes timed yet | {active}\n")
        } else {
            format!(
                "  close latency p50 {:.2} ms, p99 {:.2} ms ({}) | {active}\n",
                pct(0.50),
                pct(0.99),
                count(v.len(), "close")
            )
        };
        out += &self.handshake_lines();
        out
    }

    /// Ends recorded with `cause`.
    fn ends_with(&self, cause: Cause) -> u64 {
        self.ends
            .iter()
            .filter(|((c, _), _)| *c == cause)
            .map(|(_, n)| n)
            .sum()
    }
}

type SharedStats = Arc<Mutex<Stats>>;

/// The server's handshake deadline with the fleet: short, so that stalled upgrades show as
/// `timeout` within seconds (`--server-only` keeps the default, 10 s).
const DEMO_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The path whose upgrades the server refuses (429), so that `rejected` handshakes show.
const REFUSED_PATH: &str = "/refuse";

/// The server's upgrade callback: refuses [`REFUSED_PATH`], accepts everything else.
#[allow(
    clippy::result_large_err,
    reason = "the shape of tungstenite's upgrade callback"
)]
fn gate(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == REFUSED_PATH {
        return Err(wsclose::reject(
            StatusCode::TOO_MANY_REQUESTS,
            "demo: upgrades to /refuse are refused",
        ));
    }
    Ok(response)
}

async fn serve(tcp: TcpStream, config: Config, stats: SharedStats) {
    let accepted = config.accept_with(tcp, gate).await;
    stats.lock().unwrap().handshake(Role::Server, &accepted);
    let Ok(mut ws) = accepted else {
        return;
    };
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
                Some(Ok((code, reason))) => match handle.start_close(code, reason) {
                    Ok(_) => continue,
                    Err(e) => Message::text(refused(&e)),
                },
                Some(Err(e)) => Message::text(e),
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

/// A raw tokio-tungstenite client (not counted by wsclose), for the scenarios that misbehave
/// below the wrapper: resets, invalid close codes, silence.
async fn connect(addr: SocketAddr) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    Some(
        tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .ok()?
            .0,
    )
}

/// A wsclose client: the handshake runs (and is counted) by wsclose, as `role="client"`.
async fn connect_wrapped(
    client: &Config,
    addr: SocketAddr,
    path: &str,
    stats: &SharedStats,
) -> Result<
    wsclose::WebSocket<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    >,
    wsclose::Error,
> {
    let connected = client.connect(format!("ws://{addr}{path}")).await;
    stats.lock().unwrap().handshake(Role::Client, &connected);
    connected.map(|(ws, _response)| ws)
}

/// Writes `request` on a raw TCP connection, waits `stall`, then reads whatever the server
/// answers until it closes the connection (at most 5 s): a client that speaks bad HTTP.
async fn raw_upgrade(addr: SocketAddr, request: &[u8], stall: Duration) -> Option<()> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(request).await.ok()?;
    tokio::time::sleep(stall).await;
    let mut buf = [0u8; 1024];
    let read_to_end = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(Duration::from_secs(5), read_to_end)
        .await
        .ok()
}

/// Reads a client until it ends (answering pings and the server's Close).
async fn drain<S: StreamExt + Unpin>(ws: &mut S) {
    while ws.next().await.is_some() {}
}

const SCENARIOS: usize = 12;
/// The scenarios that end as a healthy service's connections do: no silent peers, no keepalive
/// timeouts, no protocol errors, no malformed or stalled upgrades (so no alert should fire).
/// Refused upgrades are healthy: the server answered them as it meant to.
const HEALTHY: [usize; 7] = [0, 1, 2, 3, 6, 8, 9];

/// What a scenario needs besides its number.
struct Fleet {
    addr: SocketAddr,
    client: Config,
    /// How long a lifetime-scenario client stays: past the server's maximum lifetime.
    long: Duration,
    /// How long a stalled upgrade stalls: past the server's handshake deadline.
    stall: Duration,
    stats: SharedStats,
}

async fn scenario(n: usize, fleet: &Fleet) -> Option<()> {
    let Fleet {
        addr,
        ref client,
        long,
        stall,
        ref stats,
    } = *fleet;
    match n % SCENARIOS {
        // The server closes on request; the client is a wsclose client.
        0 => {
            let mut ws = connect_wrapped(client, addr, "/", stats).await.ok()?;
            ws.send(Message::text("!close 4000 demo")).await.ok()?;
            drain(&mut ws).await;
        }
        // The client closes (wsclose client, app close).
        1 => {
            let mut ws = connect_wrapped(client, addr, "/", stats).await.ok()?;
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
            let mut ws = connect_wrapped(client, addr, "/", stats).await.ok()?;
            ws.send(Message::text("!race")).await.ok()?;
            drain(&mut ws).await;
        }
        // The client stops reading, so it never answers pings.
        7 => {
            let _ws = connect(addr).await?;
            tokio::time::sleep(Duration::from_millis(2600)).await;
        }
        // The client stays until the server's maximum lifetime closes it.
        8 => {
            let mut ws = connect_wrapped(client, addr, "/", stats).await.ok()?;
            let _ = tokio::time::timeout(long, drain(&mut ws)).await;
        }
        // The server refuses the upgrade (429): rejected on both sides.
        9 => {
            let refused = connect_wrapped(client, addr, REFUSED_PATH, stats).await;
            return (refused.err()?.handshake() == Some(HandshakeOutcome::Rejected)).then_some(());
        }
        // A plain GET without the upgrade headers: the server's handshake fails.
        10 => {
            let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            raw_upgrade(addr, request.as_bytes(), Duration::ZERO).await?;
        }
        // Half a request, then nothing until the server's handshake deadline has passed.
        _ => {
            let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n");
            raw_upgrade(addr, request.as_bytes(), stall).await?;
        }
    }
    Some(())
}

async fn fleet(id: usize, fleet: Arc<Fleet>, stop: Arc<AtomicBool>, healthy: bool) {
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let n = if healthy {
            HEALTHY[(id + round) % HEALTHY.len()]
        } else {
            id + round
        };
        if scenario(n, &fleet).await.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await; // server gone or draining
        }
        tokio::time::sleep(Duration::from_millis(100 + (n % 7) as u64 * 50)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => usage_exit(USAGE, error.as_deref()),
    };
    // The table is the demo's output; logs go to stderr. `RUST_LOG=wsclose=debug` shows one
    // event per end (WARN for unexpected ones, which the default hides here).
    wsclose_examples::init_logging("info,wsclose=error");
    if let Err(e) = run(args).await {
        fail(&e);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listener = bind_websocket("demo", args.listen).await?;
    // Listening for SIGTERM and Ctrl-C from the start (before the first line says it runs).
    let signal = wsclose::shutdown_signal();
    // The demo exits without waiting for a last scrape (echo_server shows that part).
    let _exporter = serve_metrics("demo", args.metrics)?;
    let listen = listener.local_addr().map_err(|e| format!("demo: {e}"))?;
    let registry = Registry::new();
    let (config, lifetime) = if args.server_only {
        // A person types at the client: production timings, no lifetime cap.
        let config = Config::new()
            .with_registry(registry.clone())
            .with_keepalive(
                Config::DEFAULT_KEEPALIVE_INTERVAL,
                Config::DEFAULT_KEEPALIVE_TIMEOUT,
            )
            .map_err(|e| format!("demo: {e}"))?;
        (config, None)
    } else {
        // Short timings so every path shows within seconds (production: 5 s close, 20 s / 20 s
        // keepalive, lifetime just under the platform's request limit, 10 s handshake).
        let lifetime = Duration::from_secs(6);
        let config = Config::new()
            .with_registry(registry.clone())
            .with_handshake_timeout(DEMO_HANDSHAKE_TIMEOUT)
            .and_then(|c| c.with_close_timeout(Duration::from_secs(1)))
            .and_then(|c| c.with_keepalive(Duration::from_secs(1), Duration::from_secs(1)))
            .and_then(|c| c.with_max_lifetime(lifetime, Duration::from_secs(2)))
            .map_err(|e| format!("demo: {e}"))?;
        (config, Some(lifetime))
    };
    let stats = SharedStats::default();
    let clients = if args.server_only { 0 } else { args.clients };
    println!(
        "wsclose demo: ws://{listen}/ , metrics http://{}/metrics , {}",
        args.metrics,
        count(clients, "client")
    );
    if args.server_only {
        println!(
            "server only: keepalive 20 s, no maximum lifetime; connect a client and type \
             `!close 4001 bye`, or connect to {REFUSED_PATH} to be refused (Ctrl-C to stop)"
        );
    }

    let server = {
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let config = config.clone().with_peer_addr(peer);
                tokio::spawn(serve(tcp, config, stats.clone()));
            }
        })
    };
    let mut fleet_tasks = tokio::task::JoinSet::new();
    let fleet_stop = Arc::new(AtomicBool::new(false));
    if let Some(lifetime) = lifetime {
        let shared = Arc::new(Fleet {
            addr: listen,
            client: Config::new()
                .with_close_timeout(Duration::from_secs(1))
                .map_err(|e| format!("demo: {e}"))?,
            long: lifetime + Duration::from_secs(1),
            stall: DEMO_HANDSHAKE_TIMEOUT + Duration::from_millis(500),
            stats: stats.clone(),
        });
        for id in 0..clients {
            fleet_tasks.spawn(fleet(id, shared.clone(), fleet_stop.clone(), args.healthy));
        }
    }

    // Every series of both roles at 0 before the first connection (docs/metrics.md).
    config.init_metrics(Role::Server);
    if clients > 0 {
        config.init_metrics(Role::Client);
    }
    // SIGTERM or Ctrl-C, or the end of `--duration`: whichever comes first.
    let stop = async {
        let duration = async {
            match args.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = duration => {}
            () = signal => {}
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
                let table = stats.lock().unwrap().table(registry.len(), registry.connecting());
                println!("after {:.0} s:{table}", started.elapsed().as_secs_f64());
            }
        }
    }

    println!(
        "shutting down: closing {} with 1001",
        count(registry.len(), "connection")
    );
    fleet_stop.store(true, Ordering::Relaxed);
    let shutdown_before = stats.lock().unwrap().ends_with(Cause::Shutdown);
    let report = registry
        .shutdown(1001, Duration::from_secs(5))
        .await
        .map_err(|e| format!("demo: {e}"))?;
    server.abort();
    fleet_tasks.abort_all();
    while fleet_tasks.join_next().await.is_some() {}
    // Let the last reports land in the table.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut stats = stats.lock().unwrap();
    println!(
        "final:{}",
        stats.table(registry.len(), registry.connecting())
    );
    println!("shutdown report: {report}");
    // The report counts every connection the shutdown waited for, including those already
    // closing for another reason (an application close timing out, a lifetime close): the table
    // files each end under the cause that began it.
    let by_shutdown = stats.ends_with(Cause::Shutdown) - shutdown_before;
    let other = (report.connections as u64).saturating_sub(by_shutdown);
    if other > 0 {
        let (was, it) = if other == 1 {
            ("was", "it")
        } else {
            ("were", "them")
        };
        println!(
            "  ({other} of these {was} already closing for another cause when the shutdown began: \
             the table files {it} under that cause, and {by_shutdown} under shutdown)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_when_nothing_has_closed_yet() {
        let mut stats = Stats::default();
        let table = stats.table(1, 2);
        assert!(table.contains("no closes yet"), "{table}");
        assert!(
            table.contains("active connections 1, connecting 2"),
            "{table}"
        );
        assert!(!table.contains("0.00 ms"), "{table}");
        stats.ends.insert((Cause::Peer, Outcome::Clean), 1);
        let table = stats.table(0, 0);
        assert!(table.contains("no closes timed yet"), "{table}");
        stats.close_ms.push(1.5);
        let table = stats.table(0, 0);
        assert!(
            table.contains("p50 1.50 ms, p99 1.50 ms (1 close)"),
            "{table}"
        );
        assert_eq!(stats.ends_with(Cause::Peer), 1);
        assert_eq!(stats.ends_with(Cause::Shutdown), 0);
    }

    #[test]
    fn the_table_counts_handshakes_by_role_and_outcome() {
        let mut stats = Stats::default();
        assert!(
            !stats.table(0, 0).contains("handshakes"),
            "no handshakes yet"
        );
        stats.handshake(Role::Server, &Ok::<(), wsclose::Error>(()));
        stats.handshake(Role::Server, &Ok::<(), wsclose::Error>(()));
        let table = stats.table(2, 0);
        assert!(
            table.contains("handshakes (server): accepted 2, rejected 0, failed 0, timeout 0"),
            "{table}"
        );
        assert!(!table.contains("handshakes (client)"), "{table}");
        // An error that is not about a handshake counts nothing.
        let config_error = Config::new()
            .with_handshake_timeout(Duration::ZERO)
            .map(|_| ());
        stats.handshake(Role::Client, &config_error);
        assert!(!stats.table(0, 0).contains("handshakes (client)"));
    }

    #[test]
    fn the_gate_refuses_only_the_refused_path() {
        let request = |path: &str| {
            Request::builder()
                .uri(format!("ws://127.0.0.1{path}"))
                .body(())
                .unwrap()
        };
        let refusal = gate(&request(REFUSED_PATH), Response::default()).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(gate(&request("/"), Response::default()).is_ok());
        assert!(gate(&request("/refused"), Response::default()).is_ok());
    }
}
