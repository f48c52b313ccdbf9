//! Two processes stream 64 KiB messages through a sealed shmring ring.
//!
//! `cargo run --release -p examples --example ring-demo [SECONDS]`
//!
//! The parent creates the ring, listens on a unix socket, and starts a copy of itself
//! as the receiving process, which connects and gets the ring's memfd and doorbell
//! over the socket (`SCM_RIGHTS`), validates them, and attaches. The parent then sends
//! numbered messages for a few seconds; the child checks every one (sequence number at
//! both ends of the message) and both print what they did.

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use shmring::{Receiver, RingFds, Sender};

const MSG: usize = 64 * 1024;
type Msg = [u8; MSG];
const END: u64 = u64::MAX;

fn stamp(m: &mut Msg, seq: u64) {
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[MSG - 8..].copy_from_slice(&seq.to_le_bytes());
}

fn seq_of(m: &Msg) -> Result<u64, String> {
    let a = u64::from_le_bytes(m[..8].try_into().unwrap());
    let b = u64::from_le_bytes(m[MSG - 8..].try_into().unwrap());
    if a != b {
        return Err(format!("torn message: head says {a}, tail says {b}"));
    }
    Ok(a)
}

fn report(who: &str, msgs: u64, secs: f64) {
    let bytes = msgs * MSG as u64;
    println!(
        "{who}: {msgs} messages of 64 KiB, {:.2} GB in {secs:.2} s = {:.2} GB/s, {:.0} messages/s",
        bytes as f64 / 1e9,
        bytes as f64 / 1e9 / secs,
        msgs as f64 / secs
    );
}

fn receive(path: &str) -> Result<(), String> {
    let sock = UnixStream::connect(path).map_err(|e| format!("connect {path}: {e}"))?;
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let mut rx = Receiver::<Msg>::attach(fds).map_err(|e| e.to_string())?;
    println!(
        "receiver (pid {}): attached to a sealed ring of {} x 64 KiB",
        std::process::id(),
        rx.capacity()
    );
    let mut m: Box<Msg> = vec![0u8; MSG].into_boxed_slice().try_into().unwrap();
    let mut expect = 0u64;
    let mut start = None;
    loop {
        rx.recv_into(&mut m, None).map_err(|e| e.to_string())?;
        start.get_or_insert_with(Instant::now);
        let seq = seq_of(&m)?;
        if seq == END {
            break;
        }
        if seq != expect {
            return Err(format!("expected message {expect}, got {seq}"));
        }
        expect += 1;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    report("receiver", expect, secs);
    println!("receiver: every message arrived in order and intact");
    Ok(())
}

fn send(secs: f64) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("shmring-demo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("--receive")
        .arg(&path)
        .spawn()
        .map_err(|e| e.to_string())?;
    let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    let (mut tx, fds) = Sender::<Msg>::create(16).map_err(|e| e.to_string())?;
    fds.send(sock.as_fd()).map_err(|e| e.to_string())?;
    drop(fds);
    println!(
        "sender (pid {}): handed a sealed ring of 16 x 64 KiB to pid {}, streaming for {secs} s",
        std::process::id(),
        child.id()
    );
    let mut m: Box<Msg> = vec![0xa5u8; MSG].into_boxed_slice().try_into().unwrap();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut seq = 0u64;
    while Instant::now() < until {
        for _ in 0..64 {
            stamp(&mut m, seq);
            tx.send(&m).map_err(|e| e.to_string())?;
            seq += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stamp(&mut m, END);
    tx.send(&m).map_err(|e| e.to_string())?;
    report("sender", seq, elapsed);
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("receiver failed: {status}"));
    }
    println!("demo: done, both processes exited cleanly");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = if args.get(1).map(String::as_str) == Some("--receive") {
        receive(&args[2])
    } else {
        let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
        send(secs)
    };
    if let Err(e) = r {
        eprintln!("ring-demo: {e}");
        std::process::exit(1);
    }
}
