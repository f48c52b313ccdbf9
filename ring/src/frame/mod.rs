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
mod link;
mod outbox;
mod producer;
mod spin;

pub use crate::os::listen::PeerCred;
pub use arena::{MAX_SLOT_BYTES, READ_PAD};
pub use desc::META_BYTES;
pub use wire::{
    MAX_DESCRIPTION, MAX_NOTE, MAX_SIDE_PAYLOAD, MAX_STATS_CONSUMERS, STATS_VERSION, goodbye,
};

#[cfg(feature = "tokio")]
pub use consumer::AsyncConsumer;
pub use consumer::{Anticipation, Backoff, Consumer, ConsumerConfig, Event, Frame, Inspection};
pub use producer::{
    ConsumerEvent, ConsumerStats, Policy, Producer, ProducerConfig, ProducerStats, ReusableSlot,
    WriteSlot,
};

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
