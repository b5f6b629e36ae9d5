//! Synchronisation primitives used by the close gate (swapped for loom's in the model check).

pub(crate) use std::sync::atomic::{AtomicU8, Ordering};
pub(crate) use std::sync::{Mutex, MutexGuard};
