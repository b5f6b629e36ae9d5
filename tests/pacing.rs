//! A paced drain (`Registry::with_pacing`): the closes of a shutdown are spread over the
//! window, so the clients of a drained instance reconnect elsewhere at a bounded rate; capped
//! at half the grace period; the closes not yet begun go on when the shutdown future is dropped.
//!
//! No bound here assumes a prompt timer: the spread is checked from below (the closes are not
//! all at once) and from above only by the grace period, and the rate bound is loose (a late
//! timer may bunch two or three slots).

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use wsclose::{Cause, Config, Outcome, Registry, Role};

use support::pairs::{Ws, bounded, wrapped_and_tt};

const N: usize = 20;

/// `N` server connections in `registry`; each peer task returns when it saw our Close.
async fn fleet(registry: &Registry) -> (Vec<Ws>, Vec<tokio::task::JoinHandle<Instant>>) {
    let config = Config::new().with_registry(registry.clone());
    let (mut conns, mut peers) = (Vec::new(), Vec::new());
    for _ in 0..N {
        let (ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
        conns.push(ws);
        peers.push(tokio::spawn(async move {
            loop {
                match peer.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        let at = Instant::now();
                        while peer.next().await.is_some() {} // answer it, to a clean end
                        return at;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }));
    }
    (conns, peers)
}

/// The most closes seen within any `window`.
fn peak(times: &mut [Instant], window: Duration) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_shutdown_spreads_its_closes_over_the_window() {
    let registry = Registry::new().with_pacing(Duration::from_secs(1));
    assert_eq!(registry.pacing(), Duration::from_secs(1));
    let (conns, peers) = fleet(&registry).await;
    let started = Instant::now();
    let report = bounded(registry.shutdown(1012, Duration::from_secs(6)))
        .await
        .unwrap();
    assert_eq!(report.connections, N);
    assert_eq!(report.count(Outcome::Clean), N, "{report}");
    assert_eq!(report.paced_over, Duration::from_secs(1));
    assert!(
        report.to_string().contains("paced over 1.000 s"),
        "{report}"
    );
    let mut times = Vec::new();
    for p in peers {
        times.push(bounded(p).await.unwrap());
    }
    let first = *times.iter().min().unwrap() - started;
    let last = *times.iter().max().unwrap() - started;
    // Evenly spread, N slots of 50 ms: the last begins at 950 ms at the earliest... but a slot
    // is random inside itself, so at least 900 ms after the call.
    assert!(
        last >= Duration::from_millis(900),
        "last close after {last:?}"
    );
    assert!(
        first < Duration::from_millis(500),
        "first close after {first:?}"
    );
    let most = peak(&mut times, Duration::from_millis(100));
    assert!(most <= N / 3, "{most} closes within 100 ms");
    for ws in &conns {
        let r = ws.report().unwrap();
        assert_eq!(
            (r.cause, r.code_sent.map(|c| c.as_str())),
            (Cause::Shutdown, Some("service_restart"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_shutdown_closes_at_once() {
    let registry = Registry::new();
    let (_conns, peers) = fleet(&registry).await;
    let report = bounded(registry.shutdown(1001, Duration::from_secs(6)))
        .await
        .unwrap();
    assert_eq!(report.paced_over, Duration::ZERO);
    assert!(!report.to_string().contains("paced"), "{report}");
    let mut times = Vec::new();
    for p in peers {
        times.push(bounded(p).await.unwrap());
    }
    // The contrast the pacing exists for (loose: a busy machine delays some peers' reads).
    assert!(peak(&mut times, Duration::from_millis(500)) > N / 2);
}

#[tokio::test]
async fn the_window_is_capped_at_half_the_grace_period() {
    let registry = Registry::new().with_pacing(Duration::from_secs(60));
    let (_conns, peers) = fleet(&registry).await;
    let report = bounded(registry.shutdown(1001, Duration::from_millis(800)))
        .await
        .unwrap();
    assert_eq!(report.paced_over, Duration::from_millis(400));
    assert_eq!(report.connections, N);
    assert_eq!(report.stragglers, 0, "{report}");
    for p in peers {
        bounded(p).await.unwrap();
    }
}

#[tokio::test]
async fn a_dropped_paced_shutdown_still_closes_every_connection() {
    let registry = Registry::new().with_pacing(Duration::from_millis(600));
    let (conns, peers) = fleet(&registry).await;
    // Polled long enough to begin, dropped long before the window ends.
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        registry.shutdown(1001, Duration::from_secs(10)),
    )
    .await;
    assert!(cut.is_err(), "the shutdown ended within 50 ms");
    for p in peers {
        bounded(p).await.unwrap();
    }
    for ws in &conns {
        let r = bounded(ws.handle().closed()).await;
        assert_eq!((r.cause, r.outcome), (Cause::Shutdown, Outcome::Clean));
    }
}
