//! Every future the crate returns, polled once and then kept, dropped, or raced with a
//! shutdown, freezes nothing: `close` (and `Handle::close`), `closed`, the `Handshake`, and
//! `Registry::shutdown`. (The handshake's cases are in tests/kept_futures.rs and
//! tests/connecting.rs; a close kept in a `select!` loop in tests/stress.rs.)

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wsclose::{Cause, Config, Outcome, Registry, Role};

use support::pairs::{bounded, wrapped_and_raw, wrapped_and_tt};
use support::recorder;

/// Polls `f` once (it must not be ready) and returns it, kept.
async fn polled_once<F: Future + Unpin>(mut f: F) -> F {
    let first = tokio::time::timeout(Duration::from_millis(20), &mut f).await;
    assert!(first.is_err(), "ready at once");
    f
}

/// A shutdown polled once and kept (a `select!` that moved on): the closes it began still end by
/// their own close deadline, with the shutdown's cause, although nothing terminates stragglers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_shutdown_still_lets_every_close_end_by_its_deadline() {
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_close_timeout(Duration::from_millis(300))
        .unwrap();
    // A silent peer: the close can only end at its deadline.
    let (ws, _silent) = wrapped_and_raw(Role::Server, &config).await;
    let shutdown = Box::pin(registry.shutdown(1001, Duration::from_secs(30)));
    let t = Instant::now();
    let kept = polled_once(shutdown).await;
    let report = bounded(ws.handle().closed()).await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        (report.cause, report.outcome),
        (Cause::Shutdown, Outcome::Timeout)
    );
    // The kept shutdown, polled again, finds nothing left and reports it.
    let report = bounded(kept).await.unwrap();
    assert_eq!(report.connections, 1);
    assert_eq!(report.count(Outcome::Timeout), 1, "{report}");
}

/// `closed()` polled once and dropped, or kept, changes nothing about the close.
#[tokio::test]
async fn a_closed_future_kept_or_dropped_changes_nothing() {
    let (metrics, _g) = recorder::install();
    let (ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    let handle = ws.handle();
    drop(polled_once(Box::pin(handle.closed())).await);
    let kept = polled_once(Box::pin(handle.closed())).await;
    let report = bounded(handle.close(1000, "")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(bounded(kept).await, report);
    assert_eq!(
        metrics.counter("websocket_close_redundant_total", &[("role", "server")]),
        0
    );
    drop(ws);
}

/// A close under way when a shutdown begins keeps its own cause and code, is not counted as a
/// redundant close, and is in the shutdown's report; the close's future and the shutdown both
/// return.
#[tokio::test]
async fn a_close_raced_with_a_shutdown_keeps_its_cause() {
    let (metrics, _g) = recorder::install();
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_close_timeout(Duration::from_millis(500))
        .unwrap();
    let (mut ws, mut raw) = wrapped_and_raw(Role::Server, &config).await;
    let closing = polled_once(Box::pin(ws.close(4000, "app"))).await;
    let shutdown = tokio::spawn({
        let registry = registry.clone();
        async move { registry.shutdown(1001, Duration::from_secs(5)).await }
    });
    let frame = bounded(raw.read_frame()).await.unwrap().expect("a frame");
    assert_eq!(
        frame.close_code(),
        Some(4000),
        "one Close, the application's"
    );
    raw.send_close(Some(4000), b"").await.unwrap();
    let report = bounded(closing).await.unwrap();
    assert_eq!((report.cause, report.outcome), (Cause::App, Outcome::Clean));
    let drained = bounded(shutdown).await.unwrap().unwrap();
    assert_eq!(drained.connections, 1, "{drained}");
    assert_eq!(
        metrics.frames("server", "sent", "application"),
        1,
        "{}",
        metrics.dump()
    );
    assert_eq!(
        metrics.frames("server", "sent", "going_away"),
        0,
        "{}",
        metrics.dump()
    );
}
