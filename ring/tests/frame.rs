//! Frame channel behaviour, producer and consumers in one process (threads), over
//! real sockets and memfds. Cross-process and hostile-peer tests live in `tests/`.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use shmring::frame::{ConsumerEvent, Policy};
use shmring::{Consumer, ConsumerConfig, Error, Event, Frame, Producer, ProducerConfig};

fn sock_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-frame-{}-{tag}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("sock")
}

fn connect(p: &Producer) -> Consumer {
    Consumer::connect(p.path().unwrap(), ConsumerConfig::default()).unwrap()
}

/// Publishes a frame of `len` bytes, each byte `seq as u8`, with `seq` as metadata.
fn publish(p: &Producer, seq: u64, len: usize) -> usize {
    let mut s = p.acquire(len).unwrap();
    s.write(0, &vec![seq as u8; len]).unwrap();
    s.publish(len, &seq.to_le_bytes()).unwrap()
}

fn expect_frame(c: &mut Consumer) -> Frame {
    match c.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn expect_side(c: &mut Consumer) -> (u32, Vec<u8>) {
    match c.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Side { key, payload } => (key, payload),
        other => panic!("expected a side message, got {other:?}"),
    }
}

fn check_frame(f: &Frame, seq: u64, len: usize) {
    assert_eq!(f.seq(), seq);
    assert_eq!(f.len(), len);
    assert_eq!(f.meta(), seq.to_le_bytes());
    let v = f.to_vec();
    assert!(v.iter().all(|&b| b == seq as u8), "frame {seq} payload");
}

