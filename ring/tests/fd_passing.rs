//! Hostile fd-passing messages. One test function on purpose: it counts this
//! process's open fds, which parallel tests in the same binary would disturb.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use shmring::{Error, PeerFault, ProtocolFault, RingFds, Sender, fdpass, write_once};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Sends `data` with `n` copies of `fd` in one SCM_RIGHTS message, bypassing the
/// crate's own limit (a hostile peer is not bound by it).
fn send_raw(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>, n: usize) {
    let fds = vec![fd.as_raw_fd(); n];
    let payload = n * 4;
    // SAFETY: test code; CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut cbuf = vec![0u64; space / 8 + 1];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // SAFETY: test code; an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: test code; the control buffer holds `space` bytes for one cmsg of `n` fds.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
        assert!(libc::sendmsg(sock.as_raw_fd(), &msg, 0) >= 0);
    }
}

#[test]
fn hostile_hand_off_messages_are_refused_and_leak_no_fd() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let blob: OwnedFd = write_once(16, |_| {}).unwrap();
    let baseline = open_fds();

    // Too many fds: three where two belong.
    send_raw(theirs.as_fd(), b"SHMRING-RING/1\0\0", blob.as_fd(), 3);
    let e = RingFds::recv(ours.as_fd()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "protocol violation: message carries 3 fds, at most 2 allowed"
    );
    assert_eq!(open_fds(), baseline, "the 3 received fds must be closed");

    // Far too many: more than the control buffer holds (MSG_CTRUNC).
    send_raw(theirs.as_fd(), b"SHMRING-RING/1\0\0", blob.as_fd(), 100);
    let e = RingFds::recv(ours.as_fd()).unwrap_err();
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::ControlTruncated { .. }))
        ),
        "{e}"
    );
    assert_eq!(open_fds(), baseline, "the fds that did fit must be closed");

    // Too few.
    send_raw(theirs.as_fd(), b"SHMRING-RING/1\0\0", blob.as_fd(), 1);
    let e = RingFds::recv(ours.as_fd()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "protocol violation: ring hand-off carries fewer than 2 fds"
    );
    assert_eq!(open_fds(), baseline);

    // Wrong bytes with the right fds.
    send_raw(theirs.as_fd(), b"HELLO", blob.as_fd(), 2);
    let e = RingFds::recv(ours.as_fd()).unwrap_err();
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::NotAHandOff {
                len: 5,
                ..
            }))
        ),
        "{e}"
    );
    assert_eq!(open_fds(), baseline);

    // The right message with the wrong kinds of fd: refused at attach, closed on drop.
    fdpass::send(
        theirs.as_fd(),
        b"SHMRING-RING/1\0\0",
        &[blob.as_fd(), blob.as_fd()],
    )
    .unwrap();
    let fds = RingFds::recv(ours.as_fd()).unwrap();
    let e = shmring::Receiver::<u64>::attach(fds).unwrap_err();
    assert!(
        matches!(
            e,
            shmring::AttachError::Peer(shmring::PeerFault::BadFd { .. })
        ),
        "{e}"
    );
    assert_eq!(open_fds(), baseline);

    // A peer that hangs up mid-hand-off.
    drop(theirs);
    assert!(matches!(RingFds::recv(ours.as_fd()), Err(Error::PeerGone)));

    // And an honest hand-off still works afterwards, over a fresh socket.
    let (a, b) = UnixStream::pair().unwrap();
    let (mut tx, fds) = Sender::<u64>::create(4).unwrap();
    fds.send(a.as_fd()).unwrap();
    drop(fds);
    let mut rx = shmring::Receiver::<u64>::attach(RingFds::recv(b.as_fd()).unwrap()).unwrap();
    tx.send(&5).unwrap();
    assert_eq!(rx.recv().unwrap(), 5);
}
