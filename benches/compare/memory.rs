//! Memory per idle connection (`memory_idle_conn`): RSS growth per idle server-side connection
//! (a task waiting in `next()`), 10,000 connections, the server end wrapped for wsclose. Each
//! measurement runs in a fresh child process, whose client ends live in a child of its own.

use std::time::Duration;

use wsclose::WebSocket;

use crate::child;
use crate::harness::{Plan, Row, current_thread, interleave_blocking, median};
use crate::net::{accept_n, listener, pairs, raise_fd_limit, read_to_end, rss_bytes};

/// In a child process: RSS growth for `conns` idle server-side connections, each with a task
/// waiting in `next()` (raw, or wrapped by wsclose). The client ends live in another process.
pub(crate) fn memory_child(conns: usize, wrapped: bool) {
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
        let mut clients = child::storm_clients(false, conns, addr)
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
    let out = child::memory(wrapped, conns)
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

pub(crate) fn bench_memory(plan: &Plan, rows: &mut Vec<Row>) {
    if !plan.wants("memory_idle") {
        return;
    }
    let conns = raise_fd_limit(plan.memory_conns);
    let (raw, ws) = interleave_blocking(
        plan.memory_reps,
        || spawn_memory_child(conns, false) / conns as f64,
        || spawn_memory_child(conns, true) / conns as f64,
    );
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
