//! Waiting for the next event: spinning, waking ahead of a paced stream, sleeping
//! on the doorbell, the socket and the waker.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::error::RecvError;
use crate::frame::spin::{Looks, Spin};
use crate::measure::{Judge, Window, quantile_of};
use crate::os::doorbell::{poll_until, pollfd};

use super::Consumer;

/// A few recent measurements, for a quantile.
type Samples = Window<64>;

/// What waking ahead of a paced stream did (see [`ConsumerConfig::wake_ahead`](crate::ConsumerConfig::wake_ahead)).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Anticipation {
    /// Frames that came while this consumer polled for them (no wake-up needed).
    pub hits: u64,
    /// Polls that ended with no frame (the consumer then slept on its doorbell).
    pub misses: u64,
    /// Times it turned itself off for a while because it did not pay (fewer than a
    /// quarter of its polls caught their frame).
    pub turned_off: u64,
    /// How late, at the 90th percentile, this consumer's timed wake-ups come on
    /// this machine (µs): measured on its own sleeps.
    pub oversleep_p90_us: f64,
    /// How late, at the 90th percentile, frames come after the earliest time the
    /// stream's pace allows (µs): the producer's own jitter, measured on frames
    /// caught while polling.
    pub lateness_p90_us: f64,
}

/// When frames come, and what polling for them costs and catches: decides from
/// these measurements whether, when and how long to poll ahead of the next frame.
///
/// The stream's grid: frames `n` are due no earlier than `origin + n × gap`, where
/// `gap` is the median recent spacing and `origin` the earliest of the last few
/// arrivals moved back onto the grid. Arrivals are only ever late (a producer oversleeps,
/// a wake-up takes time), never early, so the minimum is a robust anchor; a frame
/// found on waking is late by the wake-up too, which the minimum ignores.
#[derive(Debug)]
pub(super) struct Pace {
    base: Option<Instant>,
    /// Recent arrivals: (frame number, ns since `base`, caught polling), oldest
    /// first.
    recent: VecDeque<(u64, f64, bool)>,
    /// Arrivals since the stream (re)started.
    seen: usize,
    /// Spacing of frames, ns.
    gap: Option<f64>,
    /// Lateness behind the grid of frames caught while polling, ns.
    late: Samples,
    /// Oversleep of this consumer's timed waits, ns.
    over: Samples,
    /// Whether its polls pay: off for a while (counted in frames) when too few
    /// catch their frame.
    judge: Judge,
    pub(super) stats: Anticipation,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            base: None,
            recent: VecDeque::new(),
            seen: 0,
            gap: None,
            late: Samples::default(),
            over: Samples::default(),
            judge: Judge::new(Self::JUDGE, Self::MIN_CAUGHT, Self::OFF_FOR),
            stats: Anticipation::default(),
        }
    }
}

/// Plans of one anticipation: when to wake, when to give up.
pub(super) struct Plan {
    wake: Instant,
    give_up: Instant,
}

impl Pace {
    /// Frames closer than this are a burst (a backlog drained), not the stream's pace.
    const BURST: f64 = 50e3;
    /// Streams faster than this keep the consumer busy anyway.
    const MIN_GAP: f64 = 2e6;
    /// Arrivals the spacing is taken from, and the grid's origin.
    const RECENT: usize = 32;
    const ANCHOR: usize = 8;
    /// Frames between the two arrivals of a slope.
    const SPAN: usize = 8;
    /// Arrivals before the first plan: the stream's start has left `recent`.
    const SETTLED: usize = 3 * Self::SPAN;
    /// The most of each frame interval spent polling (1.5 %).
    const BUDGET: f64 = 0.015;
    /// Polls judged at a time, and the fewest of them that must catch their frame:
    /// a miss costs more than a wake-up (the consumer goes to sleep just before
    /// the frame comes), so it is judged quickly.
    const JUDGE: u32 = 8;
    const MIN_CAUGHT: u32 = 4;
    /// Frames it stays off after failing (30 s at 30 frames/s).
    const OFF_FOR: u32 = 900;
    /// A wake-up's delay until measured, ns.
    const WAKE_UP: f64 = 50e3;
    /// Margin on each side of a poll, ns.
    const MARGIN: f64 = 20e3;

    fn ns(&mut self, t: Instant) -> f64 {
        let base = *self.base.get_or_insert(t);
        t.saturating_duration_since(base).as_nanos() as f64
    }

