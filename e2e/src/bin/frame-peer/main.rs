//! The other process in the cross-process frame channel tests: an honest producer or
//! consumer, or a hostile one speaking the protocol by hand.
//!
//! Usage: `frame-peer ROLE SOCKET [ARGS]`. Prints what it did on stdout, one fact a
//! line; exits 0 when it played its role, 1 with the error on stderr otherwise.

use std::io::Write;
use std::time::Duration;

use e2e::{check_frame, frame_number, publish_seq};
use shmring::{Consumer, ConsumerConfig, Event, Producer};

mod hostile_consumer;
mod hostile_producer;

use hostile_consumer::{evil_consumer, flood, notes, probes};
use hostile_producer::{deaf_listener, evil_producer, field_liar, hold_lock, probe_liar};

type R = Result<(), String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: frame-peer ROLE SOCKET [ARGS]");
        std::process::exit(2);
    }
    let n = |i: usize| -> u64 { args.get(i).map_or(0, |s| s.parse().expect("number")) };
    let arg = |i: usize| args.get(i).map_or("", |s| s.as_str());
    let path = args[2].as_str();
    let r = match args[1].as_str() {
        "consume" => consume(path, n(3), n(4)),
        "count" => count(path, n(3)),
        "hold" => hold(path, n(3)),
        "produce" => produce(path, n(3) as usize, n(4)),
        "evil-consumer" => evil_consumer(path, arg(3)),
        "flood" => flood(path, n(3) as usize),
        "notes" => notes(path, arg(3), n(4)),
        "probes" => probes(path, n(3)),
        "evil-producer" => evil_producer(path, arg(3)),
        "deaf-listener" => deaf_listener(path),
        "hold-lock" => hold_lock(path),
        "field-liar" => field_liar(path, arg(3)),
        "probe-liar" => probe_liar(path, arg(3)),
        other => Err(format!("unknown role {other}")),
    };
    if let Err(e) = r {
        eprintln!("frame-peer {}: {e}", args[1]);
        std::process::exit(1);
    }
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// Receives until the stream ends (or `max` frames, if not 0), checking every frame,
/// sleeping `slow_ms` after each. Prints side messages, the first frame, and totals.
fn consume(path: &str, slow_ms: u64, max: u64) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    say(format!("ready {}", c.id()));
    let (mut frames, mut drops, mut last) = (0u64, 0u64, None::<u64>);
    let outcome = loop {
        match c.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::Frame(f)) => {
                let seq = frame_number(&f);
                check_frame(&f, seq)?;
                if frames == 0 {
                    say(format!("first-frame {seq}"));
                }
                if let Some(l) = last {
                    // Frames arrive in order; with drops, the gap is what was dropped.
                    if seq != l + 1 + f.dropped_before() as u64 {
                        return Err(format!(
                            "frame {seq} after {l} with {} dropped",
                            f.dropped_before()
                        ));
                    }
                }
                last = Some(seq);
                frames += 1;
                drops += f.dropped_before() as u64;
                drop(f);
                if slow_ms > 0 {
                    std::thread::sleep(Duration::from_millis(slow_ms));
                }
                if frames == max {
                    break "max".to_string();
                }
            }
            // Long ones by their size (a test reads this output only at the end).
            Ok(Event::Side { key, payload }) if payload.len() > 64 => {
                say(format!("side {key} of {} bytes", payload.len()))
            }
            Ok(Event::Side { key, payload }) => {
                say(format!("side {key} {}", String::from_utf8_lossy(&payload)))
            }
            Ok(Event::End { reason }) => break format!("end {reason}"),
            Err(x) => break format!("error {x}"),
        }
    };
    say(format!("frames {frames} drops {drops}"));
    say(outcome);
    Ok(())
}

/// Receives `count` frames, keeps them all, says "ready" and waits to be killed.
fn hold(path: &str, count: u64) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    let mut held = Vec::new();
    while (held.len() as u64) < count {
        if let Event::Frame(f) = c.recv_timeout(Duration::from_secs(30)).map_err(e)? {
            held.push(f);
        }
    }
    say("ready");
    forever()
}

/// Serves frames of `len` bytes every `interval_ms`, numbered from 0, after a sticky
/// side message "caps LEN" (key 1). Runs until killed.
fn produce(path: &str, len: usize, interval_ms: u64) -> R {
    // Its consumers are the tests' honest ones: wait for them as long as a slow
    // machine (or valgrind) needs.
    let p = Producer::bind(path, e2e::patient()).map_err(e)?;
    p.send_side(format!("caps {len}").as_bytes(), 1)
        .map_err(e)?;
    say("ready");
    for seq in 0.. {
        publish_seq(&p, seq, len).map_err(e)?;
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    Ok(())
}

/// Receives until the stream ends, whatever the frames hold (a GStreamer stream),
/// holding each frame `slow_ms` before the next; prints the totals and the longest
/// gap between two frames.
fn count(path: &str, slow_ms: u64) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    say(format!("ready {}", c.id()));
    let (mut frames, mut drops) = (0u64, 0u64);
    let (mut last, mut gap) = (None::<std::time::Instant>, Duration::ZERO);
    let outcome = loop {
        match c.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::Frame(f)) => {
                let now = std::time::Instant::now();
                if let Some(l) = last.replace(now) {
                    gap = gap.max(now - l);
                }
                frames += 1;
                drops += f.dropped_before() as u64;
                std::thread::sleep(Duration::from_millis(slow_ms));
            }
            Ok(Event::Side { .. }) => {}
            Ok(Event::End { reason }) => break format!("end {reason}"),
            Err(x) => break format!("error {x}"),
        }
    };
    say(format!(
        "frames {frames} drops {drops} gap-ms {}",
        gap.as_millis()
    ));
    say(outcome);
    Ok(())
}

/// A connect deadline far beyond what a listener at work needs.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(30)
}
