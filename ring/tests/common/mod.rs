//! What the frame-channel tests share: a producer and consumers in one process.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use shmring::{Consumer, ConsumerConfig, Event, Frame, Producer, ProducerConfig};
pub fn sock_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-frame-{}-{tag}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("sock")
}

pub fn connect(p: &Producer) -> Consumer {
    Consumer::connect(p.path().unwrap(), ConsumerConfig::default()).unwrap()
}

/// Publishes a frame of `len` bytes, each byte `seq as u8`, with `seq` as metadata.
pub fn publish(p: &Producer, seq: u64, len: usize) -> usize {
    let mut s = p.acquire(len).unwrap();
    s.write(0, &vec![seq as u8; len]).unwrap();
    s.publish(len, &seq.to_le_bytes()).unwrap()
}

pub fn expect_frame(c: &mut Consumer) -> Frame {
    match c.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

pub fn expect_side(c: &mut Consumer) -> (u32, Vec<u8>) {
    match c.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Side { key, payload } => (key, payload),
        other => panic!("expected a side message, got {other:?}"),
    }
}

pub fn check_frame(f: &Frame, seq: u64, len: usize) {
    assert_eq!(f.seq(), seq);
    assert_eq!(f.len(), len);
    assert_eq!(f.meta(), seq.to_le_bytes());
    let v = f.to_vec();
    assert!(v.iter().all(|&b| b == seq as u8), "frame {seq} payload");
}

/// For tests whose consumers are honest: the producer waits for them as long as a
/// slow machine (or valgrind) may need, so only a real hang trips the block policy.
pub fn patient() -> ProducerConfig {
    ProducerConfig {
        block_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// Waits until consumer `id` holds no slot (has taken and released every frame).
pub fn wait_idle(p: &Producer, id: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stats().consumers.iter().any(|c| c.id == id && c.held > 0) {
        assert!(Instant::now() < deadline, "consumer {id} stuck");
        thread::sleep(Duration::from_millis(1));
    }
}

pub fn wait_consumers(p: &Producer, n: usize) {
    p.wait_for_consumers(n, Some(Duration::from_secs(60)))
        .unwrap();
}
