//! The first unexpected close after a start, seen by a real Prometheus.
//!
//! `increase()` and `rate()` see an event only when its series existed in an earlier scrape. A
//! fresh server (this test binary: the Prometheus exporter on a loopback listener, a wsclose
//! server with the static label `endpoint="/e2e"`) wraps one connection that ends cleanly,
//! which creates every series of its role and label set at 0. Once a real `prometheus` (1 s
//! scrape and rule evaluation, a copy of `dashboards/rules.yaml` with range windows shortened)
//! has scraped those zeros, three more peers close cleanly and exactly one sends an invalid
//! close code (`protocol_error`, `expected="false"`). Then the alert expression of
//! `WebSocketUnexpectedCloseErrors`, read from the rules file, and its `increase(…)` part must
//! both see that close. Without the zero series the `protocol_error` series would appear at 1
//! and both would stay empty.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`), hence `#[ignore]`: run by
//! `scripts/e2e-first-close.sh`. Every process started here is stopped by its PID.

#![cfg(feature = "prometheus")]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::raw::RawPeer;

/// How much shorter the CI copy's windows are ([5m] → [20s]), as in scripts/e2e-alerts.sh.
const SHORTEN: [(&str, &str); 4] = [
    ("[5m]", "[20s]"),
    ("[1h]", "[40s]"),
    ("[10m]", "[40s]"),
    ("offset 10m", "offset 40s"),
];

/// A process stopped (SIGKILL, then reaped) by its PID when dropped.
struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The rules with every range window and offset shortened, and every `for:` 1 s.
fn shortened_rules() -> String {
    let text = std::fs::read_to_string(root().join("dashboards/rules.yaml")).expect("rules.yaml");
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_owned();
        for (from, to) in SHORTEN {
            l = l.replace(from, to);
        }
        if let Some(indent) = l.strip_suffix(l.trim_start()) {
            if l.trim_start().starts_with("for: ") {
                l = format!("{indent}for: 1s");
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The `expr:` block of alert `name` in a rules file.
fn alert_expr(rules: &str, name: &str) -> String {
    let start = rules
        .find(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("no alert {name}"));
    let rest = &rules[start..];
    let expr = rest.find("expr: |\n").expect("a block expr") + "expr: |\n".len();
    rest[expr..]
        .lines()
        .take_while(|l| !l.trim_start().starts_with("for:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 GET on loopback: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("HTTP read timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// An instant query's samples: (labels, value).
async fn query(prom: SocketAddr, expr: &str) -> Vec<(Json, f64)> {
    let path = format!("/api/v1/query?query={}", percent_encode(expr));
    let Ok((200, body)) = get(prom, &path).await else {
        return Vec::new();
    };
    let json: Json = serde_json::from_str(&body).expect("Prometheus answers JSON");
    json["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let v = s["value"][1]
                        .as_str()
                        .unwrap_or("NaN")
                        .parse()
                        .unwrap_or(f64::NAN);
                    (s["metric"].clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `expr` until it returns a sample or `limit` passes; the samples.
async fn poll(prom: SocketAddr, expr: &str, limit: Duration) -> Vec<(Json, f64)> {
    let start = Instant::now();
    loop {
        let r = query(prom, expr).await;
        if !r.is_empty() || start.elapsed() > limit {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One peer: a Close with `code`, then it reads the answer and waits for the end (bounded).
async fn peer(server: SocketAddr, code: u16) {
    let mut p = RawPeer::connect(server).await.expect("handshake");
    p.send_close(Some(code), b"").await.expect("send Close");
    let _ = p.read_all_until_eof(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus binary; run by scripts/e2e-first-close.sh"]
async fn the_first_unexpected_close_after_a_start_is_seen_by_increase_and_the_alert() {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned());
    let exporter: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    wsclose::prometheus::install(exporter).expect("install the exporter");

    // The wsclose server.
    let config = wsclose::Config::new()
        .with_label("endpoint", "/e2e")
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut ws = config.server(ws);
                while let Some(Ok(_)) = ws.next().await {}
                let closed = ws.handle();
                let _ = tokio::time::timeout(Duration::from_secs(10), closed.closed()).await;
            });
        }
    });

    // Prometheus, on loopback, scraping the exporter and evaluating the shortened rules.
    let dir = std::env::temp_dir().join(format!("wsclose-first-close-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let rules = shortened_rules();
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    let config_file = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yaml]\n\
         scrape_configs:\n  - job_name: wsclose-first-close\n    static_configs:\n      \
         - targets: ['{exporter}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config_file).unwrap();
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(&binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("prometheus.log")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary:?} (Debian package prometheus): {e}"));
    let _prometheus = Stop(child);

    let start = Instant::now();
    while !matches!(get(prom, "/-/ready").await, Ok((200, _))) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus not ready after 60 s; see {}",
            dir.join("prometheus.log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The first connection ends cleanly: its role's series exist from now on, at 0.
    peer(server, 1000).await;
    let zero = r#"websocket_closes_total{role="server",cause="peer",outcome="protocol_error",expected="false",endpoint="/e2e"}"#;
    let scraped = poll(prom, zero, Duration::from_secs(60)).await;
    assert_eq!(scraped.len(), 1, "the zero series scraped: {scraped:?}");
    assert_eq!(scraped[0].1, 0.0);
    // A scrape after the one that found it, so the window holds the zero twice over.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Enough ends for the alert's traffic guard (> 0.1 ends/s over the shortened 20 s window),
    // exactly one of them unexpected: a Close with 1005, a code the protocol forbids on the wire.
    for _ in 0..3 {
        peer(server, 1000).await;
    }
    peer(server, 1005).await;

    let increase =
        r#"sum by (job, role) (increase(websocket_closes_total{expected="false"}[20s])) > 0"#;
    let seen = poll(prom, increase, Duration::from_secs(30)).await;
    assert_eq!(seen.len(), 1, "increase() sees the first unexpected close");
    assert_eq!(seen[0].0["role"], "server");

    let alert = alert_expr(&rules, "WebSocketUnexpectedCloseErrors");
    assert!(
        alert.contains("job_role:websocket_closes_unexpected:ratio_rate5m > 0.05"),
        "{alert}"
    );
    let firing = poll(prom, &alert, Duration::from_secs(30)).await;
    assert_eq!(
        firing.len(),
        1,
        "the alert expression sees it: {alert}\n{:?}",
        query(prom, "job_role:websocket_closes_unexpected:ratio_rate5m").await
    );
    assert_eq!(firing[0].0["job"], "wsclose-first-close");
    eprintln!(
        "after {:.1} s: increase {:?}, alert expression {:?}",
        start.elapsed().as_secs_f64(),
        seen[0].1,
        firing[0].1
    );

    accept.abort();
    drop(_prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
