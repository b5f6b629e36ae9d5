//! The connection registry and graceful shutdown.
//!
//! Connections wrapped with a [`Config`](crate::Config) that carries a [`Registry`] register
//! themselves and leave it when they end. [`Registry::shutdown`] closes every live connection
//! at once, waits up to a grace period, terminates the stragglers and reports how each ended.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::telemetry;
use crate::{Cause, Error, Handle, Outcome, Role, check_close_code};

/// How long a shutdown waits, after its grace period, for the handshakes it cut to end.
const CUT_WAIT: Duration = Duration::from_millis(250);

/// The reason sent with shutdown closes.
const SHUTDOWN_REASON: &str = "server shutting down";

/// A set of live connections that can be shut down together.
///
/// Cloning is cheap; clones share the same set. Put it in a [`Config`](crate::Config) with
/// [`Config::with_registry`](crate::Config::with_registry) and every connection wrapped with that
/// config registers itself (one hash-map insert) and removes itself when it ends.
///
/// # Examples
///
/// ```no_run
/// # async fn f(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let registry = wsclose::Registry::new();
/// let config = wsclose::Config::new().with_registry(registry.clone());
/// tokio::spawn(async move {
///     while let Ok((tcp, _)) = listener.accept().await {
///         let config = config.clone();
///         tokio::spawn(async move {
///             let ws = tokio_tungstenite::accept_async(tcp).await?;
///             let _ws = config.server(ws);
///             // ... serve ...
///             Ok::<_, tokio_tungstenite::tungstenite::Error>(())
///         });
///     }
/// });
/// wsclose::shutdown_signal().await; // SIGTERM or Ctrl-C
/// let report = registry.shutdown(1001, Duration::from_secs(10)).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    conns: Mutex<HashMap<u64, Handle>>,
    draining: AtomicBool,
    /// The code connections wrapped during a drain are closed with.
    drain_code: AtomicU16,
    /// Signalled whenever the set becomes empty.
    emptied: Notify,
    /// Connections wrapped while a shutdown runs (closed at once), for its report; `None`
    /// when no shutdown runs, so that a registry drained long ago keeps nothing.
    late: Mutex<Option<Vec<Handle>>>,
    last_report: Mutex<Option<ShutdownReport>>,
    /// Connections still connecting (a [`HandshakeGuard`] alive), by id.
    connecting: Mutex<HashMap<u64, Handle>>,
    /// Upgrades refused with 503, and handshakes cut, since the last shutdown began.
    refused: AtomicUsize,
    cut_count: AtomicUsize,
    /// Set while a shutdown cuts the handshakes still in flight at the end of its grace
    /// period, with their wake-up.
    cutting: AtomicBool,
    cut: Notify,
    /// Handshakes cut by a shutdown that returned before they ended (their future kept but not
    /// polled), by id: still cut whenever they are next polled.
    left_cut: Mutex<std::collections::HashSet<u64>>,
    /// [`Registry::with_pacing`]'s window, in nanoseconds (0: every close at once).
    pace_nanos: AtomicU64,
}

/// An opening handshake in flight under a registry: listed (its handle in the `Connecting`
/// state) while any clone lives, refused during a drain, cut when a drain's grace period ends.
#[derive(Clone)]
pub(crate) struct HandshakeGuard(Arc<Ticket>);

struct Ticket(Registry, u64);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.left_cut().remove(&self.1);
        let mut connecting = self.0.connecting_set();
        connecting.remove(&self.1);
        if connecting.is_empty() {
            self.0.inner.emptied.notify_waiters();
        }
    }
}

