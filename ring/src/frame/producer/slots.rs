//! Slots handed out for writing ([`WriteSlot`]) and published slots this process
//! keeps ([`HeldSlot`]).

use super::*;

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
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|e| e > self.capacity())
        {
            return Err(Error::Invalid(format!(
                "{} bytes at offset {offset} overflow a slot of {}",
                bytes.len(),
                self.capacity()
            )));
        }
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
    pub fn publish(self, len: usize, meta: &[u8]) -> Result<usize> {
        self.publish_range(0, len, meta)
    }

    /// Publishes `len` bytes at `offset` in the slot.
    pub fn publish_range(mut self, offset: usize, len: usize, meta: &[u8]) -> Result<usize> {
        self.publish_inner(offset, len, meta, false)
    }

    /// Publishes like [`WriteSlot::publish_range`] and keeps a local reference: the
    /// slot is not reused while the returned [`HeldSlot`] lives, whatever the
    /// consumers do. For memory this process still reads after publishing (e.g. a
    /// GStreamer buffer that stays referenced): it must not be written any more.
    pub fn publish_held(
        mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
    ) -> Result<(usize, HeldSlot)> {
        let n = self.publish_inner(offset, len, meta, true)?;
        Ok((n, HeldSlot { slot: Some(self) }))
    }

    /// Publishes; from here on the slot is the ledger's (`done`), whatever happens.
    pub(super) fn publish_inner(
        &mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
        keep: bool,
    ) -> Result<usize> {
        if offset.checked_add(len).is_none_or(|e| e > self.capacity()) {
            return Err(Error::Invalid(format!(
                "frame of {len} bytes at offset {offset} overflows a slot of {}",
                self.capacity()
            )));
        }
        if meta.len() > META_BYTES {
            return Err(Error::Invalid(format!(
                "metadata of {} bytes exceeds {META_BYTES}",
                meta.len()
            )));
        }
        self.done = true;
        let inner = &*self.inner;
        publish(
            inner,
            inner.lock(),
            self.slot,
            offset as u32,
            len as u32,
            meta,
            keep,
        )
    }
}

/// A published slot this process keeps a reference to ([`WriteSlot::publish_held`]):
/// it stays mapped and is not handed out again until this is dropped.
pub struct HeldSlot {
    /// The published slot (`done`: its own drop gives nothing back); taken out by
    /// [`HeldSlot::try_reclaim`].
    pub(super) slot: Option<WriteSlot>,
}

impl HeldSlot {
    pub(super) fn held(&self) -> &WriteSlot {
        self.slot
            .as_ref()
            .expect("a HeldSlot holds its slot until consumed")
    }

    /// The slot.
    pub fn slot(&self) -> SlotRef {
        self.held().slot
    }

    /// Takes the slot back for writing, without a new acquire, when every consumer
    /// it went to has released it (or has gone) and its arena is still current:
    /// the same memory, at the same address, writable again. Otherwise the slot
    /// stays held and comes back unchanged. Never waits.
    ///
    /// For a writer that keeps its buffers bound to slots (a buffer pool reusing
    /// its buffers): cheaper than dropping this and acquiring anew.
    pub fn try_reclaim(mut self) -> std::result::Result<WriteSlot, HeldSlot> {
        let ws = self.held();
        let mut st = ws.inner.lock();
        st.drain_releases(&ws.inner);
        let reclaimed = st.ledger.reclaim(LOCAL_HOLDER, ws.slot);
        drop(st);
        if !reclaimed {
            return Err(self);
        }
        let mut ws = self.slot.take().expect("checked above");
        ws.done = false;
        Ok(ws)
    }
}

impl std::fmt::Debug for HeldSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldSlot")
            .field("slot", &self.slot.as_ref().map(|s| s.slot))
            .finish()
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let Some(ws) = &self.slot else {
            return;
        };
        let mut st = ws.inner.lock();
        // The local holder always holds what it kept; an error would be a bug here.
        let _ = st.ledger.release(LOCAL_HOLDER, ws.slot);
        st.collect_arenas(&ws.inner);
    }
}

/// The ledger id of this process's own references ([`HeldSlot`]); consumers are
/// numbered from 1.
pub(super) const LOCAL_HOLDER: ConsumerId = 0;

impl Drop for WriteSlot {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.inner.lock();
            st.ledger.abandon(self.slot);
            st.collect_arenas(&self.inner);
        }
    }
}
