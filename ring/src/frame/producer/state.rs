//! The producer's state under its lock: every consumer (its rings, counters and
//! outgoing messages), arenas, sticky messages; joining, posting, cutting off.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, LinkError, PublishError, Result};
use crate::frame::arena::ProducerArena;
use crate::frame::desc::{FrameDesc, Release};
use crate::frame::ledger::{ConsumerId, Ledger, SlotRef};
use crate::frame::link::say_goodbye;
use crate::frame::outbox::Outbox;
use crate::frame::producer::publish::Congestion;
use crate::frame::producer::slots::LOCAL_HOLDER;
use crate::frame::spin::SpinJudge;
use crate::frame::wire::{Msg, PROTOCOL_VERSION, goodbye};
use crate::os::listen::PeerCred;
use crate::ring::channel::{Receiver, Sender};

use super::{ConsumerEvent, ConsumerStats, Inner, Policy, ProducerConfig, ProducerStats};

/// One connected consumer, as the producer sees it.
pub(super) struct Conn {
    pub(super) id: ConsumerId,
    pub(super) cred: PeerCred,
    pub(super) sock: Arc<OwnedFd>,
    pub(super) frames: Sender<FrameDesc>,
    pub(super) releases: Receiver<Release>,
    pub(super) policy: Policy,
    pub(super) sent: u64,
    pub(super) bytes: u64,
    pub(super) drops: u64,
    pub(super) pending_dropped: u32,
    /// Messages (arenas, side messages) posted to it since its welcome (sent, or
    /// waiting in `outbox`).
    pub(super) msgs: u64,
    /// What its socket has not taken yet.
    pub(super) outbox: Outbox,
    /// Why it is to be cut off, when a message could not even be queued for it
    /// (found where it cannot be removed at once; see [`State::cut_off_doomed`]).
    pub(super) doomed: Option<String>,
    /// Its two doorbells (frame taken, slot released), duplicated once so that a
    /// publish can sleep on them without the lock (and without a dup per wait).
    pub(super) bells: Option<Arc<[OwnedFd; 2]>>,
    /// Its latest note (see [`crate::frame::Consumer::send_note`]).
    pub(super) note: Option<Vec<u8>>,
    /// How many more of its socket messages the service thread reads now.
    pub(super) budget: super::service::Budget,
}

pub(super) enum Leave {
    Left,
    CutOff,
}

pub(super) struct State {
    pub(super) ledger: Ledger,
    pub(super) arenas: BTreeMap<u32, Arc<ProducerArena>>,
    pub(super) current: Option<u32>,
    pub(super) next_arena: u32,
    pub(super) conns: Vec<Conn>,
    pub(super) next_id: ConsumerId,
    pub(super) sticky: BTreeMap<u32, Vec<u8>>,
    pub(super) events: VecDeque<ConsumerEvent>,
    pub(super) stats: ProducerStats,
    /// Whether polling before sleeping pays for this producer's waits.
    pub(super) spin_judge: SpinJudge,
    /// Changes whenever a consumer joins, leaves or sends a note.
    pub(super) notes_generation: u64,
    /// What a probe is told ([`Producer::set_description`]).
    pub(super) description: Vec<u8>,
    /// The policy consumers get when they join ([`Producer::set_default_policy`]).
    pub(super) policy: Policy,
}

pub(super) const MAX_EVENTS: usize = 256;

impl State {
    /// The counters now, one entry per connected consumer, and how it serves
    /// (what [`Producer::stats`](super::Producer::stats) returns and a probe is told).
    pub(super) fn snapshot(&self, cfg: &ProducerConfig) -> ProducerStats {
        let mut s = self.stats.clone();
        s.consumers = self
            .conns
            .iter()
            .map(|c| ConsumerStats {
                id: c.id,
                pid: c.cred.pid,
                uid: c.cred.uid,
                frames: c.sent,
                bytes: c.bytes,
                drops: c.drops,
                held: self.ledger.held_by(c.id),
                queued: c.outbox.bytes(),
                pending: c.frames.pending() as u64,
                policy: c.policy,
            })
            .collect();
        s.arenas = self.arenas.len();
        if let Some(cur) = self.current {
            s.slot_size = self.arenas[&cur].slot_size();
            s.slots = self.arenas[&cur].slots() as usize;
            s.free_slots = self.ledger.free_slots(cur);
        }
        s.max_consumers = cfg.max_consumers;
        s.policy = self.policy;
        s.block_timeout = cfg.block_timeout;
        s.lease = cfg.lease;
        s
    }

