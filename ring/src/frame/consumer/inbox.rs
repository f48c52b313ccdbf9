//! Delivering what the producer sent, in its order: frames from the ring, and the
//! socket messages (arenas, side messages, goodbye) each frame follows.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::error::{ProtocolFault, RecvError};
use crate::frame::arena::ConsumerArena;
use crate::frame::consumer::frame::{Body, Frame, MAX_RELEASE_BACKLOG};
use crate::frame::desc::{FrameDesc, META_BYTES, Release};
use crate::frame::link::recv_msg;
use crate::frame::wire::{Msg, goodbye};

use super::{Consumer, Event, PendingSide};

impl Consumer {
    /// Everything that can be delivered without waiting; the socket is read for
    /// messages with no frame after them only if `read_socket`.
    pub(super) fn poll_event(&mut self, read_socket: bool) -> Result<Option<Event>, RecvError> {
        if let Some(ev) = self.due_side() {
            return Ok(Some(ev));
        }
        let desc = match self.stash.take() {
            Some(d) => Some(d),
            None => self.frames.try_recv()?,
        };
        if let Some(d) = desc {
            if self.frames.sender_closed() {
                return Err(self.cut_off());
            }
            // The messages the producer sent before this frame (arenas, side
            // messages) are on the socket: the descriptor says how many.
            self.read_messages_before(&d)?;
            // (A descriptor whose seq lies is refused by `frame`; the side messages
            // due are those before the frame expected next.)
            if self
                .sides
                .front()
                .is_some_and(|s| s.before_frame <= self.next_seq)
            {
                self.stash = Some(d);
                return Ok(self.due_side());
            }
            return self.frame(d).map(|f| Some(Event::Frame(f)));
        }
        if !read_socket {
            return Ok(None);
        }
        // Nothing in the ring: whatever else the producer said is on the socket.
        self.pump()?;
        self.check_cut_off()?;
        if let Some(ev) = self.due_side() {
            return Ok(Some(ev));
        }
        if self.frames.ready()? > 0 {
            return self.poll_event(true);
        }
        // A goodbye was sent after the last descriptor, so once it is here and the
        // ring is empty, the stream is over.
        if let Some((code, reason)) = self.goodbye.take() {
            // Only side messages queued ahead of frames that never came remain.
            if let Some(s) = self.sides.pop_front() {
                self.goodbye = Some((code, reason));
                return Ok(Some(Event::Side {
                    key: s.key,
                    payload: s.payload,
                }));
            }
            self.ended = true;
            if code == goodbye::CLEAN {
                return Ok(Some(Event::End { reason }));
            }
            return Err(RecvError::Closed { code, reason });
        }
        if self.hung_up {
            // Gone without a goodbye, the ring drained: what it queued for frames
            // that never came, then the end.
            if let Some(s) = self.sides.pop_front() {
                return Ok(Some(Event::Side {
                    key: s.key,
                    payload: s.payload,
                }));
            }
            self.ended = true;
            return Err(RecvError::PeerGone);
        }
        Ok(None)
    }

    /// Reads socket messages until all `d.msgs` the producer sent before frame `d`
    /// are in. They are on the socket already (sent before the descriptor was
    /// written); missing ones are a protocol violation.
    pub(super) fn read_messages_before(&mut self, d: &FrameDesc) -> Result<(), RecvError> {
        while self.msgs_read < d.msgs {
            if self.goodbye.is_some() || !self.pump_one()? {
                return Err(ProtocolFault::MessagesMissing {
                    seq: d.seq,
                    follows: d.msgs,
                    arrived: self.msgs_read,
                }
                .into());
            }
        }
        Ok(())
    }

    /// The producer closed our frame ring: it cut us off. Its goodbye (sent first)
    /// says why.
    pub(super) fn cut_off(&mut self) -> RecvError {
        self.ended = true;
        self.stash = None;
        let _ = self.pump();
        match self.goodbye.take() {
            Some((code, reason)) => RecvError::Closed { code, reason },
            None => RecvError::Closed {
                code: goodbye::CUT_OFF,
                reason: "producer closed the frame ring".into(),
            },
        }
    }

