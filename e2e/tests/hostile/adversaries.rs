//! A flood of connections that never say hello, against a producer in this process
//! (alone in its test binary, so that this process's fd count is the producer's):
//! honest consumers still get in and are served, and the flood costs a bounded
//! number of fds, all given back when it stops.

use std::time::Duration;

use e2e::{
    KillOnDrop, eventually, finish, kill9, open_fds, publish_seq, read_line, socket_path, spawn,
};
use shmring::{Producer, ProducerConfig};

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

#[test]
fn a_connection_flood_keeps_no_honest_consumer_out_and_costs_bounded_fds() {
    let path = socket_path("flood");
    let ps = path.to_str().unwrap();
    let cfg = ProducerConfig {
        handshake_timeout: Duration::from_millis(500),
        block_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let p = Producer::bind(&path, cfg).unwrap();
    let baseline = open_fds();
    // A thousand silent connections held at all times (the producer lets at most
    // 128 wait for their hello).
    let mut flood = KillOnDrop(spawn(PEER, &["flood", ps, "1000"]));
    assert_eq!(read_line(&mut flood.0), "ready");
    let mut honest = spawn(PEER, &["consume", ps]);
    assert!(read_line(&mut honest).starts_with("ready"));
    p.wait_for_consumers(1, Some(Duration::from_secs(30)))
        .unwrap();
    for seq in 0..50 {
        publish_seq(&p, seq, 4096).unwrap();
        // Bounded while the flood goes on: the waiting room, one consumer's
        // channel, an arena.
        let fds = open_fds();
        assert!(
            fds <= baseline + 128 + 16,
            "{fds} fds open, {baseline} before"
        );
    }
    let refused = p.stats().refused;
    assert!(refused > 0, "the flood was never turned away");
    kill9(&mut flood.0);
    drop(flood);
    // Every flood connection goes (refused as the waiting room overflows, or when
    // its hello is overdue); what stays is the honest consumer's channel.
    let with_consumer = baseline + 16;
    eventually("the flood's fds given back", || open_fds() <= with_consumer);
    drop(p);
    let (status, out) = finish(honest);
    assert!(status.success(), "{out}");
    assert!(out.contains("frames 50 drops 0"), "{out}");
    assert!(
        open_fds() <= baseline,
        "{} fds left, {baseline} before",
        open_fds()
    );
}