    /// Frame `seq` arrived at `now`; `precise` when it was caught by polling (the
    /// time is its arrival's, not a wake-up's).
    pub(super) fn arrived(&mut self, seq: u64, now: Instant, precise: bool) {
        let t = self.ns(now);
        if self.recent.back().is_some_and(|&(s, _, _)| seq <= s) {
            // A new stream (reconnected): start over.
            self.recent.clear();
            self.seen = 0;
        }
        self.seen += 1;
        self.recent.push_back((seq, t, precise));
        if self.recent.len() > Self::RECENT {
            self.recent.pop_front();
        }
        self.gap = self.spacing();
        if precise {
            if let Some(due) = self.due(seq) {
                self.late.push((t - due).max(0.0));
            }
        }
        self.judge.pass();
    }

    /// The stream's spacing: the median of the slopes between arrivals `SPAN`
    /// frames apart (fewer while there are few). One spacing carries the jitter
    /// of two arrivals (a wake-up late by a millisecond makes one spacing long and
    /// the next short); a slope over `SPAN` frames carries it divided by `SPAN`,
    /// and the grid built on it (`due`) stays within the jitter over the `ANCHOR`
    /// frames it extends. Slopes under `BURST` (a backlog drained) are left out.
    /// On the stack: this runs for every frame.
    fn spacing(&self) -> Option<f64> {
        let n = self.recent.len();
        if n < 4 {
            return None;
        }
        let span = Self::SPAN.min((n - 1) / 2).max(1);
        let mut g = [0f64; Self::RECENT];
        let mut k = 0;
        for (&(s0, t0, _), &(s1, t1, _)) in self.recent.iter().zip(self.recent.iter().skip(span)) {
            let gap = (t1 - t0) / (s1 - s0) as f64;
            if gap >= Self::BURST {
                g[k] = gap;
                k += 1;
            }
        }
        if k < 3 {
            return None;
        }
        quantile_of(&mut g[..k], 0.5)
    }

    /// The earliest frame `seq` can come, ns since `base`.
    fn due(&self, seq: u64) -> Option<f64> {
        let gap = self.gap?;
        // A frame found on waking came about one wake-up before it was found; how
        // long a wake-up takes here is measured on this consumer's timed sleeps.
        let wake_up = self.over.quantiles([0.5], 4).map_or(Self::WAKE_UP, |[m]| m);
        // The last few only: an error in the spacing grows with the distance.
        let origin = self
            .recent
            .iter()
            .rev()
            .take(Self::ANCHOR)
            .map(|&(s, t, caught)| {
                let came = if caught { t } else { t - wake_up };
                came - s as f64 * gap
            })
            .fold(f64::INFINITY, f64::min);
        Some(origin + seq as f64 * gap)
    }

    /// When to wake before frame `seq` and how long to poll for it, within
    /// `cap` and the budget; `None` when polling ahead does not pay here.
    pub(super) fn plan(&mut self, seq: u64, cap: Duration, now: Instant) -> Option<Plan> {
        // Not before the arrivals of the stream's start (a backlog drained at once,
        // connection set-up) have left `recent`: a grid from a rough spacing
        // misses, and misses turn anticipation off.
        if cap.is_zero() || self.judge.is_off() || self.seen < Self::SETTLED {
            return None;
        }
        let gap = self.gap.filter(|&g| g >= Self::MIN_GAP)?;
        let due = self.due(seq)?;
        let budget = (cap.as_nanos() as f64).min(gap * Self::BUDGET);
        // Until measured: a timed wake-up 100 µs late, frames up to half the budget.
        let (over_mid, over_hi) = self
            .over
            .quantiles([0.5, 0.9], 4)
            .map_or((50e3, 100e3), |[m, p]| (m, p));
        let lead = (over_hi - over_mid).max(0.0) + Self::MARGIN;
        if lead >= budget {
            return None;
        }
        let late = self
            .late
            .quantiles([0.9], 8)
            .map_or(budget / 2.0, |[l]| l + Self::MARGIN)
            .min(budget - lead);
        let at = |ns: f64| {
            let base = self.base.expect("set by the first arrival");
            base + Duration::from_nanos(ns.max(0.0) as u64)
        };
        let give_up = at(due + late);
        if give_up <= now {
            return None;
        }
        Some(Plan {
            wake: at(due - over_hi - Self::MARGIN),
            give_up,
        })
    }

