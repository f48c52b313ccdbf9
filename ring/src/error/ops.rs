//! The errors of each operation, and how they convert from and into [`Error`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{Error, FdFault, HeaderFault, OsError, PeerFault, ProtocolFault};

/// Why a [`Producer`](crate::Producer) could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// A live producer serves the path already.
    #[error("socket path {} is in use by a live producer", path.display())]
    PathInUse {
        /// The path.
        path: PathBuf,
    },
    /// The path cannot be used: too long, not a socket, a lock file of another user.
    #[error("socket path {}: {reason}", path.display())]
    BadPath {
        /// The path (or the lock file beside it).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another producer holds the path's lock and does not let go.
    #[error("{what}: nothing within {waited:?}")]
    Busy {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

/// Why joining a producer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No producer listens at the path (no socket there, or a stale one).
    #[error("no producer at {}: {source}", path.display())]
    NoProducer {
        /// The path.
        path: PathBuf,
        /// What `connect` said.
        #[source]
        source: io::Error,
    },
    /// The producer does not accept or answer within the deadline.
    #[error("{what}: nothing within {waited:?}")]
    Unresponsive {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The producer refused this consumer (full, or a uid it does not serve).
    #[error("refused by the producer: {reason} (code {code})")]
    Refused {
        /// The producer's code ([`goodbye`](crate::frame::goodbye)).
        code: u32,
        /// Its reason.
        reason: String,
    },
    /// The producer hung up before the connection was made.
    #[error("producer gone during the hand-off")]
    PeerGone,
    /// The producer broke the protocol.
    #[error(transparent)]
    Peer(PeerFault),
    /// The hand-off did not complete within the configured time.
    #[error("timed out")]
    Timeout,
    /// A waker interrupted the hand-off.
    #[error("interrupted by waker")]
    Interrupted,
    /// A configuration value or the path is out of range.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

impl ConnectError {
    /// True when the producer is to blame.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, ConnectError::Peer(_))
    }
}

/// Why a slot could not be acquired, written or published, or a side message sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// More bytes than their place holds: a frame over a slot (or over
    /// [`MAX_SLOT_BYTES`](crate::frame::MAX_SLOT_BYTES)), metadata over
    /// [`META_BYTES`](crate::frame::META_BYTES), a side message over its limit.
    #[error("{what} of {len} bytes{} exceeds {max}", at(*.offset))]
    TooLarge {
        /// What was too large: `"frame"`, `"write"`, `"metadata"`, `"side message"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Where it started.
        offset: usize,
        /// The room there was.
        max: usize,
    },
    /// The slot was published already and not taken back
    /// ([`ReusableSlot::try_rearm`](crate::frame::ReusableSlot::try_rearm)).
    #[error("slot is published and not rearmed")]
    Published,
    /// A waker interrupted a wait for a slot or for a consumer.
    #[error("interrupted by waker")]
    Interrupted,
    /// No slot came free within the block timeout, and no consumer holds any: the
    /// caller itself holds every slot unpublished.
    #[error("no free slot within {waited:?}: every slot is held unpublished here")]
    NoSlot {
        /// How long was waited.
        waited: Duration,
    },
    /// A system call failed (e.g. making a new arena).
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

/// " at offset N", or nothing for offset 0.
fn at(offset: usize) -> String {
    if offset == 0 {
        String::new()
    } else {
        format!(" at offset {offset}")
    }
}

/// Why [`Producer::wait_for_consumers`](crate::Producer::wait_for_consumers)
/// returned before the consumers came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed.
    #[error("timed out")]
    Timeout,
    /// A waker interrupted the wait.
    #[error("interrupted by waker")]
    Interrupted,
}

/// Why [`Producer::add_connection`](crate::Producer::add_connection) refused a
/// socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddConnectionError {
    /// Not a connected unix `SOCK_SEQPACKET` socket.
    #[error("bad fd: {0}")]
    NotASeqpacketSocket(FdFault),
    /// A system call failed (making it non-blocking).
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

impl From<WaitError> for Error {
    fn from(e: WaitError) -> Error {
        match e {
            WaitError::Timeout => Error::Timeout,
            WaitError::Interrupted => Error::Interrupted,
        }
    }
}

impl From<AddConnectionError> for Error {
    fn from(e: AddConnectionError) -> Error {
        match e {
            AddConnectionError::NotASeqpacketSocket(f) => Error::Peer(PeerFault::BadFd(f)),
            AddConnectionError::Os { op, source } => Error::Os { op, source },
        }
    }
}

/// Every operation that can fail in a system call takes an [`OsError`] as its `Os`.
macro_rules! os_from {
    ($($t:ident),*) => {$(
        impl From<OsError> for $t {
            fn from(OsError { op, source }: OsError) -> $t {
                $t::Os { op, source }
            }
        }
    )*};
}

os_from!(
    LinkError,
    RecvError,
    BindError,
    AddConnectionError,
    ConnectError,
    PublishError,
    NoteError,
    CreateError,
    AttachError
);

/// Why [`Sender::create`](crate::Sender::create) or
/// [`Receiver::create`](crate::Receiver::create) made no ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The element type and capacity make no ring: a zero-sized type, an alignment
    /// over the header's, a capacity that is not a power of two or over
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY), or more than
    /// [`MAX_RING_BYTES`](crate::MAX_RING_BYTES) in all (the same numbers a peer's
    /// header is held to).
    #[error("no such ring: {0}")]
    Shape(HeaderFault),
    /// A system call failed (making the memfd, its mapping, the doorbell, the waker).
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

