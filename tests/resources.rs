//! 1,000 connections opened and closed in every way leave nothing behind: the active gauge,
//! file descriptors and Tokio tasks return to their baseline.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinSet;
use wsclose::{Config, Outcome, Role};

use support::pairs::{bounded, open_fds, wrapped_and_tt};
use support::recorder;

const CONNECTIONS: usize = 1000;
const BATCH: usize = 100;

#[tokio::test]
async fn a_thousand_connections_leave_nothing_behind() {
    let (m, _g) = recorder::install();
    let rt = tokio::runtime::Handle::current();
    // Warm up once so lazily created runtime resources are not counted as leaks.
    let (mut ws, peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    drop(peer);
    bounded(ws.close(1000, "")).await.unwrap();
    let fds = open_fds();
    let tasks = rt.metrics().num_alive_tasks();

    let mut outcomes = std::collections::HashMap::new();
    for batch in 0..CONNECTIONS / BATCH {
        let mut set = JoinSet::new();
        for i in 0..BATCH {
            let n = batch * BATCH + i;
            let role = if n % 2 == 0 {
                Role::Server
            } else {
                Role::Client
            };
            let (mut ws, mut peer) = wrapped_and_tt(role, &Config::new()).await;
            let handle = ws.handle();
            set.spawn(async move {
                let peer_task = tokio::spawn(async move {
                    if n % 5 == 4 {
                        return; // the peer vanishes without a Close
                    }
                    while let Some(Ok(_)) = peer.next().await {}
                });
                match n % 5 {
                    0 | 4 => drop(ws.close(1000, "").await.unwrap()),
                    1 => drop(ws), // dropped without close: 1001
                    2 => drop(ws.handle().close(4000, "x").await.unwrap()),
                    _ => {
                        let (tx, rx) = ws.split();
                        drop(tx);
                        drop(rx);
                    }
                }
                let report = handle.closed().await;
                peer_task.await.unwrap();
                report.outcome
            });
        }
        while let Some(outcome) = bounded(set.join_next()).await {
            *outcomes.entry(outcome.unwrap()).or_insert(0usize) += 1;
        }
    }
    let total: usize = outcomes.values().sum();
    assert_eq!(total, CONNECTIONS);
    // Every fifth peer vanished without a Close; every other connection closed cleanly.
    assert_eq!(
        outcomes.get(&Outcome::Clean),
        Some(&(CONNECTIONS * 4 / 5)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&Outcome::PeerGone),
        Some(&(CONNECTIONS / 5)),
        "{outcomes:?}"
    );
    for role in ["server", "client"] {
        assert_eq!(
            m.gauge("websocket_connections_active", &[("role", role)]),
            0.0
        );
        m.assert_balanced(role);
    }
    assert_eq!(
        m.counter_sum("websocket_connections_opened_total", &[]),
        CONNECTIONS as u64 + 1
    );

    // Sockets close asynchronously in the kernel's eyes only; our descriptors are gone once
    // every task has ended. Allow a short settle for the peers' tasks to be reaped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (open_fds() > fds || rt.metrics().num_alive_tasks() > tasks)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open_fds(), fds, "file descriptors leaked");
    assert_eq!(rt.metrics().num_alive_tasks(), tasks, "tasks leaked");
}
