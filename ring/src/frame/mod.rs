//! The frame channel: one producer, many consumers, zero-copy slots, side messages in
//! stream order, hand-off over a unix `SOCK_SEQPACKET` socket.
//!
//! ```text
//!   Producer ──socket: Welcome(rings) · Arena(memfd) · Side · Goodbye──▶ Consumer
//!      │   frame ring  (FrameDesc: arena, slot, offset, len, seq, meta) ──▶ │
//!      │ ◀── release ring (Release: arena, slot)                           │
//!      └── arenas: sealed memfds, written in place by the producer, mapped read-only by consumers
//! ```
//!
//! - The [`Producer`] listens on a path ([`Producer::bind`]) or takes connected
//!   sockets ([`Producer::add_connection`]); a service thread accepts consumers, checks
//!   their credentials, and watches for hang-ups.
//! - [`Producer::acquire`] hands out a [`WriteSlot`] of an arena (a bigger arena is
//!   added when a frame outgrows the current one); the caller fills it in place and
//!   [`WriteSlot::publish`]es it with up to [`META_BYTES`]
//!   of metadata to every consumer, each of which then holds a reference. The slot is
//!   free again when all have released it. [`Producer::send_side`] sends opaque side
//!   messages ordered with frames; sticky ones are replayed to consumers that join
//!   later.
//! - A [`Consumer`] connects ([`Consumer::connect`], or [`Consumer::from_fd`] for an
//!   inherited socket) and receives [`Event`]s: frames (read-only payload and
//!   metadata, released when the [`Frame`] is dropped, from any thread), side
//!   messages, and the end of the stream.
//!
//! Slot ownership lives only in the producer's private ledger ([`WriteSlot`] and
//! [`ReusableSlot`] are handles that ask it):
//! a consumer that releases a slot it does not hold, scribbles on its rings, or
//! sends anything but a goodbye is cut off; a consumer that dies gives back all it
//! held. A slow consumer is handled by its [`Policy`]: the producer blocks for it up
//! to a timeout and then cuts it off, or drops frames for that consumer alone.
//! Everything a consumer receives (messages, fds, descriptors) is validated; a lying
//! producer makes the consumer return an error naming the fault.
//!
//! ```
//! use std::time::Duration;
//! use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig, RecvError};
//!
//! // A producer with no path: consumers are handed over as connected sockets.
//! let producer = Producer::new(ProducerConfig::default())?;
//! let (ours, theirs) = shmring::fdpass::seqpacket_pair()?;
//! producer.add_connection(ours)?;
//! // In the consumer's process (`theirs` inherited, say as fd 3):
//! let mut consumer = Consumer::from_fd(theirs, ConsumerConfig::default())?;
//! producer.wait_for_consumers(1, Some(Duration::from_secs(10)))?;
//!
//! // Fill a slot in place, publish it with a little metadata: one consumer has it.
//! let mut slot = producer.acquire(4096)?;
//! slot.write(0, b"pixels")?;
//! assert_eq!(slot.publish(6, b"pts=0")?, 1);
//!
//! match consumer.recv_timeout(Duration::from_secs(10))? {
//!     // Read in place; dropping the frame gives the slot back.
//!     Event::Frame(frame) => {
//!         assert_eq!(frame.to_vec(), b"pixels");
//!         assert_eq!(frame.meta(), b"pts=0");
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! // Another thread can end a wait at once.
//! let waker = consumer.waker();
//! std::thread::spawn(move || waker.wake());
//! assert!(matches!(
//!     consumer.recv_timeout(Duration::from_secs(60)),
//!     Err(RecvError::Interrupted)
//! ));
//! # Ok::<(), shmring::Error>(())
//! ```

internal_mods! {
    arena;
    desc;
    ledger;
    wire;
}
mod consumer;
mod outbox;
mod producer;

pub use crate::os::listen::PeerCred;
pub use arena::{MAX_SLOT_BYTES, READ_PAD};
pub use desc::META_BYTES;
pub use wire::{MAX_DESCRIPTION, MAX_NOTE, MAX_SIDE_PAYLOAD, goodbye};

#[cfg(feature = "tokio")]
pub use consumer::AsyncConsumer;
pub use consumer::{Anticipation, Backoff, Consumer, ConsumerConfig, Event, Frame};
pub use producer::{
    ConsumerEvent, ConsumerStats, Policy, Producer, ProducerConfig, ProducerStats, ReusableSlot,
    WriteSlot,
};

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::wire::{MAX_MESSAGE, Msg};
use crate::os::doorbell::{poll_until, pollfd};
use crate::os::fdpass;

// Endpoints move between threads (a GStreamer element's streaming thread and its
// state changes); frames and slots are released from any thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Producer>();
    send_sync::<WriteSlot>();
    send_sync::<ReusableSlot>();
    send_sync::<Frame>();
    send::<Consumer>();
};

/// Most fds any message carries (`Welcome`).
const MAX_MSG_FDS: usize = 4;

/// Sends `msg` with `fds` without ever blocking past `deadline`: a full socket buffer
/// is waited out with `poll` (a peer that never reads cannot hang us), then
/// [`Error::Timeout`].
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    msg: &Msg,
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> Result<()> {
    debug_assert_eq!(msg.fd_count(), fds.len());
    let bytes = msg.encode();
    loop {
        match fdpass::send_flags(sock, &bytes, fds, libc::MSG_DONTWAIT) {
            Err(e) if e.is_would_block() => {
                let mut p = [pollfd(sock, libc::POLLOUT)];
                if !poll_until(&mut p, deadline)? {
                    return Err(Error::Timeout);
                }
                if p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    return Err(Error::PeerGone);
                }
            }
            r => return r,
        }
    }
}

