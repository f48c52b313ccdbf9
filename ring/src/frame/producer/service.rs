//! The service thread: accepting connections, the hello waiting room, hand-offs,
//! consumers' goodbyes and hang-ups, flushing outgoing messages, the lease.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, ProtocolFault, RecvError};
use crate::frame::ledger::ConsumerId;
use crate::frame::link::{recv_msg, say_goodbye, send_msg};
use crate::frame::producer::state::Leave;
use crate::frame::wire::{Msg, PROTOCOL_VERSION, goodbye};
use crate::os::doorbell::{poll_until, pollfd};
use crate::os::listen::{PeerCred, SeqpacketListener, check_allowed, peer_cred, set_nonblocking};

use super::{ConsumerEvent, Inner};

/// How many connections may wait for their hello at once.
pub(super) const MAX_PENDING: usize = 128;

/// Socket messages a consumer may send at once, and then per second: the service
/// thread reads no more of its socket (which it fills for itself), so however
/// fast a consumer talks (notes, in the main), it costs the producer a bounded
/// amount of work, and the consumers beside it nothing. An honest consumer says
/// hello, a note when its downstream changes and goodbye.
pub(super) const MESSAGE_BURST: u32 = 32;
pub(super) const MESSAGES_PER_SECOND: u32 = 32;
/// Connections accepted at once, and then per second: beyond them, connections
/// wait in the listener's backlog (and connecting peers retry), so a flood of
/// connections, probes or consumers that are cut off and come back at once costs
/// the producer a bounded amount of work. A device monitor probes once a second;
/// a reconnecting consumer backs off.
pub(super) const ACCEPT_BURST: u32 = 32;
pub(super) const ACCEPTS_PER_SECOND: u32 = 50;

/// A budget of things done per second (a token bucket).
pub(super) struct Budget {
    tokens: u32,
    burst: u32,
    each: Duration,
    /// When the tokens were last counted.
    at: Instant,
}

impl Budget {
    pub(super) fn new(now: Instant, burst: u32, per_second: u32) -> Budget {
        Budget {
            tokens: burst,
            burst,
            each: Duration::from_nanos(1_000_000_000 / u64::from(per_second.max(1))),
            at: now,
        }
    }

    /// A consumer's budget of socket messages.
    pub(super) fn messages(now: Instant) -> Budget {
        Budget::new(now, MESSAGE_BURST, MESSAGES_PER_SECOND)
    }

    /// `None` when there is something to spend now; otherwise when there will be.
    pub(super) fn refill(&mut self, now: Instant) -> Option<Instant> {
        let earned = now.saturating_duration_since(self.at).as_nanos() / self.each.as_nanos();
        let earned = earned.min(u128::from(self.burst)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.at = if self.tokens == self.burst {
                now
            } else {
                self.at + self.each * earned
            };
        }
        (self.tokens == 0).then(|| self.at + self.each)
    }

    /// Spends one (when there is none, nothing: the caller had a reason).
    pub(super) fn spend(&mut self) {
        self.tokens = self.tokens.saturating_sub(1);
    }
}

/// Takes out the pending connection that has waited longest.
pub(super) fn take_oldest(pending: &mut Vec<Pending>) -> Option<Pending> {
    let k = (0..pending.len()).min_by_key(|&k| pending[k].deadline)?;
    Some(pending.swap_remove(k))
}

/// Refuses the pending connection that has waited longest, if any (true).
pub(super) fn refuse_oldest(inner: &Inner, pending: &mut Vec<Pending>, reason: &str) -> bool {
    let Some(p) = take_oldest(pending) else {
        return false;
    };
    refuse(inner, &p.sock, p.cred, reason.to_owned());
    true
}

/// Makes room in a full waiting room: refuses the *silent* pending connection that
/// has waited longest. Older ones whose hello arrived since the last poll (a flood
/// may admit many connections between two polls) are handed off on the way, so a
/// consumer that said hello is never refused for room, whatever the flood's pace.
pub(super) fn make_room(inner: &Inner, pending: &mut Vec<Pending>, reason: &str) {
    while let Some(p) = take_oldest(pending) {
        // One non-blocking read: a hello joins (or is refused for its own fault).
        if let Some(p) = handshake(inner, p, false) {
            refuse(inner, &p.sock, p.cred, reason.to_owned());
            return;
        }
    }
}

