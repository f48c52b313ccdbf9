//! Messages on the socket between a producer and a consumer: sent without ever
//! blocking past a deadline, received without blocking, decoded strictly.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::error::{RecvError, RecvMsgError, SendMsgError, Transmit};
use crate::frame::wire::{MAX_MESSAGE, MAX_REASON, Msg};
use crate::os::doorbell::{poll_until, pollfd};
use crate::os::fdpass;

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
) -> Result<(), Transmit> {
    debug_assert_eq!(msg.fd_count(), fds.len());
    let bytes = msg.encode();
    loop {
        match fdpass::send_flags(sock, &bytes, fds, libc::MSG_DONTWAIT) {
            Ok(()) => return Ok(()),
            Err(SendMsgError::WouldBlock) => {
                let mut p = [pollfd(sock, libc::POLLOUT)];
                if !poll_until(&mut p, deadline)? {
                    return Err(Transmit::Timeout);
                }
                if p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    return Err(Transmit::PeerGone);
                }
            }
            Err(SendMsgError::PeerGone) => return Err(Transmit::PeerGone),
            Err(SendMsgError::Os(e)) => return Err(Transmit::Os(e)),
        }
    }
}

/// Receives and decodes one message without blocking: `Ok(None)` when none is
/// waiting. End of stream is [`RecvError::PeerGone`]; anything malformed (bad bytes, too
/// many or too few fds, truncation) is [`PeerFault::Protocol`](crate::PeerFault::Protocol) and the fds are closed.
///
/// `buf` is the caller's receive buffer, grown to [`MAX_MESSAGE`] on first use.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
) -> Result<Option<(Msg, Vec<OwnedFd>)>, RecvError> {
    if buf.len() < MAX_MESSAGE {
        buf.resize(MAX_MESSAGE, 0);
    }
    match fdpass::recv(sock, buf, MAX_MSG_FDS, libc::MSG_DONTWAIT) {
        Ok(r) => {
            let msg = Msg::decode(&buf[..r.len], r.fds.len())?;
            Ok(Some((msg, r.fds)))
        }
        Err(RecvMsgError::WouldBlock) => Ok(None),
        Err(RecvMsgError::PeerGone) => Err(RecvError::PeerGone),
        Err(RecvMsgError::Peer(f)) => Err(RecvError::Peer(f)),
        Err(RecvMsgError::Os(e)) => Err(e.into()),
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

/// Cuts `s` to at most [`MAX_REASON`] bytes on a character
/// boundary.
pub(crate) fn truncate_reason(s: &str) -> &str {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
