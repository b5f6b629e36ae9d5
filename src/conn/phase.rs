//! The gate stores a connection's phase as one byte; the public [`State`] is read from it.
//! The encoding lives here and only here: [`OPEN`], one value per closing [`Cause`], [`CLOSED`].

use crate::gate::{CLOSED, OPEN};
use crate::{Cause, State, Transport};

use super::Shared;

/// The phase of a connection closing for `cause` (the only closing values the gate is given).
pub(super) const fn closing_phase(cause: Cause) -> u8 {
    match cause {
        Cause::App => 1,
        Cause::Shutdown => 2,
        Cause::Keepalive => 3,
        Cause::Lifetime => 4,
        Cause::Peer => 5,
        Cause::Transport => 6,
    }
}

/// The state a phase stands for; the inverse of [`closing_phase`] for closing phases.
pub(super) fn phase_state(phase: u8) -> State {
    match phase {
        OPEN => State::Open,
        1 => State::Closing(Cause::App),
        2 => State::Closing(Cause::Shutdown),
        3 => State::Closing(Cause::Keepalive),
        4 => State::Closing(Cause::Lifetime),
        5 => State::Closing(Cause::Peer),
        6 => State::Closing(Cause::Transport),
        CLOSED => State::Closed,
        other => unreachable!("phase {other} is not written by `closing_phase`"),
    }
}

impl<T: Transport> Shared<T> {
    pub(super) fn state(&self) -> State {
        phase_state(self.gate.phase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_phase_and_back() {
        assert_eq!(phase_state(OPEN), State::Open);
        assert_eq!(phase_state(CLOSED), State::Closed);
        let mut seen = vec![OPEN, CLOSED];
        for &cause in Cause::ALL {
            let phase = closing_phase(cause);
            assert!(!seen.contains(&phase), "{cause:?} shares phase {phase}");
            seen.push(phase);
            assert_eq!(phase_state(phase), State::Closing(cause));
        }
    }
}