    /// A goodbye with an error code means the producer cut us off and has taken back
    /// our slots: descriptors still in the ring name slots it may be rewriting, so
    /// nothing more is delivered.
    pub(super) fn check_cut_off(&mut self) -> Result<(), RecvError> {
        if let Some((code, reason)) = &self.goodbye {
            if *code != goodbye::CLEAN {
                self.ended = true;
                self.stash = None;
                return Err(RecvError::Closed {
                    code: *code,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn due_side(&mut self) -> Option<Event> {
        if self
            .sides
            .front()
            .is_some_and(|s| s.before_frame <= self.next_seq)
        {
            let s = self.sides.pop_front()?;
            return Some(Event::Side {
                key: s.key,
                payload: s.payload,
            });
        }
        None
    }

    /// Validates a descriptor and makes a frame of it.
    pub(super) fn frame(&mut self, d: FrameDesc) -> Result<Frame, RecvError> {
        if self
            .releaser
            .overflowed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(ProtocolFault::ReleasesPiledUp {
                limit: MAX_RELEASE_BACKLOG,
            }
            .into());
        }
        let arena = self.arenas.get(&d.arena).cloned();
        d.validate(self.next_seq, arena.as_ref().map(|a| a.shape()))?;
        let arena = arena.expect("validate refuses unknown arenas");
        let ptr = d.locate(&arena)?;
        self.next_seq += 1;
        let mut meta = [0u8; META_BYTES];
        let meta_len = d.meta_len as usize;
        meta[..meta_len].copy_from_slice(&d.meta[..meta_len]);
        let mut f = Frame {
            seq: d.seq,
            dropped: d.dropped,
            meta,
            meta_len,
            body: Body::Shared {
                ptr,
                len: d.len as usize,
                _arena: arena,
                slot: d.slot_ref(),
                releaser: self.releaser.clone(),
            },
        };
        if self.cfg.copy {
            let v = f.to_vec();
            // Dropping the shared body releases the slot at once.
            let shared = std::mem::replace(&mut f.body, Body::Copied(v));
            if let Body::Shared { slot, releaser, .. } = shared {
                releaser.release(Release::from(slot));
            }
        }
        Ok(f)
    }

    /// Reads every message waiting on the socket (without blocking).
    pub(super) fn pump(&mut self) -> Result<(), RecvError> {
        // A bounded number per call, so a flooding producer cannot keep us here;
        // `socket_backlog` says when the bound, not an empty socket, ended it.
        self.socket_backlog = true;
        for _ in 0..256 {
            if !self.pump_one()? {
                self.socket_backlog = false;
                break;
            }
        }
        Ok(())
    }

    /// Reads and applies one message if one is waiting (and no goodbye came yet).
    pub(super) fn pump_one(&mut self) -> Result<bool, RecvError> {
        if self.goodbye.is_some() {
            return Ok(false);
        }
        let buf = &mut self.buf;
        let Some((msg, mut fds)) = (match recv_msg(self.sock.as_fd(), buf) {
            Err(RecvError::PeerGone) => return Ok(false),
            r => r?,
        }) else {
            return Ok(false);
        };
        if !matches!(msg, Msg::Goodbye { .. }) {
            self.msgs_read += 1;
        }
        {
            match msg {
                Msg::Arena {
                    arena_id,
                    slot_size,
                    slots,
                } => {
                    if self.arenas.contains_key(&arena_id) {
                        return Err(ProtocolFault::ArenaTwice { id: arena_id }.into());
                    }
                    if self.arenas.len() >= self.cfg.max_arenas {
                        return Err(ProtocolFault::TooManyArenas {
                            limit: self.cfg.max_arenas,
                        }
                        .into());
                    }
                    let bytes = slot_size as u64 * slots as u64;
                    let mapped: u64 = self
                        .arenas
                        .values()
                        .map(|a| a.slot_size() as u64 * a.slots() as u64)
                        .sum();
                    if bytes > self.cfg.max_arena_bytes {
                        return Err(ProtocolFault::ArenaTooLarge {
                            id: arena_id,
                            slots,
                            slot_size,
                            limit: self.cfg.max_arena_bytes,
                        }
                        .into());
                    }
                    if mapped + bytes > self.cfg.max_mapped_bytes {
                        return Err(ProtocolFault::MappedTooMuch {
                            id: arena_id,
                            bytes,
                            mapped: mapped + bytes,
                            limit: self.cfg.max_mapped_bytes,
                        }
                        .into());
                    }
                    let fd = fds.pop().expect("decode checked the fd count");
                    let a = ConsumerArena::open(fd, slot_size, slots)?;
                    self.arenas.insert(arena_id, Arc::new(a));
                }
                Msg::DropArena { arena_id } => {
                    // Frames still held keep their own reference to the mapping.
                    if self.arenas.remove(&arena_id).is_none() {
                        return Err(ProtocolFault::UnknownArena {
                            what: "DropArena".into(),
                            id: arena_id,
                        }
                        .into());
                    }
                }
                Msg::Side {
                    before_frame,
                    sticky_key,
                    payload,
                } => {
                    let floor = self.last_side_before.max(self.next_seq);
                    if before_frame < floor {
                        return Err(ProtocolFault::SideLate {
                            before: before_frame,
                            after: floor,
                        }
                        .into());
                    }
                    if self.sides.len() >= self.cfg.max_pending_side {
                        return Err(ProtocolFault::TooManySides {
                            limit: self.cfg.max_pending_side,
                        }
                        .into());
                    }
                    self.last_side_before = before_frame;
                    self.sides.push_back(PendingSide {
                        before_frame,
                        key: sticky_key,
                        payload,
                    });
                }
                Msg::Goodbye { code, reason } => self.goodbye = Some((code, reason)),
                Msg::Hello { .. }
                | Msg::Welcome { .. }
                | Msg::Probe { .. }
                | Msg::Description { .. }
                | Msg::Stats { .. } => {
                    return Err(ProtocolFault::HandshakeMidStream.into());
                }
                Msg::Note { .. } => {
                    return Err(ProtocolFault::NoteFromProducer.into());
                }
            }
        }
        Ok(true)
    }
}
