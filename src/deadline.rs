//! Close deadlines: every close on a runtime shares one Tokio timer.
//!
//! Every close is bounded by a deadline (SPEC §3.4). A Tokio timer per close would be the
//! simplest way, but Tokio wakes its I/O driver (an `eventfd` write, then an extra turn of the
//! driver) whenever a newly registered timer is the earliest on the runtime. On a runtime with
//! no other timer that is every close, and it was half of what wsclose added to the CPU cost of
//! a connection (≈ 0.8 µs per closing end; see `docs/performance.md`).
//!
//! So the deadlines of a runtime are kept in one ordered map, and one small task per runtime
//! (the *sweeper*) holds the only Tokio timer: it fires at the earliest pending deadline and wakes
//! the closes whose deadline has passed. A close registers its deadline (a map insert under a
//! lock) and removes it when it ends. The sweeper's timer is moved earlier when an earlier
//! deadline arrives, and is otherwise left where it is, even when the deadline it was set for
//! has gone: the next close, whose deadline is later, then registers nothing with Tokio. When
//! such a stale timer fires, the sweeper moves it to the earliest pending deadline, or goes idle.
//!
//! If the sweeper's runtime shuts down, its deadlines fall back to a Tokio timer each.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

/// The deadlines of one runtime, and its sweeper.
pub(crate) struct Deadlines {
    state: Mutex<State>,
    /// The sweeper is gone (its runtime shut down, or has no timer): use a timer of your own.
    gone: AtomicBool,
    next_key: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Pending deadlines, earliest first, with the waker of the close waiting for each.
    pending: BTreeMap<(Instant, u64), Waker>,
    /// When the sweeper's timer fires; `None` while it is idle (no timer).
    armed: Option<Instant>,
    /// The sweeper task, woken when `armed` moves earlier.
    sweeper: Option<Waker>,
}

impl Deadlines {
    fn state(&self) -> MutexGuard<'_, State> {
        // The critical sections cannot panic midway through an update; carry on if one did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadlines of the runtime this thread is in (its sweeper is started on first use).
    pub(crate) fn of(rt: &Handle) -> Arc<Deadlines> {
        thread_local! {
            static NEAREST: std::cell::RefCell<Option<(tokio::runtime::Id, Arc<Deadlines>)>> =
                const { std::cell::RefCell::new(None) };
        }
        static ALL: Mutex<Option<HashMap<tokio::runtime::Id, Weak<Deadlines>>>> = Mutex::new(None);

        let id = rt.id();
        let live = |d: &Arc<Deadlines>| !d.gone.load(Ordering::Acquire);
        let cached = NEAREST.try_with(|nearest| match &*nearest.borrow() {
            Some((near, d)) if *near == id && live(d) => Some(d.clone()),
            _ => None,
        });
        if let Ok(Some(d)) = cached {
            return d;
        }
        let d = {
            let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
            let all = all.get_or_insert_with(HashMap::new);
            match all.get(&id).and_then(Weak::upgrade).filter(live) {
                Some(d) => d,
                None => {
                    // Runtime ids are reused once a runtime is gone: forget the dead ones.
                    all.retain(|_, d| d.upgrade().is_some_and(|d| live(&d)));
                    let d = Arc::new(Deadlines {
                        state: Mutex::new(State::default()),
                        gone: AtomicBool::new(false),
                        next_key: AtomicU64::new(0),
                    });
                    rt.spawn(sweep(d.clone()));
                    all.insert(id, Arc::downgrade(&d));
                    d
                }
            }
        };
        // Outside the thread's life (its locals being destroyed) there is no cache; fine.
        let _ = NEAREST.try_with(|nearest| *nearest.borrow_mut() = Some((id, d.clone())));
        d
    }
}

/// Marks the sweeper gone when its task is dropped (runtime shutdown, or a panic because the
/// runtime has no timer), and wakes every pending close so that it takes a timer of its own.
struct Gone(Arc<Deadlines>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Release);
        let pending = {
            let mut st = self.0.state();
            st.sweeper = None;
            std::mem::take(&mut st.pending)
        };
        for waker in pending.into_values() {
            waker.wake();
        }
    }
}

