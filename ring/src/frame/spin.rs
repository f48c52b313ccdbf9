//! The polling phase of a wait, and whether it pays (producer and consumer alike).

use std::time::{Duration, Instant};

use crate::measure::Judge;

/// Whether polling before sleeping pays, judged on the waits it was tried on: a
/// poll that ends the wait saves a sleep and a wake-up; one that does not only
/// costs CPU, which, on a machine with more runnable threads than cores, the peer
/// being waited for may need. Every 64 polls, if fewer than 4 ended their wait,
/// the next 256 waits sleep at once; then polling is tried again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinJudge(Judge);

impl Default for SpinJudge {
    fn default() -> Self {
        SpinJudge(Judge::new(Self::JUDGE, Self::MIN_CAUGHT, Self::OFF_FOR))
    }
}

impl SpinJudge {
    const JUDGE: u32 = 64;
    const MIN_CAUGHT: u32 = 4;
    const OFF_FOR: u32 = 256;

    /// The poll time for the next wait: `spin`, or zero while polling is off.
    pub(crate) fn budget(&mut self, spin: Duration) -> Duration {
        match self.0.take_chance() {
            true => spin,
            false => Duration::ZERO,
        }
    }

    /// A wait that polled (a non-zero budget) ended: during the poll or not.
    pub(crate) fn record(&mut self, caught: bool) {
        self.0.record(caught)
    }

    /// Times it turned polling off.
    #[cfg(test)]
    pub(crate) fn turned_off(&self) -> u64 {
        self.0.turned_off
    }
}

/// The polling phase of a wait (producer and consumer alike): `keep_spinning` is
/// true for as long as the spin time, counted from its first call, lasts.
pub(crate) struct Spin {
    budget: Duration,
    until: Option<Instant>,
    looks: Looks,
}

impl Spin {
    pub(crate) fn new(budget: Duration) -> Spin {
        Spin {
            budget,
            until: None,
            looks: Looks::default(),
        }
    }

    /// Whether this wait polls at all.
    pub(crate) fn polls(&self) -> bool {
        !self.budget.is_zero()
    }

    pub(crate) fn keep_spinning(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let now = Instant::now();
        now < *self.until.get_or_insert(now + self.budget)
    }

    /// A short pause between two looks (see [`Looks::pause`]).
    pub(crate) fn pause(&mut self) {
        self.looks.pause(Instant::now());
    }
}

/// The pauses between the looks of one poll: a few spins each, and the CPU
/// offered to whatever else waits for it (see [`Looks::yield_cpu`]) once every
/// [`Looks::YIELD_EVERY`] of polling, not at every look. A system call per look
/// made a poll cost dozens of them per frame (94 per buffer for a live 1080p
/// consumer waking ahead, 7800 for one spinning through the interval), and a
/// look every system call (a microsecond or more on a virtual machine) saw a
/// frame later than a look every few spins.
#[derive(Default)]
pub(crate) struct Looks {
    /// When the CPU was last offered (or the poll began).
    offered: Option<Instant>,
    /// Times it was offered.
    #[cfg(test)]
    yields: u32,
}

impl Looks {
    /// The longest a poll keeps its CPU without offering it: the most a peer
    /// stacked on the same CPU waits for the poller to let it run.
    pub(crate) const YIELD_EVERY: Duration = Duration::from_micros(10);
    /// Spins of one pause (`PAUSE` takes tens to 140 cycles: one to two µs).
    const SPINS: u32 = 32;

    /// Pauses before the next look; `now` is the time of the look just made.
    pub(crate) fn pause(&mut self, now: Instant) {
        for _ in 0..Self::SPINS {
            std::hint::spin_loop();
        }
        let offered = *self.offered.get_or_insert(now);
        if now.saturating_duration_since(offered) >= Self::YIELD_EVERY {
            Self::yield_cpu();
            self.offered = Some(now);
            #[cfg(test)]
            {
                self.yields += 1;
            }
        }
    }

    /// Offers this CPU to another runnable thread; returns at once when there is
    /// none. The peer polled for may be queued behind the poller on the same CPU
    /// (the scheduler stacks a wakee on its waker's CPU, and on some machines
    /// keeps both there with the other CPU idle): a poll that never yields then
    /// holds the peer off until the poll gives up, so it never catches anything.
    pub(crate) fn yield_cpu() {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn polling_that_rarely_ends_a_wait_stops_for_a_while_then_is_tried_again() {
        let spin = Duration::from_micros(20);
        let mut j = SpinJudge::default();
        // A quarter of the polls end their wait: it stays on.
        for i in 0..SpinJudge::JUDGE {
            assert_eq!(j.budget(spin), spin);
            j.record(i % 4 == 0);
        }
        assert_eq!(j.turned_off(), 0);
        // Fewer than 4 of 64: off for 256 waits, then on again.
        for i in 0..SpinJudge::JUDGE {
            assert_eq!(j.budget(spin), spin);
            j.record(i < 3);
        }
        assert_eq!(j.turned_off(), 1);
        for _ in 0..SpinJudge::OFF_FOR {
            assert_eq!(j.budget(spin), Duration::ZERO);
        }
        assert_eq!(j.budget(spin), spin);
    }

    #[test]
    fn a_poll_offers_its_cpu_once_every_interval_not_at_every_look() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut l = Looks::default();
        // Looks a microsecond apart: none offers the CPU until the interval has
        // passed since the poll began, then one per interval.
        for us in 0..10 {
            l.pause(at(us));
        }
        assert_eq!(l.yields, 0);
        l.pause(at(10));
        assert_eq!(l.yields, 1);
        for us in 11..20 {
            l.pause(at(us));
        }
        assert_eq!(l.yields, 1);
        l.pause(at(20));
        l.pause(at(45));
        assert_eq!(l.yields, 3);
        // A poll that catches its frame at once makes no system call.
        let mut quick = Looks::default();
        quick.pause(at(0));
        quick.pause(at(3));
        assert_eq!(quick.yields, 0);
    }
}