/// For tests whose consumers are honest: the producer waits for them as long as a
/// slow machine (or valgrind) may need, so only a real hang trips the block policy.
fn patient() -> ProducerConfig {
    ProducerConfig {
        block_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// Waits until consumer `id` holds no slot (has taken and released every frame).
fn wait_idle(p: &Producer, id: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stats().consumers.iter().any(|c| c.id == id && c.held > 0) {
        assert!(Instant::now() < deadline, "consumer {id} stuck");
        thread::sleep(Duration::from_millis(1));
    }
}

fn wait_consumers(p: &Producer, n: usize) {
    p.wait_for_consumers(n, Some(Duration::from_secs(60)))
        .unwrap();
}

#[test]
fn frames_and_side_messages_arrive_in_order_and_slots_come_back() {
    let p = Producer::bind(sock_path("order"), patient()).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let reader = thread::spawn(move || {
        let mut log = Vec::new();
        loop {
            match c.recv_timeout(Duration::from_secs(60)).unwrap() {
                Event::Frame(f) => {
                    check_frame(&f, f.seq(), 1000 + f.seq() as usize);
                    log.push(format!("f{}", f.seq()));
                }
                Event::Side { key, payload } => {
                    log.push(format!("s{key}:{}", String::from_utf8(payload).unwrap()))
                }
                Event::End { reason } => {
                    log.push(format!("end:{reason}"));
                    return (log, c);
                }
            }
        }
    });
    let mut want = Vec::new();
    for i in 0..200u64 {
        if i % 50 == 0 {
            p.send_side(format!("at {i}").as_bytes(), 0).unwrap();
            want.push(format!("s0:at {i}"));
        }
        assert_eq!(publish(&p, i, 1000 + i as usize), 1);
        want.push(format!("f{i}"));
    }
    // Every slot comes back once the reader dropped its frames.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = p.stats();
        if s.free_slots == 8 || Instant::now() > deadline {
            assert_eq!(s.free_slots, 8, "{s:?}");
            assert_eq!(s.frames, 200);
            assert_eq!(s.consumers[0].frames, 200);
            assert_eq!(s.consumers[0].held, 0);
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    drop(p);
    want.push("end:producer stopped".into());
    let (log, mut c) = reader.join().unwrap();
    assert_eq!(log, want);
    assert!(matches!(c.recv(), Err(Error::PeerGone)));
}

#[test]
fn late_joiner_gets_sticky_messages_before_its_first_frame() {
    let p = Producer::bind(sock_path("sticky"), patient()).unwrap();
    p.send_side(b"caps-1", 2).unwrap();
    p.send_side(b"stream-start", 1).unwrap();
    p.send_side(b"not sticky", 0).unwrap();
    publish(&p, 0, 64);
    p.send_side(b"caps-2", 2).unwrap();
    publish(&p, 1, 64);
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    publish(&p, 2, 64);
    // Replayed in key order, latest of each key, nothing that was not sticky.
    assert_eq!(expect_side(&mut c), (1, b"stream-start".to_vec()));
    assert_eq!(expect_side(&mut c), (2, b"caps-2".to_vec()));
    let f = expect_frame(&mut c);
    assert_eq!(f.seq(), 0, "a late joiner's stream starts at 0");
    assert_eq!(f.meta(), 2u64.to_le_bytes());
    assert!(p.forget_sticky(1));
    let _c2 = connect(&p);
    wait_consumers(&p, 2);
}

#[test]
fn a_bigger_frame_adds_an_arena_and_the_old_one_goes_once_released() {
    let p = Producer::bind(sock_path("grow"), patient()).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    publish(&p, 0, 4096);
    let small = expect_frame(&mut c);
    assert_eq!(p.stats().slot_size, 4096);
    publish(&p, 1, 3 * 4096 + 5);
    let big = expect_frame(&mut c);
    check_frame(&big, 1, 3 * 4096 + 5);
    let s = p.stats();
    assert_eq!(
        (s.arenas, s.slot_size),
        (2, 4 * 4096),
        "old arena still held"
    );
    drop(small);
    drop(big);
    // The old arena goes with its last slot; the consumer is told (DropArena).
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stats().arenas != 1 {
        assert!(Instant::now() < deadline, "old arena never dropped");
        thread::sleep(Duration::from_millis(5));
    }
    // Smaller frames keep using the big slots.
    publish(&p, 2, 100);
    check_frame(&expect_frame(&mut c), 2, 100);
}

#[test]
fn drop_policy_skips_a_consumer_that_does_not_read_and_says_how_many() {
    let cfg = ProducerConfig {
        policy: Policy::Drop,
        frame_ring: 4,
        ..Default::default()
    };
    let p = Producer::bind(sock_path("drop"), cfg).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let t = Instant::now();
    for i in 0..100 {
        publish(&p, i, 256);
    }
    // Never blocked on the sleeping consumer (a generous bound, not a timing test:
    // blocking would have taken 100 block timeouts).
    assert!(t.elapsed() < Duration::from_secs(20));
    let s = p.stats();
    assert_eq!(s.consumers[0].frames + s.consumers[0].drops, 100);
    assert!(s.consumers[0].drops >= 90, "{s:?}");
    let mut got = Vec::new();
    while let Some(Event::Frame(f)) = c.try_recv().unwrap() {
        got.push(f);
    }
    assert_eq!(got.len() as u64, s.consumers[0].frames);
    got.clear();
    publish(&p, 100, 256);
    let f = expect_frame(&mut c);
    assert_eq!(f.dropped_before() as u64, s.consumers[0].drops);
    assert_eq!(f.meta(), 100u64.to_le_bytes());
}

#[test]
fn block_policy_waits_for_a_stalled_consumer_then_cuts_it_off() {
    let cfg = ProducerConfig {
        block_timeout: Duration::from_millis(300),
        frame_ring: 4,
        ..Default::default()
    };
    let p = Producer::bind(sock_path("block"), cfg).unwrap();
    let mut stalled = connect(&p);
    let mut healthy = connect(&p);
    let healthy_id = healthy.id();
    wait_consumers(&p, 2);
    let reader = thread::spawn(move || {
        let mut n = 0;
        while n < 20 {
            if let Event::Frame(f) = healthy.recv_timeout(Duration::from_secs(60)).unwrap() {
                check_frame(&f, n, 128);
                n += 1;
            }
        }
        healthy
    });
    let mut waited = Duration::ZERO;
    for i in 0..20 {
        // The healthy consumer is never the one waited for, however slowly this runs.
        wait_idle(&p, healthy_id);
        let t = Instant::now();
        publish(&p, i, 128);
        waited += t.elapsed();
    }
    let _healthy = reader.join().unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "never blocked: {waited:?}"
    );
    let ev = p.take_events();
    let cut = ev
        .iter()
        .find_map(|e| match e {
            ConsumerEvent::CutOff { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("stalled consumer cut off");
    assert!(cut.contains("took no frame for 300ms"), "{cut}");
    assert_eq!(p.consumer_count(), 1);
    // The stalled consumer is told why; the frames still queued for it are not
    // delivered, since their slots went back to the producer with the cut-off.
    let err = match stalled.recv_timeout(Duration::from_secs(60)) {
        Ok(ev) => panic!("{ev:?}"),
        Err(e) => e,
    };
    match err {
        Error::Closed { code, reason } => {
            assert_eq!(code, 1);
            assert!(reason.contains("took no frame"), "{reason}");
        }
        e => panic!("{e}"),
    }
    let s = p.stats();
    assert_eq!(
        s.free_slots, 8,
        "the cut-off consumer's slots came back: {s:?}"
    );
}

#[test]
fn while_publish_waits_for_a_slow_consumer_others_join_and_stats_answer() {
    // Patient: only the test's own unblocking ends the wait.
    let cfg = ProducerConfig {
        frame_ring: 2,
        ..patient()
    };
    let p = Producer::bind(sock_path("wait-unlocked"), cfg).unwrap();
    let mut slow = connect(&p);
    wait_consumers(&p, 1);
    thread::scope(|s| {
        let publisher = s.spawn(|| {
            for i in 0..3 {
                publish(&p, i, 64);
            }
        });
        // Two frames fill the slow consumer's ring; the third waits for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while p.stats().frames < 2 {
            assert!(Instant::now() < deadline, "publisher stuck");
            thread::sleep(Duration::from_millis(1));
        }
        // Meanwhile a consumer joins and stats answer (neither waits out the
        // block timeout): the slow one is still there, the publisher still waiting.
        let mut late = connect(&p);
        let st = p.stats();
        assert_eq!(st.consumers.len(), 2, "{st:?}");
        assert_eq!(st.cut_off, 0, "{st:?}");
        assert_eq!(st.frames, 2, "third frame not published yet: {st:?}");
        assert!(!publisher.is_finished());
        // The slow consumer reads; the third frame reaches both, in order.
        for i in 0..3 {
            check_frame(&expect_frame(&mut slow), i, 64);
        }
        publisher.join().unwrap();
        let f = expect_frame(&mut late);
        assert_eq!(f.seq(), 0);
        assert_eq!(f.meta(), 2u64.to_le_bytes());
    });
    assert_eq!(p.stats().cut_off, 0);
}

#[test]
fn frames_released_on_other_threads_and_copies_release_at_once() {
    let p = Producer::bind(sock_path("threads"), patient()).unwrap();
    let mut c = connect(&p);
    let mut copier = Consumer::connect(
        p.path().unwrap(),
        ConsumerConfig {
            copy: true,
            ..Default::default()
        },
    )
    .unwrap();
    wait_consumers(&p, 2);
    publish(&p, 0, 5000);
    publish(&p, 1, 5000);
    let a = expect_frame(&mut c);
    let b = expect_frame(&mut c);
    let ca = expect_frame(&mut copier);
    assert!(ca.is_copy());
    assert_eq!(ca.as_slice().unwrap(), vec![0u8; 5000].as_slice());
    let _cb = expect_frame(&mut copier);
    let s = p.stats();
    let held: Vec<usize> = s.consumers.iter().map(|c| c.held).collect();
    assert_eq!(held, vec![2, 0], "the copying consumer holds nothing");
    thread::spawn(move || drop(a)).join().unwrap();
    thread::spawn(move || drop(b)).join().unwrap();
    assert_eq!(p.stats().consumers[0].held, 0);
    assert_eq!(p.stats().free_slots, 8);
}

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
fn strangers_and_surplus_consumers_are_refused_with_a_reason() {
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let cfg = ProducerConfig {
        allowed_uids: vec![me.wrapping_add(1)],
        ..Default::default()
    };
    let p = Producer::bind(sock_path("uids"), cfg).unwrap();
    match Consumer::connect(p.path().unwrap(), ConsumerConfig::default()) {
        Err(Error::Closed { code: 2, reason }) => {
            assert!(reason.contains(&format!("uid {me}")), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.stats().refused, 1);
    let cfg = ProducerConfig {
        max_consumers: 1,
        ..Default::default()
    };
    let p = Producer::bind(sock_path("max"), cfg).unwrap();
    let _first = connect(&p);
    match Consumer::connect(p.path().unwrap(), ConsumerConfig::default()) {
        Err(Error::Closed { reason, .. }) => assert!(reason.contains("serves 1"), "{reason}"),
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
    let p = Producer::bind(sock_path("wake"), cfg).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let w = c.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    assert!(matches!(c.recv(), Err(Error::Interrupted)));
    t.join().unwrap();
    publish(&p, 0, 8);
    publish(&p, 1, 8);
    let w = p.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    let s = p.acquire(8).unwrap();
    assert!(matches!(s.publish(8, &[]), Err(Error::Interrupted)));
    t.join().unwrap();
    // The interrupted frame's slot came back: 2 held by the consumer, 6 free.
    assert_eq!(p.stats().free_slots, 6);
}

#[test]
fn a_waiting_producer_sees_the_consumer_catch_up_while_it_polls() {
    // The producer polls for up to a minute before it would sleep, and nobody
    // rings while it polls: a publish (ring full) and an acquire (every slot
    // held) that return long before that saw the consumer catch up by polling.
    // The ring of 2 full, the publish waits for frame 0 to be taken; both slots
    // held, its acquire waits for frame 0's release.
    for (tag, slots, frame_ring, what) in [
        ("spin-ring", 8, 2, "publish"),
        ("spin-slots", 2, 4, "acquire"),
    ] {
        let cfg = ProducerConfig {
            block_timeout: Duration::from_secs(300),
            spin: Duration::from_secs(60),
            slots,
            max_held: Some(slots),
            frame_ring,
            ..Default::default()
        };
        let p = Producer::bind(sock_path(tag), cfg).unwrap();
        let mut c = connect(&p);
        wait_consumers(&p, 1);
        publish(&p, 0, 8);
        publish(&p, 1, 8);
        // After a moment, takes and releases frame 0, then takes the others.
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            for seq in 0..3 {
                check_frame(&expect_frame(&mut c), seq, 8);
            }
            c
        });
        let t = Instant::now();
        publish(&p, 2, 8);
        let waited = t.elapsed();
        let c = reader.join().unwrap();
        assert!(
            waited < Duration::from_secs(30),
            "the {what} waited out its poll: {waited:?}"
        );
        wait_idle(&p, c.id());
        assert_eq!(p.stats().free_slots, slots as usize);
    }
}

#[test]
fn lease_cuts_off_a_consumer_that_sits_on_a_slot() {
    let cfg = ProducerConfig {
        lease: Some(Duration::from_millis(200)),
        policy: Policy::Drop,
        ..Default::default()
    };
    let p = Producer::bind(sock_path("lease"), cfg).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    publish(&p, 0, 8);
    let _held = expect_frame(&mut c);
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.consumer_count() != 0 {
        assert!(Instant::now() < deadline, "never cut off");
        thread::sleep(Duration::from_millis(10));
    }
    let ev = p.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, ConsumerEvent::CutOff { reason, .. } if reason.contains("lease"))),
        "{ev:?}"
    );
    assert!(matches!(
        c.recv_timeout(Duration::from_secs(60)),
        Err(Error::Closed { .. })
    ));
    assert_eq!(p.stats().free_slots, 8);
}

#[test]
fn bad_arguments_are_refused_locally() {
    let bad = ProducerConfig {
        frame_ring: 3,
        ..Default::default()
    };
    assert!(matches!(Producer::new(bad), Err(Error::Invalid(_))));
    let p = Producer::new(ProducerConfig::default()).unwrap();
    let mut s = p.acquire(100).unwrap();
    assert!(s.write(4090, &[0; 7]).is_err());
    assert!(matches!(
        p.send_side(&vec![0; 70_000], 0),
        Err(Error::Invalid(_))
    ));
    let e = s.publish(10, &[0; 89]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid argument: metadata of 89 bytes exceeds 88"
    );
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
    let p = Producer::bind(sock_path("mode600"), ProducerConfig::default()).unwrap();
    assert_eq!(mode(&p), 0o600);
    let cfg = ProducerConfig {
        socket_mode: 0o660,
        ..Default::default()
    };
    let p = Producer::bind(sock_path("mode660"), cfg).unwrap();
    assert_eq!(mode(&p), 0o660);
    let path = p.path().unwrap().to_path_buf();
    drop(p);
    assert!(!path.exists(), "the socket goes with its producer");
}

#[test]
fn a_held_slot_is_not_reused_until_its_holder_lets_go() {
    let p = Producer::bind(sock_path("held"), patient()).unwrap();
    let mut c = connect(&p);
    wait_consumers(&p, 1);
    let mut s = p.acquire(100).unwrap();
    s.write(0, &[7; 100]).unwrap();
    let slot = s.slot();
    let (n, held) = s.publish_held(0, 100, &0u64.to_le_bytes()).unwrap();
    assert_eq!(n, 1);
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
    let p = Producer::bind(sock_path("reclaim"), patient()).unwrap();
    let mut c1 = connect(&p);
    let mut c2 = connect(&p);
    wait_consumers(&p, 2);
    let mut s = p.acquire(100).unwrap();
    let (slot, ptr) = (s.slot(), s.as_mut_ptr());
    s.write(0, &[1; 100]).unwrap();
    let (n, held) = s.publish_held(0, 100, &1u64.to_le_bytes()).unwrap();
    assert_eq!(n, 2);
    let f1 = expect_frame(&mut c1);
    let f2 = expect_frame(&mut c2);
    // Both consumers hold it, then one: it stays held.
    let held = held.try_reclaim().expect_err("two consumers hold it");
    drop(f1);
    let held = held.try_reclaim().expect_err("one consumer holds it");
    assert_eq!(held.slot(), slot);
    drop(f2);
    // The last consumer let go: the same slot, at the same address, is writable.
    let mut s = held.try_reclaim().expect("every consumer released it");
    assert_eq!((s.slot(), s.as_mut_ptr()), (slot, ptr));
    assert_eq!(p.stats().free_slots, 7, "being written, not free");
    s.write(0, &[2; 100]).unwrap();
    let (n, held) = s.publish_held(0, 100, &2u64.to_le_bytes()).unwrap();
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
    let held = held.try_reclaim().expect_err("its arena is retiring");
    drop(big);
    drop(held);
    assert_eq!(p.stats().free_slots, 8);
}

#[test]
fn waking_ahead_of_paced_frames_loses_nothing_and_still_hears_wakers_and_goodbyes() {
    let p = Producer::bind(sock_path("ahead"), patient()).unwrap();
    let cfg = ConsumerConfig {
        wake_ahead: Duration::from_micros(400),
        ..Default::default()
    };
    let mut c = Consumer::connect(p.path().unwrap(), cfg).unwrap();
    wait_consumers(&p, 1);
    let p = std::sync::Arc::new(p);
    let pp = p.clone();
    // A paced stream (every 5 ms), a side message in the middle.
    let t = thread::spawn(move || {
        for seq in 0..30u64 {
            thread::sleep(Duration::from_millis(5));
            if seq == 15 {
                pp.send_side(b"mid", 0).unwrap();
            }
            publish(&pp, seq, 100);
        }
    });
    for seq in 0..30u64 {
        if seq == 15 {
            assert_eq!(expect_side(&mut c), (0, b"mid".to_vec()));
        }
        check_frame(&expect_frame(&mut c), seq, 100);
    }
    t.join().unwrap();
    // The stream has a pace now; a waker still interrupts the anticipating wait
    // (long after the next frame was due) ...
    let w = c.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    assert!(matches!(c.recv(), Err(Error::Interrupted)));
    t.join().unwrap();
    // ... and a frame that comes much later than the pace says still arrives.
    thread::sleep(Duration::from_millis(30));
    publish(&p, 30, 100);
    check_frame(&expect_frame(&mut c), 30, 100);
    // Between paced frames, the producer leaving is heard at once.
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(2));
        drop(p);
    });
    assert!(matches!(
        c.recv_timeout(Duration::from_secs(60)),
        Ok(Event::End { .. }) | Err(Error::PeerGone)
    ));
    t.join().unwrap();
}
