//! The close promise where features meet: keepalive against a writer under backpressure,
//! keepalive next to a maximum lifetime, close futures kept but not polled, closes and drops
//! from threads that are not Tokio workers, data after a Close, registries that outlive their
//! shutdown, and malformed Close frames.
//!
//! Every wall-clock bound here is far from both the behaviour and the defect it separates
//! (the defect always costs seconds), so a busy machine does not make a test fail.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose::{Cause, Config, Outcome, Registry, Role, State, WireCode};

use support::pairs::{bounded, wrapped_and_raw, wrapped_and_tt};

/// Keepalive every 50 ms with a 1 s timeout; the peer reads nothing for 300 ms, then reads
/// everything and answers every Ping. The application writes 8 MiB and goes idle. The Ping
/// waits behind the burst; when the socket drains it must go out (whoever registered the
/// socket's single write waker last), the Pong must come back, and the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_survives_a_write_burst_under_backpressure() {
    let config = Config::new()
        .with_keepalive(Duration::from_millis(50), Duration::from_secs(1))
        .unwrap();
    let (ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
    let handle = ws.handle();
    let (mut tx, mut rx) = ws.split();
    // The application reads (that is where Pongs are seen) and writes a burst, then idles.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..32 {
            tx.send(Message::binary(chunk.clone())).await.unwrap();
        }
        tx // kept: dropping the last half would close the connection
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut data, mut pings, mut close) = (0, 0, None);
    let quiet_until = Instant::now() + Duration::from_secs(30);
    let mut after_burst: Option<Instant> = None;
    while Instant::now() < quiet_until {
        if after_burst.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), peer.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => {
                data += 1;
                if data == 32 {
                    after_burst = Some(Instant::now());
                }
            }
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                close = Some(frame);
                break;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(e))) => panic!("peer read failed: {e}"),
            Ok(None) => break,
        }
    }
    assert_eq!(
        close, None,
        "keepalive closed a peer that answers every Ping"
    );
    assert_eq!(data, 32, "the burst arrived");
    assert!(pings >= 2, "keepalive pings reached the peer ({pings})");
    assert_eq!(handle.state(), State::Open);
    let tx = writer.await.unwrap();
    // The peer goes on reading, so that it answers the Close.
    let peer = tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    let report = bounded(handle.close(1000, "done")).await.unwrap();
    bounded(peer).await.unwrap();
    assert_eq!((report.cause, report.outcome), (Cause::App, Outcome::Clean));
    drop(tx);
    reader.abort();
}

/// Lifetime 300 ms without jitter, keepalive every 50 ms with a 3 s timeout, and a peer that
/// answers Pings 1.5 s late: the lifetime close begins at the maximum, not after the
/// keepalive round in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_lifetime_is_not_held_off_by_a_keepalive_round() {
    let config = Config::new()
        .with_keepalive(Duration::from_millis(50), Duration::from_secs(3))
        .unwrap()
        .with_max_lifetime(Duration::from_millis(300), Duration::ZERO)
        .unwrap();
    let (ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
    let handle = ws.handle();
    let (_tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    // The peer reads (and so answers Pings) only after 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let peer_task = tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
    let report = bounded(handle.closed()).await;
    assert_eq!(report.cause, Cause::Lifetime, "{report:?}");
    let began = report.connection_duration - report.close_duration.expect("a Close was sent");
    assert!(
        began < Duration::from_millis(1200),
        "the lifetime close began {began:?} after the open; the maximum is 300 ms"
    );
    reader.await.unwrap();
    peer_task.await.unwrap();
}

/// A `close()` future polled for 20 ms, then kept but never polled again: the deadline, other
/// handles' `closed()` and a shutdown's terminate still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_future_kept_but_not_polled_does_not_freeze_the_close() {
    for shutdown in [false, true] {
        let registry = Registry::new();
        // 1 s: the 20 ms poll below cannot outlast it even on a descheduled thread. With a
        // shutdown, 30 s: its terminate (after a 100 ms grace period) must end the close.
        let timeout = Duration::from_secs(if shutdown { 30 } else { 1 });
        let config = Config::new()
            .with_close_timeout(timeout)
            .unwrap()
            .with_registry(registry.clone());
        // A raw peer that never answers: the close can only end at its deadline.
        let (ws, _silent) = wrapped_and_raw(Role::Server, &config).await;
        let h = ws.handle();
        let started = Instant::now();
        let mut kept = Box::pin(h.close(1000, "bye"));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut kept)
                .await
                .is_err()
        );
        if shutdown {
            let report = tokio::time::timeout(
                Duration::from_secs(4),
                registry.shutdown(1001, Duration::from_millis(100)),
            )
            .await
            .expect("shutdown ended while a close future sat unpolled")
            .unwrap();
            assert_eq!(report.connections, 1);
        }
        let report = tokio::time::timeout(Duration::from_secs(4), h.closed())
            .await
            .expect("closed() returned while a close future sat unpolled");
        assert_eq!(report.outcome, Outcome::Timeout);
        let close = report.close_duration.unwrap();
        assert!(
            close < Duration::from_millis(2500),
            "close took {close:?} with a {timeout:?} deadline"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        // The kept future, polled at last, returns the same report.
        let again = bounded(kept).await.unwrap();
        assert_eq!(again, report);
        drop(ws);
    }
}