/// `EMFILE` or `ENFILE`.
pub(super) fn out_of_fds(e: &Error) -> bool {
    matches!(e, Error::Os { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// A connection that has not said hello yet.
pub(super) struct Pending {
    pub(super) sock: OwnedFd,
    pub(super) cred: Option<PeerCred>,
    pub(super) deadline: Instant,
}

/// The service thread: accepts connections, runs hand-offs, watches consumers'
/// sockets for goodbyes and hang-ups, enforces the lease.
pub(super) fn service(inner: Arc<Inner>, listener: Option<SeqpacketListener>) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut next_lease_check = Instant::now();
    let mut accepts = Budget::new(Instant::now(), ACCEPT_BURST, ACCEPTS_PER_SECOND);
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        // Connections the application hands over (a socket pair's end, a broker's
        // fd) count against the same budget as those accepted: the rest wait.
        let (handed, handed_later) = take_handed(&inner, &mut accepts, now);
        for sock in handed {
            admit(&inner, &mut pending, sock);
        }
        // Consumers with messages waiting are polled for room in their socket too;
        // those that spent their budget are not read until it refills (a hang-up
        // is still seen).
        let mut refills: Option<Instant> = None;
        let snapshot: Vec<(ConsumerId, Arc<OwnedFd>, bool, bool)> = {
            let mut st = inner.lock();
            st.cut_off_doomed(&inner);
            st.conns
                .iter_mut()
                .map(|c| {
                    let wait = c.budget.refill(now);
                    if let Some(t) = wait {
                        refills = Some(refills.map_or(t, |r| r.min(t)));
                    }
                    (c.id, c.sock.clone(), !c.outbox.is_empty(), wait.is_none())
                })
                .collect()
        };
        let mut fds = vec![pollfd(inner.svc.as_fd(), libc::POLLIN)];
        // Out of accepts: the listener is not polled until the budget refills.
        let accept_again = accepts.refill(now);
        if let Some(r) = accept_again.filter(|_| listener.is_some() || handed_later) {
            refills = Some(refills.map_or(r, |t| t.min(r)));
        }
        if let Some(l) = &listener {
            let events = if accept_again.is_none() {
                libc::POLLIN
            } else {
                0
            };
            fds.push(pollfd(l.as_fd(), events));
        }
        let first_pending = fds.len();
        let polled_pending = pending.len();
        fds.extend(pending.iter().map(|p| pollfd(p.sock.as_fd(), libc::POLLIN)));
        let first_conn = fds.len();
        fds.extend(snapshot.iter().map(|(_, s, queued, may_read)| {
            let out = if *queued { libc::POLLOUT } else { 0 };
            let read = if *may_read { libc::POLLIN } else { 0 };
            pollfd(s.as_fd(), read | out)
        }));
        let mut deadline = pending.iter().map(|p| p.deadline).min();
        if let Some(r) = refills {
            deadline = Some(deadline.map_or(r, |d| d.min(r)));
        }
        if inner.cfg.lease.is_some() {
            deadline = Some(deadline.map_or(next_lease_check, |d| d.min(next_lease_check)));
        }
        if poll_until(&mut fds, deadline).is_err() {
            // poll itself failing (ENOMEM) is not the peers' doing: try again shortly.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        inner.svc.take();
        // Hand-offs: readable or expired pending connections among those polled
        // (ones given back go to the end), in reverse so indices hold.
        for k in (0..polled_pending).rev() {
            let re = fds[first_pending + k].revents;
            if re == 0 && pending[k].deadline > now {
                continue;
            }
            let p = pending.swap_remove(k);
            if let Some(p) = handshake(&inner, p, re == 0) {
                pending.push(p);
            }
        }
        // New connections after the hand-offs, which index `pending` as polled.
        if let Some(l) = &listener {
            if fds[1].revents & libc::POLLIN != 0 {
                accept_new(&inner, l, &mut pending, &mut accepts);
            }
        }
        for (k, (id, _, _, _)) in snapshot.iter().enumerate() {
            let re = fds[first_conn + k].revents;
            if re & libc::POLLOUT != 0 {
                let mut st = inner.lock();
                if let Some(i) = st.conns.iter().position(|c| c.id == *id) {
                    st.flush(i);
                    st.cut_off_doomed(&inner);
                }
            }
            if re & !libc::POLLOUT != 0 {
                consumer_message(&inner, *id);
            }
        }
        if let Some(lease) = inner.cfg.lease {
            if Instant::now() >= next_lease_check {
                enforce_lease(&inner, lease);
                next_lease_check = Instant::now() + (lease / 4).min(Duration::from_millis(100));
            }
        }
    }
}

/// The connections the application handed over that the accept budget lets in
/// now, and whether more wait.
fn take_handed(inner: &Inner, accepts: &mut Budget, now: Instant) -> (Vec<OwnedFd>, bool) {
    let mut incoming = inner.incoming.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    while n < incoming.len() && accepts.refill(now).is_none() {
        accepts.spend();
        n += 1;
    }
    (incoming.drain(..n).collect(), !incoming.is_empty())
}

/// Accepts what the listener has, within the accept budget (64 at most at once).
fn accept_new(
    inner: &Inner,
    l: &SeqpacketListener,
    pending: &mut Vec<Pending>,
    accepts: &mut Budget,
) {
    for _ in 0..64 {
        if accepts.refill(Instant::now()).is_some() {
            break;
        }
        match l.accept() {
            Ok(sock) => {
                accepts.spend();
                admit(inner, pending, sock)
            }
            Err(e) => {
                // The listener stays readable: free an fd (the oldest silent
                // connection) or pause, never spin.
                if out_of_fds(&e) && !refuse_oldest(inner, pending, "out of file descriptors") {
                    std::thread::sleep(Duration::from_millis(10));
                }
                break;
            }
        }
    }
}

/// Checks a new connection's credentials and queues it for its hello.
pub(super) fn admit(inner: &Inner, pending: &mut Vec<Pending>, sock: OwnedFd) {
    let cred = peer_cred(sock.as_fd()).ok();
    if !inner.cfg.allowed_uids.is_empty() {
        let verdict = match cred {
            Some(c) => check_allowed(c, &inner.cfg.allowed_uids),
            None => Err(ProtocolFault::NoCredentials.into()),
        };
        if let Err(e) = verdict {
            refuse(inner, &sock, cred, e.to_string());
            return;
        }
    }
    if set_nonblocking(sock.as_fd()).is_err() {
        return;
    }
    // A flood of connections that never say hello costs a bounded number of fds:
    // the oldest silent one makes room.
    if pending.len() >= MAX_PENDING {
        make_room(
            inner,
            pending,
            &format!("{MAX_PENDING} connections already waiting for their hello"),
        );
    }
    pending.push(Pending {
        sock,
        cred,
        deadline: Instant::now() + inner.cfg.handshake_timeout,
    });
}

pub(super) fn refuse(inner: &Inner, sock: &OwnedFd, cred: Option<PeerCred>, reason: String) {
    // Counted before the peer hears it: whoever it tells finds the refusal in stats.
    {
        let mut st = inner.lock();
        st.stats.refused += 1;
        st.log(ConsumerEvent::Refused {
            cred,
            reason: reason.clone(),
        });
    }
    say_goodbye(sock, goodbye::REFUSED, &reason);
}

/// Reads a pending connection's hello and makes it a consumer, or refuses it. Gives
/// the connection back if nothing was there yet (a spurious wake-up).
pub(super) fn handshake(inner: &Inner, p: Pending, expired: bool) -> Option<Pending> {
    let speaks = |min_version: u32, max_version: u32| {
        if (min_version..=max_version).contains(&PROTOCOL_VERSION) {
            Ok(())
        } else {
            Err(format!(
                "consumer speaks protocol versions {min_version}..={max_version}, producer speaks {PROTOCOL_VERSION}"
            ))
        }
    };
    let hello = if expired {
        Err(format!("no hello within {:?}", inner.cfg.handshake_timeout))
    } else {
        match recv_msg(p.sock.as_fd(), &mut Vec::new()) {
            Ok(Some((
                Msg::Hello {
                    min_version,
                    max_version,
                },
                _,
            ))) => speaks(min_version, max_version),
            Ok(Some((
                Msg::Probe {
                    min_version,
                    max_version,
                },
                _,
            ))) => match speaks(min_version, max_version) {
                Ok(()) => {
                    answer_probe(inner, &p.sock);
                    return None;
                }
                Err(e) => Err(e),
            },
            Ok(Some((m, _))) => Err(format!(
                "protocol violation: expected Hello, got {}",
                m.name()
            )),
            Ok(None) => return Some(p),
            Err(RecvError::PeerGone) => return None,
            Err(e) => Err(e.to_string()),
        }
    };
    let cred = p.cred.unwrap_or(PeerCred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    });
    let refusal = match hello {
        Ok(()) => {
            let mut st = inner.lock();
            match st.join(inner, p.sock, cred) {
                Ok(()) => return None,
                Err((sock, e)) => (sock, e.to_string()),
            }
        }
        Err(reason) => (p.sock, reason),
    };
    refuse(inner, &refusal.0, p.cred, refusal.1);
    None
}

/// Tells a probe what this producer serves and its counters (`Description`, then
/// `Stats`), then lets the connection go (closed when `sock` drops). Never waits:
/// a probe whose socket has no room loses its answer. The snapshot is the one
/// [`Producer::stats`](super::Producer::stats) takes, without draining releases:
/// a probe changes nothing a consumer sees.
fn answer_probe(inner: &Inner, sock: &OwnedFd) {
    let (payload, stats) = {
        let mut st = inner.lock();
        st.stats.probes += 1;
        (st.description.clone(), st.snapshot(&inner.cfg))
    };
    let now = Some(Instant::now());
    if send_msg(sock.as_fd(), &Msg::Description { payload }, &[], now).is_ok() {
        let stats = Box::new(stats);
        let _ = send_msg(sock.as_fd(), &Msg::Stats { stats }, &[], now);
    }
}

pub(super) fn consumer_message(inner: &Inner, id: ConsumerId) {
    let mut st = inner.lock();
    let Some(i) = st.conns.iter().position(|c| c.id == id) else {
        return;
    };
    st.conns[i].budget.spend();
    match recv_msg(st.conns[i].sock.as_fd(), &mut Vec::new()) {
        Ok(None) => {}
        Ok(Some((Msg::Goodbye { code, reason }, _))) => {
            let reason = if code == goodbye::CLEAN {
                format!("consumer {id} said goodbye: {reason}")
            } else {
                format!("consumer {id} left with error {code}: {reason}")
            };
            st.remove(inner, i, Leave::Left, reason);
        }
        Ok(Some((Msg::Note { payload }, _))) => {
            // The same word again is no news.
            if st.conns[i].note.as_ref() != Some(&payload) {
                st.conns[i].note = Some(payload);
                st.notes_generation += 1;
            }
        }
        Ok(Some((m, _))) => {
            let reason = format!(
                "protocol violation: consumer {id} sent {} after its hello",
                m.name()
            );
            st.remove(inner, i, Leave::CutOff, reason);
        }
        Err(RecvError::PeerGone) => {
            st.remove(inner, i, Leave::Left, format!("consumer {id} hung up"));
        }
        Err(e) => {
            let reason = format!("consumer {id}: {e}");
            st.remove(inner, i, Leave::CutOff, reason);
        }
    }
}

pub(super) fn enforce_lease(inner: &Inner, lease: Duration) {
    let mut st = inner.lock();
    st.drain_releases(inner);
    let now = Instant::now();
    let mut i = 0;
    while i < st.conns.len() {
        let id = st.conns[i].id;
        match st.ledger.oldest_held(id) {
            Some(t) if now.duration_since(t) > lease => {
                let reason =
                    format!("consumer {id} held a slot for longer than the {lease:?} lease");
                st.remove(inner, i, Leave::CutOff, reason);
            }
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_its_burst_then_one_per_interval_and_refills_to_its_burst_only() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0, 4, 10);
        for _ in 0..4 {
            assert_eq!(b.refill(t0), None);
            b.spend();
        }
        // Spent: the next one comes 100 ms later.
        assert_eq!(b.refill(t0), Some(t0 + Duration::from_millis(100)));
        assert_eq!(
            b.refill(t0 + Duration::from_millis(99)),
            Some(t0 + Duration::from_millis(100))
        );
        assert_eq!(b.refill(t0 + Duration::from_millis(100)), None);
        b.spend();
        assert!(b.refill(t0 + Duration::from_millis(150)).is_some());
        // A long silence earns no more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(b.refill(later), None);
            b.spend();
        }
        assert!(b.refill(later).is_some());
    }
}
