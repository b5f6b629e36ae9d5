//! Compiles wsclose's `src/gate.rs` unchanged against loom's `Mutex` and atomics, so the model
//! below explores every interleaving of the real code.
#![allow(dead_code)]

#[path = "../../src/gate.rs"]
pub mod gate;

pub(crate) mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};
    pub(crate) use loom::sync::{Mutex, MutexGuard};
}

#[cfg(test)]
mod model {
    //! Every interleaving of two closers and a peer Close racing on one connection (and an
    //! application reader polling meanwhile): exactly one takes the transport and writes the one
    //! Close frame; every observer sees the same report; the slot and the phase never disagree.

    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;
    use crate::gate::{CLOSED, Gate, OPEN};

    /// Closing phases as wsclose encodes them: 1 + the cause's index (app = 1, peer = 5).
    const APP: u8 = 1;
    const PEER: u8 = 5;

    #[test]
    fn two_closers_and_a_peer_close() {
        loom::model(|| {
            let gate: Arc<Gate<&'static str, u32>> = Arc::new(Gate::new("transport"));
            let frames = Arc::new(AtomicUsize::new(0));

            let racer = |who: u32, phase: u8| {
                let gate = gate.clone();
                let frames = frames.clone();
                thread::spawn(move || {
                    let won = gate.begin(&mut gate.lock(), phase);
                    if let Some(io) = won {
                        assert_eq!(io, "transport");
                        // Only the holder of the transport writes a Close frame.
                        frames.fetch_add(1, Ordering::SeqCst);
                        let published = gate.finish(who);
                        assert_eq!(published, who);
                        Some(who)
                    } else {
                        // A loser sees the close begun (or already over), never `Open`.
                        assert_ne!(gate.phase(), OPEN);
                        None
                    }
                })
            };
            let a = racer(1, APP);
            let b = racer(2, APP);
            let peer = racer(3, PEER);

            // The application's reader: under the lock, the slot and the phase agree.
            {
                let slot = gate.lock();
                assert_eq!(slot.is_none(), gate.phase() != OPEN);
                // Closed always comes with its report (waiters woken by the phase find it).
                if gate.phase() == CLOSED {
                    assert!(gate.report().is_some(), "closed without a report");
                }
                if let Some(report) = gate.report() {
                    assert_eq!(gate.phase(), CLOSED);
                    assert!((1..=3).contains(&report));
                }
            }

            let winners: Vec<u32> =
                [a, b, peer].into_iter().filter_map(|h| h.join().unwrap()).collect();
            assert_eq!(winners.len(), 1, "exactly one closer");
            assert_eq!(frames.load(Ordering::SeqCst), 1, "exactly one Close frame");
            assert_eq!(gate.phase(), CLOSED);
            assert_eq!(gate.report(), Some(winners[0]), "everyone sees the winner's report");
            // A late second publication cannot replace the report.
            assert_eq!(gate.finish(99), winners[0]);
        });
    }
}
