//! Frame channel behaviour, producer and consumers in one process (threads), over
//! real sockets and memfds: frames, side messages, arenas, policies, releases and the
//! lease. Endpoints and slots: `frame_endpoints.rs`. Cross-process and hostile-peer
//! tests live in `tests/`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use shmring::frame::{ConsumerEvent, Policy};
use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig, RecvError};

#[test]
fn frames_and_side_messages_arrive_in_order_and_slots_come_back() {
    let p = Producer::bind(socket_path("order"), patient()).unwrap();
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
    assert!(matches!(c.recv(), Err(RecvError::PeerGone)));
}

#[test]
fn late_joiner_gets_sticky_messages_before_its_first_frame() {
    let p = Producer::bind(socket_path("sticky"), patient()).unwrap();
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
    let p = Producer::bind(socket_path("grow"), patient()).unwrap();
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
    let p = Producer::bind(socket_path("drop"), cfg).unwrap();
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
    let p = Producer::bind(socket_path("block"), cfg).unwrap();
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
        RecvError::Closed { code, reason } => {
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
    let p = Producer::bind(socket_path("wait-unlocked"), cfg).unwrap();
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
    let p = Producer::bind(socket_path("threads"), patient()).unwrap();
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
        let p = Producer::bind(socket_path(tag), cfg).unwrap();
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
    let p = Producer::bind(socket_path("lease"), cfg).unwrap();
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
        Err(RecvError::Closed { .. })
    ));
    assert_eq!(p.stats().free_slots, 8);
}

#[test]
fn waking_ahead_of_paced_frames_loses_nothing_and_still_hears_wakers_and_goodbyes() {
    let p = Producer::bind(socket_path("ahead"), patient()).unwrap();
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
    assert!(matches!(c.recv(), Err(RecvError::Interrupted)));
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
        Ok(Event::End { .. }) | Err(RecvError::PeerGone)
    ));
    t.join().unwrap();
}