/// The same, with `tokio::select!` over `&mut close` in a loop whose other branch awaits long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_future_in_a_select_loop_does_not_wait_for_the_other_branch() {
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(200))
        .unwrap();
    let (ws, _silent) = wrapped_and_raw(Role::Server, &config).await;
    let h = ws.handle();
    let mut close = std::pin::pin!(h.close(1000, "bye"));
    let watcher = h.clone();
    let watch = tokio::spawn(async move { watcher.closed().await });
    for _ in 0..2 {
        tokio::select! {
            _ = &mut close => break,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                // The other branch: long work, during which `close` is not polled.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
    }
    // Measured by the close itself, not by when the watcher got to run.
    let report = bounded(watch).await.unwrap();
    assert_eq!(report.outcome, Outcome::Timeout);
    assert!(report.close_duration.unwrap() < Duration::from_secs(2));
}

/// A `close()` future is polled once, the peer answers, and the future is dropped before it
/// is polled again: the close it was woken for goes on at once in a task of its own (not at
/// the 5 s deadline), and ends `clean`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_future_dropped_after_its_wake_up_still_ends_the_close_at_once() {
    let (ws, mut peer) = wrapped_and_raw(Role::Server, &Config::new()).await;
    let h = ws.handle();
    let mut close = Box::pin(h.close(1000, "bye"));
    // The first poll begins the close: the Close frame is on the wire when it returns.
    assert!(futures_util::poll!(&mut close).is_pending());
    answer_then_drop(&mut peer, close).await;
    let report = tokio::time::timeout(support::timing::PROMPT, h.closed())
        .await
        .expect("the close waited for its deadline after its caller went away");
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
    drop(ws);
}

/// The same with the sink's `close` (`SinkExt::close`), whose future is dropped after the
/// peer's answer while the `WebSocket` is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_close_dropped_after_its_wake_up_still_ends_the_close_at_once() {
    let (mut ws, mut peer) = wrapped_and_raw(Role::Server, &Config::new()).await;
    let h = ws.handle();
    let mut close = Box::pin(SinkExt::close(&mut ws));
    assert!(futures_util::poll!(&mut close).is_pending());
    answer_then_drop(&mut peer, close).await;
    let report = tokio::time::timeout(support::timing::PROMPT, h.closed())
        .await
        .expect("the close waited for its deadline after its caller went away");
    assert_eq!(report.outcome, Outcome::Clean);
    drop(ws);
}

/// Reads the Close frame, answers it, lets the answer wake the close, then drops `close`
/// unpolled.
async fn answer_then_drop<F>(peer: &mut support::raw::RawPeer, close: F) {
    answer_close(peer, 1000).await;
    // The answer wakes the waiting close, which is not polled but dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(close);
}

