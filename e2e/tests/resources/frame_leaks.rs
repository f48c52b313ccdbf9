//! 200 consumers connect, take frames and are killed: the producer's fds and
//! mappings return to where they were. One test on purpose: it counts this process's
//! fds and mappings, which parallel tests would disturb.

use std::time::Duration;

use e2e::{eventually, kill9, mappings, open_fds, publish_seq, read_line, socket_path, spawn};
use shmring::{Producer, ProducerConfig};

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

#[test]
fn two_hundred_consumers_killed_holding_frames_leave_nothing_behind() {
    let path = socket_path("cycles");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    // The arena exists before the baseline is taken.
    publish_seq(&p, 0, 64 * 1024).unwrap();
    let fds0 = open_fds();
    let maps0 = mappings();
    let mut seq = 1;
    for _ in 0..200 {
        let mut child = spawn(PEER, &["hold", path.to_str().unwrap(), "2"]);
        p.wait_for_consumers(1, Some(Duration::from_secs(20)))
            .unwrap();
        for _ in 0..2 {
            publish_seq(&p, seq, 64 * 1024).unwrap();
            seq += 1;
        }
        assert_eq!(read_line(&mut child), "ready");
        assert_eq!(p.stats().consumers[0].held, 2);
        // The count sees what a consumer costs: its frame and release rings.
        assert_eq!(mappings(), maps0 + 2);
        kill9(&mut child);
        eventually("consumer removed", || p.consumer_count() == 0);
    }
    let s = p.stats();
    assert_eq!((s.joined, s.left, s.cut_off), (200, 200, 0));
    assert_eq!(s.free_slots, 8, "every slot came back");
    // The service thread lets go of a departed consumer's socket on its next turn.
    eventually("fds back to baseline", || open_fds() == fds0);
    assert_eq!(mappings(), maps0, "mappings leaked");
}
