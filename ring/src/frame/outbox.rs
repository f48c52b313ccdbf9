//! What a producer has told one consumer that its socket has not taken yet.
//!
//! A producer never waits on one consumer's socket: every message to a consumer
//! (its welcome, arenas, side messages, the sticky replay) is sent without blocking
//! when nothing waits before it, and otherwise waits here, in that consumer's own
//! bounded queue, until its socket has room (the service thread sends it then, or
//! the next publish). A consumer whose queue would overflow is cut off with that
//! reason. A frame descriptor goes to a consumer only once its queue is empty, so it
//! never overtakes the messages it follows.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::SendMsgError;
use crate::frame::wire::Msg;
use crate::os::fdpass;

/// Most fds (arenas, a welcome's rings) one consumer's queue may keep open.
pub(crate) const MAX_QUEUED_FDS: usize = 16;

/// One consumer's queue of messages waiting for room in its socket.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Queued>,
    bytes: usize,
    fds: usize,
}

struct Queued {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// Sent, or the socket is full (`Ok(false)`), or the reason the consumer cannot be
/// told anything any more.
fn try_send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<bool, String> {
    match fdpass::send_flags(sock, bytes, fds, libc::MSG_DONTWAIT) {
        Ok(()) => Ok(true),
        Err(SendMsgError::WouldBlock) => Ok(false),
        Err(SendMsgError::PeerGone) => Err("hung up".into()),
        Err(e) => Err(format!("socket: {e}")),
    }
}

impl Outbox {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sends `msg` (with `fds`) now if nothing waits before it and the socket takes
    /// it; otherwise queues it (with duplicates of `fds`). `Ok(true)` when it was
    /// queued. An error is the reason to cut the consumer off: the queue would hold
    /// more than `limit` bytes or [`MAX_QUEUED_FDS`] fds, or the consumer is gone.
    pub(crate) fn post(
        &mut self,
        sock: BorrowedFd<'_>,
        msg: &Msg,
        fds: &[BorrowedFd<'_>],
        limit: usize,
    ) -> Result<bool, String> {
        let bytes = msg.encode();
        if self.queue.is_empty() && try_send(sock, &bytes, fds)? {
            return Ok(false);
        }
        if self.bytes + bytes.len() > limit || self.fds + fds.len() > MAX_QUEUED_FDS {
            return Err(format!(
                "did not read its socket: {} messages ({} bytes, {} fds) wait for it, at most {limit} bytes and {MAX_QUEUED_FDS} fds may",
                self.queue.len() + 1,
                self.bytes + bytes.len(),
                self.fds + fds.len()
            ));
        }
        let fds = fds
            .iter()
            .map(|f| f.try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot keep a message for it: {e}"))?;
        self.bytes += bytes.len();
        self.fds += fds.len();
        self.queue.push_back(Queued { bytes, fds });
        Ok(true)
    }

    /// Sends what waits, oldest first, as far as the socket takes it without
    /// blocking. `Ok(true)` when nothing waits any more.
    pub(crate) fn flush(&mut self, sock: BorrowedFd<'_>) -> Result<bool, String> {
        while let Some(q) = self.queue.front() {
            let fds: Vec<BorrowedFd<'_>> = q.fds.iter().map(|f| f.as_fd()).collect();
            if !try_send(sock, &q.bytes, &fds)? {
                return Ok(false);
            }
            let q = self.queue.pop_front().expect("front exists");
            self.bytes -= q.bytes.len();
            self.fds -= q.fds.len();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};

    use super::*;

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into the array we own.
        let r =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: two fresh fds nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn recv_one(sock: &OwnedFd, buf: &mut [u8]) -> bool {
        // SAFETY: reads into the buffer we own, without blocking.
        let n = unsafe {
            libc::recv(
                sock.as_fd().as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        n > 0
    }

    fn side(n: usize) -> Msg {
        Msg::Side {
            before_frame: 0,
            sticky_key: 0,
            payload: vec![7; n],
        }
    }

    #[test]
    fn messages_wait_in_order_and_a_full_queue_is_a_reason_to_cut_off() {
        let (a, b) = seqpacket_pair();
        let mut o = Outbox::default();
        // Fill the socket, then a bounded queue behind it.
        let mut sent = 0;
        while !o.post(a.as_fd(), &side(1000), &[], 10_000).unwrap() {
            sent += 1;
        }
        assert!(sent > 0 && !o.is_empty());
        let e = loop {
            match o.post(a.as_fd(), &side(1000), &[], 10_000) {
                Ok(queued) => assert!(queued, "nothing jumps the queue"),
                Err(e) => break e,
            }
        };
        assert!(e.starts_with("did not read its socket: 10 messages"), "{e}");
        assert!(o.bytes() <= 10_000);
        // The reader catches up: everything arrives, the queued ones last.
        let mut buf = vec![0u8; 2000];
        let mut got = 0;
        loop {
            while recv_one(&b, &mut buf) {
                got += 1;
            }
            if o.flush(a.as_fd()).unwrap() {
                break;
            }
        }
        while recv_one(&b, &mut buf) {
            got += 1;
        }
        assert_eq!(got, sent + 9);
        drop(b);
        assert_eq!(
            o.post(a.as_fd(), &side(1), &[], 10_000).unwrap_err(),
            "hung up"
        );
    }
}