/// Why attaching to what a peer handed over failed: a ring
/// ([`Sender::attach`](crate::Sender::attach),
/// [`Receiver::attach`](crate::Receiver::attach)) or a memfd
/// ([`Region::open`](crate::Region::open)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// What the peer handed over is not what it must be (unsealed or wrongly sized
    /// memfd, a header that lies, a doorbell that is no stream socket).
    #[error(transparent)]
    Peer(PeerFault),
    /// A system call failed (mapping, making the waker).
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

/// Why [`Consumer::send_note`](crate::Consumer::send_note) did not send the note.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is longer than [`MAX_NOTE`](crate::frame::MAX_NOTE).
    #[error("a note of {len} bytes (at most {limit})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The most a note may have.
        limit: usize,
    },
    /// No room in the socket within 100 ms: the producer reads nothing.
    #[error("timed out")]
    Timeout,
    /// The producer hung up.
    #[error("peer gone")]
    PeerGone,
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

/// Why [`fdpass::send`](crate::fdpass::send) or
/// [`fdpass::send_flags`](crate::fdpass::send_flags) sent nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendMsgError {
    /// `MSG_DONTWAIT` was asked and the socket's send buffer is full.
    #[error("would block")]
    WouldBlock,
    /// The peer hung up (`EPIPE`, `ECONNRESET`, `ENOTCONN`).
    #[error("peer gone")]
    PeerGone,
    /// Another failure of `sendmsg`.
    #[error(transparent)]
    Os(#[from] OsError),
}

/// Why [`fdpass::recv`](crate::fdpass::recv) received nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvMsgError {
    /// Nothing waits, and the call or the socket is non-blocking.
    #[error("would block")]
    WouldBlock,
    /// The peer hung up (end of stream).
    #[error("peer gone")]
    PeerGone,
    /// What came breaks the rules (truncated, too many fds, a foreign control
    /// message): its fds are closed.
    #[error(transparent)]
    Peer(PeerFault),
    /// Another failure of `recvmsg`.
    #[error(transparent)]
    Os(#[from] OsError),
}

impl From<RecvMsgError> for Error {
    fn from(e: RecvMsgError) -> Error {
        match e {
            RecvMsgError::WouldBlock => OsError::errno("recvmsg", libc::EAGAIN).into(),
            RecvMsgError::PeerGone => Error::PeerGone,
            RecvMsgError::Peer(f) => Error::Peer(f),
            RecvMsgError::Os(e) => e.into(),
        }
    }
}

impl From<ProtocolFault> for RecvMsgError {
    fn from(f: ProtocolFault) -> RecvMsgError {
        RecvMsgError::Peer(PeerFault::Protocol(f))
    }
}

