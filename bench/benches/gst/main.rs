//! GStreamer transports side by side (`make bench`): the same workloads through
//! `shmringsink`/`shmringsrc` and every rival this GStreamer has, in one run.
//!
//! Each pipeline runs in its own process (this program started again with
//! `--role`), except the in-process upper bound. Measuring points are pad probes:
//!
//! - **throughput** (non-live, `sync=false`, N buffers): the consumer's frames/s from
//!   its first to its last buffer (process start-up excluded), and the CPU time
//!   (user + sys, `getrusage`) each process spent from its first buffer to EOS,
//!   summed, per buffer; the transport's own CPU per frame is the zero-copy figure
//!   minus the in-process one, paired round by round (median);
//! - **account**: each process's CPU time, system calls, `futex` calls, page faults,
//!   context switches and cache misses per buffer, counted by the kernel
//!   (`account.rs`);
//! - **latency** (live): the producer writes `CLOCK_MONOTONIC` into the first 8 bytes
//!   of each buffer on the sink pad of an `identity` placed just before the transport
//!   (its "push"), the consumer reads it on its `fakesink`'s sink pad (its "arrival");
//!   both processes read the same clock. The first 10 buffers are left out.
//!
//! Several rounds; medians. Writes `target/bench/gst.json` (flat `{"name": value}`,
//! `null` for a transport this machine cannot run), `target/bench/gst.md` (the
//! table, with the ring-level figures of `target/bench/ring.json` when present) and
//! PNG plots under `target/bench/`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use gst::prelude::*;

const ROUNDS: usize = 5;
/// Buffers left out of latency figures (connection, first allocations).
const WARM_UP: usize = 10;

mod account;
mod output;
mod refs;
mod role;
mod run;
mod targets;
mod workload;