    /// A timed wait meant to end at `wanted` ended at `now`.
    fn woke(&mut self, wanted: Instant, now: Instant) {
        self.over
            .push(now.saturating_duration_since(wanted).as_nanos() as f64);
    }

    /// A poll ended: it caught its frame or not. Every `JUDGE` polls, anticipation
    /// that caught too few turns itself off for a while.
    fn polled(&mut self, caught: bool) {
        if caught {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        self.judge.record(caught);
    }

    /// What it measured and did so far.
    pub(super) fn report(&self) -> Anticipation {
        Anticipation {
            oversleep_p90_us: self.over.quantiles([0.9], 1).map_or(0.0, |[p]| p) / 1e3,
            lateness_p90_us: self.late.quantiles([0.9], 1).map_or(0.0, |[p]| p) / 1e3,
            turned_off: self.judge.turned_off,
            ..self.stats
        }
    }
}

/// Sets this thread's timer slack to 1 ns while it lives (timed wake-ups come when
/// asked instead of up to 50 µs later), then puts the old slack back.
struct PreciseTimers(libc::c_int);

impl PreciseTimers {
    fn new() -> PreciseTimers {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and only reads this thread's
        // setting; PR_SET_TIMERSLACK only changes it.
        unsafe {
            let old = libc::prctl(libc::PR_GET_TIMERSLACK);
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            PreciseTimers(old)
        }
    }
}

impl Drop for PreciseTimers {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: as in `new`; the value is what PR_GET_TIMERSLACK returned.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, self.0 as libc::c_ulong) };
        }
    }
}

impl Consumer {
    /// With `wake_ahead`: sleeps (on the doorbell, as usual) until shortly before
    /// the next frame can come, then polls the ring until it comes or the plan
    /// gives up (see [`Pace`]). True when there is something to look at.
    pub(super) fn anticipate(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        let now = Instant::now();
        let Some(plan) = self.pace.plan(self.next_seq, self.cfg.wake_ahead, now) else {
            return Ok(false);
        };
        let give_up = deadline.map_or(plan.give_up, |d| d.min(plan.give_up));
        if now < plan.wake {
            self.drain_bell();
            if self.frames.arm()? {
                self.frames.disarm();
                return Ok(true);
            }
            let mut fds = [
                pollfd(self.sock.as_fd(), libc::POLLIN),
                pollfd(self.frames.bell().as_fd(), libc::POLLIN),
                pollfd(self.waker.as_fd(), libc::POLLIN),
            ];
            let wake = plan.wake.min(give_up);
            let woke = {
                let _precise = PreciseTimers::new();
                poll_until(&mut fds, Some(wake))
            };
            self.frames.disarm();
            if woke? {
                // Early: a frame rang, or a message, a hang-up or the waker came,
                // which the usual wait (at once, the fds still ready) sorts out.
                let rang =
                    fds[1].revents == libc::POLLIN && fds[0].revents == 0 && fds[2].revents == 0;
                self.bell_rang |= rang;
                return Ok(rang);
            }
            self.pace.woke(wake, Instant::now());
        }
        // Polling, said in the ring: the producer yields after publishing, and
        // this poll offers its CPU every few microseconds, so that neither keeps
        // the other off a CPU they share.
        self.frames.polling(true);
        let mut caught = false;
        let mut looks = Looks::default();
        loop {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            match self.frames.ready() {
                Ok(0) => looks.pause(now),
                Ok(_) => {
                    caught = true;
                    break;
                }
                Err(e) => {
                    self.frames.polling(false);
                    return Err(e.into());
                }
            }
        }
        self.frames.polling(false);
        if caught {
            self.pace.polled(true);
            self.caught_polling = true;
            return Ok(true);
        }
        self.pace.polled(false);
        Ok(false)
    }

    /// Polls the ring for up to the configured spin time. True when a frame came.
    pub(super) fn spin(&mut self) -> Result<bool, RecvError> {
        // Not said in the ring (unlike `anticipate`): this poll follows a frame,
        // while the producer is at work on the next; a producer yielding after
        // every publish of a busy stream would lose a system call's time a frame.
        let mut spin = Spin::new(self.spin_judge.budget(self.cfg.spin));
        while spin.keep_spinning() {
            if self.frames.ready()? > 0 {
                self.spin_judge.record(true);
                self.caught_polling = true;
                return Ok(true);
            }
            spin.pause();
        }
        if spin.polls() {
            self.spin_judge.record(false);
        }
        Ok(false)
    }