    pub(super) fn log(&mut self, e: ConsumerEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Ends consumer `i`'s connection and takes back everything it held.
    pub(super) fn remove(&mut self, inner: &Inner, i: usize, how: Leave, reason: String) {
        let c = self.conns.remove(i);
        self.notes_generation += 1;
        if let Leave::CutOff = how {
            // Tell it why, then close its frame ring *before* its slots are taken
            // back: a consumer that reads a descriptor and then sees the mark
            // delivers nothing from a slot that may be rewritten.
            say_goodbye(&*c.sock, goodbye::CUT_OFF, &reason);
            c.frames.mark_closed();
        }
        self.ledger.remove_consumer(c.id);
        match how {
            Leave::Left => {
                self.stats.left += 1;
                self.log(ConsumerEvent::Left { id: c.id, reason });
            }
            Leave::CutOff => {
                self.stats.cut_off += 1;
                self.log(ConsumerEvent::CutOff { id: c.id, reason });
            }
        }
        // Wake the service thread so it stops polling this socket.
        inner.svc.wake();
        inner.changed.notify_all();
        self.collect_arenas(inner);
    }

    /// Drops retired arenas whose last slot came back, telling the consumers.
    pub(super) fn collect_arenas(&mut self, inner: &Inner) {
        for id in self.ledger.collect_retired() {
            self.arenas.remove(&id);
            // Queued like any message; a consumer whose queue overflows is cut off
            // by the next publish or the service thread.
            for i in 0..self.conns.len() {
                self.post(inner, i, &Msg::DropArena { arena_id: id }, &[]);
            }
        }
    }

    /// Takes every release the consumers posted; a bogus one cuts its sender off.
    pub(super) fn drain_releases(&mut self, inner: &Inner) {
        let mut i = 0;
        while i < self.conns.len() {
            match self.drain_one(i) {
                Ok(()) => i += 1,
                Err(e) => {
                    let reason = format!("consumer {}: {e}", self.conns[i].id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
            }
        }
        self.collect_arenas(inner);
    }

    pub(super) fn drain_one(&mut self, i: usize) -> Result<()> {
        let mut buf = [Release { arena: 0, slot: 0 }; 64];
        loop {
            let c = &mut self.conns[i];
            let n = c.releases.try_recv_batch(&mut buf)?;
            for r in &buf[..n] {
                self.ledger.release(c.id, SlotRef::from(*r))?;
            }
            if n < buf.len() {
                return Ok(());
            }
        }
    }

    /// The current arena, replaced by a bigger one if `len` does not fit.
    pub(super) fn arena_for(&mut self, inner: &Inner, len: usize) -> Result<u32, PublishError> {
        if let Some(cur) = self.current {
            if self.arenas[&cur].slot_size() >= len {
                return Ok(cur);
            }
        }
        let arena = Arc::new(ProducerArena::create(len, inner.cfg.slots_for(len))?);
        let id = self.next_arena;
        self.next_arena = self.next_arena.wrapping_add(1);
        self.ledger.add_arena(id, arena.slots());
        self.arenas.insert(id, arena.clone());
        if let Some(old) = self.current.replace(id) {
            self.ledger.retire(old);
        }
        let announce = arena_msg(id, &arena);
        for i in 0..self.conns.len() {
            self.post(inner, i, &announce, &[arena.fd()]);
        }
        self.cut_off_doomed(inner);
        self.collect_arenas(inner);
        Ok(id)
    }

    /// Posts `msg` to consumer `i` (see [`Outbox`]): sent now, or queued. One that
    /// cannot even have it queued is doomed, to be cut off by [`Self::cut_off_doomed`]
    /// (here, or by the next publish or the service thread).
    pub(super) fn post(&mut self, inner: &Inner, i: usize, msg: &Msg, fds: &[BorrowedFd<'_>]) {
        let c = &mut self.conns[i];
        if c.doomed.is_some() {
            return;
        }
        match c
            .outbox
            .post(c.sock.as_fd(), msg, fds, inner.cfg.max_queued)
        {
            Ok(queued) => {
                c.msgs += 1;
                if queued {
                    // The service thread sends it once the socket has room.
                    inner.svc.wake();
                }
            }
            Err(reason) => {
                c.doomed = Some(format!("consumer {}: {reason}", c.id));
                inner.svc.wake();
            }
        }
    }

    /// Cuts off every consumer a message could not be queued for.
    pub(super) fn cut_off_doomed(&mut self, inner: &Inner) {
        while let Some(i) = self.conns.iter().position(|c| c.doomed.is_some()) {
            let reason = self.conns[i].doomed.take().expect("doomed");
            self.remove(inner, i, Leave::CutOff, reason);
        }
    }

    /// Sends what waits for consumer `i`; a consumer gone meanwhile is doomed.
    pub(super) fn flush(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        if c.doomed.is_some() {
            return false;
        }
        match c.outbox.flush(c.sock.as_fd()) {
            Ok(empty) => empty,
            Err(reason) => {
                c.doomed = Some(format!("consumer {}: {reason}", c.id));
                false
            }
        }
    }

    /// A consumer's share of slots: half the current arena's (or what
    /// `max_held` says).
    pub(super) fn share(&self, inner: &Inner) -> usize {
        let slots = self
            .current
            .and_then(|c| self.arenas.get(&c))
            .map_or(inner.cfg.slots, |a| a.slots());
        inner.cfg.max_held_of(slots)
    }

    /// What keeps consumer `i` from taking a frame now: a full frame ring, its full
    /// share of slots, messages its socket has not taken yet, or nothing. An error
    /// is the reason to cut it off. Its releases must have been drained under this
    /// hold of the lock ([`State::drain_releases`]), as `publish` does first.
    pub(super) fn congestion(
        &mut self,
        inner: &Inner,
        i: usize,
    ) -> std::result::Result<Congestion, String> {
        let id = self.conns[i].id;
        let fault = |e: LinkError| format!("consumer {id}: {e}");
        // Its releases were drained at the start of this pass, under this same
        // hold of the lock (`drain_releases`): draining again would only read the
        // release ring's shared head once more, a cache line the consumer's CPU
        // writes.
        let socket_full = !self.flush(i);
        if let Some(reason) = self.conns[i].doomed.take() {
            return Err(reason);
        }
        let held = self.ledger.held_by(id);
        Ok(Congestion {
            ring_full: !self.conns[i].frames.has_room().map_err(fault)?,
            share_full: held >= self.share(inner),
            socket_full,
        })
    }

    /// Sends the frame in `slot` to `targets` (every consumer ready for it, as just
    /// checked under this same hold of the lock).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_frame(
        &mut self,
        inner: &Inner,
        slot: SlotRef,
        mut targets: Vec<ConsumerId>,
        offset: u32,
        len: u32,
        meta: &[u8],
        keep: bool,
    ) -> Published {
        if keep {
            targets.push(LOCAL_HOLDER);
        }
        self.ledger.publish(slot, &targets);
        if keep {
            targets.pop();
        }
        let mut d = FrameDesc {
            arena: slot.arena,
            slot: slot.slot,
            offset,
            len,
            meta_len: meta.len() as u16,
            ..bytemuck::Zeroable::zeroed()
        };
        d.meta[..meta.len()].copy_from_slice(meta);
        let mut sent = 0;
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            if !targets.contains(&c.id) {
                i += 1;
                continue;
            }
            d.seq = c.sent;
            d.dropped = c.pending_dropped;
            d.msgs = c.msgs;
            match c.frames.try_send(&d) {
                Ok(true) => {
                    c.sent += 1;
                    c.bytes += len as u64;
                    c.pending_dropped = 0;
                    sent += 1;
                    i += 1;
                }
                Ok(false) => {
                    let reason = format!("consumer {}: frame ring full after room was seen", c.id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
                Err(e) => {
                    let reason = format!("consumer {}: {e}", c.id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
            }
        }
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        let woke = self
            .conns
            .iter_mut()
            .fold(false, |w, c| c.frames.take_awaited() | w);
        Published { sent, woke }
    }

    /// Arms consumer `i`'s doorbells for what congests it. `None`: it may have
    /// moved already (look again); otherwise the bells to sleep on.
    ///
    /// Only what blocks it is armed: room in the frame ring when that is full,
    /// releases when it holds its share (a consumer rings only an armed bell, so
    /// arming the other would not end the sleep any sooner).
    pub(super) fn arm_wait(
        &mut self,
        i: usize,
        why: Congestion,
    ) -> Result<Option<Bells>, LinkError> {
        let c = &mut self.conns[i];
        let a = if why.ring_full {
            c.frames.arm()
        } else {
            Ok(false)
        };
        let b = if why.share_full {
            c.releases.arm()
        } else {
            Ok(false)
        };
        match (a, b) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(true), _) | (_, Ok(true)) => Ok(None),
            // Without its duplicates (out of fds at its join) the capped sleep
            // still comes back.
            _ => Ok(Some(c.bells.clone())),
        }
    }

    /// Disarms and drains the doorbells of the consumer `id`, if still here.
    pub(super) fn disarm_wait(&mut self, id: ConsumerId) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            c.frames.disarm();
            c.releases.disarm();
            c.frames.bell().drain();
            c.releases.bell().drain();
        }
    }

    /// Makes a consumer of a connection that said hello; on failure the socket
    /// comes back with the reason. Its welcome (with the control region), the
    /// current arena and the sticky messages are posted to it in that order, like
    /// everything else (see [`Outbox`]): a consumer that said hello and then reads
    /// nothing holds up no one.
    pub(super) fn join(
        &mut self,
        inner: &Inner,
        sock: OwnedFd,
        cred: PeerCred,
    ) -> std::result::Result<(), (OwnedFd, Error)> {
        let cfg = &inner.cfg;
        if self.conns.len() >= cfg.max_consumers {
            let e = Error::Invalid(format!(
                "producer already serves {} consumers (its maximum)",
                cfg.max_consumers
            ));
            return Err((sock, e));
        }
        let rings = Sender::<FrameDesc>::create(cfg.frame_ring as usize).and_then(|(f, ffds)| {
            Receiver::<Release>::create(cfg.release_ring() as usize)
                .map(|(r, rfds)| (f, ffds, r, rfds))
        });
        let (frames, ffds, releases, rfds) = match rings {
            Ok(r) => r,
            Err(e) => return Err((sock, e.into())),
        };
        let welcome = Msg::Welcome {
            version: PROTOCOL_VERSION,
            consumer_id: self.next_id,
            frame_ring: cfg.frame_ring,
            release_ring: cfg.release_ring(),
            max_held: cfg.max_held() as u32,
        };
        let mut outbox = Outbox::default();
        let fds = [
            ffds.memfd.as_fd(),
            ffds.doorbell.as_fd(),
            rfds.memfd.as_fd(),
            rfds.doorbell.as_fd(),
        ];
        if let Err(reason) = outbox.post(sock.as_fd(), &welcome, &fds, cfg.max_queued) {
            return Err((sock, Error::Invalid(format!("cannot welcome it: {reason}"))));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.ledger.add_consumer(id);
        let dup = |b: &crate::Doorbell| b.as_fd().try_clone_to_owned().ok();
        let bells = dup(frames.bell())
            .zip(dup(releases.bell()))
            .map(|(f, r)| Arc::new([f, r]));
        self.notes_generation += 1;
        self.conns.push(Conn {
            id,
            cred,
            sock: Arc::new(sock),
            frames,
            releases,
            policy: self.policy,
            sent: 0,
            bytes: 0,
            drops: 0,
            pending_dropped: 0,
            msgs: 0,
            outbox,
            doomed: None,
            bells,
            note: None,
            budget: super::service::Budget::messages(Instant::now()),
        });
        if !self.conns[self.conns.len() - 1].outbox.is_empty() {
            inner.svc.wake();
        }
        let i = self.conns.len() - 1;
        if let Some(cur) = self.current {
            let arena = self.arenas[&cur].clone();
            self.post(inner, i, &arena_msg(cur, &arena), &[arena.fd()]);
        }
        let sticky: Vec<(u32, Vec<u8>)> =
            self.sticky.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (key, payload) in sticky {
            let m = Msg::Side {
                before_frame: 0,
                sticky_key: key,
                payload,
            };
            self.post(inner, i, &m, &[]);
        }
        self.stats.joined += 1;
        self.log(ConsumerEvent::Joined { id, cred });
        self.cut_off_doomed(inner);
        inner.changed.notify_all();
        Ok(())
    }
}

/// The announcement of `arena` (its fd goes with it).
pub(super) fn arena_msg(id: u32, arena: &ProducerArena) -> Msg {
    Msg::Arena {
        arena_id: id,
        slot_size: arena.slot_size() as u32,
        slots: arena.slots(),
    }
}

/// A consumer's doorbells to sleep on without the lock ([`Conn::bells`]).
pub(super) type Bells = Option<Arc<[OwnedFd; 2]>>;

/// What a publish did: consumers that took the frame, and whether one of them
/// waited for it (asleep and rung, or polling).
pub(super) struct Published {
    pub(super) sent: usize,
    pub(super) woke: bool,
}
