//! `prometheus::install`'s listener and the last scrape of a drain: `Exporter::linger` keeps
//! `/metrics` up after a shutdown until a scrape has read the drain's ends, then stops it; with
//! no scrape it gives up at its bound, with a WARN. Each test installs the global recorder, so
//! each runs in a process of its own (nextest).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Level;
use wsclose::{Config, Registry, Role};

use support::logs;
use support::pairs::{bounded, wrapped_and_tt};

/// One HTTP/1.1 GET of `path`, the response read to its end (`Connection: close`).
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    Ok(response)
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_waits_for_a_scrape_that_reads_the_drain_then_stops_the_listener() {
    let (logs, _g) = logs::capture();
    let exporter = wsclose::prometheus::install("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = exporter.local_addr();
    assert_ne!(addr.port(), 0);
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    config.init_metrics(Role::Server);

    // Visible from the start: the zero series and the start time, before any connection.
    let first = bounded(get(addr, "/metrics")).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.contains("content-type: text/plain; version=0.0.4"),
        "{first}"
    );
    let shutdown_clean = "websocket_closes_total{role=\"server\",cause=\"shutdown\",outcome=\"clean\",expected=\"true\"}";
    assert_eq!(sample(&first, shutdown_clean), Some(0.0), "{first}");
    let started = sample(&first, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && now - started < 600.0,
        "{started} vs {now}"
    );
    let health = bounded(get(addr, "/health")).await.unwrap();
    assert!(health.ends_with("\r\n\r\nOK"), "{health}");
    assert_eq!(exporter.scrapes(), 1, "/health is not a scrape");

    let (ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    let report = bounded(registry.shutdown(1001, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(report.connections, 1);
    drop(ws);

    // Polled by this task (its log goes to this thread's capture).
    let t = Instant::now();
    let mut lingering = std::pin::pin!(exporter.linger(Duration::from_secs(30)));
    // Nobody scrapes: it keeps waiting (well past a scrape interval of a test).
    let early = tokio::time::timeout(Duration::from_millis(300), lingering.as_mut()).await;
    assert!(early.is_err(), "linger returned without a scrape");

    let (served, last) = bounded(async { tokio::join!(lingering, get(addr, "/metrics")) }).await;
    let waited = t.elapsed();
    let last = last.unwrap();
    assert_eq!(sample(&last, shutdown_clean), Some(1.0), "{last}");
    let going_away =
        "websocket_close_frames_total{role=\"server\",direction=\"sent\",code=\"going_away\"}";
    assert_eq!(sample(&last, going_away), Some(1.0), "{last}");
    assert!(served);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(exporter.scrapes(), 2);
    // Stopped: nothing listens any more.
    assert!(get(addr, "/metrics").await.is_err());
    let lines = logs.with_message("last scrape served; /metrics stopped");
    assert_eq!(lines.len(), 1, "{:?}", logs.records());
    assert_eq!(lines[0].level, Level::INFO);
}

#[tokio::test]
async fn linger_without_a_scrape_gives_up_at_its_bound_and_warns() {
    let (logs, _g) = logs::capture();
    let exporter = wsclose::prometheus::install("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = exporter.local_addr();
    // A scrape before the call does not count: its values predate the drain.
    bounded(get(addr, "/metrics")).await.unwrap();
    let t = Instant::now();
    let served = bounded(exporter.linger(Duration::from_millis(400))).await;
    let waited = t.elapsed();
    assert!(!served);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(get(addr, "/metrics").await.is_err(), "still listening");
    let warned = logs.at_level(Level::WARN);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].field("scrapes"), Some("1"));
}

#[tokio::test]
async fn a_second_install_or_a_port_in_use_is_a_config_error() {
    let exporter = wsclose::prometheus::install("127.0.0.1:0".parse().unwrap()).unwrap();
    let again = wsclose::prometheus::install("127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert!(again.is_config(), "{again}");
    let taken = wsclose::prometheus::install(exporter.local_addr()).unwrap_err();
    assert!(
        taken.is_config() && taken.to_string().contains("in use"),
        "{taken}"
    );
}

#[test]
fn install_outside_a_runtime_is_a_config_error() {
    let e = wsclose::prometheus::install("127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("Tokio runtime"),
        "{e}"
    );
}