    /// Empties the doorbell if it rang since the last sleep (before sleeping on it
    /// again: a full doorbell would end the sleep at once).
    fn drain_bell(&mut self) {
        if std::mem::take(&mut self.bell_rang) {
            self.frames.bell().drain();
        }
    }

    /// Waits for the ring, the socket, the waker or the deadline. `Ok(_)` means
    /// "look again", and says whether the socket has something to read (a message,
    /// or the hang-up that was just looked at).
    pub(super) fn sleep(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if self.anticipate(deadline)? {
            return Ok(false);
        }
        self.drain_bell();
        if self.frames.arm()? {
            self.frames.disarm();
            return Ok(false);
        }
        let mut fds = [
            pollfd(self.sock.as_fd(), libc::POLLIN),
            pollfd(self.frames.bell().as_fd(), libc::POLLIN),
            pollfd(self.waker.as_fd(), libc::POLLIN),
        ];
        let r = poll_until(&mut fds, deadline);
        self.frames.disarm();
        if !r? {
            return Err(RecvError::Timeout);
        }
        if fds[2].revents != 0 && self.waker.take() {
            return Err(RecvError::Interrupted);
        }
        let hup = libc::POLLHUP | libc::POLLERR;
        if (fds[0].revents | fds[1].revents) & hup != 0 {
            // The producer is gone. Deliver what it left (frames in the ring, queued
            // messages) first; only then report it.
            // A hang-up stays readable: from here on nothing is waited for (a
            // sleep would return at once, again and again).
            self.pump()?;
            self.hung_up = true;
            if self.goodbye.is_none()
                && self.stash.is_none()
                && self.sides.is_empty()
                && self.frames.ready()? == 0
            {
                self.ended = true;
                return Err(RecvError::PeerGone);
            }
            return Ok(true);
        }
        if fds[1].revents & libc::POLLIN != 0 {
            self.bell_rang = true;
        }
        Ok(fds[0].revents & libc::POLLIN != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_micros(33_333);

    /// A stream of `n` frames from `t0`, every third one `late_us` late, fed as
    /// found on waking (not caught polling).
    fn paced(p: &mut Pace, t0: Instant, n: u64, late_us: u64) {
        for seq in 0..n {
            let late = if seq % 3 == 0 { late_us } else { 0 };
            p.arrived(
                seq,
                t0 + GAP * seq as u32 + Duration::from_micros(late),
                false,
            );
        }
    }

    /// Enough frames for a plan.
    const N: u64 = Pace::SETTLED as u64 + 6;

    #[test]
    fn the_plan_brackets_the_next_frame_whatever_late_frames_came_before() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        paced(&mut p, t0, N, 300);
        let now = t0 + GAP * (N - 1) as u32 + Duration::from_micros(400);
        let plan = p.plan(N, Duration::from_millis(1), now).expect("a plan");
        let due = t0 + GAP * N as u32;
        assert!(plan.wake < due && plan.wake > due - Duration::from_millis(1));
        assert!(plan.give_up > due);
        // Within the budget: 1.5 % of the interval, 500 µs.
        assert!(plan.give_up - plan.wake <= Duration::from_micros(500 + 200));
    }

    #[test]
    fn a_backlog_at_the_start_and_wake_ups_a_millisecond_late_do_not_move_the_grid() {
        // What a live consumer sees: a few frames queued while it connected come
        // at once, then one frame in four is found a millisecond late (woken on
        // a CPU that was busy), the rest 60 µs late (a wake-up).
        let t0 = Instant::now();
        let mut p = Pace::default();
        let backlog = 5u64;
        for seq in 0..backlog {
            p.arrived(
                seq,
                t0 + GAP * backlog as u32 + Duration::from_micros(900) * seq as u32,
                false,
            );
        }
        for seq in backlog..60 {
            let late = if seq % 4 == 0 { 1000 } else { 60 };
            p.arrived(
                seq,
                t0 + GAP * seq as u32 + Duration::from_micros(late),
                false,
            );
        }
        let now = t0 + GAP * 59 + Duration::from_millis(1);
        let plan = p.plan(60, Duration::from_millis(1), now).expect("a plan");
        let due = t0 + GAP * 60;
        // The frame is due 60 µs before it is found: the poll covers that.
        assert!(
            plan.wake <= due,
            "wakes {:?} after the frame",
            plan.wake - due
        );
        assert!(
            due - plan.wake < Duration::from_micros(500),
            "{:?} early",
            due - plan.wake
        );
        assert!(plan.give_up >= due + Duration::from_micros(60));
        // The spacing from slopes over several frames, not single spacings.
        let gap = p.gap.unwrap();
        assert!((gap - GAP.as_nanos() as f64).abs() < 20e3, "gap {gap}");
    }

    #[test]
    fn frames_found_on_waking_count_a_measured_wake_up_early() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        // Wake-ups here take 200 µs: so does finding a frame after a ring.
        for i in 0..16u64 {
            let wanted = t0 + Duration::from_millis(i);
            p.woke(wanted, wanted + Duration::from_micros(200));
        }
        for seq in 0..N {
            p.arrived(
                seq,
                t0 + GAP * seq as u32 + Duration::from_micros(200),
                false,
            );
        }
        let due = t0 + GAP * N as u32;
        let now = t0 + GAP * (N - 1) as u32;
        let plan = p.plan(N, Duration::from_millis(1), now).expect("a plan");
        // Woken 200 µs late itself, it still polls before the frame came.
        assert!(plan.wake + Duration::from_micros(200) <= due);
        assert!(plan.give_up > due);
    }

