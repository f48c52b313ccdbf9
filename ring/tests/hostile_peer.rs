//! Each test plays a hostile peer against an honest endpoint in this process, with
//! real memfds, mappings and sockets, and asserts a clear error and a live survivor.
//! (The same acts across real processes, with SIGKILL, are in the `e2e` package.)

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use shmring::memfd::{self, Access, Mapping, Seals};
use shmring::{
    AttachError, FdFault, HeaderFault, IndexFault, LinkError, PeerFault, Receiver, RecvError,
    RingFds, SendError, Sender, fdpass,
};

const HEAD: usize = 128;
const TAIL: usize = 256;
const CONSUMER_WAITING: usize = 260;

/// A second, hostile read-write mapping of a ring's memfd.
fn hostile_map(fd: BorrowedFd<'_>) -> Mapping {
    let len = memfd::size(fd).unwrap() as usize;
    Mapping::map(fd, len, Access::ReadWrite).unwrap()
}

fn poke_u32(m: &Mapping, off: usize, v: u32) {
    assert!(off + 4 <= m.len());
    // SAFETY: test code; `off + 4` lies inside the mapping (asserted above).
    unsafe { m.as_ptr().add(off).cast::<u32>().write_volatile(v) };
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().unwrap()
}

/// A sender/receiver pair plus a hostile mapping of the shared ring.
fn pair_with_hostile_view<T: shmring::bytemuck::Pod>(
    cap: usize,
) -> (Sender<T>, Receiver<T>, Mapping) {
    let (tx, fds) = Sender::<T>::create(cap).unwrap();
    let view = hostile_map(fds.memfd.as_fd());
    let rx = Receiver::<T>::attach(fds).unwrap();
    (tx, rx, view)
}

fn doorbell_pair() -> (OwnedFd, OwnedFd) {
    fdpass::socket_pair(libc::SOCK_STREAM).unwrap()
}

