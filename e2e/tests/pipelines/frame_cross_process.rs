//! The frame channel between real processes: several consumers with policies,
//! SIGKILL of either side, reconnect, late joiners, hostile consumers. (Hostile
//! producers: `hostile_producers.rs`.)

use std::process::Child;
use std::time::{Duration, Instant};

use e2e::{
    KillOnDrop, check_frame, eventually, finish, frame_number, kill9, patient, publish_seq,
    read_line, socket_path, spawn, wait_idle,
};
use shmring::frame::{ConsumerEvent, Policy};
use shmring::{Backoff, Consumer, ConsumerConfig, Event, Producer, ProducerConfig, RecvError};

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

fn peer(args: &[&str]) -> Child {
    spawn(PEER, args)
}

fn cut_off_reasons(p: &Producer) -> Vec<String> {
    p.take_events()
        .into_iter()
        .filter_map(|e| match e {
            ConsumerEvent::CutOff { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Stdout of a finished consumer peer, as lines.
fn lines(child: Child) -> Vec<String> {
    let (status, out) = finish(child);
    assert!(status.success(), "peer failed: {status}\n{out}");
    out.lines().map(str::to_owned).collect()
}

fn totals(out: &[String]) -> (u64, u64) {
    let t = out
        .iter()
        .find(|l| l.starts_with("frames "))
        .unwrap_or_else(|| panic!("no totals in {out:?}"));
    let w: Vec<&str> = t.split(' ').collect();
    (w[1].parse().unwrap(), w[3].parse().unwrap())
}

#[test]
fn drop_policy_three_consumers_the_fast_two_get_every_frame() {
    let path = socket_path("drop3");
    let cfg = ProducerConfig {
        policy: Policy::Drop,
        slots: 16,
        ..Default::default()
    };
    let max_held = 8;
    let p = Producer::bind(&path, cfg).unwrap();
    let ps = path.to_str().unwrap();
    let mut fast1 = peer(&["consume", ps]);
    let mut fast2 = peer(&["consume", ps]);
    let mut slow = peer(&["consume", ps, "40"]);
    for c in [&mut fast1, &mut fast2, &mut slow] {
        assert!(read_line(c).starts_with("ready"));
    }
    p.wait_for_consumers(3, Some(Duration::from_secs(10)))
        .unwrap();
    let slow_pid = slow.id() as i32;
    const N: u64 = 300;
    for seq in 0..N {
        // Pace the producer by the fast consumers only (never by the slow one), so
        // that what this test sees does not depend on scheduling: a fast consumer is
        // never more than a few frames behind, far from its share of slots.
        eventually("fast consumers keep up", || {
            p.stats()
                .consumers
                .iter()
                .filter(|c| c.pid != slow_pid)
                .all(|c| c.held < max_held - 2)
        });
        publish_seq(&p, seq, 16 * 1024).unwrap();
    }
    let s = p.stats();
    let slow_stats = s.consumers.iter().find(|c| c.pid == slow_pid).unwrap();
    assert!(slow_stats.drops > 0, "{s:?}");
    for c in s.consumers.iter().filter(|c| c.pid != slow_pid) {
        assert_eq!((c.frames, c.drops), (N, 0), "{s:?}");
    }
    drop(p);
    for c in [fast1, fast2] {
        let out = lines(c);
        assert_eq!(totals(&out), (N, 0), "{out:?}");
        assert_eq!(out.last().unwrap(), "end producer stopped");
    }
    let out = lines(slow);
    let (frames, drops) = totals(&out);
    assert!(frames < N && drops > 0, "{out:?}");
}

#[test]
fn block_policy_waits_at_most_the_timeout_then_cuts_the_slow_consumer_off() {
    let path = socket_path("block3");
    let cfg = ProducerConfig {
        block_timeout: Duration::from_millis(300),
        frame_ring: 8,
        ..Default::default()
    };
    let p = Producer::bind(&path, cfg).unwrap();
    let ps = path.to_str().unwrap();
    let mut fast1 = peer(&["consume", ps]);
    let mut fast2 = peer(&["consume", ps]);
    let mut slow = peer(&["consume", ps, "1000"]);
    for c in [&mut fast1, &mut fast2, &mut slow] {
        assert!(read_line(c).starts_with("ready"));
    }
    p.wait_for_consumers(3, Some(Duration::from_secs(10)))
        .unwrap();
    let slow_pid = slow.id() as i32;
    let mut longest = Duration::ZERO;
    for seq in 0..100 {
        // The fast consumers are never the ones waited for, however slowly this runs.
        wait_idle(&p, |c| c.pid != slow_pid);
        let t = Instant::now();
        publish_seq(&p, seq, 4096).unwrap();
        longest = longest.max(t.elapsed());
    }
    // The producer blocked for the slow one (at least the timeout), and no frame
    // took unboundedly long (a generous ceiling: a hang would be infinite).
    assert!(longest >= Duration::from_millis(300), "{longest:?}");
    assert!(longest < Duration::from_secs(20), "{longest:?}");
    let reasons = cut_off_reasons(&p);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("took no frame for 300ms"),
        "{reasons:?}"
    );
    assert_eq!(p.consumer_count(), 2);
    drop(p);
    for c in [fast1, fast2] {
        assert_eq!(totals(&lines(c)), (100, 0));
    }
    let out = lines(slow);
    assert!(
        out.last()
            .unwrap()
            .starts_with("error peer closed the connection: consumer"),
        "{out:?}"
    );
}

#[test]
fn sigkill_of_a_consumer_gives_back_its_slots_and_the_others_carry_on() {
    let path = socket_path("killc");
    let p = Producer::bind(&path, patient()).unwrap();
    let ps = path.to_str().unwrap();
    let mut victim = peer(&["hold", ps, "3"]);
    let mut other = peer(&["consume", ps]);
    assert!(read_line(&mut other).starts_with("ready"));
    p.wait_for_consumers(2, Some(Duration::from_secs(10)))
        .unwrap();
    for seq in 0..3 {
        publish_seq(&p, seq, 100_000).unwrap();
    }
    assert_eq!(read_line(&mut victim), "ready");
    let victim_pid = victim.id() as i32;
    let held = |p: &Producer| {
        p.stats()
            .consumers
            .iter()
            .find(|c| c.pid == victim_pid)
            .map_or(0, |c| c.held)
    };
    assert_eq!(held(&p), 3);
    kill9(&mut victim);
    eventually("victim removed", || p.consumer_count() == 1);
    for seq in 3..50 {
        publish_seq(&p, seq, 100_000).unwrap();
    }
    eventually("every slot back", || p.stats().free_slots == 8);
    let ev = p.take_events();
    assert!(
        ev.iter().any(
            |e| matches!(e, ConsumerEvent::Left { reason, .. } if reason.ends_with("hung up"))
        ),
        "{ev:?}"
    );
    drop(p);
    assert_eq!(totals(&lines(other)), (50, 0));
}

#[test]
fn sigkill_of_the_producer_then_a_new_one_on_the_same_path_consumer_resumes() {
    let path = socket_path("killp");
    let ps = path.to_str().unwrap();
    let mut prod = peer(&["produce", ps, "50000", "2"]);
    assert_eq!(read_line(&mut prod), "ready");
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let mut kept = None;
    let mut frames = 0;
    match c.recv_timeout(Duration::from_secs(10)).unwrap() {
        Event::Side { key: 1, payload } => assert_eq!(payload, b"caps 50000"),
        other => panic!("{other:?}"),
    }
    while frames < 20 {
        if let Event::Frame(f) = c.recv_timeout(Duration::from_secs(10)).unwrap() {
            check_frame(&f, frame_number(&f)).unwrap();
            frames += 1;
            kept = Some(f);
        }
    }
    kill9(&mut prod);
    let err = loop {
        match c.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Frame(_)) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, RecvError::PeerGone), "{err}");
    // A frame held across the producer's death is still mapped and readable.
    let kept = kept.unwrap();
    check_frame(&kept, frame_number(&kept)).unwrap();
    drop(kept);
    drop(c);
    // The dead producer's socket file is still there: the new one replaces it, and
    // the consumer, retrying with backoff, finds it.
    let path2 = path.clone();
    let retry = std::thread::spawn(move || {
        Consumer::connect_with_backoff(
            &path2,
            ConsumerConfig::default(),
            Backoff::default(),
            Some(Duration::from_secs(20)),
            None,
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut prod = peer(&["produce", ps, "50000", "2"]);
    assert_eq!(read_line(&mut prod), "ready");
    let mut c = retry.join().unwrap().unwrap();
    match c.recv_timeout(Duration::from_secs(10)).unwrap() {
        Event::Side { key: 1, payload } => assert_eq!(payload, b"caps 50000"),
        other => panic!("{other:?}"),
    }
    match c.recv_timeout(Duration::from_secs(10)).unwrap() {
        Event::Frame(f) => check_frame(&f, frame_number(&f)).unwrap(),
        other => panic!("{other:?}"),
    }
    kill9(&mut prod);
}

#[test]
fn late_joiner_process_receives_sticky_messages_before_its_first_frame() {
    let path = socket_path("late");
    let p = Producer::bind(&path, patient()).unwrap();
    p.send_side(b"stream-start", 1).unwrap();
    p.send_side(b"caps v1", 2).unwrap();
    for seq in 0..10 {
        publish_seq(&p, seq, 1000).unwrap();
    }
    p.send_side(b"caps v2", 2).unwrap();
    p.send_side(b"transient", 0).unwrap();
    let mut late = peer(&["consume", path.to_str().unwrap(), "0", "5"]);
    assert!(read_line(&mut late).starts_with("ready"));
    p.wait_for_consumers(1, Some(Duration::from_secs(10)))
        .unwrap();
    for seq in 10..15 {
        publish_seq(&p, seq, 1000).unwrap();
    }
    let out = lines(late);
    assert_eq!(
        out[..3],
        ["side 1 stream-start", "side 2 caps v2", "first-frame 10"],
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------
// Hostile consumers: the producer and an honest consumer carry on.
// ---------------------------------------------------------------------------------

/// Runs the hostile consumer `act` next to an honest one, publishing until the
/// producer has cut the hostile one off; returns the reason it logged and what the
/// hostile peer printed.
/// A producer with `cfg`, an honest consumer process, and the hostile consumer `act`
/// beside it, once it joined: (producer, honest, its id, hostile). The honest one is
/// waited for whatever the default policy (so that it gets every frame however the
/// test is scheduled); the hostile one gets the configured policy.
fn honest_beside_hostile(act: &str, cfg: ProducerConfig) -> (Producer, Child, u32, Child) {
    let path = socket_path(act);
    let p = Producer::bind(&path, cfg).unwrap();
    let ps = path.to_str().unwrap();
    let mut honest = peer(&["consume", ps]);
    assert!(read_line(&mut honest).starts_with("ready"));
    p.wait_for_consumers(1, Some(Duration::from_secs(10)))
        .unwrap();
    let honest_id = p.stats().consumers[0].id;
    assert!(p.set_policy(honest_id, Policy::Block));
    let evil = peer(&["evil-consumer", ps, act]);
    // It may be cut off as soon as it joins: wait for the join, not for two at once.
    eventually("hostile consumer joined", || p.stats().joined == 2);
    (p, honest, honest_id, evil)
}

fn hostile_consumer(act: &str, cfg: ProducerConfig) -> (String, Vec<String>) {
    let (p, honest, honest_id, mut evil) = honest_beside_hostile(act, cfg);
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        wait_idle(&p, |c| c.id == honest_id);
        publish_seq(&p, seq, 8192).unwrap();
        seq += 1;
        if let Some(r) = cut_off_reasons(&p).pop() {
            break r;
        }
        assert!(Instant::now() < deadline, "{act}: never cut off");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(p.consumer_count(), 1, "{act}: the honest consumer stays");
    for _ in 0..20 {
        wait_idle(&p, |c| c.id == honest_id);
        publish_seq(&p, seq, 8192).unwrap();
        seq += 1;
    }
    eventually("every slot back", || p.stats().free_slots == 8);
    drop(p);
    let out = lines(honest);
    assert_eq!(totals(&out), (seq, 0), "{act}: honest consumer {out:?}");
    let (_, evil_out) = finish_or_kill(&mut evil);
    (reason, evil_out)
}

fn finish_or_kill(child: &mut Child) -> (bool, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let exited = child.try_wait().unwrap().is_some();
    if !exited {
        kill9(child);
    }
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (exited, out.lines().map(str::to_owned).collect())
}

#[test]
fn hostile_consumer_releasing_a_slot_it_never_got_is_cut_off() {
    let (reason, out) = hostile_consumer("bogus-release", ProducerConfig::default());
    assert!(
        reason.contains("released slot 5 of arena 0 that it does not hold"),
        "{reason}"
    );
    assert!(
        out.iter().any(|l| l.starts_with("goodbye 1 consumer")),
        "{out:?}"
    );
}

#[test]
fn hostile_consumer_releasing_twice_is_cut_off() {
    let (reason, _) = hostile_consumer("double-release", ProducerConfig::default());
    assert!(reason.contains("that it does not hold"), "{reason}");
}

#[test]
fn hostile_consumer_that_never_releases_is_cut_off_by_the_block_policy() {
    let cfg = ProducerConfig {
        block_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (reason, out) = hostile_consumer("never-release", cfg);
    assert!(reason.contains("took no frame for 200ms"), "{reason}");
    assert!(out.iter().any(|l| l.starts_with("goodbye 1")), "{out:?}");
}

#[test]
fn hostile_consumer_that_never_releases_is_cut_off_by_the_lease_under_drop_policy() {
    let cfg = ProducerConfig {
        policy: Policy::Drop,
        lease: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let (reason, _) = hostile_consumer("never-release", cfg);
    assert!(reason.contains("lease"), "{reason}");
}

#[test]
fn hostile_consumer_scribbling_its_control_region_is_cut_off() {
    let (reason, _) = hostile_consumer("scribble", ProducerConfig::default());
    assert!(reason.contains("ring"), "{reason}");
}

#[test]
fn hostile_consumer_sending_garbage_is_cut_off() {
    let (reason, _) = hostile_consumer("garbage", ProducerConfig::default());
    assert!(reason.contains("protocol violation"), "{reason}");
}

#[test]
fn a_consumer_cannot_get_write_access_to_an_arena() {
    let path = socket_path("mapw");
    let p = Producer::bind(&path, patient()).unwrap();
    publish_seq(&p, 0, 4096).unwrap(); // an arena exists before it joins
    let mut evil = peer(&["evil-consumer", path.to_str().unwrap(), "map-writable"]);
    let mut attempts = Vec::new();
    loop {
        let l = read_line(&mut evil);
        if l == "ready" || l.is_empty() {
            break;
        }
        attempts.push(l);
    }
    assert_eq!(
        attempts,
        [
            "mmap read-write shared: refused",
            "mprotect a read-only mapping writable: refused",
            "pwrite: refused",
            "ftruncate: refused",
            "fallocate punch hole: refused",
            "add a seal: refused",
            "reopen via /proc and write: refused",
        ]
    );
    // It is still served once it behaves.
    for seq in 1..20 {
        publish_seq(&p, seq, 4096).unwrap();
    }
    eventually("frames released", || p.stats().free_slots == 8);
    drop(p);
    let (status, _) = finish(evil);
    assert!(status.success());
}

#[test]
fn a_consumer_that_stops_reading_its_socket_slows_no_one_and_is_cut_off_when_its_queue_overflows() {
    let cfg = ProducerConfig {
        policy: Policy::Drop,
        block_timeout: Duration::from_secs(1),
        max_queued: 256 * 1024,
        ..Default::default()
    };
    let (p, honest, honest_id, deaf) = honest_beside_hostile("deaf", cfg);
    let _deaf = KillOnDrop(deaf);
    // A tag before every frame (as shmringsink sends one per buffer): the deaf
    // consumer's socket fills within a few dozen, its queue a little later.
    let tag = vec![b't'; 8 * 1024];
    let mut slowest = Duration::ZERO;
    let frames = 200;
    for seq in 0..frames {
        wait_idle(&p, |c| c.id == honest_id);
        let t = Instant::now();
        p.send_side(&tag, 0).unwrap();
        publish_seq(&p, seq, 4096).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    let reasons = cut_off_reasons(&p);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("did not read its socket:")
            && reasons[0].contains("at most 262144 bytes"),
        "{reasons:?}"
    );
    // Never waited for: no send or publish took anywhere near the block timeout
    // (before, one waited the whole second for the deaf socket).
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    drop(p);
    let (status, out) = finish(honest);
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("frames {frames} drops 0")), "{out}");
    assert_eq!(
        out.lines().filter(|l| *l == "side 0 of 8192 bytes").count(),
        frames as usize,
        "{out}"
    );
}

#[test]
fn hostile_consumer_sending_a_message_larger_than_the_protocol_allows_is_cut_off() {
    let (reason, _) = hostile_consumer("huge-msg", ProducerConfig::default());
    assert!(reason.contains("MSG_TRUNC"), "{reason}");
}

#[test]
fn a_connection_that_never_says_hello_is_refused_and_keeps_no_one_out() {
    let path = socket_path("silent");
    let cfg = ProducerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..patient()
    };
    let p = Producer::bind(&path, cfg).unwrap();
    let ps = path.to_str().unwrap();
    let mut silent = peer(&["evil-consumer", ps, "silent"]);
    assert_eq!(read_line(&mut silent), "ready");
    // Meanwhile an honest consumer joins and is served.
    let mut honest = peer(&["consume", ps]);
    assert!(read_line(&mut honest).starts_with("ready"));
    p.wait_for_consumers(1, Some(Duration::from_secs(20)))
        .unwrap();
    for seq in 0..10 {
        publish_seq(&p, seq, 4096).unwrap();
    }
    // The silent one is told why it was dropped.
    let (_, out) = finish_or_kill(&mut silent);
    assert!(
        out.iter()
            .any(|l| l.starts_with("goodbye 2 no hello within 300ms")),
        "{out:?}"
    );
    let refused: Vec<String> = p
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            ConsumerEvent::Refused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(refused, ["no hello within 300ms"]);
    assert_eq!(p.consumer_count(), 1);
    drop(p);
    assert_eq!(totals(&lines(honest)), (10, 0));
}

#[test]
fn a_consumer_releasing_and_ringing_at_a_furious_rate_starves_no_one() {
    let path = socket_path("furious");
    let p = Producer::bind(&path, patient()).unwrap();
    let ps = path.to_str().unwrap();
    let mut honest = peer(&["consume", ps]);
    assert!(read_line(&mut honest).starts_with("ready"));
    p.wait_for_consumers(1, Some(Duration::from_secs(20)))
        .unwrap();
    let mut furious = KillOnDrop(peer(&["evil-consumer", ps, "furious-release"]));
    assert_eq!(read_line(&mut furious.0), "ready");
    p.wait_for_consumers(2, Some(Duration::from_secs(20)))
        .unwrap();
    // Block policy: every frame waits for both consumers, so the doorbell storm is
    // in every wait the producer makes.
    const N: u64 = 300;
    for seq in 0..N {
        publish_seq(&p, seq, 8192).unwrap();
    }
    eventually("every slot back", || p.stats().free_slots == 8);
    let s = p.stats();
    assert_eq!((s.cut_off, s.consumers.len()), (0, 2), "{s:?}");
    drop(p);
    assert_eq!(totals(&lines(honest)), (N, 0));
    let (exited, out) = finish_or_kill(&mut furious.0);
    assert!(exited, "{out:?}");
    assert!(out.contains(&format!("released {N}")), "{out:?}");
}
