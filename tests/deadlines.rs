//! Close deadlines share one timer per runtime. On a multi-thread runtime, closes begun from
//! many tasks at once, some with a long deadline and most with a short one, each end at their
//! own deadline.

mod support;

use tokio::task::JoinSet;
use tokio::time::Instant;
use wsclose::{Config, Outcome, Role};

use support::pairs::{bounded, wrapped_and_raw};
use support::timing::{DEADLINE, LATE, assert_at_deadline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_to_silent_peers_on_every_worker_end_at_their_own_deadline() {
    const N: usize = 200;
    let short = DEADLINE;
    // A short close that waited for the long deadline's timer would end after `long`: far past
    // what `assert_at_deadline` allows the short ones.
    let long = 2 * (short + LATE);
    let mut pairs = Vec::with_capacity(N);
    for i in 0..N {
        let role = if i % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        // Every tenth close has the long deadline and begins first.
        let timeout = if i % 10 == 0 { long } else { short };
        let config = Config::new().with_close_timeout(timeout).unwrap();
        let (ws, silent) = wrapped_and_raw(role, &config).await;
        pairs.push((timeout, ws, silent));
    }
    pairs.sort_by_key(|(timeout, _, _)| std::cmp::Reverse(*timeout));
    let started = Instant::now();
    let mut closes = JoinSet::new();
    for (timeout, mut ws, silent) in pairs {
        closes.spawn(async move {
            let report = ws.close(1000, "").await.expect("valid code");
            drop(silent);
            (timeout, report, started.elapsed())
        });
    }
    let mut ended = 0;
    while let Some(joined) = bounded(closes.join_next()).await {
        let (timeout, report, took) = joined.expect("close task");
        assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");
        assert_at_deadline(took, timeout, format!("{report:?}"));
        ended += 1;
    }
    assert_eq!(ended, N);
}
