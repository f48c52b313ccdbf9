//! Errors: one type per operation a caller can match on, and [`Error`], what they all
//! convert into.
//!
//! - [`BindError`]: making a [`Producer`](crate::Producer) (`bind`, `new`): the path
//!   is in use or unusable, the lock beside it busy, the configuration out of range.
//! - [`ConnectError`]: joining a producer (`Consumer::connect`, `from_fd`): nobody
//!   there, nobody answering, refused, or a producer that broke the protocol.
//! - [`PublishError`]: acquiring, writing and publishing a slot, sending a side
//!   message: too large, already published, no slot in time, interrupted.
//! - [`RecvError`]: receiving (a [`Consumer`](crate::Consumer), a
//!   [`Receiver`](crate::Receiver)): the peer gone or closed, a timeout, a wake-up, or
//!   a peer fault.
//! - [`SendError`]: sending on a [`Sender`](crate::Sender).
//! - [`CreateError`]: making a ring ([`Sender::create`](crate::Sender::create),
//!   [`Receiver::create`](crate::Receiver::create)): the element type and capacity
//!   make no ring, or a system call failed.
//! - [`AttachError`]: attaching to what a peer handed over (a ring's memfd and
//!   doorbell, [`Region::open`](crate::Region::open)): the peer's fault, or a system
//!   call failed.
//! - [`WaitError`], [`AddConnectionError`], [`NoteError`]: the producer's
//!   `wait_for_consumers` and `add_connection`, the consumer's `send_note`.
//!
//! Whatever the peer did wrong is a [`PeerFault`]; an endpoint that saw one reports
//! the same fault on every later call, so a peer fault stays a peer fault. The
//! lower layers' faults have fields of their own and compose into it: a received
//! fd that is not what its place needs ([`FdFault`]), a ring header that lies
//! ([`HeaderFault`]), a ring index moved out of range ([`IndexFault`]), a message
//! that breaks the protocol ([`ProtocolFault`]), a descriptor or release out of range
//! ([`StreamFault`]). Every message names what was wrong, so that a log line is
//! enough to tell a broken or hostile peer from a local failure: "memfd lacks
//! F_SEAL_SHRINK", "ring head 9000 is 8000 past tail 1000, capacity 1024".
//!
//! The lower layers say only what can happen there, and each operation's type is
//! made from theirs case for case (no operation turns another's case it cannot
//! have into a string):
//!
//! - making a memfd, a socket pair, an eventfd or a mapping of one's own fails only
//!   as an [`OsError`];
//! - checking what a peer handed over fails as an [`AttachError`] (its fault, or a
//!   system call); a received socket of the wrong kind is an [`FdFault`];
//! - passing fds: [`SendMsgError`], [`RecvMsgError`] (would block, peer gone, a
//!   malformed message, a system call);
//! - waiting on a peer or ringing it (doorbells, wakers, the ring's ends):
//!   [`LinkError`], which [`SendError`] and [`RecvError`] contain;
//! - decoding: a message is a [`ProtocolFault`], a descriptor a [`PeerFault`], a
//!   ring's index an [`IndexFault`].
//!
//! Every error converts into [`Error`], so `?` works across them; nothing converts
//! back from it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

mod convert;
mod faults;
mod ops;

pub use faults::{FdFault, HeaderFault, IndexFault, ProtocolFault, StreamFault};
pub(crate) use ops::Transmit;
pub use ops::{
    AddConnectionError, AttachError, BindError, ConnectError, CreateError, LinkError, NoteError,
    PublishError, RecvError, RecvMsgError, SendError, SendMsgError, WaitError,
};

/// Shorthand for `Result<T, shmring::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a peer did wrong: it broke the protocol or tampered with shared memory. The
/// connection to that peer is over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerFault {
    /// A received memfd does not carry a seal the trust model needs.
    #[error("memfd lacks {seal}")]
    MissingSeal {
        /// The seal, e.g. `"F_SEAL_SHRINK"`.
        seal: &'static str,
    },
    /// A received memfd has a size other than the one its contents require.
    #[error("memfd is {actual} bytes, {what} needs {expected}")]
    BadSize {
        /// What needed the size, e.g. `"ring header"`.
        what: &'static str,
        /// The size the contents require.
        expected: u64,
        /// The size `fstat` reported.
        actual: u64,
    },
    /// A received fd is not what the protocol says belongs in its place.
    #[error("bad fd: {0}")]
    BadFd(FdFault),
    /// The immutable header of a shared ring is invalid.
    #[error("bad ring header: {0}")]
    BadHeader(HeaderFault),
    /// The shared header changed after this side attached (the peer scribbled on it).
    #[error("ring header changed after attach: byte {byte} is {now:#04x}, was {was:#04x}")]
    HeaderChanged {
        /// The first byte that changed.
        byte: usize,
        /// What it holds now.
        now: u8,
        /// What it held at attach time.
        was: u8,
    },
    /// A ring index the peer moved out of range.
    #[error("{0}")]
    Index(IndexFault),
    /// A descriptor or release the peer wrote is out of range.
    #[error("{0}")]
    Stream(StreamFault),
    /// A message on a socket broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolFault),
}

