//! Frame channel endpoints, in one process: the hand-off (welcome, connected sockets,
//! refusals), wakers, bad arguments, the socket's mode, and slots kept across
//! publications (`ReusableSlot`).

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use shmring::{
    BindError, ConnectError, Consumer, ConsumerConfig, NoteError, Producer, ProducerConfig,
    PublishError, RecvError, ReusableSlot,
};

#[test]
fn the_welcome_tells_the_consumer_its_slot_share() {
    let p = Producer::new(ProducerConfig {
        slots: 12,
        ..patient()
    })
    .unwrap();
    let (a, b) = shmring::fdpass::seqpacket_pair().unwrap();
    p.add_connection(a).unwrap();
    let c = Consumer::from_fd(b, ConsumerConfig::default()).unwrap();
    assert_eq!(c.max_held(), 6, "half the slots by default");
    let p = Producer::new(ProducerConfig {
        max_held: Some(2),
        ..patient()
    })
    .unwrap();
    let (a, b) = shmring::fdpass::seqpacket_pair().unwrap();
    p.add_connection(a).unwrap();
    let c = Consumer::from_fd(b, ConsumerConfig::default()).unwrap();
    assert_eq!(c.max_held(), 2);
}

#[test]
fn a_note_over_the_limit_is_refused_with_its_length_and_the_producer_keeps_the_last() {
    let p = Producer::new(patient()).unwrap();
    let (a, b) = shmring::fdpass::seqpacket_pair().unwrap();
    p.add_connection(a).unwrap();
    let c = Consumer::from_fd(b, ConsumerConfig::default()).unwrap();
    let limit = shmring::frame::MAX_NOTE;
    c.send_note(b"fits").unwrap();
    let e = c.send_note(&vec![0; limit + 1]).unwrap_err();
    assert!(
        matches!(e, NoteError::TooLong { len, limit: l } if len == limit + 1 && l == limit),
        "{e:?}"
    );
    testkit::eventually("the note that fits arrives", || {
        p.notes().iter().any(|(_, n)| n == b"fits")
    });
    drop(p);
    // The producer is gone: the next note says so (or finds no room), never hangs.
    let e = c.send_note(b"late").unwrap_err();
    assert!(
        matches!(e, NoteError::PeerGone | NoteError::Timeout),
        "{e:?}"
    );
}

#[test]
fn connected_socket_hand_off_needs_no_path() {
    let p = Producer::new(patient()).unwrap();
    let (a, b) = shmring::fdpass::seqpacket_pair().unwrap();
    p.add_connection(a).unwrap();
    let mut c = Consumer::from_fd(b, ConsumerConfig::default()).unwrap();
    wait_consumers(&p, 1);
    publish(&p, 0, 10);
    check_frame(&expect_frame(&mut c), 0, 10);
}

#[test]
fn a_probe_learns_the_description_and_is_never_a_consumer() {
    let cfg = ProducerConfig {
        max_consumers: 1,
        ..Default::default()
    };
    let p = Producer::bind(socket_path("probe"), cfg).unwrap();
    let path = p.path().unwrap().to_path_buf();
    // Before any description: empty.
    assert_eq!(Consumer::probe(&path, Duration::from_secs(5)).unwrap(), b"");
    p.set_description(b"video/x-raw, width=(int)64").unwrap();
    // A consumer holding the only place does not keep probes out.
    let _only = connect(&p);
    for _ in 0..3 {
        assert_eq!(
            Consumer::probe(&path, Duration::from_secs(5)).unwrap(),
            b"video/x-raw, width=(int)64"
        );
    }
    let s = p.stats();
    assert_eq!(
        (s.probes, s.joined, s.refused, s.consumers.len()),
        (4, 1, 0, 1)
    );
    // Too long a description is refused locally, the old one kept.
    let long = vec![b'x'; shmring::frame::MAX_DESCRIPTION + 1];
    assert!(matches!(
        p.set_description(&long),
        Err(PublishError::TooLarge {
            what: "description",
            ..
        })
    ));
    assert_eq!(
        Consumer::probe(&path, Duration::from_secs(5)).unwrap(),
        b"video/x-raw, width=(int)64"
    );
    // No producer: said so, within the timeout.
    drop(_only);
    drop(p);
    assert!(matches!(
        Consumer::probe(&path, Duration::from_secs(5)),
        Err(ConnectError::NoProducer { .. })
    ));
}

