//! Slots handed out for writing once ([`WriteSlot`]) and slots a writer keeps
//! bound to a buffer across publications ([`ReusableSlot`]).

use std::sync::Arc;

use crate::error::{PublishError, Result};
use crate::frame::arena::ProducerArena;
use crate::frame::desc::META_BYTES;
use crate::frame::ledger::{ConsumerId, SlotRef};
use crate::frame::producer::publish::publish;

use super::{Inner, Producer};

/// A slot handed out for writing. Fill it through [`WriteSlot::as_mut_ptr`] or
/// [`WriteSlot::write`], then [`WriteSlot::publish`] it; dropping it unpublished
/// gives it back.
pub struct WriteSlot {
    pub(super) inner: Arc<Inner>,
    pub(super) arena: Arc<ProducerArena>,
    pub(super) slot: SlotRef,
    pub(super) done: bool,
}

impl std::fmt::Debug for WriteSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSlot")
            .field("slot", &self.slot)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl WriteSlot {
    /// Where to write: `capacity()` bytes of shared memory. Write through the pointer
    /// (never make a Rust reference of it that outlives the slot); consumers read it
    /// only after [`WriteSlot::publish`].
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.arena.slot_ptr(self.slot.slot)
    }

    /// Bytes the slot holds.
    pub fn capacity(&self) -> usize {
        self.arena.slot_size()
    }

    /// Which slot this is.
    pub fn slot(&self) -> SlotRef {
        self.slot
    }

    /// Copies `bytes` into the slot at `offset`.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), PublishError> {
        self.fits("write", offset, bytes.len())?;
        // SAFETY: the range was checked to lie inside this slot; the slot is ours
        // (the ledger handed it out for writing and no consumer holds it), and
        // `bytes` is our own memory, so the two cannot overlap. A consumer that
        // reads the slot anyway (a hostile one) sees bytes; nothing reads it back.
        // Large frames go with streaming stores (`copy`), fenced before publish.
        unsafe { crate::ring::copy::to_shared(self.as_mut_ptr().add(offset), bytes) };
        Ok(())
    }

    /// Publishes the slot's first `len` bytes with `meta` (at most
    /// [`META_BYTES`] bytes) to every consumer that can take it. Returns how many
    /// consumers it went to.
    pub fn publish(self, len: usize, meta: &[u8]) -> Result<usize, PublishError> {
        self.publish_range(0, len, meta)
    }

    /// Publishes `len` bytes at `offset` in the slot.
    pub fn publish_range(
        mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
    ) -> Result<usize, PublishError> {
        self.publish_inner(offset, len, meta, false)
    }

    /// `len` bytes at `offset` lie inside the slot.
    fn fits(&self, what: &'static str, offset: usize, len: usize) -> Result<(), PublishError> {
        if offset.checked_add(len).is_none_or(|e| e > self.capacity()) {
            return Err(PublishError::TooLarge {
                what,
                len,
                offset,
                max: self.capacity().saturating_sub(offset),
            });
        }
        Ok(())
    }

    /// Publishes; once it did, the slot is the ledger's (`done`). Interrupted
    /// before it went out, the slot is still this one's, unpublished.
    fn publish_inner(
        &mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
        keep: bool,
    ) -> Result<usize, PublishError> {
        self.fits("frame", offset, len)?;
        if meta.len() > META_BYTES {
            return Err(PublishError::TooLarge {
                what: "metadata",
                len: meta.len(),
                offset: 0,
                max: META_BYTES,
            });
        }
        let inner = &*self.inner;
        let done = publish(
            inner,
            inner.lock(),
            self.slot,
            offset as u32,
            len as u32,
            meta,
            keep,
        )?;
        self.done = true;
        if done.woke {
            // A consumer waited for this frame. One just rung is often woken
            // onto this CPU (the scheduler stacks a wakee on its waker's CPU),
            // and one polling may run here too; either waits until this thread
            // sleeps or is preempted, about a millisecond when it goes on to
            // make the next frame. Yielding lets it run now (and costs a system
            // call when nothing else waits for this CPU).
            // SAFETY: sched_yield takes no arguments and cannot fail.
            unsafe { libc::sched_yield() };
        }
        Ok(done.sent)
    }
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.inner.lock();
            st.ledger.abandon(self.slot);
            st.collect_arenas(&self.inner);
        }
    }
}

