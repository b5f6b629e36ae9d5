//! Close storm (`close_storm`): 10,000 open server-side connections closed at once, wall time
//! until every server transport is closed. raw: a task per connection doing `close()` and
//! reading until the end; wsclose: the connection registry's `shutdown(1001, grace)`, as a
//! server does on SIGTERM. The client ends live in a child process ([`crate::child`]), so that
//! this process needs one fd per connection. `left_open` counts fds not released here plus
//! clients that did not end in the child.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use wsclose::{Handle, Registry, WebSocket};

use crate::child;
use crate::harness::{Plan, Row, interleave, median, multi_thread};
use crate::net::{Tt, Ws, accept_n, close_frame, listener, open_fds, raise_fd_limit};

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

/// One storm: `conns` server-side connections in this process (the client ends in a child
/// process, so that 10,000 connections need 10,000 fds here, not 20,000), all closed at once.
/// Returns (wall seconds until every server-side transport is closed, connections left open:
/// fds not released here plus clients that did not end in the child).
async fn storm(conns: usize, wrapped: bool) -> (f64, usize) {
    use std::io::BufRead;
    let fds_before = open_fds();
    let (l, addr) = listener().await;
    let acceptor = tokio::spawn(accept_n(l, conns));
    let mut child = child::storm_clients(wrapped, conns, addr)
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

pub(crate) fn bench_storm(plan: &Plan, rows: &mut Vec<Row>) {
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
