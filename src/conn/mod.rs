//! The wrapped connection: [`WebSocket`], its halves [`Sender`] and [`Receiver`], the
//! cloneable [`Handle`], and the close that finishes every connection.
//!
//! While open, reads and writes poll the transport directly under the gate's lock (no task
//! hop, no channel). The first party to begin the close takes the transport out of the gate
//! and hands it to the close task, which alone flushes, sends the Close frame, reads until the
//! peer's Close or EOF, shuts the transport down, and publishes the report. The taker polls it
//! first; then the caller awaiting `close()`, or a task of its own, polls the rest.
//!
//! One concept per file, all around [`Shared`] (here, with [`Shared::open`], which wraps a
//! connection), the state every party of one connection holds:
//!
//! | file | what it holds |
//! |---|---|
//! | `socket.rs` | the public [`WebSocket`], [`Sender`], [`Receiver`]: `Stream`/`Sink`, drop closes with 1001 |
//! | `handle.rs` | [`Handle`] and the object-safe `Control` view it holds |
//! | `opening.rs` | a connection still `Connecting`: its handle before and after the upgrade |
//! | `io.rs` | reads and writes of the open connection, passed through to the transport |
//! | `phase.rs` | the gate's phase value and the public [`State`](crate::State), one from the other |
//! | `plan.rs` | how a close begins (`Plan`): ours, the peer's, a fatal error's, keepalive's |
//! | `close.rs` | beginning a close, who polls it next (`Parked`), waiting for its end |
//! | `closer.rs` | the close task: the handshake, the deadline, the outcome, the report |
//! | `lifecycle.rs` | keepalive pings and the maximum lifetime |

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::gate::Gate;
use crate::{Cause, CloseReport, Config, Role, Transport, deadline, telemetry};

mod close;
mod closer;
mod handle;
mod io;
mod lifecycle;
mod opening;
mod phase;
mod plan;
mod socket;
#[cfg(test)]
mod tests;

pub use handle::Handle;
pub(crate) use opening::Opening;
pub use socket::{Receiver, Sender, WebSocket};

use close::Parked;
use io::WriteWakers;
use lifecycle::jittered;
use plan::Plan;

/// A Close frame to send: `None` is a Close frame without a status code.
type OutFrame = Option<(u16, String)>;

/// The transport while it is in the gate, with the count of messages accepted since the
/// last confirmed flush (the ones that would be lost if the transport died now).
struct Io<T> {
    t: T,
    pending: u64,
    /// The application's reader, and its writer, left a waker in `Shared::reader` or in
    /// `WriteWakers::app` on their last `Pending`. A poll that then completes takes it back:
    /// a waker left behind would have `begin` wake the very task that is closing (a yield
    /// and a cross-worker wake-up per close on a multi-thread runtime).
    reader_waits: bool,
    writer_waits: bool,
}

type Slot<'a, T> = MutexGuard<'a, Option<Io<T>>>;

/// The part of a close that waits for the peer.
type CloseTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One connection, shared by every party that touches it: the application's halves, the
/// handles, the close task, and the keepalive and lifetime task.
struct Shared<T: Transport> {
    gate: Gate<Io<T>, CloseReport>,
    role: Role,
    config: Config,
    id: u64,
    span: Span,
    opened_at: Instant,
    /// The runtime the connection was wrapped on: its close runs there, whichever thread
    /// begins it (a `Handle` is `Send + Sync`; a close may come from any thread).
    rt: Option<tokio::runtime::Handle>,
    /// The application task waiting in `poll_next`.
    reader: AtomicWaker,
    /// The parties waiting for the socket to drain (see [`WriteWakers`]).
    writers: Arc<WriteWakers>,
    /// `writers` as the waker every write-side poll of the open transport is given.
    write_waker: Waker,
    /// `Handle::closed` waiters.
    done: Notify,
    /// A close polled once on the spot, until it is woken.
    parked: Mutex<Parked>,
    /// Ends the close task at once (a shutdown's grace period ran out), and the close task's
    /// waker for it.
    terminated: AtomicBool,
    closer: AtomicWaker,
    /// Pongs received (keepalive liveness), and their wake-up.
    pongs: AtomicU64,
    pong: Notify,
    /// The transport's sink said it was ready after the last message written to it: the
    /// application's next `poll_ready` can answer without taking the gate's lock. Written only
    /// under the lock; see `Shared::poll_ready`.
    sink_ready: AtomicBool,
    /// The close task has put its Close frame (ours, or the reply to the peer's) on the wire,
    /// behind every message accepted before it: a flush waiting on a closing connection is over.
    close_written: AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new process-unique connection id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl<T: Transport> Shared<T> {
    /// Wraps an established connection: its span, its series, its registry entry (closed at
    /// once when the registry is draining), and its keepalive and lifetime task.
    /// `id` is the connection's own when its handshake ran in the crate (`Opening`).
    fn open(ws: T, role: Role, config: Config, id: Option<u64>) -> Arc<Self> {
        let id = id.unwrap_or_else(next_id);
        let series = telemetry::Series {
            role,
            labels: config.labels,
        };
        let span = telemetry::connection_span(id, series, config.peer_addr);
        telemetry::on_open(series);
        let writers = Arc::new(WriteWakers::default());
        let write_waker = Waker::from(writers.clone());
        let shared = Arc::new(Shared {
            write_waker,
            gate: Gate::new(Io {
                t: ws,
                pending: 0,
                reader_waits: false,
                writer_waits: false,
            }),
            role,
            config,
            id,
            span,
            opened_at: Instant::now(),
            rt: tokio::runtime::Handle::try_current().ok(),
            reader: AtomicWaker::new(),
            writers,
            done: Notify::new(),
            parked: std::sync::Mutex::default(),
            terminated: AtomicBool::new(false),
            closer: AtomicWaker::new(),
            pongs: AtomicU64::new(0),
            pong: Notify::new(),
            sink_ready: AtomicBool::new(false),
            close_written: AtomicBool::new(false),
        });
        let config = &shared.config;
        if let Some(registry) = &config.registry {
            if let Some(code) = registry.insert(Handle::new(shared.clone())) {
                // Wrapped during a drain: close at once, like every other connection.
                let frame = Some((code, "server shutting down".to_owned()));
                shared.begin(&mut shared.gate.lock(), Plan::close(Cause::Shutdown, frame));
            }
        }
        let lifetime = config
            .max_lifetime
            .map(|(max, jitter)| jittered(max, jitter, id));
        if config.keepalive.is_some() || lifetime.is_some() {
            // Without a timer (logged once at WARN) there is no keepalive and no lifetime.
            if let Some(rt) = shared.rt.as_ref().filter(|rt| deadline::has_timer(rt)) {
                let task = shared.clone().lifecycle(config.keepalive, lifetime);
                rt.spawn(task.instrument(shared.span.clone()));
            }
        }
        shared
    }

    /// Whose series this connection's events move: its role and its static labels.
    fn series(&self) -> telemetry::Series {
        telemetry::Series {
            role: self.role,
            labels: self.config.labels,
        }
    }
}
