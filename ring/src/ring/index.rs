//! The SPSC index protocol, independent of where the ring lives.
//!
//! A ring has four shared 32-bit words:
//!
//! | word               | written by | meaning                                          |
//! |--------------------|------------|--------------------------------------------------|
//! | `head`             | producer   | free-running count of elements published         |
//! | `producer_waiting` | producer   | non-zero while the producer sleeps on "full"     |
//! | `tail`             | consumer   | free-running count of elements consumed          |
//! | `consumer_waiting` | consumer   | non-zero while the consumer sleeps on "empty"    |
//!
//! Each side keeps its own index privately and only *stores* it to shared memory; the
//! peer's index is *loaded* and validated (`head - tail <= capacity`, never moving
//! backwards) before any slot is touched, and cached so that the shared word is read
//! only when the cache says "full" or "empty" (as rtrb does).
//!
//! Wake-ups follow the Dekker pattern: the sleeper stores its flag, issues a SeqCst
//! fence and re-checks the ring before sleeping; the other side publishes, issues a
//! SeqCst fence and reads the flag. At least one of them sees the other's store, so no
//! wake-up is lost, and a busy stream never rings (no syscall per element).
//!
//! The same code runs on the shared-memory ring ([`crate::Sender`]/[`crate::Receiver`])
//! and on the heap-backed [`HeapRing`], which `tests/loom.rs` model-checks.

use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};

use crate::error::IndexFault;

/// One of the four shared words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    Head,
    Tail,
    ProducerWaiting,
    ConsumerWaiting,
}

/// Access to a ring's shared words.
pub(crate) trait Words {
    fn load(&self, w: Word, o: Ordering) -> u32;
    fn store(&self, w: Word, v: u32, o: Ordering);
    /// A sequentially consistent fence.
    fn fence(&self);
}

/// The producer's private index state.
#[derive(Debug, Clone)]
pub(crate) struct ProducerIdx {
    head: u32,
    cached_tail: u32,
    cap: u32,
}

impl ProducerIdx {
    /// `cap` must be a power of two (validated by the caller from the private header).
    pub(crate) fn new(cap: u32, head: u32, tail: u32) -> Self {
        debug_assert!(cap.is_power_of_two());
        ProducerIdx {
            head,
            cached_tail: tail,
            cap,
        }
    }

    /// Free slots; the shared tail is read only if the cache shows fewer than `want`.
    pub(crate) fn free<W: Words>(&mut self, w: &W, want: u32) -> Result<u32, IndexFault> {
        let free = self.cap - self.head.wrapping_sub(self.cached_tail);
        if free >= want {
            return Ok(free);
        }
        // SYNC: Acquire pairs with the consumer's Release store of `tail` in
        // `ConsumerIdx::commit`: the consumer's reads of the slots below `tail` happen
        // before our overwrites of them.
        let tail = w.load(Word::Tail, Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > self.cap {
            return Err(IndexFault::TailBehind {
                tail,
                used,
                head: self.head,
                capacity: self.cap,
            });
        }
        if tail.wrapping_sub(self.cached_tail) > self.head.wrapping_sub(self.cached_tail) {
            return Err(IndexFault::TailBackwards {
                from: self.cached_tail,
                to: tail,
            });
        }
        self.cached_tail = tail;
        Ok(self.cap - used)
    }

    /// The slot index of the `i`-th free element.
    pub(crate) fn slot(&self, i: u32) -> usize {
        (self.head.wrapping_add(i) & (self.cap - 1)) as usize
    }

    /// Publishes `n` written elements.
    pub(crate) fn commit<W: Words>(&mut self, w: &W, n: u32) {
        debug_assert!(n <= self.cap - self.head.wrapping_sub(self.cached_tail));
        self.head = self.head.wrapping_add(n);
        // SYNC: Release pairs with the consumer's Acquire load of `head` in
        // `ConsumerIdx::available`: our slot writes happen before its reads.
        w.store(Word::Head, self.head, Release);
    }

    /// After `commit`: whether the consumer said it is going to sleep.
    #[cfg(any(feature = "internals", test))]
    pub(crate) fn consumer_waiting<W: Words>(&self, w: &W) -> bool {
        self.consumer_wait(w) == Waits::Asleep
    }

    /// After `commit`: how the consumer said it waits. Any value but the two it
    /// writes counts as asleep (a lying consumer gets rung, which is harmless).
    pub(crate) fn consumer_wait<W: Words>(&self, w: &W) -> Waits {
        // SYNC: this fence and the consumer's fence in `announce_wait` order the
        // store of `head` above against the load of `consumer_waiting` (Dekker).
        w.fence();
        match w.load(Word::ConsumerWaiting, Relaxed) {
            0 => Waits::No,
            POLLING => Waits::Polling,
            _ => Waits::Asleep,
        }
    }

    /// Elements published and not yet known to be consumed.
    pub(crate) fn in_flight(&self) -> u32 {
        self.head.wrapping_sub(self.cached_tail)
    }

    /// Elements sent and not yet taken, as the shared tail says now; a tail no
    /// receiver could have written (more taken than sent) reads as the cached
    /// count. Changes nothing: the fault, if any, is found by the next send.
    pub(crate) fn pending<W: Words>(&self, w: &W) -> u32 {
        // SYNC: Acquire, as in `free`; only a count for display is derived.
        let used = self.head.wrapping_sub(w.load(Word::Tail, Acquire));
        if used > self.cap {
            self.in_flight()
        } else {
            used
        }
    }
}

/// The consumer's private index state.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerIdx {
    tail: u32,
    cached_head: u32,
    cap: u32,
}

