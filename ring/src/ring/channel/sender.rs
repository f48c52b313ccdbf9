//! The sending half of a typed shared ring.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::os::doorbell::{Doorbell, Waker};
use crate::error::{AttachError, CreateError, LinkError, Result, SendError};
use crate::ring::layout::Role;
use crate::ring::index::{self, ProducerIdx, Waits, Word, Words};

use super::{End, RingFds};

/// The sending half of a typed shared ring. `!Clone`: there is exactly one per ring.
#[derive(Debug)]
pub struct Sender<T: Pod> {
    end: End,
    idx: ProducerIdx,
    /// The receiver waited (asleep, and was rung, or polling) for something sent
    /// since [`Sender::take_awaited`] last looked.
    awaited: bool,
    _t: PhantomData<fn(T)>,
}

impl<T: Pod> Sender<T> {
    /// Creates a ring of `capacity` elements (a power of two); hand the [`RingFds`] to
    /// the receiving process.
    pub fn create(capacity: usize) -> Result<(Sender<T>, RingFds), CreateError> {
        let (end, fds) = End::create(size_of::<T>(), align_of::<T>(), capacity, Role::Sender)?;
        Ok((Sender::from_end(end), fds))
    }

    /// Attaches to a ring a receiver created.
    pub fn attach(fds: RingFds) -> Result<Sender<T>, AttachError> {
        let end = End::attach(fds, size_of::<T>(), align_of::<T>(), Role::Receiver)?;
        Ok(Sender::from_end(end))
    }

    fn from_end(end: End) -> Self {
        // Start from the shared indices as they are: on create both are 0; on attach
        // a peer could have left anything, which the first `free` validates.
        let head = end.load(Word::Head, Ordering::Relaxed);
        let idx = ProducerIdx::new(end.hdr.capacity, head, head);
        Sender {
            end,
            idx,
            awaited: false,
            _t: PhantomData,
        }
    }

    end_accessors!("receiver");

    /// Sends as many of `items` as fit without waiting; returns how many.
    pub fn try_send_batch(&mut self, items: &[T]) -> Result<usize, SendError> {
        self.end.check()?;
        let want = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let free = match self.idx.free(&self.end, want) {
            Ok(f) => f,
            Err(e) => return self.end.fail(e),
        };
        let n = free.min(want);
        for (i, item) in items[..n as usize].iter().enumerate() {
            let dst = self.end.slot_ptr(self.idx.slot(i as u32));
            // SAFETY: `dst` is a free slot of `size_of::<T>()` bytes inside the mapping
            // (validated index, validated header); the receiver does not read it until
            // `commit` publishes it, and if a hostile receiver does, it sees bytes, not
            // a Rust value of ours. Source and destination cannot overlap (ours is a
            // Rust value, the slot is in a shared mapping).
            unsafe {
                std::ptr::copy_nonoverlapping((item as *const T).cast::<u8>(), dst, size_of::<T>())
            };
        }
        self.publish(n)?;
        Ok(n as usize)
    }

    /// Whether the receiver waited (asleep and rung, or polling) for what was sent
    /// since the last call.
    pub(crate) fn take_awaited(&mut self) -> bool {
        std::mem::take(&mut self.awaited)
    }

    /// Sends one element if there is room; `Ok(false)` when the ring is full.
    pub fn try_send(&mut self, item: &T) -> Result<bool, SendError> {
        Ok(self.try_send_batch(std::slice::from_ref(item))? == 1)
    }

    /// Writes one element in place: `fill` gets a raw pointer to the free slot (shared
    /// memory: write through the pointer, e.g. with `ptr::write` or
    /// `ptr::copy_nonoverlapping`; never turn it into a reference). `Ok(false)` when full.
    pub fn try_send_with(&mut self, fill: impl FnOnce(*mut T)) -> Result<bool, SendError> {
        self.end.check()?;
        let free = match self.idx.free(&self.end, 1) {
            Ok(f) => f,
            Err(e) => return self.end.fail(e),
        };
        if free == 0 {
            return Ok(false);
        }
        fill(self.end.slot_ptr(self.idx.slot(0)).cast::<T>());
        self.publish(1)?;
        Ok(true)
    }

    fn publish(&mut self, n: u32) -> Result<(), LinkError> {
        if n == 0 {
            return Ok(());
        }
        self.idx.commit(&self.end, n);
        match self.idx.consumer_wait(&self.end) {
            Waits::No => {}
            Waits::Polling => self.awaited = true,
            Waits::Asleep => {
                self.end.bell.ring()?;
                self.awaited = true;
            }
        }
        Ok(())
    }

    /// Sends one element, waiting for room as long as needed.
    pub fn send(&mut self, item: &T) -> Result<(), SendError> {
        self.send_deadline(item, None)
    }

