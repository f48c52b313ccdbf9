//! Hostile producers, each a real process (`frame-peer evil-producer`, `deaf-listener`,
//! `hold-lock`), against a consumer in this process: it ends with an error naming the
//! fault, within its deadline, asleep, and never maps or keeps more than it allows.

use std::process::Child;
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, read_line, socket_path, spawn};
use shmring::{
    Backoff, BindError, ConnectError, Consumer, ConsumerConfig, Error, Event, IndexFault,
    PeerFault, Producer, ProducerConfig, ProtocolFault, RecvError, StreamFault,
};

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

fn peer(args: &[&str]) -> Child {
    spawn(PEER, args)
}

fn hostile_producer(act: &str) -> Error {
    let path = socket_path(act);
    let mut evil = KillOnDrop(peer(&["evil-producer", path.to_str().unwrap(), act]));
    assert_eq!(read_line(&mut evil.0), "ready");
    let e: Error = match Consumer::connect(&path, ConsumerConfig::default()) {
        Err(e) => e.into(),
        Ok(mut c) => {
            let r = loop {
                match c.recv_timeout(Duration::from_secs(30)) {
                    Ok(Event::Side { .. }) => {}
                    Ok(other) => panic!("{act}: {other:?}"),
                    Err(e) => break e,
                }
            };
            // Broken for good, not crashed: a peer fault stays the same one.
            let again = c.recv();
            match (&r, &again) {
                (RecvError::Peer(f), Err(RecvError::Peer(g))) => assert_eq!(f, g, "{act}"),
                _ => panic!("{act}: {r} then {again:?}"),
            }
            r.into()
        }
    };
    drop(evil);
    e
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn a_producer_that_vanishes_with_a_message_for_a_later_frame_ends_the_stream_asleep() {
    let path = socket_path("vanish");
    let mut evil = KillOnDrop(peer(&[
        "evil-producer",
        path.to_str().unwrap(),
        "vanish-mid-message",
    ]));
    assert_eq!(read_line(&mut evil.0), "ready");
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    assert_eq!(read_line(&mut evil.0), "done");
    let _ = evil.0.wait();
    let (cpu, wall) = (thread_cpu(), Instant::now());
    // What it queued for frame 5 arrives (no frame will), then the end: each call
    // within its 2 s deadline, and asleep, not spinning, in between.
    match c.recv_timeout(Duration::from_secs(2)) {
        Ok(Event::Side { payload, .. }) => assert_eq!(payload, b"for frame 5"),
        other => panic!("{other:?}"),
    }
    let end = c.recv_timeout(Duration::from_secs(2));
    assert!(matches!(end, Err(RecvError::PeerGone)), "{end:?}");
    assert!(matches!(
        c.recv_timeout(Duration::from_secs(2)),
        Err(RecvError::PeerGone)
    ));
    assert!(
        wall.elapsed() < Duration::from_secs(6),
        "{:?}",
        wall.elapsed()
    );
    let spent = thread_cpu() - cpu;
    assert!(spent < Duration::from_millis(500), "{spent:?} of CPU");
}

#[test]
fn a_listener_that_never_accepts_costs_a_consumer_its_deadline_not_forever() {
    let path = socket_path("deaf");
    let ps = path.to_str().unwrap();
    let mut deaf = KillOnDrop(peer(&["deaf-listener", ps]));
    assert!(read_line(&mut deaf.0).starts_with("ready"));
    let cfg = ConsumerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let t = Instant::now();
    let e = Consumer::connect(&path, cfg.clone()).unwrap_err();
    assert!(matches!(e, ConnectError::Unresponsive { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("(its backlog is full): nothing within"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Waiting for a producer with no deadline: the waker ends the wait.
    let w = shmring::Waker::new().unwrap();
    let w2 = w.clone();
    let ring = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        w2.wake();
    });
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(20),
    };
    let e = Consumer::connect_with_backoff(&path, cfg, backoff, None, Some(&w)).unwrap_err();
    assert!(matches!(e, ConnectError::Interrupted), "{e}");
    ring.join().unwrap();
    // A producer that would take the path sees someone there, without waiting.
    let e = Producer::bind(&path, ProducerConfig::default()).unwrap_err();
    assert!(
        matches!(&e, BindError::PathInUse { path: p } if *p == path),
        "{e}"
    );
    assert!(e.to_string().contains("in use by a live producer"), "{e}");
}

#[test]
fn a_socket_lock_held_or_owned_by_someone_else_bounds_the_wait_of_bind() {
    let path = socket_path("locked");
    let ps = path.to_str().unwrap();
    let mut holder = KillOnDrop(peer(&["hold-lock", ps]));
    assert_eq!(read_line(&mut holder.0), "ready");
    let t = Instant::now();
    let e = Producer::bind(&path, ProducerConfig::default()).unwrap_err();
    assert!(matches!(e, BindError::Busy { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("(held by another process): nothing within"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    drop(holder);
    drop(Producer::bind(&path, ProducerConfig::default()).unwrap());
    // A lock file another user made (in a directory both may write) is never
    // waited for.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = socket_path("theirs");
        let lock = path.with_file_name(format!(
            ".{}.lock",
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&lock, b"").unwrap();
        std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
        let e = Producer::bind(&path, ProducerConfig::default()).unwrap_err();
        assert!(
            matches!(&e, BindError::BadPath { path: p, .. } if *p == lock),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("belongs to uid 65534, not to this user"),
            "{e}"
        );
        std::fs::remove_file(&lock).unwrap();
    }
}

#[test]
fn hostile_producer_arena_over_the_consumers_limit() {
    let e = hostile_producer("arena-over-limit");
    assert_eq!(
        e.to_string(),
        "protocol violation: arena 0 of 3072 slots of 1048576 bytes is over the 2147483648 bytes this consumer maps"
    );
}

#[test]
fn a_producer_that_never_takes_releases_back_is_refused_before_the_backlog_grows_without_bound() {
    let path = socket_path("no-release-drain");
    let mut evil = KillOnDrop(peer(&[
        "evil-producer",
        path.to_str().unwrap(),
        "no-release-drain",
    ]));
    assert_eq!(read_line(&mut evil.0), "ready");
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let mut frames = 0u64;
    let e = loop {
        match c.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::Frame(f)) => {
                frames += 1;
                drop(f);
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        e.to_string(),
        "protocol violation: producer takes no releases: more than 65536 wait"
    );
    assert!((65_536..70_000).contains(&frames), "{frames} frames");
}

#[test]
fn hostile_producer_unsealed_arena() {
    let e = hostile_producer("unsealed-arena");
    assert_eq!(e.to_string(), "memfd lacks F_SEAL_SHRINK");
}

#[test]
fn hostile_producer_arena_consumers_could_write() {
    let e = hostile_producer("writable-arena");
    assert_eq!(e.to_string(), "memfd lacks F_SEAL_FUTURE_WRITE");
}

#[test]
fn hostile_producer_undersized_arena() {
    let e = hostile_producer("undersized-arena");
    assert_eq!(e.to_string(), "memfd is 4096 bytes, arena needs 16384");
}

#[test]
fn hostile_producer_descriptors_out_of_range() {
    let e = hostile_producer("desc-out-of-range");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Stream(StreamFault::FrameOutsideArena {
                slot: 9,
                offset: 0,
                len: 100,
                ..
            }))
        ),
        "{e}"
    );
    let e = hostile_producer("desc-overflow");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Stream(StreamFault::FrameOutsideArena {
                offset: 4000,
                len: 200,
                ..
            }))
        ),
        "{e}"
    );
    let e = hostile_producer("desc-unknown-arena");
    assert_eq!(
        e.to_string(),
        "protocol violation: frame 0 names arena 7, which was never announced"
    );
    let e = hostile_producer("desc-wrong-seq");
    assert_eq!(
        e.peer_fault(),
        Some(&PeerFault::Stream(StreamFault::Sequence {
            found: 5,
            expected: 0
        }))
    );
    let e = hostile_producer("desc-msgs-lie");
    assert_eq!(
        e.to_string(),
        "protocol violation: frame 0 follows 3 socket messages, 1 arrived"
    );
    let e = hostile_producer("ring-head");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Index(IndexFault::HeadPast { head: 1000000, .. }))
        ),
        "{e}"
    );
}

#[test]
fn hostile_producer_bad_messages() {
    let e = hostile_producer("oversized-msg");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::Truncated { .. }))
        ),
        "{e}"
    );
    let e = hostile_producer("malformed-msg");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::UnknownType {
                ty: 0xffff
            }))
        ),
        "{e}"
    );
    let e = hostile_producer("wrong-fds");
    assert_eq!(
        e.to_string(),
        "protocol violation: Arena carries 1 fds, 0 arrived"
    );
    let e = hostile_producer("many-fds");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::FdsArrived {
                what: "DropArena",
                carries: 0,
                arrived: 3
            }))
        ),
        "{e}"
    );
    let e = hostile_producer("side-flood");
    assert!(
        matches!(
            e.peer_fault(),
            Some(PeerFault::Protocol(ProtocolFault::TooManySides { .. }))
        ),
        "{e}"
    );
    let e = hostile_producer("bad-welcome-fds");
    assert_eq!(
        e.to_string(),
        "protocol violation: Welcome carries 4 fds, 2 arrived"
    );
}