/// Reads our Close frame (1000) and answers it with `code`.
async fn answer_close(peer: &mut support::raw::RawPeer, code: u16) {
    let frame = peer
        .read_frame_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the Close frame");
    assert_eq!(frame.close_code(), Some(1000));
    peer.send_close(Some(code), b"").await.unwrap();
}

/// A `close()` future polled once and then kept without being polled while the peer answers:
/// its close waits for the caller no longer than its deadline, and the answer it got counts
/// (`clean`, the peer's code): the deadline's wake-up runs the close in a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_future_kept_while_the_peer_answers_ends_by_its_deadline() {
    use support::timing::{DEADLINE, LATE};
    let config = Config::new().with_close_timeout(DEADLINE).unwrap();
    let (ws, mut peer) = wrapped_and_raw(Role::Server, &config).await;
    let h = ws.handle();
    let mut kept = Box::pin(h.close(1000, "bye"));
    assert!(futures_util::poll!(&mut kept).is_pending());
    answer_close(&mut peer, 1001).await;
    let report = tokio::time::timeout(DEADLINE + LATE + LATE, h.closed())
        .await
        .expect("the close waited past its deadline for a caller that kept its future");
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.code_received, Some(WireCode::Valid(1001)));
    assert!(report.close_duration.unwrap() < DEADLINE + LATE);
    assert_eq!(bounded(kept).await.unwrap(), report);
    drop(ws);
}

/// A close begun from a thread that is not a Tokio worker, and the last `WebSocket` dropped
/// on one, end like any other close: one Close frame, answered, outcome `clean`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_and_drops_from_std_threads_end_clean() {
    for drop_it in [false, true] {
        let (ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
        let h = ws.handle();
        let echo = tokio::spawn(async move {
            let mut frames = Vec::new();
            while let Some(Ok(msg)) = peer.next().await {
                if let Message::Close(f) = msg {
                    frames.push(f.map(|f| u16::from(f.code)));
                }
            }
            frames
        });
        let began = if drop_it {
            std::thread::spawn(move || drop(ws)).join().unwrap();
            true
        } else {
            let h2 = h.clone();
            let began = std::thread::spawn(move || h2.start_close(1000, "bye"))
                .join()
                .unwrap()
                .unwrap();
            drop(ws);
            began
        };
        assert!(began);
        let report = bounded(h.closed()).await;
        let code = if drop_it { 1001 } else { 1000 };
        assert_eq!(report.outcome, Outcome::Clean, "{report:?}");
        assert_eq!(report.code_sent, Some(WireCode::Valid(code)));
        assert_eq!(report.code_received, Some(WireCode::Valid(code)));
        assert_eq!(bounded(echo).await.unwrap(), vec![Some(code)]);
    }
}

/// As a client, frames after the server's Close are a protocol violation, in both orders.
#[tokio::test]
async fn data_after_the_peers_close_is_a_protocol_error() {
    // The server closes first, then sends a Text frame.
    let (mut ws, mut raw) = wrapped_and_raw(Role::Client, &Config::new()).await;
    raw.send_close(Some(1000), b"").await.unwrap();
    raw.send_text("late").await.unwrap();
    let first = bounded(ws.next()).await;
    assert!(matches!(first, Some(Ok(Message::Close(_)))), "{first:?}");
    let reply = bounded(raw.read_frame()).await.unwrap().unwrap();
    assert_eq!(reply.close_code(), Some(1000));
    raw.shutdown_write().await.unwrap();
    let report = bounded(ws.handle().closed()).await;
    assert_eq!(report.outcome, Outcome::ProtocolError, "{report:?}");
    assert_eq!(report.cause, Cause::Peer);

    // We close first; the server replies, then sends a Text frame.
    let (ws, mut raw) = wrapped_and_raw(Role::Client, &Config::new()).await;
    let h = ws.handle();
    let closing = tokio::spawn(async move { h.close(1000, "bye").await.unwrap() });
    let ours = bounded(raw.read_frame()).await.unwrap().unwrap();
    assert_eq!(ours.close_code(), Some(1000));
    raw.send_close(Some(1000), b"").await.unwrap();
    raw.send_text("late").await.unwrap();
    raw.shutdown_write().await.unwrap();
    let report = bounded(closing).await.unwrap();
    assert_eq!(report.outcome, Outcome::ProtocolError, "{report:?}");
    assert_eq!(report.cause, Cause::App);
    drop(ws);
}

