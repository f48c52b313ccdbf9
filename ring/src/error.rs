//! The one error type of the crate.
//!
//! Every message names what was wrong, so that a log line is enough to tell a broken
//! or hostile peer from a local failure: "memfd lacks F_SEAL_SHRINK", "ring head 9000
//! is 8000 past tail 1000, capacity 1024".

use std::io;

/// Shorthand for `Result<T, shmring::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `shmring`.
///
/// Variants fall in three groups:
/// - local failures of the operating system ([`Error::Os`]);
/// - a peer that broke the protocol or tampered with shared memory ([`Error::MissingSeal`],
///   [`Error::BadSize`], [`Error::BadHeader`], [`Error::Corrupt`], [`Error::HeaderChanged`],
///   [`Error::Protocol`], [`Error::BadFd`]): the connection to that peer is over;
/// - the ordinary ends of a wait ([`Error::PeerGone`], [`Error::Timeout`],
///   [`Error::Interrupted`]).
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
    /// A received memfd does not carry a seal the trust model needs.
    #[error("memfd lacks {0}")]
    MissingSeal(&'static str),
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
    BadFd(String),
    /// The immutable header of a shared ring is invalid.
    #[error("bad ring header: {0}")]
    BadHeader(String),
    /// The shared header changed after this side attached (the peer scribbled on it).
    #[error("ring header changed after attach: {0}")]
    HeaderChanged(String),
    /// An index or descriptor read from shared memory is out of range.
    #[error("{0}")]
    Corrupt(String),
    /// A message on a socket broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer hung up (closed its end or died).
    #[error("peer gone")]
    PeerGone,
    /// The deadline passed before the operation could complete.
    #[error("timed out")]
    Timeout,
    /// A [`Waker`](crate::Waker) interrupted the wait.
    #[error("interrupted by waker")]
    Interrupted,
    /// The peer ended the connection with an error code and a reason (for a consumer:
    /// the producer cut it off, or refused it).
    #[error("peer closed the connection: {reason} (code {code})")]
    Closed {
        /// The peer's code (never 0: 0 is a clean end).
        code: u32,
        /// The peer's reason, as it sent it.
        reason: String,
    },
    /// A peer that should answer at once did not within the deadline: a listener that
    /// accepts no connection (its backlog stays full), a lock somebody keeps.
    #[error("{what}: nothing within {waited:?}")]
    Unresponsive {
        /// What was waited for, e.g. "connect to /run/user/1000/cam (backlog full)".
        what: String,
        /// How long.
        waited: std::time::Duration,
    },
    /// The caller passed something out of range (a local mistake, not the peer's).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The endpoint saw the peer break the protocol earlier (the message names how)
    /// and refuses further use: still the peer's fault.
    #[error("endpoint is broken: {0}")]
    Broken(String),
}

impl Error {
    /// An [`Error::Os`] from `errno` of the call that just failed.
    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::Os {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// True for an [`Error::Os`] that says "would block" (`EAGAIN`).
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Os { source, .. } if source.raw_os_error() == Some(libc::EAGAIN))
    }

    /// True when the peer (not this process) is to blame: the connection should end.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::MissingSeal(_)
                | Error::BadSize { .. }
                | Error::BadFd(_)
                | Error::BadHeader(_)
                | Error::HeaderChanged(_)
                | Error::Corrupt(_)
                | Error::Protocol(_)
                | Error::Broken(_)
        )
    }
}
