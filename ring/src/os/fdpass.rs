//! Passing fds over unix sockets (`SCM_RIGHTS`).
//!
//! The receiving side is strict: received fds are close-on-exec from the start
//! (`MSG_CMSG_CLOEXEC`), a truncated control message (`MSG_CTRUNC`) or data
//! (`MSG_TRUNC`) is an error, more fds than the caller allows is an error, and every
//! fd that arrived is closed on any error (it is owned as soon as it is received).
//!
//! ```
//! use std::os::fd::AsFd;
//! use shmring::{ReadOnlyBlob, fdpass, write_once};
//!
//! let (a, b) = fdpass::seqpacket_pair()?;
//! // An immutable blob (a sealed memfd) and a few bytes, as one message.
//! let blob = write_once(5, |buf| buf.copy_from_slice(b"hello"))?;
//! fdpass::send(a.as_fd(), b"blob", &[blob.as_fd()])?;
//!
//! let mut buf = [0u8; 16];
//! let mut got = fdpass::recv(b.as_fd(), &mut buf, 1, 0)?;
//! assert_eq!(&buf[..got.len], b"blob");
//! // The receiver checks the seals and size before mapping what it was sent.
//! let blob = ReadOnlyBlob::open(got.fds.pop().unwrap(), 1 << 20)?;
//! assert_eq!(blob.as_bytes(), b"hello");
//! # Ok::<(), shmring::Error>(())
//! ```

use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{FdFault, OsError, ProtocolFault, RecvMsgError, SendMsgError};

/// Most fds one message may carry.
pub const MAX_FDS: usize = 16;

/// Sends `data` with `fds` attached as one message. Blocks only if the socket's send
/// buffer is full and the socket is blocking.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SendMsgError> {
    send_flags(sock, data, fds, 0)
}

/// [`send`] with extra `sendmsg` flags, e.g. `MSG_DONTWAIT`: a full send buffer is
/// then [`SendMsgError::WouldBlock`].
pub fn send_flags(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: i32,
) -> Result<(), SendMsgError> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per message");
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = CmsgBuf::new();
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        let payload = raw.len() * size_of::<i32>();
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes of our aligned buffer (which is
        // large enough for MAX_FDS), so CMSG_FIRSTHDR returns a header inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers (`iov`, `cbuf`) for the duration of the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => {
                return Err(SendMsgError::PeerGone);
            }
            Some(libc::EAGAIN) => return Err(SendMsgError::WouldBlock),
            _ => {
                return Err(OsError {
                    op: "sendmsg",
                    source: e,
                }
                .into());
            }
        }
    }
}

/// One received message: its bytes (in the caller's buffer) and its fds.
#[derive(Debug)]
pub struct Received {
    /// Bytes of data written to the caller's buffer.
    pub len: usize,
    /// The fds that came with it, already owned (closed when dropped).
    pub fds: Vec<OwnedFd>,
}

/// Receives one message into `buf` and at most `max_fds` fds.
///
/// `flags` may add `MSG_DONTWAIT`. End of stream (the peer closed) is
/// [`RecvMsgError::PeerGone`], nothing waiting on a non-blocking call
/// [`RecvMsgError::WouldBlock`]. A message longer than `buf`, more fds than
/// `max_fds`, or any control message other than `SCM_RIGHTS` is a
/// [`PeerFault::Protocol`](crate::PeerFault::Protocol), and every fd that came with
/// it is closed.
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    flags: i32,
) -> Result<Received, RecvMsgError> {
    assert!(max_fds <= MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf::new();
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // Room for one more fd than allowed, so that "too many" is seen as such rather
    // than as a truncation.
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf.0);
    let mut reset = false;
    let n = loop {
        // SAFETY: `msg` points at live, writable buffers of the lengths it states.
        let n =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A peer that closed with our data unread leaves ECONNRESET pending, and
            // the kernel reports it *before* the messages the peer sent us (e.g. its
            // goodbye). The error is cleared by reporting it: read once more.
            Some(libc::ECONNRESET) if !reset => {
                reset = true;
                continue;
            }
            Some(libc::ECONNRESET) => return Err(RecvMsgError::PeerGone),
            Some(libc::EAGAIN) if reset => return Err(RecvMsgError::PeerGone),
            Some(libc::EAGAIN) => return Err(RecvMsgError::WouldBlock),
            _ => {
                return Err(OsError {
                    op: "recvmsg",
                    source: e,
                }
                .into());
            }
        }
    };
    // Take ownership of every fd first, so that any error below closes them.
    let mut fds = Vec::new();
    let mut foreign = None;
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed cmsgs; the CMSG_* macros walk only within that length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len - (data as usize - c as usize);
                let count = bytes / size_of::<i32>();
                for i in 0..count {
                    let fd: i32 = std::ptr::read_unaligned(data.cast::<i32>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            } else {
                foreign = Some(((*c).cmsg_level, (*c).cmsg_type));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(ProtocolFault::ControlTruncated { limit: MAX_FDS }.into());
    }
    if let Some((level, ty)) = foreign {
        return Err(ProtocolFault::ControlMessage { level, ty }.into());
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(ProtocolFault::Truncated { limit: buf.len() }.into());
    }
    if fds.len() > max_fds {
        return Err(ProtocolFault::TooManyFds {
            fds: fds.len(),
            limit: max_fds,
        }
        .into());
    }
    if n == 0 && fds.is_empty() && is_stream_end(sock) {
        return Err(RecvMsgError::PeerGone);
    }
    Ok(Received { len: n, fds })
}

/// A zero-length read means end of stream on a stream socket, but an empty datagram
/// on a seqpacket socket whose peer is still there; tell them apart with poll.
fn is_stream_end(sock: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
}

/// A control-message buffer aligned for `cmsghdr`, large enough for `MAX_FDS + 1` fds.
struct CmsgBuf([u64; CMSG_WORDS]);
const CMSG_WORDS: usize = (size_of::<libc::cmsghdr>() + (MAX_FDS + 1) * size_of::<i32>() + 64) / 8;

impl CmsgBuf {
    fn new() -> Self {
        CmsgBuf([0; CMSG_WORDS])
    }
}

/// A connected pair of `SOCK_SEQPACKET` unix sockets, close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), OsError> {
    socket_pair(libc::SOCK_SEQPACKET)
}

/// A connected pair of unix sockets of type `ty` (e.g. `SOCK_STREAM`), close-on-exec.
pub fn socket_pair(ty: i32) -> Result<(OwnedFd, OwnedFd), OsError> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a writable array of two ints, as socketpair requires.
    let r =
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if r < 0 {
        return Err(OsError::last("socketpair"));
    }
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Checks that `fd` is a unix socket of type `ty` (e.g. `SOCK_SEQPACKET`).
pub fn check_unix_socket(
    fd: BorrowedFd<'_>,
    ty: i32,
    what: &'static str,
) -> std::result::Result<(), FdFault> {
    let get = |opt: i32| -> Option<i32> {
        let mut v: i32 = 0;
        let mut l = size_of::<i32>() as libc::socklen_t;
        // SAFETY: `v`/`l` are valid out-pointers of the sizes getsockopt expects.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut i32).cast(),
                &mut l,
            )
        };
        (r == 0).then_some(v)
    };
    match (get(libc::SO_DOMAIN), get(libc::SO_TYPE)) {
        (Some(libc::AF_UNIX), Some(t)) if t == ty => Ok(()),
        (None, _) | (_, None) => Err(FdFault::NotASocket { what }),
        (Some(domain), Some(t)) => Err(FdFault::WrongSocket {
            what,
            domain,
            ty: t,
            expected: ty,
        }),
    }
}
