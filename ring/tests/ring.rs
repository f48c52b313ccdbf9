//! Behaviour of the ring and its building blocks within one process (both ends here).
//! Cross-process behaviour is tested in the `e2e` package.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use shmring::internals::index::HeapRing;
use shmring::memfd::{self, Access, Mapping, Region, Seals};
use shmring::{
    AttachError, CreateError, Error, HeaderFault, PeerFault, ReadOnlyBlob, Receiver, RecvError,
    SendError, Sender, write_once,
};

#[test]
fn elements_arrive_in_order_across_many_wrap_arounds() {
    let (mut tx, fds) = Sender::<[u64; 2]>::create(8).unwrap();
    let mut rx = Receiver::<[u64; 2]>::attach(fds).unwrap();
    for i in 0..1000u64 {
        assert!(tx.try_send(&[i, !i]).unwrap());
        assert_eq!(rx.try_recv().unwrap(), Some([i, !i]));
    }
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn full_ring_refuses_until_the_receiver_frees_a_slot() {
    let (mut tx, fds) = Sender::<u32>::create(4).unwrap();
    let mut rx = Receiver::<u32>::attach(fds).unwrap();
    assert_eq!(tx.try_send_batch(&[1, 2, 3, 4, 5, 6]).unwrap(), 4);
    assert!(!tx.try_send(&7).unwrap());
    assert_eq!(tx.in_flight(), 4);
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    assert!(tx.try_send(&7).unwrap());
    let mut out = [0u32; 8];
    assert_eq!(rx.try_recv_batch(&mut out).unwrap(), 4);
    assert_eq!(&out[..4], &[2, 3, 4, 7]);
    assert_eq!(rx.try_recv_batch(&mut out).unwrap(), 0);
}

#[test]
fn receiver_can_create_and_sender_attach() {
    let (mut rx, fds) = Receiver::<u64>::create(16).unwrap();
    let mut tx = Sender::<u64>::attach(fds).unwrap();
    tx.send(&42).unwrap();
    assert_eq!(rx.recv().unwrap(), 42);
}

#[test]
fn attaching_with_the_creators_role_is_refused() {
    let (_tx, fds) = Sender::<u64>::create(16).unwrap();
    let e = Sender::<u64>::attach(fds).unwrap_err();
    assert!(
        matches!(
            e,
            AttachError::Peer(PeerFault::BadHeader(HeaderFault::Role {
                created_by_sender: true,
                attached_as_sender: true
            }))
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("created by a sender but attached as a sender"),
        "{e}"
    );
}

#[test]
fn attaching_with_another_element_type_is_refused() {
    let (_tx, fds) = Sender::<u64>::create(16).unwrap();
    let e = Receiver::<u32>::attach(fds).unwrap_err();
    assert!(
        matches!(
            e,
            AttachError::Peer(PeerFault::BadHeader(HeaderFault::ElementSize {
                found: 8,
                expected: 4
            }))
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("element size 8, this side's type has 4"),
        "{e}"
    );
}

#[test]
fn capacity_must_be_a_power_of_two() {
    // The caller's mistake, not a peer's: a shape error, and no peer fault.
    let e = Sender::<u64>::create(12).unwrap_err();
    assert!(
        matches!(
            e,
            CreateError::Shape(HeaderFault::Capacity { capacity: 12, .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("not a power of two"), "{e}");
    assert!(!Error::from(e).is_peer_fault());
    let e = Receiver::<()>::create(16).unwrap_err();
    assert!(
        matches!(e, CreateError::Shape(HeaderFault::ZeroSized)),
        "{e:?}"
    );
}

#[test]
fn in_place_send_and_receive_see_the_same_bytes() {
    let (mut tx, fds) = Sender::<[u8; 4096]>::create(4).unwrap();
    let mut rx = Receiver::<[u8; 4096]>::attach(fds).unwrap();
    let fill = |p: *mut [u8; 4096]| {
        // SAFETY: test code; the pointer is a free slot of one element; we write through it.
        unsafe { p.cast::<u8>().write_bytes(0xab, 4096) }
    };
    assert!(tx.try_send_with(fill).unwrap());
    let sum = rx
        .try_recv_with(|p| {
            let mut copy = [0u8; 4096];
            // SAFETY: test code; copy the published element out of the slot.
            unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), copy.as_mut_ptr(), 4096) };
            copy.iter().map(|&b| b as u64).sum::<u64>()
        })
        .unwrap();
    assert_eq!(sum, Some(0xab * 4096));
}

#[test]
fn sleeping_receiver_wakes_when_a_thread_sends() {
    let (mut tx, fds) = Sender::<u64>::create(4).unwrap();
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    rx.set_spin(Duration::ZERO);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send(&9).unwrap();
        tx
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 9);
    t.join().unwrap();
}

#[test]
fn sleeping_sender_wakes_when_the_receiver_frees_room() {
    let (mut tx, fds) = Sender::<u64>::create(2).unwrap();
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    tx.set_spin(Duration::ZERO);
    tx.send(&1).unwrap();
    tx.send(&2).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let v = rx.recv().unwrap();
        (rx, v)
    });
    tx.send_timeout(&3, Duration::from_secs(10)).unwrap();
    let (mut rx, first) = t.join().unwrap();
    assert_eq!(first, 1);
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv().unwrap(), 3);
}

#[test]
fn recv_timeout_on_an_empty_ring_times_out() {
    let (_tx, fds) = Sender::<u64>::create(2).unwrap();
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(RecvError::Timeout)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn waker_interrupts_a_blocked_receive() {
    let (_tx, fds) = Sender::<u64>::create(2).unwrap();
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    let w = rx.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        w.wake();
    });
    assert!(matches!(rx.recv(), Err(RecvError::Interrupted)));
    t.join().unwrap();
    // The wake-up was consumed; the next wait times out normally.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(RecvError::Timeout)
    ));
}