impl ConsumerIdx {
    /// `cap` must be a power of two (validated by the caller from the private header).
    pub(crate) fn new(cap: u32, head: u32, tail: u32) -> Self {
        debug_assert!(cap.is_power_of_two());
        ConsumerIdx {
            tail,
            cached_head: head,
            cap,
        }
    }

    /// Readable elements; the shared head is read only if the cache shows fewer than `want`.
    pub(crate) fn available<W: Words>(&mut self, w: &W, want: u32) -> Result<u32, IndexFault> {
        let avail = self.cached_head.wrapping_sub(self.tail);
        if avail >= want {
            return Ok(avail);
        }
        // SYNC: Acquire pairs with the producer's Release store of `head` in
        // `ProducerIdx::commit`: its slot writes happen before our reads.
        let head = w.load(Word::Head, Acquire);
        let avail = head.wrapping_sub(self.tail);
        if avail > self.cap {
            return Err(IndexFault::HeadPast {
                head,
                avail,
                tail: self.tail,
                capacity: self.cap,
            });
        }
        if avail < self.cached_head.wrapping_sub(self.tail) {
            return Err(IndexFault::HeadBackwards {
                from: self.cached_head,
                to: head,
            });
        }
        self.cached_head = head;
        Ok(avail)
    }

    /// The slot index of the `i`-th readable element.
    pub(crate) fn slot(&self, i: u32) -> usize {
        (self.tail.wrapping_add(i) & (self.cap - 1)) as usize
    }

    /// Releases `n` read elements to the producer.
    pub(crate) fn commit<W: Words>(&mut self, w: &W, n: u32) {
        debug_assert!(n <= self.cached_head.wrapping_sub(self.tail));
        self.tail = self.tail.wrapping_add(n);
        // SYNC: Release pairs with the producer's Acquire load of `tail` in
        // `ProducerIdx::free`: our slot reads happen before its overwrites.
        w.store(Word::Tail, self.tail, Release);
    }

    /// After `commit`: whether the producer said it is going to sleep.
    pub(crate) fn producer_waiting<W: Words>(&self, w: &W) -> bool {
        // SYNC: pairs with the producer's fence in `announce_wait` (Dekker).
        w.fence();
        w.load(Word::ProducerWaiting, Relaxed) != 0
    }
}

/// The sleeper's half of the Dekker handshake: say "I am waiting", then fence. The
/// caller must re-check the ring after this and before sleeping.
pub(crate) fn announce_wait<W: Words>(w: &W, flag: Word) {
    w.store(flag, 1, Relaxed);
    // SYNC: pairs with the fence in `consumer_waiting`/`producer_waiting` on the other
    // side: either it sees our flag, or our re-check sees its published index.
    w.fence();
}