#[test]
fn attach_rejects_memfd_without_seals() {
    let fd = memfd::create(c"unsealed", 4096 + 8 * 16).unwrap();
    let (_keep, bell) = doorbell_pair();
    let e = Receiver::<u64>::attach(RingFds {
        memfd: fd,
        doorbell: bell,
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "memfd lacks F_SEAL_SHRINK");
}

#[test]
fn attach_rejects_memfd_that_can_still_grow() {
    let fd = memfd::create(c"half-sealed", 4096 + 8 * 16).unwrap();
    memfd::add_seals(fd.as_fd(), Seals::SHRINK.union(Seals::SEAL)).unwrap();
    let (_keep, bell) = doorbell_pair();
    let e = Receiver::<u64>::attach(RingFds {
        memfd: fd,
        doorbell: bell,
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "memfd lacks F_SEAL_GROW");
}

#[test]
fn attach_rejects_memfd_smaller_than_its_header_claims_without_sigbus() {
    // Copy a genuine header for 1024 u64s (12288 bytes) into a sealed 8192-byte memfd.
    let (_tx, real) = Sender::<u64>::create(1024).unwrap();
    let real_view = hostile_map(real.memfd.as_fd());
    let fd = memfd::create(c"short", 8192).unwrap();
    let m = Mapping::map(fd.as_fd(), 8192, Access::ReadWrite).unwrap();
    // SAFETY: test code; both mappings are at least 64 bytes long.
    unsafe { std::ptr::copy_nonoverlapping(real_view.as_ptr(), m.as_ptr(), 64) };
    drop(m);
    memfd::add_seals(fd.as_fd(), Seals::FIXED_SIZE).unwrap();
    let (_keep, bell) = doorbell_pair();
    let e = Receiver::<u64>::attach(RingFds {
        memfd: fd,
        doorbell: bell,
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "memfd is 8192 bytes, ring header needs 12288"
    );
}

#[test]
fn attached_ring_cannot_be_truncated_by_its_creator() {
    let (_tx, fds) = Sender::<u64>::create(1024).unwrap();
    let creator_fd = dup(fds.memfd.as_fd());
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    // SAFETY: test code; plain ftruncate on an fd we hold.
    let r = unsafe { libc::ftruncate(creator_fd.as_raw_fd(), 0) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn attach_rejects_bad_magic() {
    let (_tx, fds) = Sender::<u64>::create(16).unwrap();
    let view = hostile_map(fds.memfd.as_fd());
    poke_u32(&view, 0, 0xdead_beef);
    let e = Receiver::<u64>::attach(fds).unwrap_err();
    assert!(
        matches!(
            &e,
            AttachError::Peer(PeerFault::BadHeader(HeaderFault::Magic { found, .. })) if found[..4] == 0xdead_beefu32.to_le_bytes()
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("bad ring header: magic"), "{e}");
}

#[test]
fn attach_rejects_capacity_that_disagrees_with_the_sealed_size() {
    let (_tx, fds) = Sender::<u64>::create(16).unwrap();
    let view = hostile_map(fds.memfd.as_fd());
    poke_u32(&view, 16, 1 << 20); // capacity field
    let e = Receiver::<u64>::attach(fds).unwrap_err();
    assert!(
        matches!(
            e,
            AttachError::Peer(PeerFault::BadHeader(HeaderFault::TotalLength {
                capacity: 1048576,
                elem_size: 8,
                ..
            }))
        ),
        "{e}"
    );
}

#[test]
fn pop_reports_corrupt_when_head_jumps_past_capacity() {
    let (mut tx, mut rx, view) = pair_with_hostile_view::<u64>(1024);
    tx.send(&1).unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    poke_u32(&view, HEAD, 9000);
    let e = rx.try_recv().unwrap_err();
    let fault = PeerFault::Index(IndexFault::HeadPast {
        head: 9000,
        avail: 8999,
        tail: 1,
        capacity: 1024,
    });
    assert!(matches!(&e, RecvError::Peer(f) if *f == fault), "{e}");
    assert_eq!(
        e.to_string(),
        "ring head 9000 is 8999 past tail 1, capacity 1024"
    );
    // The endpoint stays broken, reporting the same fault; the process is fine.
    let again = rx.try_recv().unwrap_err();
    assert!(
        matches!(&again, RecvError::Peer(f) if *f == fault),
        "{again}"
    );
}

#[test]
fn pop_reports_corrupt_when_head_moves_backwards() {
    let (mut tx, mut rx, view) = pair_with_hostile_view::<u64>(16);
    assert_eq!(
        tx.try_send_batch(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap(),
        10
    );
    let mut out = [0u64; 5];
    assert_eq!(rx.try_recv_batch(&mut out).unwrap(), 5);
    poke_u32(&view, HEAD, 7);
    let mut out = [0u64; 8];
    let e = rx.try_recv_batch(&mut out).unwrap_err();
    assert!(
        matches!(
            e,
            RecvError::Peer(PeerFault::Index(IndexFault::HeadBackwards {
                from: 10,
                to: 7
            }))
        ),
        "{e}"
    );
}

#[test]
fn push_reports_corrupt_when_tail_is_garbage() {
    let (mut tx, _rx, view) = pair_with_hostile_view::<u64>(4);
    assert_eq!(tx.try_send_batch(&[1, 2, 3, 4]).unwrap(), 4);
    poke_u32(&view, TAIL, 5000);
    let e = tx.try_send(&5).unwrap_err();
    let fault = PeerFault::Index(IndexFault::TailBehind {
        tail: 5000,
        used: 4294962300,
        head: 4,
        capacity: 4,
    });
    assert!(matches!(&e, SendError::Peer(f) if *f == fault), "{e}");
    match tx.send(&5) {
        Err(SendError::Peer(f)) => assert_eq!(f, fault),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_changed_after_attach_is_reported_and_never_used() {
    let (mut tx, mut rx, view) = pair_with_hostile_view::<u64>(4);
    poke_u32(&view, 16, 1 << 24); // capacity 4 -> 16M: would reach far past the mapping
    poke_u32(&view, 12, 1); // element size 8 -> 1
    let e = rx.check_header().unwrap_err();
    assert!(
        matches!(
            e,
            LinkError::Peer(PeerFault::HeaderChanged {
                byte: 12,
                now: 1,
                was: 8
            })
        ),
        "{e}"
    );
    // Both sides keep their private copy: data still flows, within the real ring.
    for i in 0..10u64 {
        tx.send(&i).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
    // Before sleeping, a waiting side checks the header and refuses to go on.
    let e = rx.recv_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(
        matches!(e, RecvError::Peer(PeerFault::HeaderChanged { .. })),
        "{e}"
    );
    assert!(tx.check_header().is_err());
}

#[test]
fn doorbell_flooded_by_the_peer_never_hangs_the_receiver() {
    let (mut rx, fds) = Receiver::<u64>::create(8).unwrap();
    // The hostile sender floods our doorbell until its socket buffer is full.
    let mut sent = 0;
    // SAFETY: test code; one-byte sends from a live buffer.
    while unsafe {
        libc::send(
            fds.doorbell.as_raw_fd(),
            b"x".as_ptr().cast(),
            1,
            libc::MSG_DONTWAIT,
        )
    } == 1
    {
        sent += 1;
    }
    assert!(sent > 10, "queue filled after {sent}");
    let t0 = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(RecvError::Timeout)
    ));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Nothing was received: a doorbell is a hint, never data.
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn peer_that_never_drains_its_doorbell_never_blocks_the_sender() {
    let (mut tx, fds) = Sender::<u64>::create(1 << 12).unwrap();
    let view = hostile_map(fds.memfd.as_fd());
    // The hostile receiver says it is waiting, forever, and never reads its doorbell:
    // every send rings, and the doorbell queue fills up.
    poke_u32(&view, CONSUMER_WAITING, 1);
    let t0 = Instant::now();
    for i in 0..(1u64 << 12) {
        assert!(tx.try_send(&i).unwrap());
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Full ring: a bounded send gives up on time.
    assert!(matches!(
        tx.send_timeout(&0, Duration::from_millis(30)),
        Err(SendError::Timeout)
    ));
    drop(fds);
}

#[test]
fn blocking_flags_on_a_shared_doorbell_description_change_nothing() {
    // The hostile creator keeps a dup of the doorbell end it hands us (so it shares our
    // file description), clears O_NONBLOCK on it, fills our queue, and steals our
    // wake-ups by reading from it.
    let (mut rx, fds) = Receiver::<u64>::create(8).unwrap();
    let stolen = dup(fds.doorbell.as_fd());
    let mut tx = Sender::<u64>::attach(fds).unwrap();
    // SAFETY: test code; F_SETFL with flags 0 clears O_NONBLOCK on the shared description.
    let r = unsafe { libc::fcntl(stolen.as_raw_fd(), libc::F_SETFL, 0) };
    assert_eq!(r, 0);
    tx.set_spin(Duration::ZERO);
    // Our sender rings on a blocking description: must not block even when full.
    for i in 0..8u64 {
        assert!(tx.try_send(&i).unwrap());
    }
    assert!(matches!(
        tx.send_timeout(&9, Duration::from_millis(30)),
        Err(SendError::Timeout)
    ));
    // The thief drains the sender's doorbell: our receiver's rings to the sender are
    // still sent (no block), and the sender still times out on schedule.
    for i in 0..8u64 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    let mut b = [0u8; 8];
    // SAFETY: test code; recv into a live buffer, non-blocking.
    while unsafe {
        libc::recv(
            stolen.as_raw_fd(),
            b.as_mut_ptr().cast(),
            8,
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    assert!(tx.try_send(&10).unwrap());
    assert_eq!(rx.recv().unwrap(), 10);
}

#[test]
fn attach_rejects_a_pipe_in_place_of_the_memfd() {
    let mut p = [0i32; 2];
    // SAFETY: test code; pipe2 writes two fds into `p`.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: test code; fresh fds from pipe2.
    let (r, _w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let (_keep, bell) = doorbell_pair();
    let e = Receiver::<u64>::attach(RingFds {
        memfd: r,
        doorbell: bell,
    })
    .unwrap_err();
    assert!(
        matches!(e, AttachError::Peer(PeerFault::BadFd(FdFault::NotAMemfd))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "bad fd: not a memfd (F_GET_SEALS not supported)"
    );
}

#[test]
fn attach_rejects_a_memfd_in_place_of_the_doorbell() {
    let (_tx, fds) = Sender::<u64>::create(8).unwrap();
    let wrong = dup(fds.memfd.as_fd());
    let e = Receiver::<u64>::attach(RingFds {
        memfd: fds.memfd,
        doorbell: wrong,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            AttachError::Peer(PeerFault::BadFd(FdFault::NotASocket {
                what: "doorbell fd"
            }))
        ),
        "{e:?}"
    );
}

#[test]
fn attach_rejects_a_datagram_socket_as_doorbell() {
    let (_tx, fds) = Sender::<u64>::create(8).unwrap();
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let e = Receiver::<u64>::attach(RingFds {
        memfd: fds.memfd,
        doorbell: a.into(),
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("expected a unix socket of type 1"),
        "{e}"
    );
}

/// Lives here, not in fd_passing.rs: that binary counts its open fds, which the
/// sockets and ring of this test would disturb when the two run in parallel.
#[test]
fn a_hand_off_to_or_from_a_silent_peer_ends_at_its_deadline() {
    let (a, _b) = shmring::fdpass::seqpacket_pair().unwrap();
    // Nothing ever comes.
    let t = Instant::now();
    let e = RingFds::recv_deadline(a.as_fd(), Some(t + Duration::from_millis(100))).unwrap_err();
    assert!(matches!(e, shmring::Error::Timeout), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Nobody reads: the socket fills, then a send gives up at its deadline.
    let (_tx, fds) = Sender::<u64>::create(16).unwrap();
    let e = loop {
        match fds.send_deadline(a.as_fd(), Some(Instant::now() + Duration::from_millis(50))) {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(e, shmring::Error::Timeout), "{e}");
}