/// Counts the connection spans that were closed (the span lives as long as the connection).
#[derive(Clone, Default)]
struct SpanCloses(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl<S> tracing_subscriber::Layer<S> for SpanCloses
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "websocket" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if ctx.span(&id).is_some_and(|s| s.name() == "websocket") {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// After a shutdown, connections wrapped with the same registry are closed at once and, once
/// ended, are not kept: their spans close.
#[tokio::test]
async fn a_registry_keeps_nothing_after_its_shutdown() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = SpanCloses::default();
    let subscriber = tracing_subscriber::registry().with(
        spans
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    bounded(registry.shutdown(1001, Duration::from_millis(100)))
        .await
        .unwrap();
    for _ in 0..50 {
        let (ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
        let peer = tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.cause, Cause::Shutdown);
        drop(ws);
        bounded(peer).await.unwrap();
    }
    assert!(registry.is_empty());
    for _ in 0..200 {
        if spans.1.load(Ordering::SeqCst) == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(spans.0.load(Ordering::SeqCst), 50);
    assert_eq!(
        spans.1.load(Ordering::SeqCst),
        50,
        "connections ended after the shutdown are still referenced"
    );
}

use tracing_subscriber::Layer as _;

/// A Close frame with a 1-byte payload fails the connection with 1002 and is counted as a
/// received `code="invalid"`.
#[tokio::test]
async fn a_malformed_close_frame_is_counted_as_received_invalid() {
    let (metrics, _guard) = support::recorder::install();
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
        raw.send_frame(true, 0x8, &[0x03]).await.unwrap();
        let got = bounded(ws.next()).await;
        assert!(matches!(got, Some(Err(_))), "{got:?}");
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::ProtocolError);
        assert_eq!(report.code_received, Some(WireCode::Invalid(None)));
        assert_eq!(report.code_sent, Some(WireCode::Valid(1002)));
        let received = metrics.counter(
            "websocket_close_frames_total",
            &[
                ("role", role.as_str()),
                ("direction", "received"),
                ("code", "invalid"),
            ],
        );
        assert_eq!(received, 1, "{role:?}");
    }
}

/// A send waiting behind write backpressure when another handle's close times out gets the
/// typed closed error: its message was never given to the peer (and is counted as dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_stuck_behind_backpressure_fails_when_the_close_drops_it() {
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(300))
        .unwrap();
    // The peer never reads: the socket fills and stays full.
    let (ws, _peer) = wrapped_and_tt(Role::Server, &config).await;
    let h = ws.handle();
    let (mut tx, _rx) = ws.split();
    // One message far larger than the socket buffers: its send waits in the flush. Built
    // here, and accepted (`feed`) before the close begins: on a busy machine the task may
    // start late, and only an accepted message can be counted as dropped.
    let message = Message::binary(vec![1u8; 64 * 1024 * 1024]);
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move {
        let fed = tx.feed(message).await;
        let _ = accepted_tx.send(());
        let result = match fed {
            Ok(()) => tx.flush().await,
            Err(e) => Err(e),
        };
        (result, tx)
    });
    bounded(accepted).await.unwrap();
    // Let the socket fill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished());
    let report = bounded(h.close(1000, "bye")).await.unwrap();
    assert_eq!(report.outcome, Outcome::Timeout);
    assert_eq!(report.messages_dropped, 1, "{report:?}");
    let (result, _tx) = bounded(sender).await.unwrap();
    let err = result.expect_err("the peer never got the message");
    assert!(err.is_closed(), "{err}");
    assert_eq!(err.report().map(|r| r.outcome), Some(Outcome::Timeout));
}