    #[test]
    fn no_plan_for_fast_streams_without_a_cap_or_with_too_few_frames() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        paced(&mut p, t0, 3, 0);
        assert!(p.plan(3, Duration::from_millis(1), t0 + GAP * 2).is_none());
        let few = Pace::SETTLED as u64 - 1;
        paced(&mut p, t0, few, 0);
        assert!(
            p.plan(few, Duration::from_millis(1), t0 + GAP * (few - 1) as u32)
                .is_none()
        );
        paced(&mut p, t0, N, 0);
        assert!(
            p.plan(N, Duration::ZERO, t0 + GAP * (N - 1) as u32)
                .is_none()
        );
        let mut fast = Pace::default();
        for seq in 0..50u64 {
            fast.arrived(seq, t0 + Duration::from_micros(500) * seq as u32, false);
        }
        assert!(
            fast.plan(50, Duration::from_millis(1), t0 + Duration::from_millis(25))
                .is_none()
        );
    }

    #[test]
    fn polls_that_catch_too_little_turn_it_off_for_a_while() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        paced(&mut p, t0, N, 0);
        for _ in 0..Pace::JUDGE {
            p.polled(false);
        }
        assert_eq!(p.report().turned_off, 1);
        assert_eq!(p.report().misses, Pace::JUDGE as u64);
        assert!(
            p.plan(N, Duration::from_millis(1), t0 + GAP * (N - 1) as u32)
                .is_none()
        );
        // Back after OFF_FOR frames.
        for seq in N..N + Pace::OFF_FOR as u64 {
            p.arrived(seq, t0 + GAP * seq as u32, false);
        }
        let next = N + Pace::OFF_FOR as u64;
        let now = t0 + GAP * (next - 1) as u32;
        assert!(p.plan(next, Duration::from_millis(1), now).is_some());
        // Enough hits keep it on.
        for i in 0..Pace::JUDGE {
            p.polled(i % 2 == 0);
        }
        assert_eq!(p.report().turned_off, 1);
    }

    #[test]
    fn measured_oversleep_wakes_it_earlier() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        paced(&mut p, t0, N, 0);
        let now = t0 + GAP * (N - 1) as u32;
        let before = p.plan(N, Duration::from_millis(1), now).unwrap().wake;
        for i in 0..16u64 {
            let wanted = t0 + Duration::from_millis(i);
            // 50 µs late mostly, 300 µs late one time in four.
            let late = if i % 4 == 0 { 300 } else { 50 };
            p.woke(wanted, wanted + Duration::from_micros(late));
        }
        let after = p.plan(N, Duration::from_millis(1), now).unwrap().wake;
        assert!(after < before, "{after:?} vs {before:?}");
        assert!(p.report().oversleep_p90_us >= 299.0);
    }
}
