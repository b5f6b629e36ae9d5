//! Wall-clock bounds for the tests that time a close, a keepalive or a lifetime.
//!
//! The tests run on the real clock (Tokio's paused clock needs its `test-util` feature, which
//! stays out of the dev-dependencies because the benches share them: see docs/performance.md),
//! on machines where two cores are shared with builds and other tests. A timer there fires late
//! whenever the runtime's thread waits for a CPU, so an upper bound needs room for that, and
//! each one is chosen against the wrong behaviour it must still catch:
//!
//! - an end *at* a deadline is checked with [`assert_at_deadline`]: never before it, and less
//!   than [`LATE`] after it. Deadlines checked this way are longer than [`LATE`], so a close that
//!   waits its deadline out twice (once for the handshake, once more for the shutdown) still
//!   fails;
//! - an end that must not wait for the default 5 s close deadline is checked against
//!   [`PROMPT`].

use std::fmt::Display;
use std::time::Duration;

/// How late after its deadline a timed end may come on a busy machine.
pub const LATE: Duration = Duration::from_millis(800);

/// The deadline of the tests that check a close ends at its deadline: longer than [`LATE`].
pub const DEADLINE: Duration = Duration::from_secs(1);

/// Well under the default 5 s close deadline: an end that waited for it takes longer.
pub const PROMPT: Duration = Duration::from_millis(2500);

/// `took` (from the start of the close, or of whatever `deadline` bounds) ended at `deadline`:
/// not before it, and less than [`LATE`] after it.
#[track_caller]
pub fn assert_at_deadline(took: Duration, deadline: Duration, what: impl Display) {
    assert!(
        deadline > LATE,
        "{what}: a deadline of {deadline:?} cannot tell one wait from two with {LATE:?} of slack"
    );
    assert!(
        took >= deadline && took < deadline + LATE,
        "{what}: ended after {took:?}; the deadline was {deadline:?} (allowed up to {:?})",
        deadline + LATE
    );
}