/// Everything that can go wrong in `shmring`: what the lower layers return, and what
/// every operation's own error converts into.
///
/// Variants fall in three groups:
/// - local failures: of the operating system ([`Error::Os`]), of the caller
///   ([`Error::Invalid`], [`Error::PathInUse`], [`Error::BadPath`]);
/// - a peer that broke the protocol ([`Error::Peer`]): the connection to it is over;
/// - the ordinary ends of a wait ([`Error::PeerGone`], [`Error::Closed`],
///   [`Error::Timeout`], [`Error::Interrupted`], [`Error::Unresponsive`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call, e.g. `"mmap"`.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The peer broke the protocol; an endpoint that saw it says so on every later
    /// call.
    #[error(transparent)]
    Peer(PeerFault),
    /// The peer hung up (closed its end or died).
    #[error("peer gone")]
    PeerGone,
    /// The peer ended the connection with an error code and a reason (for a consumer:
    /// the producer cut it off, or refused it).
    #[error("peer closed the connection: {reason} (code {code})")]
    Closed {
        /// The peer's code (never 0: 0 is a clean end); see
        /// [`goodbye`](crate::frame::goodbye).
        code: u32,
        /// The peer's reason, as it sent it.
        reason: String,
    },
    /// The deadline passed before the operation could complete.
    #[error("timed out")]
    Timeout,
    /// A [`Waker`](crate::Waker) interrupted the wait.
    #[error("interrupted by waker")]
    Interrupted,
    /// A peer that should answer at once did not within the deadline: a listener that
    /// accepts no connection (its backlog stays full), a lock somebody keeps.
    #[error("{what}: nothing within {waited:?}")]
    Unresponsive {
        /// What was waited for, e.g. "connect to /run/user/1000/cam (backlog full)".
        what: String,
        /// How long.
        waited: Duration,
    },
    /// A live producer serves the socket path already.
    #[error("socket path {} is in use by a live producer", path.display())]
    PathInUse {
        /// The path.
        path: PathBuf,
    },
    /// A socket path that cannot be used: too long, not a socket, someone else's.
    #[error("socket path {}: {reason}", path.display())]
    BadPath {
        /// The path (or the lock file beside it).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The caller passed something out of range (a local mistake, not the peer's).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// A system call that failed: what the lowest layers (making a memfd, a socket pair,
/// an eventfd, a mapping of one's own) return, where nothing else can go wrong, and
/// what every operation's `Os` variant is made from.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct OsError {
    /// The call.
    pub op: &'static str,
    /// The error the kernel returned.
    #[source]
    pub source: io::Error,
}

impl OsError {
    /// The `errno` of the call `op` that just failed.
    pub(crate) fn last(op: &'static str) -> OsError {
        OsError {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// The call `op` refused with `errno`.
    pub(crate) fn errno(op: &'static str, errno: i32) -> OsError {
        OsError {
            op,
            source: io::Error::from_raw_os_error(errno),
        }
    }
}

impl From<OsError> for Error {
    fn from(e: OsError) -> Error {
        Error::Os {
            op: e.op,
            source: e.source,
        }
    }
}

/// A lower layer's fault is a [`PeerFault`] (its variant), and so an [`Error`].
macro_rules! fault_into {
    ($($fault:ident => $variant:ident),*) => {$(
        impl From<$fault> for PeerFault {
            fn from(f: $fault) -> PeerFault {
                PeerFault::$variant(f)
            }
        }

        impl From<$fault> for Error {
            fn from(f: $fault) -> Error {
                Error::Peer(PeerFault::$variant(f))
            }
        }
    )*};
}

fault_into!(
    FdFault => BadFd,
    HeaderFault => BadHeader,
    IndexFault => Index,
    ProtocolFault => Protocol,
    StreamFault => Stream
);

impl From<PeerFault> for Error {
    fn from(f: PeerFault) -> Error {
        Error::Peer(f)
    }
}

impl Error {
    /// An [`Error::Os`] from `errno` of the call that just failed.
    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::Os {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// A [`PeerFault::BadSize`].
    pub(crate) fn bad_size(what: &'static str, expected: u64, actual: u64) -> Self {
        Error::Peer(PeerFault::BadSize {
            what,
            expected,
            actual,
        })
    }

    /// True for an [`Error::Os`] that says "would block" (`EAGAIN`).
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Os { source, .. } if source.raw_os_error() == Some(libc::EAGAIN))
    }

    /// True when the peer (not this process) is to blame: the connection should end.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Error::Peer(_))
    }

    /// The peer's fault, if this is one.
    pub fn peer_fault(&self) -> Option<&PeerFault> {
        match self {
            Error::Peer(f) => Some(f),
            _ => None,
        }
    }
}
