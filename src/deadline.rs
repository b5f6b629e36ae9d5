//! Close deadlines: every close on a runtime shares one Tokio timer.
//!
//! Every close is bounded by a deadline (docs/design.md). A Tokio timer per close would be the
//! simplest way, but Tokio wakes its I/O driver (an `eventfd` write, then an extra turn of the
//! driver) whenever a newly registered timer is the earliest on the runtime. On a runtime with
//! no other timer that is every close, and it was half of what wsclose added to the CPU cost of
//! a connection (≈ 0.8 µs per closing end; see `docs/performance.md`).
//!
//! So the deadlines of a runtime are kept in one ordered map, and one small task per runtime
//! (the *sweeper*) polls the only Tokio timer: it fires at the earliest pending deadline and the
//! sweeper wakes the closes whose deadline has passed. A close registers its deadline (a map
//! insert under a lock) and removes it when it ends. The timer is moved earlier when an earlier
//! deadline arrives, and is otherwise left where it is, even when the deadline it was set for
//! has gone: the next close, whose deadline is later, then registers nothing with Tokio. When
//! such a stale timer fires, the sweeper moves it to the earliest pending deadline.
//!
//! # Nothing waits for the registering worker
//!
//! A close registers its deadline on whichever thread polls it first, typically a worker of a
//! multi-thread runtime, and that thread may go on to block (a synchronous call in the same
//! task). Anything it *schedules* meanwhile goes to its worker's LIFO slot, which the other
//! workers cannot take from, and waits for the block to end. So a registering thread never
//! wakes or spawns the sweeper:
//!
//! - The timer lives in the shared state, next to the map, and a registering thread with an
//!   earlier deadline moves it itself (`Sleep::reset`, under the lock). The sweeper's last poll
//!   left its waker with the timer, which keeps it across a reset; Tokio's timer driver then
//!   fires it and wakes the sweeper from the thread that runs the driver, not from the one that
//!   registered. (A deadline already past when registered may fire during the reset itself,
//!   waking the sweeper from the registering thread: it still ends, only without that
//!   guarantee.) This relies on Tokio's timer keeping the waker across a reset, as its default
//!   timer does; the alternative timer of `tokio_unstable` (`enable_alt_timer`) does not.
//! - For a reset to be enough, the timer is always registered with Tokio and the sweeper's last
//!   poll of it is always pending: with nothing to fire for, the sweeper parks it an hour ahead
//!   (and parks it again when it fires: one wake-up an hour). Tokio's test clock, once paused,
//!   would jump to that timer whenever the runtime waits for anything else, and on to the next:
//!   there the sweeper idles without a timer and a registering thread wakes it, which holds up
//!   no one, a paused clock being for one-thread runtimes only.
//! - When the runtime's first close is polled by a task of a multi-thread runtime, the sweeper
//!   is spawned from a blocking-pool thread (`spawn_blocking`), not from that task's worker: a
//!   spawn from outside the runtime's workers goes to the queue that every worker takes from.
//!   Until its first poll there is no timer to move; that poll sets it for the earliest
//!   deadline registered so far. (Were the blocking pool saturated, deadlines would wait for a
//!   free thread to start the sweeper.) Anywhere else (outside a task, or on a one-thread
//!   runtime, where a block holds up everything anyway) it is spawned on the spot, and so
//!   counts among the runtime's tasks as soon as the first close has begun.
//!
//! If the sweeper's runtime shuts down (or the sweeper was never started), its deadlines fall
//! back to a Tokio timer each.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

/// How far ahead the sweeper parks its timer when no deadline is pending.
const PARK: Duration = Duration::from_secs(3600);

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
    /// The deadline the timer fires for (or will, once the sweeper first polls it); `None`
    /// when it fires for none (parked far ahead).
    armed: Option<Instant>,
    /// The timer: created and polled by the sweeper, moved earlier by registering threads.
    /// `None` until the sweeper's first poll, and once it is gone.
    timer: Option<Pin<Box<Sleep>>>,
    /// The sweeper, while it is idle with no timer pending: only under Tokio's test clock (see
    /// [`real_clock`]), on its one-thread runtime, where registering threads wake it.
    idle: Option<Waker>,
}