impl From<SendMsgError> for Error {
    fn from(e: SendMsgError) -> Error {
        match e {
            SendMsgError::WouldBlock => OsError::errno("sendmsg", libc::EAGAIN).into(),
            SendMsgError::PeerGone => Error::PeerGone,
            SendMsgError::Os(e) => e.into(),
        }
    }
}

/// What sending one message on a socket can come to (fd passing, the frame
/// channel's messages).
#[derive(Debug)]
pub(crate) enum Transmit {
    /// The deadline passed with no room in the socket.
    Timeout,
    /// The peer hung up.
    PeerGone,
    /// A system call failed.
    Os(OsError),
}

impl From<OsError> for Transmit {
    fn from(e: OsError) -> Transmit {
        Transmit::Os(e)
    }
}

impl From<NoteError> for Error {
    fn from(e: NoteError) -> Error {
        match e {
            e @ NoteError::TooLong { .. } => Error::Invalid(e.to_string()),
            NoteError::Timeout => Error::Timeout,
            NoteError::PeerGone => Error::PeerGone,
            NoteError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Error {
        match e {
            CreateError::Shape(f) => Error::Invalid(f.to_string()),
            CreateError::Os { op, source } => Error::Os { op, source },
        }
    }
}

/// Why waiting on a connected peer, or ringing it, failed: what doorbells, wakers
/// and the ring's ends come to. It is [`SendError`], and [`RecvError`] is made from
/// it case for case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer hung up.
    #[error("peer gone")]
    PeerGone,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// A waker interrupted the wait.
    #[error("interrupted by waker")]
    Interrupted,
    /// The peer broke the protocol (an index out of range, a changed header): an
    /// endpoint that saw it says so on every later call.
    #[error(transparent)]
    Peer(PeerFault),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    /// True when the peer is to blame.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, LinkError::Peer(_))
    }
}

/// Why receiving ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer hung up (closed its end or died); for a consumer, also the
    /// producer's clean end of the stream.
    #[error("peer gone")]
    PeerGone,
    /// The producer ended the connection with a code and a reason (it cut this
    /// consumer off).
    #[error("peer closed the connection: {reason} (code {code})")]
    Closed {
        /// Its code ([`goodbye`](crate::frame::goodbye)).
        code: u32,
        /// Its reason.
        reason: String,
    },
    /// The deadline passed with nothing to receive.
    #[error("timed out")]
    Timeout,
    /// A waker interrupted the wait.
    #[error("interrupted by waker")]
    Interrupted,
    /// The peer broke the protocol: this call, and every later one, says how.
    #[error(transparent)]
    Peer(PeerFault),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

impl RecvError {
    /// True when the peer is to blame.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, RecvError::Peer(_))
    }
}

/// Why sending on a [`Sender`](crate::Sender) failed: as any wait on a link (the
/// receiver hung up, the deadline passed with the ring full, a wake-up, the
/// receiver broke the protocol, a system call).
pub type SendError = LinkError;

impl From<BindError> for Error {
    fn from(e: BindError) -> Error {
        match e {
            BindError::PathInUse { path } => Error::PathInUse { path },
            BindError::BadPath { path, reason } => Error::BadPath { path, reason },
            BindError::Busy { what, waited } => Error::Unresponsive { what, waited },
            BindError::Config(m) => Error::Invalid(m),
            BindError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Error {
        match e {
            ConnectError::NoProducer { source, .. } => Error::Os {
                op: "connect",
                source,
            },
            ConnectError::Unresponsive { what, waited } => Error::Unresponsive { what, waited },
            ConnectError::Refused { code, reason } => Error::Closed { code, reason },
            ConnectError::PeerGone => Error::PeerGone,
            ConnectError::Peer(f) => Error::Peer(f),
            ConnectError::Timeout => Error::Timeout,
            ConnectError::Interrupted => Error::Interrupted,
            ConnectError::Invalid(m) => Error::Invalid(m),
            ConnectError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Error {
        match e {
            PublishError::Interrupted => Error::Interrupted,
            PublishError::Os { op, source } => Error::Os { op, source },
            PublishError::NoSlot { .. } => Error::Timeout,
            e @ (PublishError::TooLarge { .. } | PublishError::Published) => {
                Error::Invalid(e.to_string())
            }
        }
    }
}