impl HandshakeGuard {
    /// Counts a handshake ended by [`cut`](Self::cut).
    pub(crate) fn count_cut(&self) {
        self.0.0.inner.cut_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolves when a shutdown's grace period ends with this handshake still in flight.
    pub(crate) fn cut(&self) -> impl Future<Output = ()> + Send + 'static {
        let (registry, id) = (self.0.0.clone(), self.0.1);
        async move {
            loop {
                let mut cut = std::pin::pin!(registry.inner.cut.notified());
                cut.as_mut().enable();
                if registry.inner.cutting.load(Ordering::Acquire)
                    || registry.left_cut().contains(&id)
                {
                    return;
                }
                cut.await;
            }
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("connections", &self.len())
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spreads the closes of [`shutdown`](Self::shutdown) (and [`graceful`](Self::graceful))
    /// over `window` instead of beginning them all at once, so that the clients of a drained
    /// instance reconnect to the others at a bounded rate (about `connections / window` per
    /// second) rather than in the same few milliseconds. Each connection gets a slot of the
    /// window in random order, with jitter inside its slot.
    ///
    /// The window is capped at half the shutdown's grace period, so that the last closes have
    /// the other half to complete; `Duration::ZERO` (the default) closes every connection at
    /// once. New connections and upgrades during the drain are closed or refused at once, as
    /// without pacing. The setting is shared by every clone of the registry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Cloud Run gives 10 s after SIGTERM: pace over 4 s, then 6 s for the last closes.
    /// let registry = wsclose::Registry::new().with_pacing(Duration::from_secs(4));
    /// assert_eq!(registry.pacing(), Duration::from_secs(4));
    /// ```
    pub fn with_pacing(self, window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.inner.pace_nanos.store(nanos, Ordering::Relaxed);
        self
    }

    /// The window set by [`with_pacing`](Self::with_pacing) (zero: not paced).
    pub fn pacing(&self) -> Duration {
        Duration::from_nanos(self.inner.pace_nanos.load(Ordering::Relaxed))
    }

    /// Live connections (open or closing).
    pub fn len(&self) -> usize {
        self.conns().len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opening handshakes in flight with this registry (a [`Handshake`](crate::Handshake)
    /// being polled, in either role, or an axum upgrade of `Config::on_upgrade`): connections
    /// not open yet, whose handles read `Connecting` (or `Closing`, once a close was
    /// requested).
    pub fn connecting(&self) -> usize {
        self.connecting_set().len()
    }

    /// Lists a handshake in flight (`handle`, still connecting) until the guard (and its
    /// clones) are dropped.
    pub(crate) fn handshake_started(&self, handle: Handle) -> HandshakeGuard {
        let id = handle.id();
        self.connecting_set().insert(id, handle);
        HandshakeGuard(Arc::new(Ticket(self.clone(), id)))
    }

    /// Whether an upgrade must be refused (a drain runs); counts the refusal.
    pub(crate) fn refuse_if_draining(&self) -> bool {
        if !self.is_draining() {
            return false;
        }
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn connecting_set(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.inner
            .connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a shutdown has started. Connections wrapped from then on are closed at once
    /// with the shutdown's code (`cause="shutdown"`).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Handles to every live connection: open or closing, and those still connecting
    /// ([`State::Connecting`](crate::State::Connecting)), each once.
    pub fn handles(&self) -> Vec<Handle> {
        // Connecting first: an accepted handshake is registered as open before it leaves the
        // connecting set, so read in this order it is in one list or the other (or both for a
        // moment: listed once).
        let connecting: Vec<Handle> = self.connecting_set().values().cloned().collect();
        let mut handles = self.open_handles();
        let listed: std::collections::HashSet<u64> = handles.iter().map(Handle::id).collect();
        handles.extend(connecting.into_iter().filter(|h| !listed.contains(&h.id())));
        handles
    }

    /// Handles to the connections past their handshake (open or closing).
    fn open_handles(&self) -> Vec<Handle> {
        self.conns().values().cloned().collect()
    }

    /// The report of the last completed [`shutdown`](Self::shutdown) (for example the one run by
    /// [`graceful`](Self::graceful)).
    pub fn last_report(&self) -> Option<ShutdownReport> {
        self.inner
            .last_report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn left_cut(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.inner
            .left_cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn late(&self) -> std::sync::MutexGuard<'_, Option<Vec<Handle>>> {
        self.inner.late.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.inner.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection. Returns the drain code when the registry is draining: the caller must
    /// close the connection at once.
    pub(crate) fn insert(&self, handle: Handle) -> Option<u16> {
        let id = handle.id();
        self.conns().insert(id, handle.clone());
        // Checked after inserting, so a shutdown that snapshots the set either sees this
        // connection or has set `draining` before we read it.
        if !self.is_draining() {
            return None;
        }
        if let Some(late) = self.late().as_mut() {
            late.push(handle);
        }
        Some(self.inner.drain_code.load(Ordering::Acquire))
    }

    pub(crate) fn remove(&self, id: u64) {
        let mut conns = self.conns();
        conns.remove(&id);
        if conns.is_empty() {
            self.inner.emptied.notify_waiters();
        }
    }

    /// Closes every live connection with `code` (1001 *going away* or 1012 *service restart*
    /// are the usual choices), concurrently; waits until all have ended or `grace` has passed;
    /// then terminates the stragglers (their transport is dropped, outcome `timeout`). Ends are
    /// counted with `cause="shutdown"` (a connection already closing keeps its own cause).
    /// With [`with_pacing`](Self::with_pacing), the closes are spread over the pacing window
    /// (at most half of `grace`) rather than begun at once.
    ///
    /// From the moment it is called, newly wrapped connections are closed at once with `code`,
    /// and upgrades run by [`Config::accept`](crate::Config::accept) with this registry are
    /// refused with `503 Service Unavailable` when their request arrives (a handshake already
    /// answered completes and its connection is closed with `code` right after); a client's
    /// handshake in flight ([`Config::connect`](crate::Config::connect)) is given up (outcome
    /// `rejected`). It returns when every connection it knew of, every one wrapped meanwhile,
    /// and every handshake in flight has ended; server handshakes still waiting for their
    /// request when the grace period ends are cut (outcome `timeout`). So it returns by the end
    /// of `grace`, plus at most 250 ms for the cut handshakes to end: a `Handshake` future kept
    /// but not polled cannot end, and is left behind (counted in `handshakes_cut`; it ends when
    /// it is next polled or dropped).
    ///
    /// # Errors
    ///
    /// A `code` the protocol forbids ([`Error::is_invalid_close_code`]); nothing is closed.
    /// Outside a Tokio runtime, or on one without a timer, [`Error::is_config`]: the grace
    /// period cannot be timed; nothing is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting and terminating; the closes already begun go on, and
    /// so do those a paced shutdown has yet to begin.
    pub async fn shutdown(&self, code: u16, grace: Duration) -> Result<ShutdownReport, Error> {
        check_close_code(code)?;
        // The grace period needs a timer; a runtime without one would panic below.
        let timer =
            tokio::runtime::Handle::try_current().is_ok_and(|rt| crate::deadline::has_timer(&rt));
        if !timer {
            return Err(Error::config("grace", crate::deadline::NoTimers::WHY));
        }
        let started = Instant::now();
        let deadline = started + grace;
        self.inner.drain_code.store(code, Ordering::Release);
        self.late().get_or_insert_with(Vec::new);
        self.inner.refused.store(0, Ordering::Relaxed);
        self.inner.cut_count.store(0, Ordering::Relaxed);
        self.inner.draining.store(true, Ordering::Release);

        // Every connection is either in this snapshot, or wrapped after `draining` was set and
        // closed at once by `insert` (which also lists it in `late`), so one pass begins every
        // close; after it, the loop only waits.
        let begun = self.open_handles();
        let window = self.pacing().min(grace / 2);
        if window.is_zero() || begun.len() < 2 {
            for h in &begun {
                h.begin_close_quietly(Cause::Shutdown, code, SHUTDOWN_REASON);
            }
        } else {
            // A task of its own, so that a dropped shutdown future still closes them all.
            tokio::spawn(pace(begun.clone(), started, window, code));
        }
        // A server's handshake in flight is refused with 503 when its request arrives (or cut
        // at the end of the grace period); a client's has nothing to answer: it is given up.
        let clients: Vec<Handle> = (self.connecting_set().values())
            .filter(|h| h.role() == Role::Client)
            .cloned()
            .collect();
        for h in &clients {
            h.begin_close_quietly(Cause::Shutdown, code, SHUTDOWN_REASON);
        }
        let mut stragglers = 0;
        let mut left_behind = 0;
        loop {
            let mut emptied = std::pin::pin!(self.inner.emptied.notified());
            emptied.as_mut().enable();
            // Connecting first, for the reason given in `handles`.
            if self.connecting() == 0 && self.is_empty() {
                break;
            }
            if Instant::now() >= deadline && !self.inner.cutting.load(Ordering::Acquire) {
                // Handshakes still in flight: their peers sent no complete request in the whole
                // grace period. Cut them (once); they end as they are next polled.
                self.inner.cutting.store(true, Ordering::Release);
                self.inner.cut.notify_waiters();
            }
            if Instant::now() >= deadline && !self.is_empty() {
                let live = self.open_handles();
                for h in &live {
                    if h.report().is_none() {
                        stragglers += 1;
                        // One wrapped just now may not have begun its close yet: begin it
                        // (a no-op otherwise), so that there is a close to terminate.
                        h.begin_close_quietly(Cause::Shutdown, code, SHUTDOWN_REASON);
                        h.terminate();
                    }
                }
                // Terminated connections end promptly; wait for them, not for the set.
                let mut ends: FuturesUnordered<_> = live.iter().map(|h| h.closed()).collect();
                while ends.next().await.is_some() {}
                continue;
            }
            if Instant::now() >= deadline {
                // Only cut handshakes are left: wait for them to drop, briefly. One whose
                // `Handshake` future is kept but not polled never does: it is left behind,
                // counted cut, and ends (timeout) whenever it is polled or dropped.
                if tokio::time::timeout_at(deadline + CUT_WAIT, emptied)
                    .await
                    .is_err()
                {
                    let ids: Vec<u64> = self.connecting_set().keys().copied().collect();
                    left_behind = ids.len();
                    self.left_cut().extend(ids);
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = emptied => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        self.inner.cutting.store(false, Ordering::Release);

        let mut seen: HashMap<u64, Handle> = begun.into_iter().map(|h| (h.id(), h)).collect();
        // From here on, connections wrapped with this registry are closed at once as before,
        // but no longer listed: nothing is kept once they have ended.
        let late = self.late().take().unwrap_or_default();
        for h in late {
            seen.entry(h.id()).or_insert(h);
        }
        let mut outcomes = BTreeMap::new();
        for h in seen.values() {
            let report = h.closed().await; // already ended: returns at once
            *outcomes.entry(report.outcome).or_insert(0) += 1;
        }
        let report = ShutdownReport {
            paced_over: window,
            connections: seen.len(),
            outcomes,
            stragglers,
            handshakes_refused: self.inner.refused.load(Ordering::Relaxed),
            handshakes_cut: self.inner.cut_count.load(Ordering::Relaxed) + left_behind,
            elapsed: started.elapsed(),
        };
        telemetry::on_shutdown_complete(&report);
        *self
            .inner
            .last_report
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        Ok(report)
    }

    /// A future for `axum::serve(..).with_graceful_shutdown(..)` (or any server's equivalent):
    /// it waits for `signal`, then runs [`shutdown`](Self::shutdown) and resolves only once every
    /// WebSocket has ended, so the server returns only when the sockets are closed. The report
    /// is logged at INFO and kept in [`last_report`](Self::last_report).
    ///
    /// An invalid `code` is logged at WARN and replaced by 1001.
    pub fn graceful<F>(
        &self,
        signal: F,
        code: u16,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future + Send + 'static,
    {
        let registry = self.clone();
        async move {
            signal.await;
            let code = match check_close_code(code) {
                Ok(()) => code,
                Err(e) => {
                    telemetry::on_invalid_shutdown_code(&e);
                    1001
                }
            };
            // The code is valid here, so shutdown cannot fail.
            let _ = registry.shutdown(code, grace).await;
        }
    }
}

/// How a [`Registry::shutdown`] went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections the shutdown closed or waited for.
    pub connections: usize,
    /// How many ended with each outcome.
    pub outcomes: BTreeMap<Outcome, usize>,
    /// Connections still not closed at the end of the grace period, terminated.
    pub stragglers: usize,
    /// Upgrades refused with 503 because they arrived during the drain.
    pub handshakes_refused: usize,
    /// Handshakes still without a complete request at the end of the grace period, cut.
    pub handshakes_cut: usize,
    /// From the call to the last connection ended.
    pub elapsed: Duration,
    /// The window the closes were spread over ([`Registry::with_pacing`], capped at half the
    /// grace period); zero when they all began at once.
    pub paced_over: Duration,
}

impl ShutdownReport {
    /// How many ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.connections == 1 { "" } else { "s" };
        write!(
            f,
            "{} connection{plural} in {:.3} s",
            self.connections,
            self.elapsed.as_secs_f64()
        )?;
        for (outcome, n) in &self.outcomes {
            write!(f, ", {outcome} {n}")?;
        }
        write!(f, ", stragglers terminated {}", self.stragglers)?;
        if !self.paced_over.is_zero() {
            write!(f, ", paced over {:.3} s", self.paced_over.as_secs_f64())?;
        }
        if self.handshakes_refused + self.handshakes_cut > 0 {
            write!(
                f,
                ", handshakes refused {}, cut {}",
                self.handshakes_refused, self.handshakes_cut
            )?;
        }
        Ok(())
    }
}

/// Begins the close of each of `conns` at its own moment of `[started, started + window)`: the
/// window cut into one slot per connection, the slots dealt in random order, and each close at
/// a random point of its slot. So the closes (and the clients' reconnects) run at a steady
/// `len / window` per second, never two slots' worth at once.
async fn pace(mut conns: Vec<Handle>, started: Instant, window: Duration, code: u16) {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    let uniform = |x: u64| (random.hash_one(x) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    // A random order: sorted by a keyed hash of the id.
    conns.sort_by_key(|h| random.hash_one(h.id()));
    let n = conns.len() as f64;
    for (i, h) in conns.iter().enumerate() {
        let at = started + window.mul_f64((i as f64 + uniform(!h.id())) / n);
        tokio::time::sleep_until(at).await;
        h.begin_close_quietly(Cause::Shutdown, code, SHUTDOWN_REASON);
    }
}

/// The next delivery of a signal listened for; never, when it could not be.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves on SIGTERM (Unix) or Ctrl-C: what Kubernetes, Cloud Run and a terminal send.
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives in between is not lost (nor does it kill the process with the default
/// action): call it before announcing that the service is ready. Must be called within a Tokio
/// runtime. If a signal handler cannot be installed, that signal is logged at WARN and ignored.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, which: telemetry::Signal| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                telemetry::on_signal_unavailable(which, &e);
                None
            }
        };
        let mut int = listen(SignalKind::interrupt(), telemetry::Signal::CtrlC);
        let mut term = listen(SignalKind::terminate(), telemetry::Signal::Terminate);
        async move {
            tokio::select! {
                _ = recv(int.as_mut()) => {}
                _ = recv(term.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            telemetry::on_signal_unavailable(telemetry::Signal::CtrlC, &e);
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_report_and_a_registry_say_what_they_hold() {
        let report = ShutdownReport {
            connections: 3,
            outcomes: BTreeMap::from([(Outcome::Clean, 2), (Outcome::Timeout, 1)]),
            stragglers: 1,
            handshakes_refused: 0,
            handshakes_cut: 0,
            elapsed: Duration::from_millis(1500),
            paced_over: Duration::ZERO,
        };
        assert_eq!(
            report.to_string(),
            "3 connections in 1.500 s, clean 2, timeout 1, stragglers terminated 1"
        );
        assert_eq!(report.count(Outcome::Clean), 2);
        assert_eq!(report.count(Outcome::PeerGone), 0);
        let one = ShutdownReport {
            connections: 1,
            outcomes: BTreeMap::from([(Outcome::Clean, 1)]),
            stragglers: 0,
            handshakes_refused: 2,
            handshakes_cut: 1,
            elapsed: Duration::from_millis(20),
            paced_over: Duration::from_secs(2),
        };
        assert_eq!(
            one.to_string(),
            "1 connection in 0.020 s, clean 1, stragglers terminated 0, paced over 2.000 s, handshakes refused 2, cut 1"
        );
        assert_eq!(
            format!("{:?}", Registry::new()),
            "Registry { connections: 0, draining: false }"
        );
    }
}