/// The sweeper: the one Tokio timer of a runtime's close deadlines.
async fn sweep(deadlines: Arc<Deadlines>) {
    let gone = Gone(deadlines);
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    // The instant the timer last fired at: every deadline up to it has passed, whatever the
    // clock's granularity says.
    let mut fired: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        loop {
            let mut due = Vec::new();
            let armed = {
                let mut st = gone.0.state();
                let now = fired.map_or_else(Instant::now, |f| Instant::now().max(f));
                while let Some(entry) = st.pending.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove());
                }
                // Keep a timer still to come (only an earlier deadline moves it); replace one
                // that has fired.
                if st.armed.is_none_or(|at| at <= now) {
                    st.armed = st.pending.keys().next().map(|(at, _)| *at);
                }
                st.sweeper = Some(cx.waker().clone());
                st.armed
            };
            due.into_iter().for_each(Waker::wake);
            let Some(at) = armed else {
                return Poll::Pending; // idle: the next deadline wakes us
            };
            let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if t.deadline() != at {
                t.as_mut().reset(at);
            }
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            fired = Some(at);
        }
    })
    .await
}

/// Resolves at `at`: a close's deadline. Registered with its runtime's sweeper when first
/// polled, removed when dropped. Once resolved, it stays resolved (a close awaits it twice).
pub(crate) struct Deadline {
    at: Instant,
    passed: bool,
    /// Where this deadline is registered: its runtime's deadlines, and its key there.
    on: Option<(Arc<Deadlines>, u64)>,
    /// A timer of its own, outside a runtime or once the sweeper is gone.
    own: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub(crate) fn new(at: Instant) -> Self {
        Deadline {
            at,
            passed: false,
            on: None,
            own: None,
        }
    }

    fn unregister(&mut self) {
        if let Some((d, key)) = self.on.take() {
            d.state().pending.remove(&(self.at, key));
        }
    }

    /// Registers this deadline with its runtime's sweeper, or refreshes its waker there.
    /// `None`: there is no sweeper (outside a runtime, or its runtime shut down).
    fn poll_sweeper(&mut self, cx: &mut Context<'_>) -> Option<Poll<()>> {
        let first = self.on.is_none();
        if first {
            let d = Deadlines::of(&Handle::try_current().ok()?);
            let key = d.next_key.fetch_add(1, Ordering::Relaxed);
            self.on = Some((d, key));
        }
        let (d, key) = self.on.as_ref()?;
        let entry = (self.at, *key);
        let mut st = d.state();
        // Read under the lock: `Gone` sets the flag before it empties `pending`, so below, a
        // missing entry can only mean that the sweeper saw the deadline pass.
        if d.gone.load(Ordering::Acquire) {
            return None;
        }
        match st.pending.get_mut(&entry) {
            Some(waker) => waker.clone_from(cx.waker()),
            None if !first => {
                drop(st);
                self.on = None;
                return Some(Poll::Ready(()));
            }
            None => {
                st.pending.insert(entry, cx.waker().clone());
            }
        }
        if st.armed.is_none_or(|armed| armed > self.at) {
            st.armed = Some(self.at);
            if let Some(sweeper) = st.sweeper.take() {
                sweeper.wake();
            }
        }
        Some(Poll::Pending)
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // No clock read here: the sweeper decides when a registered deadline has passed (one
        // already past when registered fires at the sweeper's next turn).
        let this = &mut *self;
        if !this.passed {
            this.passed = this.poll_unlatched(cx).is_ready();
        }
        if this.passed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Deadline {
    /// One poll, through the sweeper or, without one, a timer of this deadline's own.
    fn poll_unlatched(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.own.is_none() {
            if let Some(poll) = self.poll_sweeper(cx) {
                return poll;
            }
            self.unregister();
        }
        let at = self.at;
        self.own
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)))
            .as_mut()
            .poll(cx)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
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
        Deadlines::of(&Handle::current()).state().armed
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
        let pending = Deadlines::of(&Handle::current()).state().pending.len();
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
        assert!(Deadlines::of(&Handle::current()).state().pending.is_empty());
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_sweeper_of_its_own() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        let first = runtime();
        let old = first.block_on(async {
            Deadline::new(Instant::now() + Duration::from_millis(5)).await;
            Deadlines::of(&Handle::current())
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
            let new = Deadlines::of(&Handle::current());
            assert!(!Arc::ptr_eq(&old, &new));
            assert!(!new.gone.load(Ordering::Acquire));
        });
    }
}
