//! The close gate: the one place where a connection moves from open to closing to closed.
//!
//! The transport lives in a mutex-protected slot. Whoever takes it out of the slot (an app
//! close, a peer Close seen by the reader, a read error, a dropped owner) is the only closer:
//! it alone writes the Close frame. Everyone else finds the slot empty, which is how "exactly
//! one Close frame" and "every caller gets the same outcome" are enforced. The critical section
//! is one poll of the transport, never an `.await`.
//!
//! This file is self-contained (it names only `super::sync`) so that the loom model in
//! `loom/` can compile it unchanged against loom's primitives.

use super::sync::{AtomicU8, Mutex, MutexGuard, Ordering};

/// Phase value while the transport is still in the slot.
pub(crate) const OPEN: u8 = 0;
/// Phase value once the final report is published.
pub(crate) const CLOSED: u8 = u8::MAX;

pub(crate) struct Gate<T, R> {
    slot: Mutex<Option<T>>,
    /// `OPEN`, a closing value chosen by the caller (1..=254), or `CLOSED`.
    phase: AtomicU8,
    report: Mutex<Option<R>>,
}

impl<T, R: Clone> Gate<T, R> {
    pub(crate) fn new(io: T) -> Self {
        Gate {
            slot: Mutex::new(Some(io)),
            phase: AtomicU8::new(OPEN),
            report: Mutex::new(None),
        }
    }

    /// Locks the slot. `None` inside means the close has begun.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<T>> {
        // A poisoned lock only means a transport panicked mid-poll; the slot is still
        // consistent (it is either there or not), so carry on.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the transport out of a locked slot and marks the close as begun with `closing`
    /// (1..=254). Returns `None` when another caller already began the close.
    pub(crate) fn begin(&self, slot: &mut MutexGuard<'_, Option<T>>, closing: u8) -> Option<T> {
        debug_assert!(closing != OPEN && closing != CLOSED);
        let io = slot.take()?;
        self.phase.store(closing, Ordering::Release);
        Some(io)
    }

    /// Publishes the final report. Only the closer that won [`begin`](Self::begin) calls this,
    /// once; a second call keeps the first report.
    pub(crate) fn finish(&self, report: R) -> R {
        let mut slot = self.report.lock().unwrap_or_else(|e| e.into_inner());
        let report = slot.get_or_insert(report).clone();
        self.phase.store(CLOSED, Ordering::Release);
        report
    }

    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    pub(crate) fn report(&self) -> Option<R> {
        if self.phase() != CLOSED {
            return None;
        }
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
