//! The receiving half of a typed shared ring.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::os::doorbell::{Doorbell, Waker};
use crate::error::{AttachError, CreateError, LinkError, Result, RecvError};
use crate::ring::layout::Role;
use crate::ring::index::{self, ConsumerIdx, Word, Words};

use super::{End, RingFds};

/// The receiving half of a typed shared ring. `!Clone`: there is exactly one per ring.
#[derive(Debug)]
pub struct Receiver<T: Pod> {
    end: End,
    idx: ConsumerIdx,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Receiver<T> {
    /// Creates a ring of `capacity` elements (a power of two); hand the [`RingFds`] to
    /// the sending process.
    pub fn create(capacity: usize) -> Result<(Receiver<T>, RingFds), CreateError> {
        let (end, fds) = End::create(size_of::<T>(), align_of::<T>(), capacity, Role::Receiver)?;
        Ok((Receiver::from_end(end), fds))
    }

    /// Attaches to a ring a sender created.
    pub fn attach(fds: RingFds) -> Result<Receiver<T>, AttachError> {
        let end = End::attach(fds, size_of::<T>(), align_of::<T>(), Role::Sender)?;
        Ok(Receiver::from_end(end))
    }

    fn from_end(end: End) -> Self {
        let tail = end.load(Word::Tail, Ordering::Relaxed);
        let idx = ConsumerIdx::new(end.hdr.capacity, tail, tail);
        Receiver {
            end,
            idx,
            _t: PhantomData,
        }
    }

    end_accessors!("sender");

    /// Checks that the shared header still holds what it held at attach time.
    pub fn check_header(&self) -> Result<(), LinkError> {
        self.end.header_intact()
    }

    /// Receives up to `out.len()` elements without waiting; returns how many.
    pub fn try_recv_batch(&mut self, out: &mut [T]) -> Result<usize, RecvError> {
        self.end.check()?;
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let avail = match self.idx.available(&self.end, want) {
            Ok(a) => a,
            Err(e) => return self.end.fail(e).map_err(Into::into),
        };
        let n = avail.min(want);
        for (i, o) in out[..n as usize].iter_mut().enumerate() {
            let src = self.end.slot_ptr(self.idx.slot(i as u32));
            // SAFETY: `src` is a published slot of `size_of::<T>()` bytes inside the
            // mapping (validated index, validated header). A hostile sender may be
            // rewriting it as we copy: we get some bytes, and every byte pattern is a
            // valid `T` because `T: Pod`. No overlap: `o` is our own memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.cast_const(),
                    (o as *mut T).cast::<u8>(),
                    size_of::<T>(),
                )
            };
        }
        self.release(n)?;
        Ok(n as usize)
    }

    /// Receives one element into `out` if one is there; `Ok(false)` when empty.
    pub fn try_recv_into(&mut self, out: &mut T) -> Result<bool, RecvError> {
        Ok(self.try_recv_batch(std::slice::from_mut(out))? == 1)
    }

    /// Receives one element if one is there.
    pub fn try_recv(&mut self) -> Result<Option<T>, RecvError> {
        let mut v = T::zeroed();
        Ok(self.try_recv_into(&mut v)?.then_some(v))
    }

    /// Reads one element in place: `read` gets a raw pointer to the published slot
    /// (shared memory the sender may still change: copy out of it, never turn it into
    /// a reference). Returns `read`'s result, or `None` when empty.
    pub fn try_recv_with<R>(&mut self, read: impl FnOnce(*const T) -> R) -> Result<Option<R>, RecvError> {
        self.end.check()?;
        let avail = match self.idx.available(&self.end, 1) {
            Ok(a) => a,
            Err(e) => return self.end.fail(e).map_err(Into::into),
        };
        if avail == 0 {
            return Ok(None);
        }
        let r = read(self.end.slot_ptr(self.idx.slot(0)).cast_const().cast::<T>());
        self.release(1)?;
        Ok(Some(r))
    }

    fn release(&mut self, n: u32) -> Result<(), LinkError> {
        if n == 0 {
            return Ok(());
        }
        self.idx.commit(&self.end, n);
        if self.idx.producer_waiting(&self.end) {
            // A receiver whose sender is gone may still drain; don't fail on the ring.
            match self.end.bell.ring() {
                Ok(()) | Err(LinkError::PeerGone) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Receives one element, waiting as long as needed.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_deadline(None)
    }

    /// Receives one element, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Receives one element into `out`, waiting until `deadline` (`None`: forever).
    pub fn recv_into(&mut self, out: &mut T, deadline: Option<Instant>) -> Result<(), RecvError> {
        loop {
            if self.try_recv_into(out)? {
                return Ok(());
            }
            self.wait_for_data(deadline)?;
        }
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let mut v = T::zeroed();
        self.recv_into(&mut v, deadline)?;
        Ok(v)
    }

    /// Waits until at least one element is readable (or the deadline passes).
    pub fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        let idx = &mut self.idx;
        self.end
            .park(Word::ConsumerWaiting, deadline, |end| {
                Ok(idx.available(end, 1)? > 0)
            })
            .map_err(Into::into)
    }
}

impl<T: Pod> Receiver<T> {
    /// Whether the sender marked the ring closed (a value the sender controls: it
    /// only ever makes the receiver stop early).
    pub(crate) fn sender_closed(&self) -> bool {
        self.end.closed_word().load(Ordering::Acquire) != 0
    }
    /// Readable elements right now (reads the shared head; validates it).
    pub fn ready(&mut self) -> Result<usize, LinkError> {
        self.end.check()?;
        match self.idx.available(&self.end, self.end.hdr.capacity) {
            Ok(a) => Ok(a as usize),
            Err(e) => self.end.fail(e),
        }
    }

    /// For a wait on several rings at once: says "the receiver waits for data", then
    /// re-checks. Returns true if there is data already. Call [`Receiver::disarm`]
    /// after the wait, whatever it returned.
    pub(crate) fn arm(&mut self) -> Result<bool, LinkError> {
        index::announce_wait(&self.end, Word::ConsumerWaiting);
        Ok(self.ready()? > 0)
    }

    /// Ends a wait begun with [`Receiver::arm`].
    pub(crate) fn disarm(&self) {
        index::end_wait(&self.end, Word::ConsumerWaiting);
    }

    /// Tells the sender this receiver polls the ring (`true`) or no longer does:
    /// the sender then yields its CPU after sending, so that a receiver polling
    /// on the same CPU sees the element at once instead of after the sender's
    /// time slice.
    pub(crate) fn polling(&self, on: bool) {
        index::announce_polling(&self.end, Word::ConsumerWaiting, on);
    }

    /// The doorbell, to poll alongside other fds.
    pub(crate) fn bell(&self) -> &Doorbell {
        &self.end.bell
    }
}
