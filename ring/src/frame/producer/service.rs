//! The service thread: accepting connections, the hello waiting room, hand-offs,
//! consumers' goodbyes and hang-ups, flushing outgoing messages, the lease.

use super::*;

/// How many connections may wait for their hello at once.
pub(super) const MAX_PENDING: usize = 128;

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
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for sock in inner
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            admit(&inner, &mut pending, sock);
        }
        // Consumers with messages waiting are polled for room in their socket too.
        let snapshot: Vec<(ConsumerId, Arc<OwnedFd>, bool)> = {
            let mut st = inner.lock();
            st.cut_off_doomed(&inner);
            st.conns
                .iter()
                .map(|c| (c.id, c.sock.clone(), !c.outbox.is_empty()))
                .collect()
        };
        let mut fds = vec![pollfd(inner.svc.as_fd(), libc::POLLIN)];
        if let Some(l) = &listener {
            fds.push(pollfd(l.as_fd(), libc::POLLIN));
        }
        let first_pending = fds.len();
        let polled_pending = pending.len();
        fds.extend(pending.iter().map(|p| pollfd(p.sock.as_fd(), libc::POLLIN)));
        let first_conn = fds.len();
        fds.extend(snapshot.iter().map(|(_, s, queued)| {
            let out = if *queued { libc::POLLOUT } else { 0 };
            pollfd(s.as_fd(), libc::POLLIN | out)
        }));
        let mut deadline = pending.iter().map(|p| p.deadline).min();
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
            if fds[1].revents != 0 {
                for _ in 0..64 {
                    match l.accept() {
                        Ok(sock) => admit(&inner, &mut pending, sock),
                        Err(e) => {
                            // The listener stays readable: free an fd (the oldest
                            // silent connection) or pause, never spin.
                            if out_of_fds(&e)
                                && !refuse_oldest(&inner, &mut pending, "out of file descriptors")
                            {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            break;
                        }
                    }
                }
            }
        }
        for (k, (id, _, _)) in snapshot.iter().enumerate() {
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

/// Checks a new connection's credentials and queues it for its hello.
pub(super) fn admit(inner: &Inner, pending: &mut Vec<Pending>, sock: OwnedFd) {
    let cred = peer_cred(sock.as_fd()).ok();
    if !inner.cfg.allowed_uids.is_empty() {
        let verdict = match cred {
            Some(c) => check_allowed(c, &inner.cfg.allowed_uids),
            None => Err(Error::protocol("peer credentials unavailable")),
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
            Err(Error::PeerGone) => return None,
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

/// Tells a probe what this producer serves, then lets the connection go (closed
/// when `sock` drops). Never waits: a probe whose socket has no room loses its
/// answer.
fn answer_probe(inner: &Inner, sock: &OwnedFd) {
    let payload = {
        let mut st = inner.lock();
        st.stats.probes += 1;
        st.description.clone()
    };
    let msg = Msg::Description { payload };
    let _ = send_msg(sock.as_fd(), &msg, &[], Some(Instant::now()));
}

pub(super) fn consumer_message(inner: &Inner, id: ConsumerId) {
    let mut st = inner.lock();
    let Some(i) = st.conns.iter().position(|c| c.id == id) else {
        return;
    };
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
            st.conns[i].note = Some(payload);
            st.notes_generation += 1;
        }
        Ok(Some((m, _))) => {
            let reason = format!(
                "protocol violation: consumer {id} sent {} after its hello",
                m.name()
            );
            st.remove(inner, i, Leave::CutOff, reason);
        }
        Err(Error::PeerGone) => {
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