#[test]
fn an_inspection_tells_the_counters_and_each_consumer_as_stats_says_them() {
    let cfg = ProducerConfig {
        policy: shmring::Policy::Drop,
        lease: Some(Duration::from_millis(1500)),
        ..patient()
    };
    let p = Producer::bind(socket_path("inspect"), cfg).unwrap();
    let path = p.path().unwrap().to_path_buf();
    p.set_description(b"audio/x-raw").unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    for i in 0..5 {
        publish(&p, i, 100);
        check_frame(&expect_frame(&mut c), i, 100);
    }
    // The producer's own snapshot first: it takes back released slots, which an
    // inspection leaves as they are.
    let mut want = p.stats();
    let i = Consumer::inspect(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(i.description, b"audio/x-raw");
    let got = i.stats.expect("this producer sends its counters");
    // The inspection was itself a probe, counted before its snapshot.
    assert_eq!(got.probes, 1);
    want.probes = 1;
    assert_eq!(got, want);
    assert_eq!((got.frames, got.consumers.len()), (5, 1));
    let me = &got.consumers[0];
    // SAFETY: getpid and getuid have no preconditions.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    assert_eq!((me.pid, me.uid, me.frames, me.bytes), (pid, uid, 5, 500));
    assert_eq!(got.policy, shmring::Policy::Drop);
    assert_eq!(got.lease, Some(Duration::from_millis(1500)));
    // No producer: said so, within the timeout.
    drop(c);
    drop(p);
    assert!(matches!(
        Consumer::inspect(&path, Duration::from_secs(5)),
        Err(ConnectError::NoProducer { .. })
    ));
}

#[test]
fn strangers_and_surplus_consumers_are_refused_with_a_reason() {
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let cfg = ProducerConfig {
        allowed_uids: vec![me.wrapping_add(1)],
        ..Default::default()
    };
    let p = Producer::bind(socket_path("uids"), cfg).unwrap();
    match Consumer::connect(p.path().unwrap(), ConsumerConfig::default()) {
        Err(ConnectError::Refused {
            code: shmring::frame::goodbye::REFUSED,
            reason,
        }) => {
            assert!(reason.contains(&format!("uid {me}")), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.stats().refused, 1);
    let cfg = ProducerConfig {
        max_consumers: 1,
        ..Default::default()
    };
    let p = Producer::bind(socket_path("max"), cfg).unwrap();
    let _first = connect(&p);
    match Consumer::connect(p.path().unwrap(), ConsumerConfig::default()) {
        Err(ConnectError::Refused { reason, .. }) => {
            assert!(reason.contains("serves 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wakers_interrupt_blocked_calls_on_both_sides() {
    let cfg = ProducerConfig {
        block_timeout: Duration::from_secs(60),
        frame_ring: 2,
        ..Default::default()
    };
    let p = Producer::bind(socket_path("wake"), cfg).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let w = c.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    assert!(matches!(c.recv(), Err(RecvError::Interrupted)));
    t.join().unwrap();
    publish(&p, 0, 8);
    publish(&p, 1, 8);
    let w = p.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    let s = p.acquire(8).unwrap();
    assert!(matches!(s.publish(8, &[]), Err(PublishError::Interrupted)));
    t.join().unwrap();
    // The interrupted frame's slot came back: 2 held by the consumer, 6 free.
    assert_eq!(p.stats().free_slots, 6);
}

#[test]
fn bad_arguments_are_refused_locally() {
    let bad = ProducerConfig {
        frame_ring: 3,
        ..Default::default()
    };
    assert!(matches!(Producer::new(bad), Err(BindError::Config(_))));
    let p = Producer::new(ProducerConfig::default()).unwrap();
    let mut s = p.acquire(100).unwrap();
    assert!(s.write(4090, &[0; 7]).is_err());
    assert!(matches!(
        p.send_side(&vec![0; 70_000], 0),
        Err(PublishError::TooLarge {
            what: "side message",
            ..
        })
    ));
    let e = s.publish(10, &[0; 89]).unwrap_err();
    assert!(
        matches!(
            e,
            PublishError::TooLarge {
                what: "metadata",
                len: 89,
                max: 88,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "metadata of 89 bytes exceeds 88");
}

#[test]
fn socket_is_owner_only_by_default_and_its_mode_configurable() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Producer| {
        std::fs::metadata(p.path().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let p = Producer::bind(socket_path("mode600"), ProducerConfig::default()).unwrap();
    assert_eq!(mode(&p), 0o600);
    let cfg = ProducerConfig {
        socket_mode: 0o660,
        ..Default::default()
    };
    let p = Producer::bind(socket_path("mode660"), cfg).unwrap();
    assert_eq!(mode(&p), 0o660);
    let path = p.path().unwrap().to_path_buf();
    drop(p);
    assert!(!path.exists(), "the socket goes with its producer");
}

#[test]
fn a_held_slot_is_not_reused_until_its_holder_lets_go() {
    let p = Producer::bind(socket_path("held"), patient()).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let mut s = p.acquire(100).unwrap();
    s.write(0, &[7; 100]).unwrap();
    let slot = s.slot();
    let mut held = ReusableSlot::from(s);
    let n = held.publish(0, 100, &0u64.to_le_bytes()).unwrap();
    assert_eq!(n, 1);
    assert!(!held.is_writable());
    drop(expect_frame(&mut c)); // the consumer is done with it
    assert_eq!(p.stats().consumers[0].held, 0);
    assert_eq!(p.stats().free_slots, 7, "still held locally");
    // Every other slot can be handed out; this one cannot.
    let others: Vec<_> = (0..7).map(|_| p.acquire(100).unwrap()).collect();
    assert!(others.iter().all(|o| o.slot() != slot));
    drop(others);
    drop(held);
    assert_eq!(p.stats().free_slots, 8);
}

#[test]
fn a_held_slot_is_reclaimed_for_writing_only_once_every_consumer_let_go() {
    let p = Producer::bind(socket_path("reclaim"), patient()).unwrap();
    let mut c1 = connect(&p);
    let mut c2 = connect(&p);
    wait_consumers(&p, 2);
    let mut s = p.acquire(100).unwrap();
    let (slot, ptr) = (s.slot(), s.as_mut_ptr());
    s.write(0, &[1; 100]).unwrap();
    let mut s = ReusableSlot::from(s);
    let n = s.publish(0, 100, &1u64.to_le_bytes()).unwrap();
    assert_eq!(n, 2);
    assert!(matches!(
        s.publish(0, 100, &[]),
        Err(PublishError::Published)
    ));
    assert!(matches!(s.write(0, &[3]), Err(PublishError::Published)));
    let f1 = expect_frame(&mut c1);
    let f2 = expect_frame(&mut c2);
    // Both consumers hold it, then one: it stays held.
    assert!(!s.try_rearm(), "two consumers hold it");
    drop(f1);
    assert!(!s.try_rearm(), "one consumer holds it");
    assert_eq!(s.slot(), slot);
    drop(f2);
    // The last consumer let go: the same slot, at the same address, is writable.
    assert!(s.try_rearm(), "every consumer released it");
    assert_eq!((s.slot(), s.as_mut_ptr()), (slot, ptr));
    assert_eq!(p.stats().free_slots, 7, "being written, not free");
    s.write(0, &[2; 100]).unwrap();
    let n = s.publish(0, 100, &2u64.to_le_bytes()).unwrap();
    assert_eq!(n, 2);
    for c in [&mut c1, &mut c2] {
        let f = expect_frame(c);
        assert_eq!((f.seq(), f.meta()), (1, &2u64.to_le_bytes()[..]));
        assert!(f.to_vec().iter().all(|&b| b == 2));
    }
    wait_idle(&p, 1);
    wait_idle(&p, 2);
    // A bigger frame retires the arena: its slots are not written again.
    let big = p.acquire(1 << 20).unwrap();
    assert!(!s.try_rearm(), "its arena is retiring");
    drop(big);
    drop(s);
    assert_eq!(p.stats().free_slots, 8);
}

#[test]
fn small_frames_get_a_bigger_arena_and_a_consumer_a_bigger_share() {
    let cfg = ProducerConfig {
        small_frames_arena: 1 << 20,
        ..patient()
    };
    // 4 KiB slots: 256 fit in 1 MiB, at most 64; 1 MiB frames: the 8 of `slots`.
    assert_eq!(cfg.slots_for(100), 64);
    assert_eq!(cfg.slots_for(1 << 20), 8);
    let p = Producer::bind(socket_path("small-arena"), cfg).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    // The consumer does not read: publishing stops at its share, 32 of 64.
    let mut sent = 0;
    while p.stats().consumers[0].held < 32 {
        assert_eq!(publish(&p, sent, 100), 1);
        sent += 1;
        assert!(sent <= 32, "more than its share went out");
    }
    assert_eq!(p.stats().free_slots, 64 - 32);
    // It takes all 32 and lets them go at once, while the producer publishes
    // nothing: its release ring holds them all, so the producer gets every slot
    // back at its next look (a ring sized by the 8 of `slots` held 16, and the
    // other 16 waited in the consumer until it released again).
    let frames: Vec<_> = (0..32).map(|_| expect_frame(&mut c)).collect();
    drop(frames);
    let st = p.stats();
    assert_eq!(st.consumers[0].held, 0);
    assert_eq!(st.free_slots, 64);
    drop(c);
}