impl Deadlines {
    fn state(&self) -> MutexGuard<'_, State> {
        // The critical sections cannot panic midway through an update; carry on if one did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadlines of the runtime this thread is in (its sweeper is started on first use).
    ///
    /// # Errors
    ///
    /// [`NoTimers`] when the runtime was built without a timer (`enable_time`).
    pub(crate) fn of(rt: &Handle) -> Result<Arc<Deadlines>, NoTimers> {
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
            return Ok(d);
        }
        let (d, new) = {
            let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
            let all = all.get_or_insert_with(HashMap::new);
            match all.get(&id).and_then(Weak::upgrade).filter(live) {
                Some(d) => (d, false),
                None => {
                    // Only runtimes with a timer get deadlines (and so a cache entry): a runtime
                    // without one is asked again each time, which is only on its closes.
                    if !probe_timer(rt) {
                        return Err(NoTimers);
                    }
                    // Runtime ids are reused once a runtime is gone: forget the dead ones.
                    all.retain(|_, d| d.upgrade().is_some_and(|d| live(&d)));
                    let d = Arc::new(Deadlines {
                        state: Mutex::new(State::default()),
                        gone: AtomicBool::new(false),
                        next_key: AtomicU64::new(0),
                    });
                    all.insert(id, Arc::downgrade(&d));
                    (d, true)
                }
            }
        };
        if new {
            // `Gone` goes with the sweeper from here on, so that one that never runs (the
            // runtime shutting down first) still sends its deadlines to timers of their own.
            let gone = Gone(d.clone());
            let worker = tokio::task::try_id().is_some()
                && rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread;
            if worker {
                // From this thread the sweeper would wait in this worker's LIFO slot for as
                // long as the worker stays busy (see the module docs): spawn it from one of
                // the blocking pool's instead.
                let on = rt.clone();
                drop(rt.spawn_blocking(move || drop(on.spawn(sweep(gone)))));
            } else {
                drop(rt.spawn(sweep(gone)));
            }
        }
        // Outside the thread's life (its locals being destroyed) there is no cache; fine.
        let _ = NEAREST.try_with(|nearest| *nearest.borrow_mut() = Some((id, d.clone())));
        Ok(d)
    }
}

/// The runtime has no timer: it was built without `enable_time` (or `enable_all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoTimers;

impl NoTimers {
    pub(crate) const WHY: &'static str = "the Tokio runtime has no timer (build it with \
        enable_time or enable_all): close deadlines, keepalive, the maximum lifetime and a \
        shutdown's grace period cannot run on it";
}

/// Whether `rt` has a timer: the runtime's deadlines ([`Deadlines::of`], cached per thread and
/// runtime, and per runtime while it lives), so only a runtime without a timer is probed again
/// each time ([`probe_timer`]).
pub(crate) fn has_timer(rt: &Handle) -> bool {
    Deadlines::of(rt).is_ok()
}

/// Whether `rt` has a timer, found out by creating one. Tokio offers no way to ask: creating a
/// timer on a runtime without one panics. So the probe creates one under `catch_unwind`, with
/// the panic kept from every panic hook: for the probe's duration the hook in place (whichever
/// was installed last, before or after wsclose was first used) is wrapped in one that skips the
/// probing thread's panic and passes every other thread's on, and is put back right after. On a
/// thread already panicking (a connection dropped while unwinding), no hook can be touched and no
/// second panic risked: the answer is "no timer". (Built with `panic = "abort"`, the probe on a
/// runtime without a timer aborts, as the timer itself would have.) Logs a WARN the first time a
/// runtime without a timer is found.
fn probe_timer(rt: &Handle) -> bool {
    use std::cell::Cell;
    thread_local! {
        static PROBING: Cell<bool> = const { Cell::new(false) };
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if std::thread::panicking() {
        return false;
    }
    let _entered = rt.enter();
    let hook = Arc::new(std::panic::take_hook());
    let forward = hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        if !PROBING.try_with(Cell::get).unwrap_or(false) {
            forward(info);
        }
    }));
    let _ = PROBING.try_with(|p| p.set(true));
    let probe = std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO)));
    let _ = PROBING.try_with(|p| p.set(false));
    // Our wrapper out (dropping its reference), the application's hook back in.
    drop(std::panic::take_hook());
    match Arc::try_unwrap(hook) {
        Ok(hook) => std::panic::set_hook(hook),
        // Another thread is inside the wrapper right now (its panic being reported): keep a
        // forwarding hook, which behaves as the original.
        Err(hook) => std::panic::set_hook(Box::new(move |info| hook(info))),
    }
    if probe.is_err() && !WARNED.swap(true, Ordering::Relaxed) {
        crate::telemetry::on_runtime_without_timers(NoTimers::WHY);
    }
    probe.is_ok()
}

