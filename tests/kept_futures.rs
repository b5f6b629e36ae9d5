//! A `Handshake` polled once and then kept without being polled (what an accept loop's
//! `FuturesUnordered` or a `select!` that breaks out on SIGTERM does) freezes nothing: a
//! registry's shutdown returns by its grace period (plus the brief wait for cut handshakes),
//! leaving that handshake behind and counting it cut; a close through its handle ends by the
//! close deadline, with the report the handshake itself would have given. The future, polled or
//! dropped later, ends without opening anything.

mod support;

use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use wsclose::{Cause, Config, HandshakeOutcome, Outcome, Registry, State};

use support::pairs::bounded;
use support::recorder;

/// A TCP connection whose client sends nothing: (the server's stream, the client's).
async fn silent_pair() -> (TcpStream, TcpStream, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client, listener)
}

/// Polls `f` once (it must not be ready) and returns it, kept.
async fn polled_once<F: Future + Unpin>(mut f: F) -> F {
    let first = tokio::time::timeout(Duration::from_millis(20), &mut f).await;
    assert!(first.is_err(), "ready at once");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_handshake_does_not_hold_up_a_shutdown() {
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let (tcp, _client, _l) = silent_pair().await;
    let kept = polled_once(config.accept(tcp)).await;
    assert_eq!(registry.connecting(), 1);
    let t = Instant::now();
    let report = bounded(registry.shutdown(1001, Duration::from_millis(200)))
        .await
        .unwrap();
    let took = t.elapsed();
    // 200 ms of grace and at most 250 ms for the cut, with a busy machine's slack.
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(report.handshakes_cut, 1, "{report}");
    assert_eq!(registry.connecting(), 1, "left behind, still in flight");
    // Polled again: it sees the cut and ends (timeout), opening nothing.
    let err = bounded(kept).await.unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Timeout), "{err}");
    assert_eq!(registry.connecting(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_through_a_kept_server_handshake_ends_by_its_deadline() {
    let (metrics, _g) = recorder::install();
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(300))
        .unwrap();
    let (tcp, _client, _l) = silent_pair().await;
    let kept = polled_once(config.accept(tcp)).await;
    let handle = kept.handle();
    let t = Instant::now();
    let report = bounded(handle.close(1001, "bye")).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Timeout, Cause::App)
    );
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.report(), Some(report));
    // Polled again: given up, counted once, as a handshake closed while connecting.
    let err = bounded(kept).await.unwrap_err();
    assert_eq!(err.handshake(), Some(HandshakeOutcome::Rejected), "{err}");
    assert_eq!(
        metrics.counter_sum("websocket_handshakes_total", &[("role", "server")]),
        1,
        "{}",
        metrics.dump()
    );
    assert_eq!(
        metrics.counter_sum("websocket_connections_opened_total", &[]),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_through_a_kept_client_handshake_ends_by_its_deadline() {
    // A server that accepts the TCP connection and never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(300))
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _server = listener.accept().await.unwrap();
    let kept = polled_once(config.client_handshake(format!("ws://{addr}/"), tcp)).await;
    let handle = kept.handle();
    let report = bounded(handle.close(1000, "")).await.unwrap();
    assert_eq!((report.outcome, report.cause), (Outcome::Clean, Cause::App));
    assert_eq!(handle.state(), State::Closed);
    drop(kept);
    assert_eq!(
        handle.report(),
        Some(report),
        "the report stays what the close said"
    );
}
