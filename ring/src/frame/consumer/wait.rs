//! Waiting for the next event: spinning, waking ahead of a paced stream, sleeping
//! on the doorbell, the socket and the waker.

use super::*;

/// Arrival times of frames, to tell when the next one is due.
#[derive(Default, Debug)]
pub(super) struct Pace {
    pub(super) last: Option<Instant>,
    pub(super) gap: Option<Duration>,
}

impl Pace {
    /// Frames closer than this are a burst (a backlog drained), not the stream's pace.
    const BURST: Duration = Duration::from_micros(50);

    pub(super) fn arrived(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let g = now.saturating_duration_since(last);
            if g >= Self::BURST {
                // Exponential average, 1/8 weight: follows a rate change within a
                // dozen frames, shrugs off one late frame.
                self.gap = Some(match self.gap {
                    None => g,
                    Some(old) => (old * 7 + g) / 8,
                });
            }
        }
        self.last = Some(now);
    }

    /// When the next frame is due, if the stream has a pace.
    pub(super) fn due(&self) -> Option<Instant> {
        Some(self.last? + self.gap?)
    }
}

impl Consumer {
    /// With `wake_ahead`: sleeps (on the doorbell, as usual) until `wake_ahead`
    /// before the next frame is due, then polls the ring until it comes or is
    /// `wake_ahead` late. True when there is something to look at.
    pub(super) fn anticipate(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let ahead = self.cfg.wake_ahead;
        // Only for streams paced well apart: a fast stream keeps the consumer busy
        // anyway, and polling a large share of each interval would cost CPU for
        // nothing.
        let paced = self.pace.gap.is_some_and(|g| g >= ahead * 10);
        let Some(due) = self.pace.due().filter(|_| !ahead.is_zero() && paced) else {
            return Ok(false);
        };
        let give_up = match deadline {
            Some(d) => d.min(due + ahead),
            None => due + ahead,
        };
        let wake = due.checked_sub(ahead).unwrap_or(due);
        if Instant::now() < wake {
            if self.frames.arm()? {
                self.frames.disarm();
                return Ok(true);
            }
            let mut fds = [
                pollfd(self.sock.as_fd(), libc::POLLIN),
                pollfd(self.frames.bell().as_fd(), libc::POLLIN),
                pollfd(self.waker.as_fd(), libc::POLLIN),
            ];
            let woke = poll_until(&mut fds, Some(wake.min(give_up)));
            self.frames.disarm();
            if woke? {
                // Early: a frame rang, or a message, a hang-up or the waker came,
                // which the usual wait (at once, the fds still ready) sorts out.
                let rang =
                    fds[1].revents == libc::POLLIN && fds[0].revents == 0 && fds[2].revents == 0;
                if rang {
                    self.frames.bell().drain();
                }
                return Ok(rang);
            }
        }
        while Instant::now() < give_up {
            if self.frames.ready()? > 0 {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        Ok(false)
    }

    /// Polls the ring for up to the configured spin time. True when a frame came.
    pub(super) fn spin(&mut self) -> Result<bool> {
        let mut spin = Spin::new(self.cfg.spin);
        while spin.keep_spinning() {
            if self.frames.ready()? > 0 {
                return Ok(true);
            }
            spin.pause();
        }
        Ok(false)
    }

    /// Waits for the ring, the socket, the waker or the deadline. `Ok(())` means
    /// "look again".
    pub(super) fn sleep(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.anticipate(deadline)? {
            return Ok(());
        }
        if self.frames.arm()? {
            self.frames.disarm();
            return Ok(());
        }
        let mut fds = [
            pollfd(self.sock.as_fd(), libc::POLLIN),
            pollfd(self.frames.bell().as_fd(), libc::POLLIN),
            pollfd(self.waker.as_fd(), libc::POLLIN),
        ];
        let r = poll_until(&mut fds, deadline);
        self.frames.disarm();
        if !r? {
            return Err(Error::Timeout);
        }
        if fds[2].revents != 0 && self.waker.take() {
            return Err(Error::Interrupted);
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
                return Err(Error::PeerGone);
            }
            return Ok(());
        }
        if fds[1].revents & libc::POLLIN != 0 {
            self.frames.bell().drain();
        }
        Ok(())
    }
}
