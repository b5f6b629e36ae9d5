use super::*;
use std::time::Duration;

/// Polls once; true when ready.
async fn ready(d: Pin<&mut Deadline>) -> bool {
    let mut d = d;
    std::future::poll_fn(|cx| Poll::Ready(d.as_mut().poll(cx).is_ready())).await
}

/// Awaits `f`, failing instead of hanging if it takes over 5 s.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("fired within 5 s")
}

fn armed() -> Option<Instant> {
    Deadlines::of(&Handle::current()).unwrap().state().armed
}

/// Where the sweeper's timer is set; `None` before its first poll.
fn timer_at() -> Option<Instant> {
    let d = Deadlines::of(&Handle::current()).unwrap();
    let st = d.state();
    st.timer.as_ref().map(|t| t.deadline())
}

/// Waits (at most 5 s) for the sweeper's first poll, which creates its timer.
async fn sweeper_started() {
    let until = Instant::now() + Duration::from_secs(5);
    while timer_at().is_none() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(timer_at().is_some(), "the sweeper started");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_earlier_deadline_moves_the_timer_a_later_one_does_not() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut late = std::pin::pin!(Deadline::new(at(300)));
    let mut early = std::pin::pin!(Deadline::new(at(100)));
    assert!(!ready(late.as_mut()).await);
    assert_eq!(armed(), Some(at(300)));
    assert!(!ready(early.as_mut()).await);
    assert_eq!(armed(), Some(at(100)));
    within(early.as_mut()).await;
    assert!(Instant::now() >= at(100));
    assert!(
        ready(early.as_mut()).await,
        "a passed deadline stays passed"
    );
    let pending = Deadlines::of(&Handle::current())
        .unwrap()
        .state()
        .pending
        .len();
    assert_eq!(pending, 1, "and is not registered again");
    assert!(!ready(late.as_mut()).await);
    within(late.as_mut()).await;
    assert!(Instant::now() >= at(300));
}

#[tokio::test]
async fn a_timer_left_behind_by_a_dropped_deadline_still_serves_the_next() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    {
        let mut gone = std::pin::pin!(Deadline::new(at(100)));
        assert!(!ready(gone.as_mut()).await);
    }
    assert_eq!(
        armed(),
        Some(at(100)),
        "a dropped deadline leaves the timer"
    );
    let mut next = std::pin::pin!(Deadline::new(at(200)));
    assert!(!ready(next.as_mut()).await);
    assert_eq!(armed(), Some(at(100)), "a later deadline does not move it");
    within(next.as_mut()).await;
    assert!(Instant::now() >= at(200));
    // Nothing pending: once the timer has fired, the sweeper goes idle.
    let idle = Instant::now() + Duration::from_secs(5);
    while armed().is_some() && Instant::now() < idle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(armed(), None);
    assert!(
        Deadlines::of(&Handle::current())
            .unwrap()
            .state()
            .pending
            .is_empty()
    );
    let parked = timer_at().expect("a timer");
    assert!(
        parked >= Instant::now() + PARK - Duration::from_secs(60),
        "and parks its timer far ahead"
    );
}

#[tokio::test]
async fn the_registering_thread_moves_the_timer_itself() {
    let mut late = std::pin::pin!(Deadline::new(Instant::now() + Duration::from_secs(5)));
    assert!(!ready(late.as_mut()).await);
    sweeper_started().await;
    let at = Instant::now() + Duration::from_millis(100);
    let mut early = std::pin::pin!(Deadline::new(at));
    // No await yields in between: on this one-thread runtime the sweeper cannot have run.
    assert!(!ready(early.as_mut()).await);
    assert_eq!(timer_at(), Some(at));
    within(early.as_mut()).await;
    assert!(Instant::now() >= at);
}

#[tokio::test]
async fn a_deadline_already_past_when_registered_fires() {
    // Before the sweeper's first poll...
    within(Deadline::new(Instant::now())).await;
    sweeper_started().await;
    // ... and once it is parked, the timer then reset into the past.
    let idle = Instant::now() + Duration::from_secs(5);
    while armed().is_some() && Instant::now() < idle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(armed(), None);
    let past = Instant::now() - Duration::from_millis(50);
    within(Deadline::new(past)).await;
    assert_eq!(armed(), None, "and leaves the timer parked");
}

#[test]
fn a_runtime_shut_down_sends_its_deadlines_to_timers_of_their_own() {
    // Its sweeper spawned on the spot or (first close in a task of a multi-thread runtime)
    // through the blocking pool; not yet started (never polled, or never spawned), and
    // started.
    for (multi_thread, started) in [(false, false), (false, true), (true, false), (true, true)] {
        let at = Instant::now() + Duration::from_millis(50);
        let mut d = Box::pin(Deadline::new(at));
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap()
        } else {
            runtime()
        };
        let (back, deadlines) = rt.block_on(async {
            let first = tokio::spawn(async move {
                assert!(!ready(d.as_mut()).await);
                if started {
                    sweeper_started().await;
                }
                (d, Deadlines::of(&Handle::current()).unwrap())
            });
            first.await.unwrap()
        });
        d = back;
        drop(rt);
        let case = format!("multi-thread: {multi_thread}, started: {started}");
        assert!(deadlines.gone.load(Ordering::Acquire), "{case}");
        {
            let st = deadlines.state();
            assert!(st.pending.is_empty() && st.timer.is_none(), "{case}");
        }
        runtime().block_on(async {
            within(d.as_mut()).await;
            assert!(Instant::now() >= at);
        });
    }
}

/// Two live runtimes used in turn on one thread: each close's deadline goes to its own
/// runtime's sweeper (the thread's cached entry is for the runtime used last), so a
/// deadline fires while only its own runtime runs.
#[test]
fn runtimes_used_in_turn_on_one_thread_keep_their_own_sweepers() {
    let (a, b) = (runtime(), runtime());
    let of = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            within(Deadline::new(Instant::now() + Duration::from_millis(5))).await;
            Deadlines::of(&Handle::current()).unwrap()
        })
    };
    let (first_a, first_b) = (of(&a), of(&b));
    assert!(!Arc::ptr_eq(&first_a, &first_b));
    for rt in [&a, &b, &a] {
        let d = of(rt);
        assert!(Arc::ptr_eq(
            &d,
            if std::ptr::eq(rt, &a) {
                &first_a
            } else {
                &first_b
            }
        ));
    }
    // A deadline of `b` registered while `a` was the thread's last: `a` is not running
    // meanwhile, so only `b`'s sweeper can fire it.
    b.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            Deadline::new(Instant::now() + Duration::from_millis(20)),
        )
        .await
        .expect("the deadline fires on its own runtime");
    });
}

#[test]
fn a_new_runtime_on_the_same_thread_gets_a_sweeper_of_its_own() {
    let first = runtime();
    let old = first.block_on(async {
        Deadline::new(Instant::now() + Duration::from_millis(5)).await;
        Deadlines::of(&Handle::current()).unwrap()
    });
    drop(first);
    assert!(
        old.gone.load(Ordering::Acquire),
        "its sweeper went with the runtime"
    );
    runtime().block_on(async {
        let started = Instant::now();
        let d = Deadline::new(started + Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(5), d)
            .await
            .expect("the deadline fires");
        assert!(started.elapsed() >= Duration::from_millis(20));
        let new = Deadlines::of(&Handle::current()).unwrap();
        assert!(!Arc::ptr_eq(&old, &new));
        assert!(!new.gone.load(Ordering::Acquire));
    });
}
