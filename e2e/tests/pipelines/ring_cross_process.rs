//! The sealed ring between two real processes: this test process and `ring-peer`.
//! Peers are killed for real (SIGKILL); hostile peers are real processes too.

use std::os::fd::AsFd;
use std::time::Duration;

use e2e::{Element, Rendezvous, check, element, finish, kill9, read_line, spawn};
use shmring::{Receiver, RecvError, RingFds, SendError, Sender};

const PEER: &str = env!("CARGO_BIN_EXE_ring-peer");

#[test]
fn a_million_elements_reach_the_other_process_intact_and_in_order() {
    let rv = Rendezvous::new("million");
    let child = spawn(PEER, &["recv", rv.path.to_str().unwrap(), "1000000"]);
    let sock = rv.accept();
    let (mut tx, fds) = Sender::<Element>::create(1024).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    let mut batch = Vec::with_capacity(64);
    let mut seq = 0u64;
    while seq < 1_000_000 {
        batch.clear();
        batch.extend((seq..(seq + 64).min(1_000_000)).map(element));
        let mut off = 0;
        while off < batch.len() {
            let k = tx.try_send_batch(&batch[off..]).unwrap();
            if k == 0 {
                tx.wait_for_room(None).unwrap();
            }
            off += k;
        }
        seq += batch.len() as u64;
    }
    let (status, out) = finish(child);
    assert!(status.success(), "peer failed: {status}");
    assert_eq!(out.trim(), "received 1000000");
}

#[test]
fn a_million_elements_from_the_other_process_arrive_intact_and_in_order() {
    let rv = Rendezvous::new("million-back");
    let child = spawn(PEER, &["send", rv.path.to_str().unwrap(), "1000000", "0"]);
    let sock = rv.accept();
    // This side creates the receiver; the peer attaches as sender.
    let (mut rx, fds) = Receiver::<Element>::create(256).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    for seq in 0..1_000_000 {
        let e = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        check(&e, seq).unwrap();
    }
    let (status, out) = finish(child);
    assert!(status.success());
    assert_eq!(out.trim(), "sent 1000000");
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(30)),
        Err(RecvError::PeerGone)
    ));
}

#[test]
fn a_sleeping_receiver_is_woken_for_every_slow_element() {
    let rv = Rendezvous::new("wake");
    let child = spawn(PEER, &["send", rv.path.to_str().unwrap(), "50", "2"]);
    let sock = rv.accept();
    let (mut rx, fds) = Receiver::<Element>::create(4).unwrap();
    rx.set_spin(Duration::ZERO); // always sleep on the doorbell
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    for seq in 0..50 {
        check(&rx.recv_timeout(Duration::from_secs(30)).unwrap(), seq).unwrap();
    }
    assert!(finish(child).0.success());
}

#[test]
fn a_sleeping_sender_is_woken_when_the_other_process_drains() {
    let rv = Rendezvous::new("wake-room");
    let child = spawn(PEER, &["recv", rv.path.to_str().unwrap(), "20000"]);
    let sock = rv.accept();
    let (mut tx, fds) = Sender::<Element>::create(2).unwrap();
    tx.set_spin(Duration::ZERO);
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    for seq in 0..20000 {
        tx.send_timeout(&element(seq), Duration::from_secs(30))
            .unwrap();
    }
    let (status, out) = finish(child);
    assert!(status.success());
    assert_eq!(out.trim(), "received 20000");
}

#[test]
fn receiver_waiting_when_the_sender_is_killed_gets_peer_gone() {
    let rv = Rendezvous::new("kill-sender");
    let mut child = spawn(PEER, &["hold-sender", rv.path.to_str().unwrap(), "5"]);
    let sock = rv.accept();
    let (mut rx, fds) = Receiver::<Element>::create(8).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    drop(sock); // the ring's own doorbell must be enough to notice the death
    assert_eq!(read_line(&mut child), "ready");
    for seq in 0..5 {
        check(&rx.recv().unwrap(), seq).unwrap();
    }
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        kill9(&mut child);
    });
    // Blocked in recv while the peer dies: PeerGone, not the timeout (which only
    // bounds the test; a slow machine or valgrind may take its time).
    let r = rx.recv_timeout(Duration::from_secs(60));
    killer.join().unwrap();
    assert!(matches!(r, Err(RecvError::PeerGone)), "{r:?}");
}

#[test]
fn sender_blocked_on_a_full_ring_when_the_receiver_is_killed_gets_peer_gone() {
    let rv = Rendezvous::new("kill-receiver");
    let mut child = spawn(PEER, &["hold-receiver", rv.path.to_str().unwrap()]);
    let sock = rv.accept();
    let (mut tx, fds) = Sender::<Element>::create(4).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    drop(sock);
    assert_eq!(read_line(&mut child), "ready");
    for seq in 0..4 {
        tx.send(&element(seq)).unwrap();
    }
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        kill9(&mut child);
    });
    let r = tx.send_timeout(&element(4), Duration::from_secs(60));
    killer.join().unwrap();
    assert!(matches!(r, Err(SendError::PeerGone)), "{r:?}");
}

#[test]
fn an_unsealed_memfd_from_another_process_is_refused_and_the_receiver_carries_on() {
    let rv = Rendezvous::new("unsealed");
    let mut child = spawn(PEER, &["hostile-unsealed", rv.path.to_str().unwrap()]);
    let sock = rv.accept();
    let fds = RingFds::recv(sock.as_fd()).unwrap();
    assert_eq!(read_line(&mut child), "ready"); // it has truncated the memfd by now
    let e = Receiver::<Element>::attach(fds).unwrap_err();
    assert_eq!(e.to_string(), "memfd lacks F_SEAL_SHRINK");
    kill9(&mut child);
    // Still alive and useful: serve an honest peer next.
    let child = spawn(PEER, &["send", rv.path.to_str().unwrap(), "10", "0"]);
    let sock = rv.accept();
    let (mut rx, fds) = Receiver::<Element>::create(4).unwrap();
    fds.send(sock.as_fd()).unwrap();
    for seq in 0..10 {
        check(&rx.recv_timeout(Duration::from_secs(30)).unwrap(), seq).unwrap();
    }
    assert!(finish(child).0.success());
}

#[test]
fn a_hand_off_with_too_many_fds_from_another_process_is_refused() {
    let rv = Rendezvous::new("many-fds");
    let mut child = spawn(PEER, &["hostile-many-fds", rv.path.to_str().unwrap()]);
    let sock = rv.accept();
    let e = RingFds::recv(sock.as_fd()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "protocol violation: message carries 5 fds, at most 2 allowed"
    );
    kill9(&mut child);
}

#[test]
fn a_garbage_head_written_by_another_process_is_reported_not_followed() {
    let rv = Rendezvous::new("head");
    let mut child = spawn(PEER, &["hostile-head", rv.path.to_str().unwrap()]);
    let sock = rv.accept();
    let (mut rx, fds) = Receiver::<Element>::create(16).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    assert_eq!(read_line(&mut child), "ready");
    let e = rx.recv_timeout(Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ring head 100003 is 100003 past tail 0, capacity 16"
    );
    match rx.recv() {
        Err(RecvError::Peer(f)) => assert_eq!(f.to_string(), e.to_string()),
        other => panic!("{other:?}"),
    }
    kill9(&mut child);
}