/// A slot a writer keeps bound to one buffer for as long as it likes, published
/// again and again: written, published (this process keeps a reference, so the
/// slot stays mapped and is not handed out to anyone else), taken back once every
/// consumer it went to released it ([`ReusableSlot::try_rearm`]), written again.
///
/// The ledger alone knows who holds the slot; this handle only asks it. For a
/// buffer pool whose buffers stay bound to slots: reuse costs no acquire and the
/// memory, at the same address, is likely still cached. Dropping it gives the slot
/// back (at once if unpublished, once the consumers release it otherwise).
pub struct ReusableSlot {
    /// The slot; `done` while published (its own drop then gives nothing back).
    slot: WriteSlot,
}

impl From<WriteSlot> for ReusableSlot {
    fn from(slot: WriteSlot) -> ReusableSlot {
        ReusableSlot { slot }
    }
}

impl ReusableSlot {
    /// Where to write: [`ReusableSlot::capacity`] bytes of shared memory, to be
    /// written only while [`ReusableSlot::is_writable`] (consumers may be reading
    /// it otherwise). Never make a Rust reference of it that outlives the slot.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.slot.as_mut_ptr()
    }

    /// Bytes the slot holds.
    pub fn capacity(&self) -> usize {
        self.slot.capacity()
    }

    /// Which slot this is.
    pub fn slot(&self) -> SlotRef {
        self.slot.slot
    }

    /// Whether this is a slot of `producer`.
    pub fn is_of(&self, producer: &Producer) -> bool {
        Arc::ptr_eq(&self.slot.inner, &producer.inner)
    }

    /// Whether the slot may be written: never published, or taken back.
    pub fn is_writable(&self) -> bool {
        !self.slot.done
    }

    /// Copies `bytes` into the slot at `offset`; [`PublishError::Published`] while
    /// it is published.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), PublishError> {
        if self.slot.done {
            return Err(PublishError::Published);
        }
        self.slot.write(offset, bytes)
    }

    /// Makes the slot writable again if it can be: true when it is unpublished, or
    /// was published and every consumer it went to has released it (or has gone)
    /// and its arena is still current. Never waits.
    pub fn try_rearm(&mut self) -> bool {
        if !self.slot.done {
            return true;
        }
        let ws = &mut self.slot;
        let mut st = ws.inner.lock();
        st.drain_releases(&ws.inner);
        let reclaimed = st.ledger.reclaim(LOCAL_HOLDER, ws.slot);
        drop(st);
        if reclaimed {
            ws.done = false;
        }
        reclaimed
    }

    /// Publishes `len` bytes at `offset` with `meta`, keeping the slot: it is not
    /// written again, nor handed out, until [`ReusableSlot::try_rearm`] takes it
    /// back. [`PublishError::Published`] if it is published already.
    pub fn publish(
        &mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
    ) -> Result<usize, PublishError> {
        if self.slot.done {
            return Err(PublishError::Published);
        }
        self.slot.publish_inner(offset, len, meta, true)
    }
}

impl std::fmt::Debug for ReusableSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReusableSlot")
            .field("slot", &self.slot.slot)
            .field("writable", &self.is_writable())
            .finish()
    }
}

impl Drop for ReusableSlot {
    fn drop(&mut self) {
        if !self.slot.done {
            return; // the WriteSlot's own drop gives it back
        }
        let ws = &self.slot;
        let mut st = ws.inner.lock();
        // The local holder holds what it published; an error would be a bug here.
        let _ = st.ledger.release(LOCAL_HOLDER, ws.slot);
        st.collect_arenas(&ws.inner);
    }
}

/// The ledger id of this process's own references ([`ReusableSlot`]); consumers
/// are numbered from 1.
pub(super) const LOCAL_HOLDER: ConsumerId = 0;
