//! What the frame-channel tests share: a producer and consumers in one process.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::time::Duration;

use shmring::{Consumer, ConsumerConfig, Event, Frame, Producer};
pub use testkit::{patient, socket_path, wait_consumers};

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

/// Waits until consumer `id` holds no slot (has taken and released every frame).
pub fn wait_idle(p: &Producer, id: u32) {
    testkit::wait_idle(p, |c| c.id == id);
}
