//! A plain Rust producer and two consumer processes on the frame channel.
//!
//! `cargo run --release -p examples --example frame-demo [SECONDS]`
//!
//! The parent is the producer: it listens on a socket path (mode 0600), sends a
//! sticky side message describing the stream, and publishes 1080p I420-sized frames
//! (3 110 400 bytes) into shared slots, writing a frame number and a check pattern in
//! place. It starts two copies of itself as consumers: one reads frames in place
//! (zero copy), the other asks for private copies. Each consumer checks every frame
//! and both sides print what they did.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig};

const FRAME: usize = 1920 * 1080 * 3 / 2;
/// Bytes the producer writes per frame: the number, then a pattern at a few places
/// (filling 3 MB per frame would measure memset, not the transport).
const PROBES: [usize; 4] = [0, 4096, FRAME / 2, FRAME - 8];

fn write_frame(slot: &mut shmring::WriteSlot, seq: u64) -> shmring::Result<()> {
    for p in PROBES {
        slot.write(p, &(seq ^ p as u64).to_le_bytes())?;
    }
    Ok(())
}

fn check_frame(f: &shmring::Frame) -> Result<u64, String> {
    let seq = u64::from_le_bytes(f.meta().try_into().map_err(|_| "metadata size")?);
    if f.len() != FRAME {
        return Err(format!("frame {seq} has {} bytes", f.len()));
    }
    let mut b = [0u8; 8];
    for p in PROBES {
        // SAFETY: p + 8 <= FRAME = f.len() bytes that stay mapped while `f` lives; the
        // destination is our own array. (A hostile producer could change the bytes
        // while we copy: we would see a wrong number, never undefined behaviour.)
        unsafe { std::ptr::copy_nonoverlapping(f.as_ptr().add(p), b.as_mut_ptr(), 8) };
        if u64::from_le_bytes(b) != seq ^ p as u64 {
            return Err(format!("frame {seq} corrupt at byte {p}"));
        }
    }
    Ok(seq)
}

fn consume(path: &str, copy: bool) -> Result<(), String> {
    let who = if copy {
        "copying consumer"
    } else {
        "zero-copy consumer"
    };
    let cfg = ConsumerConfig {
        copy,
        ..Default::default()
    };
    let mut c = Consumer::connect(path, cfg).map_err(|e| e.to_string())?;
    let (mut frames, mut drops, mut next) = (0u64, 0u64, None);
    let start = Instant::now();
    loop {
        match c.recv().map_err(|e| e.to_string())? {
            Event::Side { payload, .. } => println!(
                "{who} (pid {}): stream: {}",
                std::process::id(),
                String::from_utf8_lossy(&payload)
            ),
            Event::Frame(f) => {
                let seq = check_frame(&f)?;
                drops += f.dropped_before() as u64;
                if let Some(n) = next {
                    if seq != n + f.dropped_before() as u64 {
                        return Err(format!("frame {seq} out of order (expected {n})"));
                    }
                }
                next = Some(seq + 1);
                frames += 1;
            }
            Event::End { reason } => {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "{who}: {frames} frames ({:.1} GB) in {secs:.2} s = {:.0} frames/s, {drops} dropped, all intact; producer said: {reason}",
                    (frames * FRAME as u64) as f64 / 1e9,
                    frames as f64 / secs
                );
                return Ok(());
            }
        }
    }
}

fn spawn_consumer(path: &str, copy: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--consume", path]);
    if copy {
        cmd.arg("--copy");
    }
    cmd.spawn().expect("start consumer")
}

fn produce(secs: u64) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("shmring-frame-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("video");
    let cfg = ProducerConfig {
        slots: 8,
        ..Default::default()
    };
    let p = Producer::bind(&path, cfg).map_err(|e| e.to_string())?;
    p.send_side(b"video/x-raw, format=I420, width=1920, height=1080", 1)
        .map_err(|e| e.to_string())?;
    let ps = path.to_str().unwrap();
    println!(
        "producer (pid {}): listening on {ps}, 8 slots of {FRAME} bytes",
        std::process::id()
    );
    let children = [spawn_consumer(ps, false), spawn_consumer(ps, true)];
    p.wait_for_consumers(2, Some(Duration::from_secs(10)))
        .map_err(|e| format!("consumers did not connect: {e}"))?;
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let mut slot = p.acquire(FRAME).map_err(|e| e.to_string())?;
        write_frame(&mut slot, seq).map_err(|e| e.to_string())?;
        slot.publish(FRAME, &seq.to_le_bytes())
            .map_err(|e| e.to_string())?;
        seq += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = p.stats();
    println!(
        "producer: {} frames in {secs:.2} s = {:.0} frames/s ({:.1} GB/s of frames, none copied by the transport)",
        s.frames,
        s.frames as f64 / secs,
        s.bytes as f64 / 1e9 / secs
    );
    for c in &s.consumers {
        println!(
            "producer: consumer {} (pid {}): {} frames, {} dropped, {} slots held",
            c.id, c.pid, c.frames, c.drops, c.held
        );
    }
    drop(p); // says goodbye: the consumers see the end of the stream
    for mut c in children {
        let st = c.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("a consumer failed: {st}"));
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = if args.get(1).map(String::as_str) == Some("--consume") {
        consume(&args[2], args.get(3).map(String::as_str) == Some("--copy"))
    } else {
        produce(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3))
    };
    if let Err(e) = r {
        eprintln!("frame-demo: {e}");
        std::process::exit(1);
    }
}