#[test]
fn waker_sleep_runs_its_time_or_ends_early_when_woken() {
    let w = shmring::Waker::new().unwrap();
    let t0 = Instant::now();
    w.sleep(Duration::from_millis(20)).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(20));
    let w2 = w.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        w2.wake();
    });
    // Far longer than any test runs: only the wake-up can end it.
    assert!(matches!(
        w.sleep(Duration::from_secs(3600)),
        Err(shmring::LinkError::Interrupted)
    ));
    t.join().unwrap();
    assert!(!w.take(), "the wake-up was consumed");
}

#[test]
fn receiver_drains_what_was_sent_before_the_sender_left() {
    let (mut tx, fds) = Sender::<u64>::create(8).unwrap();
    let mut rx = Receiver::<u64>::attach(fds).unwrap();
    tx.send(&1).unwrap();
    tx.send(&2).unwrap();
    drop(tx);
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
    assert!(matches!(rx.recv(), Err(RecvError::PeerGone)));
    assert!(rx.peer_gone());
}

#[test]
fn sender_blocked_on_a_full_ring_sees_the_receiver_leave() {
    let (mut tx, fds) = Sender::<u64>::create(1).unwrap();
    let rx = Receiver::<u64>::attach(fds).unwrap();
    tx.send(&1).unwrap();
    drop(rx);
    assert!(matches!(tx.send(&2), Err(SendError::PeerGone)));
}

#[test]
fn heap_ring_runs_the_same_protocol() {
    let (mut p, mut c) = HeapRing::new::<String>(4);
    let mut items: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    let (n, _) = p.push_batch(&mut items);
    assert_eq!(n, 4);
    assert_eq!(items, vec!["4".to_string(), "5".to_string()]);
    let mut out = Vec::new();
    assert_eq!(c.pop_batch(&mut out, 10).0, 4);
    assert_eq!(out, vec!["0", "1", "2", "3"]);
    assert!(!c.prepare_wait());
    let (n, wake) = p.push_batch(&mut items);
    assert_eq!(
        (n, wake),
        (2, true),
        "a consumer that announced sleep must be woken"
    );
    c.finish_wait();
}

#[test]
fn heap_ring_drops_what_is_left_whichever_half_goes_last() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for consumer_first in [true, false] {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (mut p, mut c) = HeapRing::new::<Counted>(4);
        let mut items: Vec<Counted> = (0..3).map(|_| Counted(dropped.clone())).collect();
        assert_eq!(p.push_batch(&mut items).0, 3);
        // One taken and dropped, two left in the ring.
        drop(c.pop().unwrap());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        if consumer_first {
            drop(c);
            drop(p);
        } else {
            drop(p);
            drop(c);
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            3,
            "consumer first: {consumer_first}"
        );
    }
}

#[test]
fn write_once_blob_is_immutable_for_everyone() {
    let fd = write_once(10000, |b| {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8)
    })
    .unwrap();
    let seals = memfd::seals(fd.as_fd()).unwrap();
    assert!(seals.contains(Seals::IMMUTABLE), "{seals:?}");
    // Nobody can map it writable or write(2) it, not even the creator's fd.
    assert!(Mapping::map(fd.as_fd(), 10000, Access::ReadWrite).is_err());
    // SAFETY: test code; plain write(2) of a live buffer.
    let w = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    assert_eq!(w, -1);
    let blob = ReadOnlyBlob::open(fd, 1 << 20).unwrap();
    assert_eq!(blob.len(), 10000);
    assert_eq!(blob.as_bytes()[4097], (4097 % 256) as u8);
}

#[test]
fn read_only_blob_refuses_a_blob_larger_than_allowed() {
    let fd = write_once(8192, |_| {}).unwrap();
    let e = ReadOnlyBlob::open(fd, 4096).unwrap_err();
    assert_eq!(e.to_string(), "memfd is 8192 bytes, blob needs 4096");
}

#[test]
fn future_write_region_is_writable_only_through_the_creators_mapping() {
    let region = Region::create(c"test", 4096, Seals::FUTURE_WRITE).unwrap();
    let peer_fd = region.dup_fd().unwrap();
    // The peer cannot map it writable...
    let e = Region::open(
        peer_fd.try_clone().unwrap(),
        Seals::READ_ONLY_FOR_PEER,
        "arena",
        4096,
        4096,
        Access::ReadWrite,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("mmap failed"), "{e}");
    // ...nor write(2) it...
    // SAFETY: test code; plain write(2) of a live buffer.
    let w = unsafe { libc::write(peer_fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    assert_eq!(w, -1);
    // ...but can map it read-only, and mprotect cannot upgrade that mapping.
    let ro = Region::open(
        peer_fd,
        Seals::READ_ONLY_FOR_PEER,
        "arena",
        4096,
        4096,
        Access::ReadOnly,
    )
    .unwrap();
    let p = ro.mapping().as_ptr();
    // SAFETY: test code; mprotect on our own mapping; expected to fail.
    let r = unsafe { libc::mprotect(p.cast(), 4096, libc::PROT_READ | libc::PROT_WRITE) };
    assert_eq!(
        r, -1,
        "mprotect must not make a FUTURE_WRITE-sealed mapping writable"
    );
    // The creator still writes, and the peer sees it.
    // SAFETY: test code; the creator's mapping is writable and 4096 bytes long.
    unsafe { region.mapping().as_ptr().write_volatile(77) };
    // SAFETY: test code; the peer's mapping is readable and 4096 bytes long.
    assert_eq!(unsafe { p.read_volatile() }, 77);
}