/// A runtime built without a timer: no panic anywhere. A close still ends (without a deadline,
/// which a WARN says once), a dropped connection still closes, keepalive is off, and a shutdown,
/// which needs a timer for its grace period, is refused with a clear error.
#[test]
fn a_runtime_without_timers_never_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let (logs, _guard) = support::logs::capture();
    rt.block_on(async {
        let registry = Registry::new();
        let config = Config::new()
            .with_keepalive(Duration::from_millis(50), Duration::from_secs(1))
            .unwrap()
            .with_registry(registry.clone());
        for drop_it in [false, true] {
            // No `bounded` here: it needs a timer.
            let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
            let h = ws.handle();
            let peer = tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
            let report = if drop_it {
                drop(ws);
                h.closed().await
            } else {
                ws.close(1000, "bye").await.unwrap()
            };
            assert_eq!(report.outcome, Outcome::Clean, "{report:?}");
            peer.await.unwrap();
        }
        let err = registry
            .shutdown(1001, Duration::from_millis(100))
            .await
            .expect_err("a shutdown needs a timer");
        assert!(err.is_config(), "{err}");
    });
    let warnings = logs.at_level(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let message = warnings[0].field("message").unwrap_or_default();
    assert!(message.contains("has no timer"), "{message}");
}

/// Keepalive gives up on a peer that neither reads nor answers: its `1011` cannot reach a full
/// socket, and it tries for a short budget (250 ms), not for the whole close deadline (5 s by
/// default), before it terminates the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_close_to_a_stalled_peer_gives_up_within_its_short_budget() {
    let config = Config::new()
        .with_keepalive(Duration::from_millis(50), Duration::from_millis(300))
        .unwrap();
    // The raw peer never reads: the socket fills, no Ping gets through, no Pong comes back.
    let (ws, _peer) = wrapped_and_raw(Role::Server, &config).await;
    let h = ws.handle();
    let (mut tx, _rx) = ws.split();
    let writer = tokio::spawn(async move {
        let _ = tx.send(Message::binary(vec![3u8; 32 * 1024 * 1024])).await;
        tx
    });
    let report = tokio::time::timeout(Duration::from_secs(20), h.closed())
        .await
        .expect("keepalive never ended a stalled connection");
    assert_eq!(report.cause, Cause::Keepalive, "{report:?}");
    assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");
    // No close duration: the Close frame never reached the wire. The connection's whole life
    // is the keepalive timeout (300 ms), its detection, and the close's budget.
    let life = report.connection_duration;
    assert!(
        life < Duration::from_millis(300) + support::timing::PROMPT,
        "the connection lasted {life:?}: the keepalive close tried for longer than its 250 ms"
    );
    drop(bounded(writer).await.unwrap());
}

/// A close begun from inside another runtime (here a one-thread runtime on its own thread,
/// kept but no longer running) registers its deadline with the connection's runtime, whose
/// sweeper runs, not with the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_begun_from_another_runtime_keeps_its_deadline() {
    use support::timing::{DEADLINE, assert_at_deadline};
    let config = Config::new().with_close_timeout(DEADLINE).unwrap();
    let (ws, _silent) = wrapped_and_raw(Role::Server, &config).await;
    let h = ws.handle();
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h2 = h.clone();
    let other = std::thread::spawn(move || {
        assert!(
            other
                .block_on(async move { h2.start_close(1000, "bye") })
                .unwrap()
        );
        other // kept alive, idle: its timers do not run
    })
    .join()
    .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), h.closed())
        .await
        .expect("the deadline went to a runtime that is not running");
    assert_eq!(report.outcome, Outcome::Timeout);
    assert_at_deadline(report.close_duration.unwrap(), DEADLINE, "the close");
    drop(ws);
    // A runtime is dropped outside asynchronous code.
    std::thread::spawn(move || drop(other)).join().unwrap();
}