/// Clears the waiting flag after a wait.
pub(crate) fn end_wait<W: Words>(w: &W, flag: Word) {
    w.store(flag, 0, Relaxed);
}

/// The consumer's waiting flag while it polls the ring: the producer need not ring,
/// but should let it run (it may wait on the producer's CPU).
pub(crate) const POLLING: u32 = 2;

/// How the consumer waits, as it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waits {
    No,
    Polling,
    Asleep,
}

/// Says "I am polling" (or, with `false`, no longer). No fence: nothing is lost
/// when the producer misses it, it only yields less.
pub(crate) fn announce_polling<W: Words>(w: &W, flag: Word, on: bool) {
    w.store(flag, if on { POLLING } else { 0 }, Relaxed);
}

/// The heap-backed ring (feature `internals`, and the crate's own tests): the index
/// protocol above over atomics on the heap.
#[cfg(any(feature = "internals", test))]
mod heap {
    use std::mem::MaybeUninit;
    use std::sync::atomic::Ordering::{self, Acquire};

    use super::{ConsumerIdx, ProducerIdx, Word, Words, announce_wait, end_wait};
    use crate::sync::{self, Arc, AtomicU32, UnsafeCell};

    struct HeapInner<T> {
        words: [AtomicU32; 4],
        slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    }

    // SAFETY: slots are accessed only under the SPSC protocol (one producer writes slots
    // the consumer has released, one consumer reads slots the producer has published), so
    // no slot is accessed from two threads at once; `T: Send` moves values across.
    unsafe impl<T: Send> Sync for HeapInner<T> {}

    impl<T> Words for HeapInner<T> {
        fn load(&self, w: Word, o: Ordering) -> u32 {
            self.words[w as usize].load(o)
        }
        fn store(&self, w: Word, v: u32, o: Ordering) {
            self.words[w as usize].store(v, o)
        }
        fn fence(&self) {
            sync::fence(Ordering::SeqCst)
        }
    }

    /// An in-process SPSC ring that runs exactly the index protocol of the shared ring.
    ///
    /// It exists so that the protocol can be model-checked with loom (`tests/loom.rs`)
    /// and tested without processes (feature `internals`: no API of the crate). What is
    /// still in the ring when both halves are gone is dropped with the shared part,
    /// whichever half goes last.
    pub struct HeapRing;

    impl HeapRing {
        /// A producer/consumer pair over a ring of `capacity` elements (a power of two).
        #[allow(clippy::new_ret_no_self)]
        pub fn new<T: Send>(capacity: u32) -> (HeapProducer<T>, HeapConsumer<T>) {
            assert!(
                capacity.is_power_of_two(),
                "capacity must be a power of two"
            );
            let inner = Arc::new(HeapInner {
                words: [
                    AtomicU32::new(0),
                    AtomicU32::new(0),
                    AtomicU32::new(0),
                    AtomicU32::new(0),
                ],
                slots: (0..capacity)
                    .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                    .collect(),
            });
            (
                HeapProducer {
                    inner: inner.clone(),
                    idx: ProducerIdx::new(capacity, 0, 0),
                },
                HeapConsumer {
                    inner,
                    idx: ConsumerIdx::new(capacity, 0, 0),
                },
            )
        }
    }

    /// The producing half of a [`HeapRing`].
    pub struct HeapProducer<T> {
        inner: Arc<HeapInner<T>>,
        idx: ProducerIdx,
    }

    /// The consuming half of a [`HeapRing`].
    pub struct HeapConsumer<T> {
        inner: Arc<HeapInner<T>>,
        idx: ConsumerIdx,
    }

    impl<T: Send> HeapProducer<T> {
        /// Pushes as many of `items` as fit; returns how many. `wake` is true when the
        /// consumer announced that it sleeps and must be woken.
        pub fn push_batch(&mut self, items: &mut Vec<T>) -> (usize, bool) {
            let want = items.len() as u32;
            let free = self
                .idx
                .free(&*self.inner, want)
                .expect("heap ring cannot be corrupt");
            let n = free.min(want);
            for (i, v) in items.drain(..n as usize).enumerate() {
                let slot = &self.inner.slots[self.idx.slot(i as u32)];
                // SAFETY: the slot is free (below `free`), so the consumer does not touch it
                // until `commit` publishes it; we are the only producer.
                slot.with_mut(|p| unsafe { (*p).write(v) });
            }
            if n == 0 {
                return (0, false);
            }
            self.idx.commit(&*self.inner, n);
            (n as usize, self.idx.consumer_waiting(&*self.inner))
        }

