//! Connect/kill cycles leave nothing behind in the survivor. One test on purpose: it
//! counts this process's fds and mappings, which parallel tests would disturb.

use std::os::fd::AsFd;
use std::time::Duration;

use e2e::{Element, Rendezvous, check, kill9, mappings, open_fds, read_line, spawn};
use shmring::{Receiver, RecvError};

const PEER: &str = env!("CARGO_BIN_EXE_ring-peer");

#[test]
fn fifty_peers_killed_mid_stream_leave_no_fd_or_mapping_behind() {
    let rv = Rendezvous::new("cycles");
    let fds0 = open_fds();
    let maps0 = mappings();
    for _ in 0..50 {
        let mut child = spawn(PEER, &["hold-sender", rv.path.to_str().unwrap(), "3"]);
        let sock = rv.accept();
        let (mut rx, fds) = Receiver::<Element>::create(8).unwrap();
        assert_eq!(mappings(), maps0 + 1, "the count sees the ring's mapping");
        fds.send(sock.as_fd()).unwrap();
        drop(fds);
        assert_eq!(read_line(&mut child), "ready");
        for seq in 0..3 {
            check(&rx.recv().unwrap(), seq).unwrap();
        }
        kill9(&mut child);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(RecvError::PeerGone)
        ));
        drop(child);
    }
    assert_eq!(open_fds(), fds0, "fds leaked");
    assert_eq!(mappings(), maps0, "mappings leaked");
}