    /// Sends one element, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, item: &T, timeout: Duration) -> Result<(), SendError> {
        self.send_deadline(item, Some(Instant::now() + timeout))
    }

    fn send_deadline(&mut self, item: &T, deadline: Option<Instant>) -> Result<(), SendError> {
        loop {
            if self.try_send(item)? {
                return Ok(());
            }
            self.wait_for_room(deadline)?;
        }
    }

    /// Waits until at least one slot is free (or the deadline passes).
    pub fn wait_for_room(&mut self, deadline: Option<Instant>) -> Result<(), SendError> {
        let idx = &mut self.idx;
        self.end.park(Word::ProducerWaiting, deadline, |end| {
            Ok(idx.free(end, 1)? > 0)
        })
    }

    /// Elements sent and not yet known to be received.
    pub fn in_flight(&self) -> usize {
        self.idx.in_flight() as usize
    }

    /// Elements sent and not yet received, as the receiver's shared tail says now.
    /// The tail is read, not judged: one that claims more taken than sent reads as
    /// [`Sender::in_flight`], and the next send finds the fault.
    pub fn pending(&self) -> usize {
        self.idx.pending(&self.end) as usize
    }
}

impl<T: Pod> Sender<T> {
    /// Checks that the shared header still holds what it held at attach time.
    pub fn check_header(&self) -> Result<(), LinkError> {
        self.end.header_intact()
    }

    /// Free elements right now (reads the shared tail; validates it).
    pub fn room(&mut self) -> Result<usize, LinkError> {
        let cap = self.end.hdr.capacity;
        Ok(self.free(cap)? as usize)
    }

    /// Whether one element fits now. Reads the shared tail (and validates it) only
    /// when the cached one says the ring is full: a stream with room costs no load
    /// of the cache line the receiver writes.
    pub fn has_room(&mut self) -> Result<bool, LinkError> {
        Ok(self.free(1)? > 0)
    }

    /// Free elements, reading the shared tail only if the cache shows fewer than
    /// `want`; a peer fault found there breaks the endpoint.
    fn free(&mut self, want: u32) -> Result<u32, LinkError> {
        self.end.check()?;
        match self.idx.free(&self.end, want) {
            Ok(f) => Ok(f),
            Err(e) => self.end.fail(e),
        }
    }

    /// For a wait on several rings at once: says "the sender waits for room", then
    /// re-checks. Returns true if there is room already. Call [`Sender::disarm`]
    /// after the wait, whatever it returned.
    pub(crate) fn arm(&mut self) -> Result<bool, LinkError> {
        index::announce_wait(&self.end, Word::ProducerWaiting);
        self.has_room()
    }

    /// Ends a wait begun with [`Sender::arm`].
    pub(crate) fn disarm(&self) {
        index::end_wait(&self.end, Word::ProducerWaiting);
    }

    /// The doorbell, to poll alongside other fds.
    pub(crate) fn bell(&self) -> &Doorbell {
        &self.end.bell
    }

    /// Marks the ring closed for the receiver ([`Receiver::sender_closed`]). Release:
    /// whatever the sender does after this (e.g. reuse memory that descriptors in the
    /// ring name) is ordered after the receiver can see the mark.
    pub(crate) fn mark_closed(&self) {
        self.end.closed_word().store(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::doorbell::Wake;
    use crate::ring::channel::Receiver;

    fn pair() -> (Sender<u64>, Receiver<u64>) {
        let (tx, fds) = Sender::<u64>::create(8).unwrap();
        (tx, Receiver::attach(fds).unwrap())
    }

    /// Whether the receiver's doorbell rang (without waiting).
    fn rung(rx: &Receiver<u64>) -> bool {
        let soon = Some(Instant::now() + Duration::from_millis(1));
        matches!(rx.bell().wait(None, soon), Ok(Wake::Rung))
    }

    #[test]
    fn a_polling_receiver_is_not_rung_but_makes_the_send_say_it_was_awaited() {
        let (mut tx, mut rx) = pair();
        // Nobody waits: no ring, not awaited.
        assert!(tx.try_send(&1).unwrap());
        assert!(!tx.take_awaited());
        assert!(!rung(&rx));
        // Polling: no ring (it looks by itself), but awaited (the sender yields).
        rx.polling(true);
        assert!(tx.try_send(&2).unwrap());
        assert!(tx.take_awaited());
        assert!(!tx.take_awaited(), "taken once");
        assert!(!rung(&rx));
        rx.polling(false);
        // Asleep: rung and awaited.
        while rx.try_recv().unwrap().is_some() {}
        assert!(!rx.arm().unwrap());
        assert!(tx.try_send(&3).unwrap());
        assert!(tx.take_awaited());
        assert!(rung(&rx));
        rx.disarm();
    }

    #[test]
    fn any_other_value_in_the_waiting_word_counts_as_asleep_and_is_rung() {
        let (mut tx, rx) = pair();
        // What a hostile receiver could leave there.
        for v in [1, 3, 7, u32::MAX] {
            // (Written through our own mapping of the shared words.)
            tx.end.store(Word::ConsumerWaiting, v, Ordering::Relaxed);
            assert!(tx.try_send(&u64::from(v)).unwrap());
            assert!(tx.take_awaited());
            assert!(rung(&rx), "value {v}");
        }
    }
}
