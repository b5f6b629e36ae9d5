//! A worker blocked by the task it runs (a synchronous sleep, a blocking call) delays only that
//! task: the close deadlines of every other connection on the runtime still end on time, whether
//! the blocking task's close is the runtime's first or the earliest of those already pending.

mod support;

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use wsclose::{Config, Outcome, Role};

use support::pairs::{bounded, wrapped_and_raw};

/// Connections closed to silent peers; the first is closed by the blocking task.
const CLOSES: usize = 40;
/// Every close's deadline.
const DEADLINE: Duration = Duration::from_millis(300);
/// How long the blocking task holds its worker.
const BLOCK: Duration = Duration::from_secs(3);
/// The others end within this of the start: far above the deadline, below the block.
const BOUND: Duration = Duration::from_secs(2);

fn closes_end_on_time_while_a_worker_is_blocked(sweeper_running: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = Config::new().with_close_timeout(DEADLINE).unwrap();
        let mut pairs = Vec::with_capacity(CLOSES);
        for _ in 0..CLOSES {
            // The peer is a raw client that never reads nor answers once the handshake is done.
            pairs.push(bounded(wrapped_and_raw(Role::Server, &config)).await);
        }
        // With a close pending on a long deadline, the runtime's deadline timer is running and
        // set late: the blocking task's deadline is then the earliest and moves it earlier.
        let long = if sweeper_running {
            let config = Config::new()
                .with_close_timeout(Duration::from_secs(10))
                .unwrap();
            let (ws, raw) = bounded(wrapped_and_raw(Role::Server, &config)).await;
            assert!(ws.handle().start_close(1000, "long").unwrap());
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((ws, raw))
        } else {
            None
        };

        let started = Instant::now();
        // Spawned from this thread (not a worker), each task below goes to the runtime's shared
        // queue; the blocking task begins its close and then holds whichever worker took it.
        let (begun_tx, begun_rx) = oneshot::channel();
        let blocked = pairs[0].0.handle();
        let blocker = tokio::spawn(async move {
            let begun = blocked.start_close(1000, "bye");
            let _ = begun_tx.send(begun);
            std::thread::sleep(BLOCK);
        });
        assert!(bounded(begun_rx).await.unwrap().unwrap(), "close begun");

        let mut closes = JoinSet::new();
        for (ws, _) in &pairs[1..] {
            let handle = ws.handle();
            closes.spawn(async move {
                assert!(handle.start_close(1000, "bye").unwrap());
                (handle.closed().await, started.elapsed())
            });
        }
        let mut ended = Vec::with_capacity(CLOSES - 1);
        while let Some(joined) = bounded(closes.join_next()).await {
            let (report, took) = joined.expect("close task");
            assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");
            ended.push(took);
        }
        ended.sort();
        assert_eq!(ended.len(), CLOSES - 1);
        let (first, last) = (ended[0], ended[ended.len() - 1]);
        eprintln!(
            "sweeper running: {sweeper_running}; {} closes ended after {first:?} to {last:?}",
            ended.len()
        );
        assert!(
            first >= DEADLINE,
            "a close ended before its deadline: {first:?}"
        );
        assert!(
            last < BOUND,
            "closes waited for the blocked worker: the last ended after {last:?}"
        );

        // The blocked close ends too, once its worker is free again.
        bounded(blocker).await.expect("blocking task");
        let report = bounded(pairs[0].0.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");

        if let Some((ws, raw)) = long {
            // Its peer gone, the long close ends at once rather than at its deadline.
            drop(raw);
            bounded(ws.handle().closed()).await;
        }
        drop(pairs);
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn closes_end_at_their_deadline_when_a_worker_blocks_after_the_first_close() {
    closes_end_on_time_while_a_worker_is_blocked(false);
}

#[test]
fn closes_end_at_their_deadline_when_a_worker_blocks_after_the_earliest_close() {
    closes_end_on_time_while_a_worker_is_blocked(true);
}
