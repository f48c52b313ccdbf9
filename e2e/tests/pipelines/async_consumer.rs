//! `AsyncConsumer` and `AsyncReceiver` (feature `tokio`) on a tokio runtime,
//! against real producer and sender processes: every frame in order while other
//! tasks run, `recv` cancelled again and again by a short timeout without losing
//! or repeating a frame, a killed producer ending the stream, and the plain ring
//! received the same way.

use std::os::fd::AsFd;
use std::time::Duration;

use e2e::{
    KillOnDrop, Rendezvous, check, check_frame, frame_number, read_line, socket_path, spawn,
};
use shmring::{AsyncConsumer, AsyncReceiver, Consumer, ConsumerConfig, Event, Receiver, RecvError};

const FRAME_PEER: &str = env!("CARGO_BIN_EXE_frame-peer");
const RING_PEER: &str = env!("CARGO_BIN_EXE_ring-peer");

/// A producer process publishing test frames of `len` bytes every `ms`.
fn producer(len: usize, ms: u64) -> (KillOnDrop, std::path::PathBuf) {
    let path = socket_path("async");
    let mut c = spawn(
        FRAME_PEER,
        &[
            "produce",
            path.to_str().unwrap(),
            &len.to_string(),
            &ms.to_string(),
        ],
    );
    assert_eq!(read_line(&mut c), "ready");
    (KillOnDrop(c), path)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn frames_arrive_in_order_while_other_tasks_run() {
    let (_p, path) = producer(4096, 2);
    runtime().block_on(async {
        let c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
        let mut c = AsyncConsumer::new(c).unwrap();
        // Another task on the same (one-thread) runtime keeps running: waiting for
        // a frame never blocks the thread.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let mut next = None;
        let mut frames = 0;
        while frames < 200 {
            match c.recv().await.unwrap() {
                Event::Frame(f) => {
                    let seq = frame_number(&f);
                    check_frame(&f, seq).unwrap();
                    if let Some(n) = next {
                        assert_eq!(seq, n, "a frame lost or repeated");
                    }
                    next = Some(seq + 1);
                    frames += 1;
                }
                Event::Side { .. } => {}
                Event::End { reason } => panic!("ended early: {reason}"),
            }
        }
        ticker.abort();
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > 50,
            "the other task did not run while frames were awaited"
        );
    });
}

#[test]
fn a_recv_cancelled_again_and_again_loses_and_repeats_nothing() {
    let (_p, path) = producer(4096, 3);
    runtime().block_on(async {
        let c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
        let mut c = AsyncConsumer::new(c).unwrap();
        let (mut next, mut frames, mut cancelled) = (None, 0, 0);
        while frames < 100 {
            // Shorter than the producer's spacing: most waits are cancelled.
            match tokio::time::timeout(Duration::from_micros(300), c.recv()).await {
                Err(_) => cancelled += 1,
                Ok(Ok(Event::Frame(f))) => {
                    let seq = frame_number(&f);
                    check_frame(&f, seq).unwrap();
                    if let Some(n) = next {
                        assert_eq!(seq, n, "a frame lost or repeated");
                    }
                    next = Some(seq + 1);
                    frames += 1;
                }
                Ok(Ok(Event::Side { .. })) => {}
                Ok(other) => panic!("{other:?}"),
            }
        }
        assert!(cancelled > 100, "only {cancelled} waits were cancelled");
    });
}

#[test]
fn a_killed_producer_ends_the_stream() {
    let (mut p, path) = producer(4096, 5);
    runtime().block_on(async {
        let c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
        let mut c = AsyncConsumer::new(c).unwrap();
        let mut frames = 0;
        loop {
            let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
                .await
                .expect("the end of a killed producer is noticed");
            match r {
                Ok(Event::Frame(_)) => {
                    frames += 1;
                    if frames == 10 {
                        e2e::kill9(&mut p.0);
                    }
                }
                Ok(_) => {}
                Err(RecvError::PeerGone) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(frames >= 10);
    });
}

#[test]
fn the_plain_ring_is_received_the_same_way() {
    let rv = Rendezvous::new("async-ring");
    let child = spawn(RING_PEER, &["send", rv.path.to_str().unwrap(), "5000", "0"]);
    let sock = rv.accept();
    let (rx, fds) = Receiver::<e2e::Element>::create(64).unwrap();
    fds.send(sock.as_fd()).unwrap();
    drop(fds);
    let _child = KillOnDrop(child);
    runtime().block_on(async {
        let mut rx = AsyncReceiver::new(rx).unwrap();
        for seq in 0..5000 {
            let e = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("an element within 30 s")
                .unwrap();
            check(&e, seq).unwrap();
        }
        // The sender exits once it sent them all: the end, not a hang.
        let end = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the sender's exit is noticed");
        assert!(matches!(end, Err(RecvError::PeerGone)), "{end:?}");
    });
}