        /// Pushes one item, or gives it back if the ring is full.
        pub fn push(&mut self, v: T) -> Result<bool, T> {
            let mut items = vec![v];
            match self.push_batch(&mut items) {
                (1, wake) => Ok(wake),
                _ => Err(items.pop().expect("item not pushed")),
            }
        }

        /// Producer side of the sleep protocol: announce, then re-check for space.
        /// Returns true if there is space after all (do not sleep).
        pub fn prepare_wait(&mut self) -> bool {
            announce_wait(&*self.inner, Word::ProducerWaiting);
            let free = self
                .idx
                .free(&*self.inner, 1)
                .expect("heap ring cannot be corrupt");
            if free > 0 {
                end_wait(&*self.inner, Word::ProducerWaiting);
                return true;
            }
            false
        }

        /// Clears the waiting flag after sleeping.
        pub fn finish_wait(&mut self) {
            end_wait(&*self.inner, Word::ProducerWaiting);
        }
    }

    impl<T: Send> HeapConsumer<T> {
        /// Pops up to `max` items into `out`; returns how many, and whether the producer
        /// announced that it sleeps and must be woken.
        pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> (usize, bool) {
            let avail = self
                .idx
                .available(&*self.inner, 1)
                .expect("heap ring cannot be corrupt");
            let n = avail.min(max as u32);
            for i in 0..n {
                let slot = &self.inner.slots[self.idx.slot(i)];
                // SAFETY: the slot is published (below `avail`, after the Acquire load of
                // head) and initialised by the producer; the producer does not reuse it
                // until `commit` releases it; `assume_init_read` moves the value out once.
                out.push(slot.with(|p| unsafe { (*p).assume_init_read() }));
            }
            if n == 0 {
                return (0, false);
            }
            self.idx.commit(&*self.inner, n);
            (n as usize, self.idx.producer_waiting(&*self.inner))
        }

        /// Pops one item; the bool says whether to wake the producer.
        pub fn pop(&mut self) -> Option<(T, bool)> {
            let mut out = Vec::with_capacity(1);
            let (_, wake) = self.pop_batch(&mut out, 1);
            out.pop().map(|v| (v, wake))
        }

        /// Consumer side of the sleep protocol: announce, then re-check for data.
        /// Returns true if there is data after all (do not sleep).
        pub fn prepare_wait(&mut self) -> bool {
            announce_wait(&*self.inner, Word::ConsumerWaiting);
            let avail = self
                .idx
                .available(&*self.inner, 1)
                .expect("heap ring cannot be corrupt");
            if avail > 0 {
                end_wait(&*self.inner, Word::ConsumerWaiting);
                return true;
            }
            false
        }

        /// Clears the waiting flag after sleeping.
        pub fn finish_wait(&mut self) {
            end_wait(&*self.inner, Word::ConsumerWaiting);
        }
    }

    // The items still in the ring belong to it, not to either half: they are dropped
    // when the last half goes, whichever it is (the consumer first, with items queued,
    // used to leak them).
    impl<T> Drop for HeapInner<T> {
        fn drop(&mut self) {
            if !std::mem::needs_drop::<T>() {
                return;
            }
            // SYNC: both halves are gone (this is the last owner), so the Acquire loads
            // pair with their last Release stores of head and tail.
            let head = self.load(Word::Head, Acquire);
            let mut t = self.load(Word::Tail, Acquire);
            let mask = self.slots.len() as u32 - 1;
            while t != head {
                let slot = &self.slots[(t & mask) as usize];
                // SAFETY: slots between tail and head were published (written) and never
                // consumed (moved out); no half is left to touch them.
                slot.with_mut(|p| unsafe { (*p).assume_init_drop() });
                t = t.wrapping_add(1);
            }
        }
    }
}

#[cfg(any(feature = "internals", test))]
pub use heap::{HeapConsumer, HeapProducer, HeapRing};