use output::*;
use role::*;
use run::*;
use workload::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--role") {
        role(&args[2], &args[3], &args[4], args[5] == "1", args[6] == "1");
    }
    if args.get(1).map(String::as_str) == Some("--spin") {
        // The load of `make bench-load`: one process that never sleeps.
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    // `make bench-load`: everything below runs beside a busy process.
    let load = std::env::var_os("SHMRING_BENCH_LOAD").is_some();
    let mut spinner = load.then(|| {
        Command::new(std::env::current_exe().unwrap())
            .arg("--spin")
            .spawn()
            .unwrap()
    });
    let mut out = Out::default();
    // Before GStreamer starts any thread: the references fork.
    refs::measure(&mut out);
    gst::init().unwrap();
    let dir = std::env::temp_dir().join(format!("shmring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut names = Names {
        dir: dir.clone(),
        n: 0,
    };
    let started = Instant::now();
    let only = Only::from_env();
    if only.part("video") {
        video_throughput(&mut out, &mut names);
    }
    memcpy_reference(&mut out);
    if only.part("audio") {
        audio_throughput(&mut out, &mut names);
    }
    if only.part("latency") {
        live_latency(&mut out, &mut names, &only);
    }
    if only.part("account") {
        account::expose_tracepoints();
        account::account(&mut out, &mut names);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(s) = spinner.as_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }
    eprintln!("benchmark ran {:.0} s", started.elapsed().as_secs_f64());
    let targets = targets::compute(&mut out);
    report(&out, &LAT_TRANSPORTS, &VIDEO_TRANSPORTS, &targets, load);
}

/// What one run measures: `SHMRING_GST_BENCH_ONLY=latency` (or video, audio,
/// account; commas) only those parts (the report then has only their figures), and
/// `SHMRING_GST_BENCH_LATENCY=v1080` (audio, v1080, v4k; commas) only those streams
/// of the latency part. For experiments.
struct Only {
    parts: String,
    streams: String,
}

impl Only {
    fn from_env() -> Only {
        Only {
            parts: std::env::var("SHMRING_GST_BENCH_ONLY").unwrap_or_default(),
            streams: std::env::var("SHMRING_GST_BENCH_LATENCY").unwrap_or_default(),
        }
    }

    fn part(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.split(',').any(|p| p == part)
    }

    fn stream(&self, tag: &str) -> bool {
        self.streams.is_empty() || self.streams.split(',').any(|p| p == tag)
    }
}

const VIDEO_TRANSPORTS: [Transport; 7] = [
    Transport::InProcess,
    Transport::Shmring,
    Transport::ShmringCopy,
    Transport::Shm,
    Transport::ShmCopy,
    Transport::Tcp,
    Transport::UnixFd,
];

const LAT_TRANSPORTS: [Transport; 8] = [
    Transport::InProcess,
    // The floor of a sleeping consumer: a thread woken for each buffer, in one
    // process.
    Transport::InProcessQueue,
    Transport::Shmring,
    Transport::ShmringSleep,
    Transport::ShmringSpin,
    Transport::Shm,
    Transport::Tcp,
    Transport::UnixFd,
];

/// `n` buffers of 10 ms stereo audio.
fn audio(n: u32, live: bool) -> Work {
    Work {
        source: format!(
            "audiotestsrc num-buffers={n} samplesperbuffer=480 wave=sine-table is-live={live} ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved"
        ),
        caps: "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved".into(),
        live,
        n,
    }
}

/// Video throughput, unpaced, at 1080p and 4K.
fn video_throughput(out: &mut Out, names: &mut Names) {
    let video = |w: u32, h: u32, n: u32| Work {
        source: format!(
            "videotestsrc num-buffers={n} pattern=black ! video/x-raw,format=I420,width={w},height={h},framerate=30/1"
        ),
        caps: format!("video/x-raw,format=I420,width={w},height={h},framerate=30/1"),
        live: false,
        n,
    };
    for (tag, w, h, frame_bytes) in [
        ("v1080", 1920, 1080, 1920 * 1080 * 3 / 2),
        ("v4k", 3840, 2160, 3840 * 2160 * 3 / 2),
    ] {
        // About a second of work a round at each transport's speed.
        let n = |t: Transport| match (t, tag) {
            (Transport::Tcp, "v1080") => 300,
            (Transport::Tcp, _) => 60,
            (Transport::ShmCopy | Transport::ShmringCopy, "v1080") => 1500,
            (Transport::ShmCopy | Transport::ShmringCopy, _) => 300,
            (_, "v1080") => 3000,
            _ => 600,
        };
        let runs = rounds(
            &VIDEO_TRANSPORTS,
            out,
            tag,
            |t, names| {
                let r = throughput(t, &video(w, h, n(t)), names)?;
                if let Some(s) = r.2.filter(|_| t == Transport::Shmring) {
                    // The zero-copy path must be zero-copy.
                    if !s.contains("copies=(guint64)0") {
                        return Err(format!("zero-copy path copied: {s}"));
                    }
                }
                Ok((r.0, r.1))
            },
            names,
        );
        for (t, v) in runs {
            let key = format!("{tag}_{}", t.key());
            match v {
                Some((fps, cpu)) => {
                    out.put(format!("{key}_fps"), Some(fps));
                    out.put(format!("{key}_gbps"), Some(fps * frame_bytes as f64 / 1e9));
                    out.put(format!("{key}_cpu_ms_per_frame"), Some(cpu / 1e6));
                }
                None => out.put(format!("{key}_fps"), None),
            }
        }
        // What the transport itself costs: both processes' CPU per frame minus the
        // in-process pipeline's, paired round by round (the rounds interleave, so a
        // slow stretch of the machine falls on both), median.
        let paired = |k: &str| out.by_round.get(&format!("{tag}_{k}")).cloned();
        if let (Some(ours), Some(base)) = (paired("shmring"), paired("inprocess")) {
            let d: Vec<f64> = ours
                .iter()
                .zip(&base)
                .filter_map(|(a, b)| Some((a.as_ref()?.1 - b.as_ref()?.1) / 1e6))
                .collect();
            let v = (!d.is_empty()).then(|| median(d));
            out.put(format!("{tag}_shmring_transport_cpu_ms_per_frame"), v);
        }
    }
}

/// memcpy of one 4K frame, for scale.
fn memcpy_reference(out: &mut Out) {
    let len = 3840 * 2160 * 3 / 2;
    let a = vec![1u8; len];
    let mut b = vec![0u8; len];
    let mut t = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        b.copy_from_slice(std::hint::black_box(&a));
        std::hint::black_box(&b);
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    out.put("memcpy_4k_frame_ms".into(), Some(median(t)));
}

/// Audio throughput, unpaced.
fn audio_throughput(out: &mut Out, names: &mut Names) {
    let audio_transports = [
        Transport::InProcess,
        Transport::Shmring,
        Transport::Shm,
        Transport::Tcp,
        Transport::UnixFd,
    ];
    let runs = rounds(
        &audio_transports,
        out,
        "audio",
        |t, names| throughput(t, &audio(100_000, false), names).map(|r| (r.0, r.1)),
        names,
    );
    for (t, v) in runs {
        out.put(format!("audio_{}_bufs_per_s", t.key()), v.map(|v| v.0));
    }
}

/// One transport's latency samples (ns) and consumer CPU per round, or why not.
type Samples = Result<(Vec<i64>, Vec<f64>), String>;

/// Each live transport's latency samples of `wk` and its consumer's CPU per round,
/// over interleaved rounds.
fn latency_samples(tag: &str, wk: &Work, names: &mut Names) -> Vec<(Transport, Samples)> {
    let mut samples: Vec<(Transport, Samples)> = LAT_TRANSPORTS
        .iter()
        .map(|&t| (t, t.absent().map_or(Ok((Vec::new(), Vec::new())), Err)))
        .collect();
    for round in 0..LAT_ROUNDS {
        for (t, r) in samples.iter_mut() {
            let Ok((v, cpu)) = r else { continue };
            eprintln!("{tag} {} latency round {}", t.key(), round + 1);
            match latency(*t, wk, names) {
                Ok((mut got, c)) => {
                    v.append(&mut got);
                    cpu.push(c);
                }
                Err(e) => *r = Err(format!("failed: {e}")),
            }
        }
    }
    samples
}

/// The machine's reference for a path run once per frame interval: the same
/// in-process pipeline with its source not live, buffers back to back, so that
/// caches, predictors and the CPU stay warm between them (`{tag}_inprocess_hot_p50_us`).
/// What a live stream's path costs above it is the machine running that path cold,
/// once per interval; two processes run two paths where one process runs one.
fn hot_reference(out: &mut Out, tag: &str, wk: &Work, names: &mut Names) {
    let hot = Work {
        source: wk.source.replace("is-live=true", "is-live=false"),
        caps: wk.caps.clone(),
        live: false,
        n: wk.n,
    };
    let key = format!("{tag}_inprocess_hot_p50_us");
    match latency(Transport::InProcess, &hot, names) {
        Ok((v, _)) => out.put(key, Some(percentile(&v, 0.5) / 1e3)),
        Err(e) => {
            out.notes.insert(key.clone(), e);
            out.put(key, None);
        }
    }
}

/// Interleaved rounds, samples pooled: one hiccup of the machine lands on every
/// transport alike instead of on whichever ran at the time.
const LAT_ROUNDS: usize = 3;

/// Live latency of audio, 1080p and 4K.
fn live_latency(out: &mut Out, names: &mut Names, only: &Only) {
    // Five seconds a run: a live stream runs for minutes, and what adapts to it
    // (wake-ahead) settles within its first second; a shorter run would mostly
    // measure the settling.
    let video_live = |w: u32, h: u32| Work {
        source: format!(
            "videotestsrc is-live=true num-buffers=150 pattern=black ! video/x-raw,format=I420,width={w},height={h},framerate=30/1"
        ),
        caps: format!("video/x-raw,format=I420,width={w},height={h},framerate=30/1"),
        live: true,
        n: 150,
    };
    for (tag, wk) in [
        ("audio", audio(200, true)),
        ("v1080", video_live(1920, 1080)),
        ("v4k", video_live(3840, 2160)),
    ]
    .into_iter()
    .filter(|(tag, _)| only.stream(tag))
    {
        hot_reference(out, tag, &wk, names);
        for (t, r) in latency_samples(tag, &wk, names) {
            let key = format!("{tag}_{}", t.key());
            let r = r.map(|(v, cpu)| {
                // The consumer's CPU over the stream (% of one core), median of rounds.
                out.put(format!("{key}_consumer_cpu_pct"), Some(median(cpu) * 100.0));
                v
            });
            match r {
                Ok(mut v) => {
                    v.sort();
                    out.put(format!("{key}_p50_us"), Some(percentile(&v, 0.5) / 1e3));
                    out.put(format!("{key}_p99_us"), Some(percentile(&v, 0.99) / 1e3));
                    out.put(
                        format!("{key}_max_us"),
                        Some(*v.last().unwrap() as f64 / 1e3),
                    );
                }
                Err(why) => {
                    out.notes.insert(format!("{key}_lat"), why);
                    out.put(format!("{key}_p50_us"), None);
                    out.put(format!("{key}_p99_us"), None);
                }
            }
        }
    }
}
