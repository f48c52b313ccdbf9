//! The other process in the cross-process ring tests: honest or hostile by role.
//!
//! Usage: `ring-peer ROLE SOCKET [ARGS]`. It connects to SOCKET (where the test
//! listens), receives or sends a ring hand-off, and plays ROLE. Prints what it did on
//! stdout; exits 0 on success, 1 with the error on stderr otherwise.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use e2e::{Element, check, element};
use shmring::memfd::{self, Access, Mapping};
use shmring::{Doorbell, Receiver, RingFds, Sender, fdpass};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: ring-peer ROLE SOCKET [ARGS]");
        std::process::exit(2);
    }
    let n = |i: usize| -> u64 { args.get(i).map_or(0, |s| s.parse().expect("number")) };
    let sock = UnixStream::connect(&args[2]).expect("connect to test socket");
    let r = match args[1].as_str() {
        "recv" => recv(&sock, n(3)),
        "send" => send(&sock, n(3), Duration::from_millis(n(4))),
        "hold-sender" => hold_sender(&sock, n(3)),
        "hold-receiver" => hold_receiver(&sock),
        "hostile-unsealed" => hostile_unsealed(&sock),
        "hostile-many-fds" => hostile_many_fds(&sock),
        "hostile-head" => hostile_head(&sock),
        other => Err(format!("unknown role {other}")),
    };
    if let Err(e) = r {
        eprintln!("ring-peer {}: {e}", args[1]);
        std::process::exit(1);
    }
}

fn ready() {
    println!("ready");
}

fn forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Attach as receiver and check `count` elements.
fn recv(sock: &UnixStream, count: u64) -> Result<(), String> {
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let mut rx = Receiver::<Element>::attach(fds).map_err(|e| e.to_string())?;
    let mut buf = [[0u64; 2]; 64];
    let mut seq = 0;
    while seq < count {
        let k = rx.try_recv_batch(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            rx.wait_for_data(None).map_err(|e| e.to_string())?;
        }
        for e in &buf[..k] {
            check(e, seq)?;
            seq += 1;
        }
    }
    println!("received {seq}");
    Ok(())
}

/// Attach as sender and send `count` elements, pausing `pause` between them.
fn send(sock: &UnixStream, count: u64, pause: Duration) -> Result<(), String> {
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let mut tx = Sender::<Element>::attach(fds).map_err(|e| e.to_string())?;
    for seq in 0..count {
        tx.send(&element(seq)).map_err(|e| e.to_string())?;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    println!("sent {count}");
    Ok(())
}

/// Attach as sender, send `count` elements, then sleep until killed.
fn hold_sender(sock: &UnixStream, count: u64) -> Result<(), String> {
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let mut tx = Sender::<Element>::attach(fds).map_err(|e| e.to_string())?;
    for seq in 0..count {
        tx.send(&element(seq)).map_err(|e| e.to_string())?;
    }
    ready();
    forever()
}

/// Attach as receiver, never receive, sleep until killed.
fn hold_receiver(sock: &UnixStream) -> Result<(), String> {
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let _rx = Receiver::<Element>::attach(fds).map_err(|e| e.to_string())?;
    ready();
    forever()
}

/// Hand over an unsealed memfd (the receiver would SIGBUS if we truncated it later).
fn hostile_unsealed(sock: &UnixStream) -> Result<(), String> {
    let fd = memfd::create(c"unsealed", 4096 + 16 * 16).map_err(|e| e.to_string())?;
    let (_mine, theirs) = Doorbell::pair().map_err(|e| e.to_string())?;
    RingFds {
        memfd: fd.try_clone().map_err(|e| e.to_string())?,
        doorbell: theirs,
    }
    .send(sock.as_fd())
    .map_err(|e| e.to_string())?;
    // Truncate it, as an attacker would once the victim mapped it.
    // SAFETY: ftruncate on our own memfd.
    unsafe { libc::ftruncate(fd.as_raw_fd(), 0) };
    ready();
    forever()
}

/// Send a hand-off message with five fds where two belong.
fn hostile_many_fds(sock: &UnixStream) -> Result<(), String> {
    let blob = shmring::write_once(8, |_| {}).map_err(|e| e.to_string())?;
    let b = blob.as_fd();
    fdpass::send(sock.as_fd(), b"SHMRING-RING/1\0\0", &[b, b, b, b, b])
        .map_err(|e| e.to_string())?;
    ready();
    forever()
}

/// Attach as an honest sender, send 3 elements, then write a garbage head.
fn hostile_head(sock: &UnixStream) -> Result<(), String> {
    let fds = RingFds::recv(sock.as_fd()).map_err(|e| e.to_string())?;
    let view_fd = fds.memfd.try_clone().map_err(|e| e.to_string())?;
    let mut tx = Sender::<Element>::attach(fds).map_err(|e| e.to_string())?;
    for seq in 0..3 {
        tx.send(&element(seq)).map_err(|e| e.to_string())?;
    }
    let len = memfd::size(view_fd.as_fd()).map_err(|e| e.to_string())? as usize;
    let view = Mapping::map(view_fd.as_fd(), len, Access::ReadWrite).map_err(|e| e.to_string())?;
    // SAFETY: offset 128 (the head word) lies inside the ring mapping.
    unsafe {
        view.as_ptr()
            .add(128)
            .cast::<u32>()
            .write_volatile(3 + 100_000)
    };
    ready();
    forever()
}
