//! # shmring: sealed shared-memory rings for processes that do not trust each other
//!
//! Zero-copy IPC on Linux where neither side can crash, hang or spy on the other:
//!
//! - **Regions are sealed memfds.** A receiver checks `F_GET_SEALS` and `fstat`
//!   *before* `mmap` and refuses a memfd whose size could still change, so a peer
//!   cannot truncate it under us and raise `SIGBUS` ([`memfd`], [`Region`]).
//!   [`write_once`] hands out immutable blobs; `F_SEAL_FUTURE_WRITE` regions can only
//!   be mapped read-only by peers.
//! - **Every value read from shared memory is validated** before use: ring indices
//!   (`head - tail <= capacity`, never backwards), headers (magic, version, element
//!   size, capacity against the sealed size). A violation is an [`Error`] naming it,
//!   never a panic or an out-of-bounds access. Shared memory is never turned into Rust
//!   references: indices are atomics, payload is copied with `ptr::copy_nonoverlapping`.
//! - **Doorbells never block** ([`Doorbell`]): each side holds its own end of a
//!   unix socket pair, rings with `MSG_DONTWAIT` only when the other side said it
//!   is waiting (no syscall per message while busy), and sees the peer's death as
//!   `POLLHUP`. A [`Waker`] interrupts a wait from another thread.
//! - **fds are passed strictly** ([`fdpass`]): `MSG_CMSG_CLOEXEC`, truncation is an
//!   error, surplus fds are closed.
//! - **The frame channel** ([`frame`]: [`Producer`], [`Consumer`]) moves frames from
//!   one producer to many consumers without copying: sealed arenas of page-aligned
//!   slots that consumers can only map read-only, slot ownership in the producer's
//!   private memory, side messages in order with frames, per-consumer policies for
//!   slow consumers, hang-up detection and reconnect.
//!
//! ```
//! use shmring::{Receiver, Sender};
//!
//! // Process A creates the ring; `fds` would travel to process B with `fds.send(sock)`.
//! let (mut tx, fds) = Sender::<[u64; 4]>::create(64)?;
//! // Process B validates and attaches.
//! let mut rx = Receiver::<[u64; 4]>::attach(fds)?;
//! tx.send(&[1, 2, 3, 4])?;
//! assert_eq!(rx.recv()?, [1, 2, 3, 4]);
//! drop(tx);
//! assert!(matches!(rx.recv(), Err(shmring::RecvError::PeerGone)));
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! A peer can still change bytes it has already published (true of any zero-copy
//! transport): a receiver sees possibly torn values, never undefined behaviour, since
//! elements are [`bytemuck::Pod`] and copied out.

/// Declares modules public with the `internals` feature (for the project's own
/// hostile test peers and fuzzers), crate-private otherwise.
macro_rules! internal_mods {
    ($($(#[$a:meta])* $m:ident;)*) => {
        $(
            $(#[$a])*
            #[cfg(feature = "internals")]
            #[doc(hidden)]
            pub mod $m;
            $(#[$a])*
            #[cfg(not(feature = "internals"))]
            pub(crate) mod $m;
        )*
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

pub mod error;
pub mod frame;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
pub mod measure;
mod os;
mod ring;
// The heap ring's atomics (loom's under `--cfg loom`).
#[cfg(any(feature = "internals", test))]
mod sync;

pub use bytemuck;
pub use error::{
    AddConnectionError, AttachError, BindError, ConnectError, CreateError, Error, FdFault,
    HeaderFault, IndexFault, LinkError, NoteError, OsError, PeerFault, ProtocolFault, PublishError,
    RecvError, RecvMsgError, Result, SendError, SendMsgError, StreamFault, WaitError,
};
#[cfg(feature = "tokio")]
pub use frame::AsyncConsumer;
pub use frame::{
    Backoff, Consumer, ConsumerConfig, Event, Frame, Policy, Producer, ProducerConfig,
    ReusableSlot, WriteSlot,
};
pub use os::doorbell::{Doorbell, Wake, Waker};
pub use os::memfd::{Access, Mapping, Region, Seals};
pub use os::{fdpass, memfd};
pub use ring::blob::{DEFAULT_MAX_BLOB, ReadOnlyBlob, write_once};
#[cfg(feature = "tokio")]
pub use ring::channel::AsyncReceiver;
pub use ring::channel::{DEFAULT_SPIN, Receiver, RingFds, Sender};
pub use ring::layout::{MAX_CAPACITY, MAX_RING_BYTES, RING_VERSION};

/// The frame channel's wire format, descriptors, arenas, slot ledger and listening
/// socket, for this project's own hostile test peers and fuzzers, which speak the
/// protocol by hand (feature `internals`, off by default). Not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::frame::{arena, desc, ledger, wire};
    pub use crate::os::listen;
    pub use crate::ring::{channel, index, layout};
}
