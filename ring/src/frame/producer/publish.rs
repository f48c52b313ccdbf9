//! Publishing a frame: which consumers take it, waiting for the congested ones
//! (without the lock), and sending it under one hold of the lock.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::error::{Error, PublishError, Result};
use crate::frame::ledger::{ConsumerId, SlotRef};
use crate::frame::producer::state::{Bells, Leave, Published, State};
use crate::frame::spin::Spin;
use crate::os::doorbell::{poll_until, pollfd};

use super::{Inner, Policy};

/// Why a consumer cannot take a frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct Congestion {
    pub(super) ring_full: bool,
    pub(super) share_full: bool,
    /// Messages wait for room in its socket: no frame may overtake them.
    pub(super) socket_full: bool,
}

impl Congestion {
    pub(super) fn any(&self) -> bool {
        self.ring_full || self.share_full || self.socket_full
    }
}

/// Publishes the frame in `slot`: decides which consumers take it (a congested
/// consumer is skipped under `Policy::Drop`, waited for under `Policy::Block`, and
/// cut off after the block timeout), then sends it to them all under one hold of
/// the lock. Waits happen *without* the lock, so that joins, releases, `stats` and
/// everything else go on while a slow consumer is waited for; after each wait
/// every consumer is looked at again.
pub(super) fn publish<'a>(
    inner: &'a Inner,
    mut st: MutexGuard<'a, State>,
    slot: SlotRef,
    offset: u32,
    len: u32,
    meta: &[u8],
    keep: bool,
) -> Result<Published, PublishError> {
    // Block deadlines and drops of this frame, by consumer id, across passes.
    let mut deadlines: Vec<(ConsumerId, Instant)> = Vec::new();
    let mut dropped: Vec<ConsumerId> = Vec::new();
    // Taken when a consumer first makes this publish wait; `slept` once it slept.
    let mut spin: Option<Spin> = None;
    let mut slept = false;
    'pass: loop {
        st.drain_releases(inner);
        let mut targets = Vec::with_capacity(st.conns.len());
        let mut i = 0;
        while i < st.conns.len() {
            let id = st.conns[i].id;
            if dropped.contains(&id) {
                i += 1;
                continue;
            }
            let why = match st.congestion(inner, i) {
                Ok(c) if !c.any() => {
                    targets.push(id);
                    i += 1;
                    continue;
                }
                Ok(c) => c,
                Err(reason) => {
                    st.remove(inner, i, Leave::CutOff, reason);
                    continue;
                }
            };
            if st.conns[i].policy == Policy::Drop {
                let c = &mut st.conns[i];
                c.drops += 1;
                c.pending_dropped = c.pending_dropped.saturating_add(1);
                dropped.push(id);
                i += 1;
                continue;
            }
            let deadline = match deadlines.iter().find(|(c, _)| *c == id) {
                Some(&(_, d)) => d,
                None => {
                    let d = Instant::now() + inner.cfg.block_timeout;
                    deadlines.push((id, d));
                    d
                }
            };
            if Instant::now() >= deadline {
                let c = &st.conns[i];
                let reason = format!(
                    "consumer {id} took no frame for {:?} (ring {}/{} used, {} slots held)",
                    inner.cfg.block_timeout,
                    c.frames.in_flight(),
                    c.frames.capacity(),
                    st.ledger.held_by(id)
                );
                st.remove(inner, i, Leave::CutOff, reason);
                continue;
            }
            // A consumer at work takes frames and releases slots within
            // microseconds: poll for a while (without the lock, so that it and
            // everything else go on) before sleeping on its doorbells, where a
            // waker is heard again.
            let again;
            (st, again) = inner.poll_step(st, &mut spin, &mut slept);
            if again {
                continue 'pass;
            }
            let sock = why.socket_full.then(|| st.conns[i].sock.clone());
            let bells = match st.arm_wait(i, why) {
                Ok(Some(bells)) => bells,
                Ok(None) => {
                    st.disarm_wait(id);
                    continue 'pass;
                }
                Err(e) => {
                    st.disarm_wait(id);
                    st.remove(inner, i, Leave::CutOff, format!("consumer {id}: {e}"));
                    continue;
                }
            };
            drop(st);
            let woke = wait_bells(inner, &bells, sock.as_deref(), deadline);
            st = inner.lock();
            st.disarm_wait(id);
            match woke {
                Ok(()) => {}
                // The slot stays the caller's, unpublished.
                Err(Error::Interrupted) => return Err(PublishError::Interrupted),
                Err(e) => {
                    if let Some(j) = st.conns.iter().position(|c| c.id == id) {
                        st.remove(inner, j, Leave::CutOff, format!("consumer {id}: {e}"));
                    }
                }
            }
            continue 'pass;
        }
        if spin.as_ref().is_some_and(Spin::polls) && !slept {
            st.spin_judge.record(true);
        }
        return Ok(st.send_frame(inner, slot, targets, offset, len, meta, keep));
    }
}

/// Sleeps on a consumer's two doorbells (frame taken, slot released) until one
/// rings, its socket `sock` has room (when given), `deadline` (capped at 50 ms: the
/// arm flags are shared with other waiters), or a wake-up. A hung-up bell is
/// [`Error::PeerGone`].
pub(super) fn wait_bells(
    inner: &Inner,
    bells: &Bells,
    sock: Option<&OwnedFd>,
    deadline: Instant,
) -> Result<()> {
    // poll() skips a negative fd: a missing bell is never ready.
    let bell = |k: usize| libc::pollfd {
        fd: bells.as_ref().map_or(-1, |b| b[k].as_raw_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    // Room in its socket, when messages wait for it.
    let room = libc::pollfd {
        fd: sock.map_or(-1, |s| s.as_raw_fd()),
        events: libc::POLLOUT,
        revents: 0,
    };
    let mut fds = [
        bell(0),
        bell(1),
        pollfd(inner.waker.as_fd(), libc::POLLIN),
        room,
    ];
    let until = deadline.min(Instant::now() + Duration::from_millis(50));
    poll_until(&mut fds, Some(until))?;
    if fds[2].revents != 0 && inner.waker.take() {
        return Err(Error::Interrupted);
    }
    let hup = libc::POLLHUP | libc::POLLERR;
    if (fds[0].revents | fds[1].revents | fds[3].revents) & hup != 0 {
        return Err(Error::PeerGone);
    }
    Ok(())
}
