//! Received frames and how their slots go back to the producer.

use std::sync::{Arc, Mutex};

use crate::frame::arena::ConsumerArena;
use crate::frame::desc::{META_BYTES, Release};
use crate::frame::ledger::SlotRef;
use crate::ring::channel::Sender;

/// Sends releases back to the producer; shared by the consumer and its frames so a
/// frame can be dropped on any thread.
#[derive(Debug)]
pub(super) struct Releaser {
    pub(super) q: Mutex<(Sender<Release>, Vec<Release>)>,
    /// The producer stopped taking releases: more than [`MAX_RELEASE_BACKLOG`]
    /// waited (the consumer reports it as the producer's fault).
    pub(super) overflowed: std::sync::atomic::AtomicBool,
}

/// Most releases waiting for room in the release ring. The ring holds more entries
/// than there are slots, so an honest producer keeps it from filling; one that stops
/// reading it (and keeps sending frames) would otherwise grow the backlog forever.
pub(super) const MAX_RELEASE_BACKLOG: usize = 65_536;

impl Releaser {
    pub(super) fn release(&self, r: Release) {
        let mut g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, backlog) = &mut *g;
        backlog.push(r);
        // The release ring has room unless the producer stopped reading; then the
        // backlog waits for the next release, up to its bound.
        match tx.try_send_batch(backlog) {
            Ok(n) => {
                backlog.drain(..n);
                if backlog.len() > MAX_RELEASE_BACKLOG {
                    backlog.clear();
                    self.overflowed
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            }
            // The producer is gone or broke the ring: nobody to give slots back to.
            Err(_) => backlog.clear(),
        }
    }
}

pub(super) enum Body {
    Shared {
        ptr: *const u8,
        len: usize,
        _arena: Arc<ConsumerArena>,
        slot: SlotRef,
        releaser: Arc<Releaser>,
    },
    Copied(Vec<u8>),
}

/// A received frame: payload, metadata, sequence number. Dropping it (on any
/// thread) releases its slot to the producer.
///
/// In place (the default), the payload is shared memory that a hostile producer
/// could still change: read it through [`Frame::as_ptr`] or copy it out
/// ([`Frame::copy_to`], [`Frame::to_vec`]); it is never exposed as a `&[u8]`.
/// [`ConsumerConfig::copy`](crate::ConsumerConfig::copy) gives a private copy instead ([`Frame::as_slice`]).
pub struct Frame {
    pub(super) seq: u64,
    pub(super) dropped: u32,
    pub(super) meta: [u8; META_BYTES],
    pub(super) meta_len: usize,
    pub(super) body: Body,
}

// SAFETY: the raw pointer points into a read-only mapping that the frame keeps alive
// through its `Arc<ConsumerArena>`; nothing is ever written through it, so reading it
// from another thread is no different from reading it from this one. The releaser is
// behind a Mutex.
unsafe impl Send for Frame {}
// SAFETY: `&Frame` only gives out the pointer, copies of the bytes and the metadata;
// no interior mutability is reachable without the Mutex.
unsafe impl Sync for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("len", &self.len())
            .field("dropped", &self.dropped)
            .field("meta_len", &self.meta_len)
            .field("copied", &self.is_copy())
            .finish()
    }
}

impl Frame {
    /// The frame's number in this consumer's stream (0, 1, 2, …; drops leave no gap).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Frames the producer dropped for this consumer just before this one.
    pub fn dropped_before(&self) -> u32 {
        self.dropped
    }

    /// The metadata published with the frame.
    pub fn meta(&self) -> &[u8] {
        &self.meta[..self.meta_len]
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Shared { len, .. } => *len,
            Body::Copied(v) => v.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the payload is a private copy.
    pub fn is_copy(&self) -> bool {
        matches!(self.body, Body::Copied(_))
    }

    /// The payload's first byte: `len()` readable bytes that stay mapped while the
    /// frame lives. In place, the producer may still change them, and at least
    /// [`READ_PAD`](crate::frame::READ_PAD) more readable bytes follow (the next
    /// slot's, or zeros after the arena) for code that reads a little past a frame;
    /// a private copy ([`Frame::is_copy`]) has no such bytes.
    pub fn as_ptr(&self) -> *const u8 {
        match &self.body {
            Body::Shared { ptr, .. } => *ptr,
            Body::Copied(v) => v.as_ptr(),
        }
    }

    /// The payload as a slice, for a private copy only ([`ConsumerConfig::copy`](crate::ConsumerConfig::copy)).
    pub fn as_slice(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Shared { .. } => None,
            Body::Copied(v) => Some(v),
        }
    }

    /// Copies the payload into `dst` (which must be exactly `len()` bytes).
    pub fn copy_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len(), "copy_to: destination size");
        // SAFETY: `as_ptr` points at `len()` readable bytes kept mapped by `self`;
        // `dst` is our own memory of the same length, so no overlap. A producer
        // changing the source meanwhile gives us some bytes, never UB (`u8` has no
        // invalid values and we hold no reference to the source).
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), dst.as_mut_ptr(), dst.len()) };
    }

    /// The payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        self.copy_to(&mut v);
        v
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Body::Shared { slot, releaser, .. } = &self.body {
            releaser.release(Release::from(*slot));
        }
    }
}