/// Receives and decodes one message without blocking: `Ok(None)` when none is
/// waiting. End of stream is [`Error::PeerGone`]; anything malformed (bad bytes, too
/// many or too few fds, truncation) is [`PeerFault::Protocol`](crate::PeerFault::Protocol) and the fds are closed.
///
/// `buf` is the caller's receive buffer, grown to [`MAX_MESSAGE`] on first use.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
    if buf.len() < MAX_MESSAGE {
        buf.resize(MAX_MESSAGE, 0);
    }
    match fdpass::recv(sock, buf, MAX_MSG_FDS, libc::MSG_DONTWAIT) {
        Ok(r) => {
            let msg = Msg::decode(&buf[..r.len], r.fds.len())?;
            Ok(Some((msg, r.fds)))
        }
        Err(e) if e.is_would_block() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `Goodbye` sent on a best-effort basis (the peer may be gone or not reading).
pub(crate) fn say_goodbye(sock: &impl AsFd, code: u32, reason: &str) {
    let reason = truncate_reason(reason);
    let _ = send_msg(
        sock.as_fd(),
        &Msg::Goodbye {
            code,
            reason: reason.to_owned(),
        },
        &[],
        Some(Instant::now()),
    );
}

/// Cuts `s` to at most [`MAX_REASON`](crate::frame::wire::MAX_REASON) bytes on a character
/// boundary.
pub(crate) fn truncate_reason(s: &str) -> &str {
    let mut end = s.len().min(crate::frame::wire::MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether polling before sleeping pays, judged on the waits it was tried on: a
/// poll that ends the wait saves a sleep and a wake-up; one that does not only
/// costs CPU, which, on a machine with more runnable threads than cores, the peer
/// being waited for may need. Every 64 polls, if fewer than 4 ended their wait,
/// the next 256 waits sleep at once; then polling is tried again.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpinJudge {
    tries: u32,
    caught: u32,
    off_for: u32,
    /// Times it turned polling off.
    pub(crate) turned_off: u64,
}

impl SpinJudge {
    const JUDGE: u32 = 64;
    const MIN_CAUGHT: u32 = 4;
    const OFF_FOR: u32 = 256;

    /// The poll time for the next wait: `spin`, or zero while polling is off.
    pub(crate) fn budget(&mut self, spin: Duration) -> Duration {
        if self.off_for > 0 {
            self.off_for -= 1;
            return Duration::ZERO;
        }
        spin
    }

    /// A wait that polled (a non-zero budget) ended: during the poll or not.
    pub(crate) fn record(&mut self, caught: bool) {
        self.tries += 1;
        self.caught += caught as u32;
        if self.tries >= Self::JUDGE {
            if self.caught < Self::MIN_CAUGHT {
                self.off_for = Self::OFF_FOR;
                self.turned_off += 1;
            }
            self.tries = 0;
            self.caught = 0;
        }
    }
}

/// The polling phase of a wait (producer and consumer alike): `keep_spinning` is
/// true for as long as the spin time, counted from its first call, lasts.
pub(crate) struct Spin {
    budget: Duration,
    until: Option<Instant>,
}

impl Spin {
    pub(crate) fn new(budget: Duration) -> Spin {
        Spin {
            budget,
            until: None,
        }
    }

    /// Whether this wait polls at all.
    pub(crate) fn polls(&self) -> bool {
        !self.budget.is_zero()
    }

    pub(crate) fn keep_spinning(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let now = Instant::now();
        now < *self.until.get_or_insert(now + self.budget)
    }

    /// A short pause between two looks: a few spins, then the CPU is offered to
    /// whatever else waits for it (see [`Spin::yield_cpu`]).
    pub(crate) fn pause(&self) {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        Spin::yield_cpu();
    }

    /// Offers this CPU to another runnable thread; returns at once when there is
    /// none. The peer polled for may be queued behind the poller on the same CPU
    /// (the scheduler stacks a wakee on its waker's CPU, and on some machines
    /// keeps both there with the other CPU idle): a poll that never yields then
    /// holds the peer off until the poll gives up, so it never catches anything.
    pub(crate) fn yield_cpu() {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_that_rarely_ends_a_wait_stops_for_a_while_then_is_tried_again() {
        let spin = Duration::from_micros(20);
        let mut j = SpinJudge::default();
        // A quarter of the polls end their wait: it stays on.
        for i in 0..SpinJudge::JUDGE {
            assert_eq!(j.budget(spin), spin);
            j.record(i % 4 == 0);
        }
        assert_eq!(j.turned_off, 0);
        // Fewer than 4 of 64: off for 256 waits, then on again.
        for i in 0..SpinJudge::JUDGE {
            assert_eq!(j.budget(spin), spin);
            j.record(i < 3);
        }
        assert_eq!(j.turned_off, 1);
        for _ in 0..SpinJudge::OFF_FOR {
            assert_eq!(j.budget(spin), Duration::ZERO);
        }
        assert_eq!(j.budget(spin), spin);
    }
}
