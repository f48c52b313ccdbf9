//! The small statistics the self-tuning parts share (the consumer's wake-ahead,
//! the polling phase of a wait, `shmringsink`'s hot-buffer reuse): quantiles of
//! recent measurements, and a judge that turns a heuristic off for a while when it
//! does not pay. Each heuristic measures the machine it runs on with these, rather
//! than trusting a constant tuned elsewhere.

/// The `q` quantile (0 to 1) of `sorted`, nearest rank (the median of an even
/// count is the upper middle); `None` when it is empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let at = (last as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[at.min(last)])
}

/// Sorts `v` in place and returns its `q` quantile (floats by their total order).
pub fn quantile_of(v: &mut [f64], q: f64) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    quantile(v, q)
}

/// The last `N` measurements (older ones forgotten), kept on the stack: a
/// quantile costs one sort of a copy and no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Window<const N: usize> {
    v: [f64; N],
    n: usize,
    next: usize,
}

impl<const N: usize> Default for Window<N> {
    fn default() -> Self {
        Window {
            v: [0.0; N],
            n: 0,
            next: 0,
        }
    }
}

impl<const N: usize> Window<N> {
    /// Keeps `x`, forgetting the oldest once `N` are kept.
    pub fn push(&mut self, x: f64) {
        self.v[self.next] = x;
        self.next = (self.next + 1) % N;
        self.n = (self.n + 1).min(N);
    }

    /// Measurements kept.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The quantiles `qs` of what is kept, from one sort, if at least `min` (and
    /// at least one) are kept.
    pub fn quantiles<const K: usize>(&self, qs: [f64; K], min: usize) -> Option<[f64; K]> {
        if self.n < min.max(1) {
            return None;
        }
        let mut v = self.v;
        let v = &mut v[..self.n];
        v.sort_by(f64::total_cmp);
        Some(qs.map(|q| quantile(v, q).expect("not empty")))
    }
}

/// Judges a heuristic on its tries: every `every` tries, if fewer than
/// `min_caught` paid, it is off for the next `off_for` chances; then it is tried
/// again.
#[derive(Debug, Clone, Copy)]
pub struct Judge {
    every: u32,
    min_caught: u32,
    off_for: u32,
    tries: u32,
    caught: u32,
    off_left: u32,
    /// Times it turned the heuristic off.
    pub turned_off: u64,
}

impl Judge {
    /// A judge of `every` tries at a time, of which `min_caught` must pay, or the
    /// heuristic is off for `off_for` chances.
    pub const fn new(every: u32, min_caught: u32, off_for: u32) -> Judge {
        Judge {
            every,
            min_caught,
            off_for,
            tries: 0,
            caught: 0,
            off_left: 0,
            turned_off: 0,
        }
    }

    /// Whether the heuristic is off now.
    pub fn is_off(&self) -> bool {
        self.off_left > 0
    }

    /// A chance to use the heuristic went by (counts down its time off).
    pub fn pass(&mut self) {
        self.off_left = self.off_left.saturating_sub(1);
    }

    /// Whether the heuristic may be used at this chance (a chance it is off for
    /// is counted down).
    pub fn take_chance(&mut self) -> bool {
        if self.is_off() {
            self.pass();
            return false;
        }
        true
    }

    /// A try ended: it paid (`caught`) or not.
    pub fn record(&mut self, caught: bool) {
        self.tries += 1;
        self.caught += caught as u32;
        if self.tries >= self.every {
            if self.caught < self.min_caught {
                self.off_left = self.off_for;
                self.turned_off += 1;
            }
            self.tries = 0;
            self.caught = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        assert_eq!(quantile::<u32>(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.9), Some(7));
        // The upper middle of an even count, as `v[len / 2]`.
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(3));
        assert_eq!(quantile(&[1, 2, 3], 0.5), Some(2));
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(quantile(&v, 0.9), Some(8));
        assert_eq!(quantile(&v, 1.0), Some(9));
        assert_eq!(quantile(&v, 7.0), Some(9), "clamped");
        assert_eq!(quantile_of(&mut [3.0, f64::NAN, 1.0, 2.0], 0.0), Some(1.0));
    }

    #[test]
    fn a_window_keeps_the_last_n() {
        let mut w = Window::<4>::default();
        assert_eq!(w.quantiles([0.5], 0), None);
        for x in [100.0, 1.0, 2.0, 3.0, 4.0] {
            w.push(x);
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.quantiles([0.0, 0.5, 1.0], 4), Some([1.0, 3.0, 4.0]));
        assert_eq!(w.quantiles([0.5], 5), None);
    }

    #[test]
    fn a_judge_turns_off_what_does_not_pay_then_tries_it_again() {
        let mut j = Judge::new(8, 2, 3);
        for i in 0..8 {
            assert!(j.take_chance());
            j.record(i < 2);
        }
        assert!(!j.is_off(), "two of eight paid");
        for i in 0..8 {
            j.record(i == 0);
        }
        assert!(j.is_off());
        assert_eq!(j.turned_off, 1);
        for _ in 0..3 {
            assert!(!j.take_chance());
        }
        assert!(j.take_chance());
    }
}