/// Marks the sweeper gone when it is dropped (runtime shutdown, before or after it started,
/// or a panic because the runtime has no timer), and wakes every pending close so that it
/// takes a timer of its own.
struct Gone(Arc<Deadlines>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Release);
        let (pending, timer) = {
            let mut st = self.0.state();
            st.armed = None;
            st.idle = None;
            (std::mem::take(&mut st.pending), st.timer.take())
        };
        // The timer holds on to its runtime: let it go with the sweeper.
        drop(timer);
        for waker in pending.into_values() {
            waker.wake();
        }
    }
}

/// The sweeper: the one Tokio timer of a runtime's close deadlines.
async fn sweep(gone: Gone) {
    // The instant the timer last fired at: every deadline up to it has passed, whatever the
    // clock's granularity says.
    let mut fired: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        loop {
            let mut due = Vec::new();
            let turn = {
                let mut st = gone.0.state();
                let st = &mut *st;
                st.idle = None;
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
                let at = match (st.armed, &st.timer) {
                    (Some(at), _) => Some(at),
                    // Still parked: leave it.
                    (None, Some(t)) if t.deadline() > now => Some(t.deadline()),
                    (None, _) if real_clock() => Some(now + PARK),
                    // Tokio's test clock would jump to a parked timer whenever the runtime waits
                    // for anything else, and then again to the next: idle instead.
                    (None, _) => None,
                };
                match at {
                    Some(at) => {
                        // Out of the state while polled: should a poll panic, the timer goes
                        // with it.
                        let mut timer = st
                            .timer
                            .take()
                            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(at)));
                        if timer.deadline() != at {
                            timer.as_mut().reset(at);
                        }
                        // Polled under the lock, so that no reset comes between the poll and
                        // the state it was made for; a poll runs no code of ours. Pending, it
                        // leaves this task's waker with the timer, for the driver to wake when
                        // a reset moves it earlier.
                        let polled = timer.as_mut().poll(cx);
                        st.timer = Some(timer);
                        polled.map(|()| at)
                    }
                    None => {
                        st.idle = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            };
            due.into_iter().for_each(Waker::wake);
            match turn {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(at) => fired = Some(at),
            }
        }
    })
    .await
}

/// Whether the runtime's clock is the real one. Tokio's test clock (`tokio::time::pause`, only
/// on a one-thread runtime) differs from it once paused or moved, and otherwise reads it: a
/// reading between two readings of the real clock is the real clock's.
fn real_clock() -> bool {
    let before = std::time::Instant::now();
    let now = Instant::now().into_std();
    before <= now && now <= std::time::Instant::now()
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
    /// Its runtime has no timer: it never passes.
    untimed: bool,
}

impl Deadline {
    pub(crate) fn new(at: Instant) -> Self {
        Deadline {
            at,
            passed: false,
            on: None,
            own: None,
            untimed: false,
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
            let Ok(d) = Deadlines::of(&Handle::try_current().ok()?) else {
                // No timer to end it: this deadline never passes (see `NoTimers`).
                self.untimed = true;
                return Some(Poll::Pending);
            };
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
            // Moved here rather than by waking the sweeper: see the module docs. Before the
            // sweeper's first poll there is no timer yet, and that poll sets it for `armed`.
            st.armed = Some(self.at);
            if let Some(timer) = &mut st.timer {
                timer.as_mut().reset(self.at);
            }
            // Idle only under Tokio's test clock, on a one-thread runtime: no other worker to
            // hold up.
            if let Some(sweeper) = st.idle.take() {
                sweeper.wake();
            }
        }
        Some(Poll::Pending)
    }

    /// One poll, through the sweeper or, without one, a timer of this deadline's own.
    fn poll_unlatched(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.untimed {
            return Poll::Pending;
        }
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

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests;
