//! Two-process ring benchmark (`make bench`): shmring's typed ring against a unix
//! stream socket and the `shmem-ipc` crate, in the same run.
//!
//! Throughput workload, the same for every transport: the parent *generates* each
//! message (writes every 8-byte word, derived from the sequence number) and the forked
//! child *consumes* it (reads every word and checks their sum, so a lost, torn or
//! reordered message fails the run). Each transport does that the cheapest way its
//! API allows: the unix socket generates into a buffer, `write`s it, `read`s it into a
//! buffer and consumes there; shmem-ipc (`send_raw`/`receive_raw`) and shmring
//! (`try_send_with`/`try_recv_with`) generate and consume in shared memory, in place.
//! `ring_copy_*` also reports shmring with a copy on each side (`send`/`recv_into`),
//! i.e. the socket's work minus the syscalls.
//! Timing runs from the child's "attached" signal to its "all consumed" signal.
//!
//! Round trip: the parent sends an 8-byte value and the child echoes it on a second
//! ring; each round trip is timed on its own (`spin`: waits spin; `block`: waits sleep
//! on the doorbell at once). Parent and child are pinned to different CPUs. Several
//! rounds; medians.
//!
//! Frame channel: frames of 64 KiB, 1 MiB and 12 MiB (4K I420) to one consumer, zero
//! copy, the producer writing only the frame number into each slot (the transport, not
//! frame generation): frames/s and producer + consumer CPU µs per frame, beside a unix
//! socket copying the same frames and one `memcpy` of a 4K frame.
//!
//! Writes `target/bench/ring.json` and prints a markdown table.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shmring::{Receiver, Sender};

const ROUNDS: usize = 5;
const TOTAL: usize = 1 << 30; // bytes per throughput round

mod frames;
mod ours;
mod proc;
mod rival_dbus;
mod rival_shmem_ipc;
mod rival_unix;
mod stats;

use frames::*;
use ours::*;
use proc::*;
use rival_dbus::*;
use rival_shmem_ipc::*;
use rival_unix::*;
use stats::*;

/// `ROUNDS` runs of round trips `f`: the median over rounds of each round's p50 and
/// p99, named `n50` and `n99`.
fn rtt_rounds<'a>(n50: &'a str, n99: &'a str, f: impl Fn() -> Vec<f64>) -> [(&'a str, f64); 2] {
    let runs: Vec<Vec<f64>> = (0..ROUNDS).map(|_| f()).collect();
    let p50 = median(runs.iter().map(|r| percentile(r.clone(), 0.50)).collect());
    let p99 = median(runs.iter().map(|r| percentile(r.clone(), 0.99)).collect());
    eprintln!("  {n50}: {p50:.2}, {n99}: {p99:.2}");
    [(n50, p50), (n99, p99)]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful.
    // Either way there is nothing to filter, so arguments are ignored, but for the
    // D-Bus server this program also plays.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--dbus-server") {
        serve(&args[2]);
    }
    let mut figures: Vec<(&str, f64)> = Vec::new();

    eprintln!(
        "ring bench: {ROUNDS} rounds of {} MiB per transport and size",
        TOTAL >> 20
    );
    let only = std::env::var("SHMRING_BENCH_ONLY").unwrap_or_default();
    ring_figures(&mut figures, &only);
    frame_figures(&mut figures, &only);
    // D-Bus last (see rival_dbus).
    if "dbus".contains(only.as_str()) || only.contains("dbus") {
        dbus_figures(&mut figures);
    }
    ratios(&mut figures);
    write_figures(&figures);
}

const K64: usize = 64 << 10;
const M1: usize = 1 << 20;

/// The ring against a unix socket and shmem-ipc: throughput and round trips.
fn ring_figures(figures: &mut Vec<(&'static str, f64)>, only: &str) {
    type Run = Box<dyn Fn() -> f64>;
    let throughput: Vec<(&str, Run)> = vec![
        (
            "ring_64k_gbps",
            Box::new(|| shmring_throughput::<K64>(16, true)),
        ),
        (
            "ring_copy_64k_gbps",
            Box::new(|| shmring_throughput::<K64>(16, false)),
        ),
        ("unix_64k_gbps", Box::new(|| unix_throughput(K64))),
        (
            "shmem_ipc_64k_gbps",
            Box::new(|| shmem_ipc_throughput(K64, 16 * K64)),
        ),
        (
            "ring_1m_gbps",
            Box::new(|| shmring_throughput::<M1>(4, true)),
        ),
        (
            "ring_copy_1m_gbps",
            Box::new(|| shmring_throughput::<M1>(4, false)),
        ),
        ("unix_1m_gbps", Box::new(|| unix_throughput(M1))),
        (
            "shmem_ipc_1m_gbps",
            Box::new(|| shmem_ipc_throughput(M1, 4 * M1)),
        ),
    ];
    for (name, f) in &throughput {
        if name.contains(only) {
            figures.push((name, rounds(name, f)));
        }
    }

    type RttRun = Box<dyn Fn() -> Vec<f64>>;
    let rtts: Vec<(&str, &str, RttRun)> = vec![
        (
            "rtt_spin_p50_us",
            "rtt_spin_p99_us",
            Box::new(|| shmring_rtt(true, 200_000)),
        ),
        (
            "rtt_block_p50_us",
            "rtt_block_p99_us",
            Box::new(|| shmring_rtt(false, 20_000)),
        ),
        (
            "unix_rtt_p50_us",
            "unix_rtt_p99_us",
            Box::new(|| unix_rtt(20_000)),
        ),
    ];
    for (n50, n99, f) in &rtts {
        if n50.contains(only) {
            figures.extend(rtt_rounds(n50, n99, f));
        }
    }
}

/// The frame channel: frames/s and CPU per frame, beside a unix socket and a memcpy.
fn frame_figures(figures: &mut Vec<(&'static str, f64)>, only: &str) {
    const K64F: usize = 64 << 10;
    const M1F: usize = 1 << 20;
    const UHD_I420: usize = 3840 * 2160 * 3 / 2;
    type FrameRun = Box<dyn Fn() -> (f64, f64)>;
    let frame_runs: Vec<(&str, &str, FrameRun)> = vec![
        (
            "frame_64k_fps",
            "frame_64k_us_per_frame",
            Box::new(|| frame_channel(K64F, 20_000)),
        ),
        (
            "frame_1m_fps",
            "frame_1m_us_per_frame",
            Box::new(|| frame_channel(M1F, 20_000)),
        ),
        (
            "frame_12m_fps",
            "frame_12m_us_per_frame",
            Box::new(|| frame_channel(UHD_I420, 20_000)),
        ),
        (
            "unix_12m_fps",
            "unix_12m_us_per_frame",
            Box::new(|| unix_frames(UHD_I420, 300)),
        ),
    ];
    for (fps_name, us_name, f) in &frame_runs {
        if !fps_name.contains(only) && !only.contains("frame") {
            continue;
        }
        let runs: Vec<(f64, f64)> = (0..ROUNDS).map(|_| f()).collect();
        let fps = median(runs.iter().map(|r| r.0).collect());
        let us = median(runs.iter().map(|r| r.1).collect());
        eprintln!("  {fps_name}: {fps:.0}, {us_name}: {us:.2}");
        figures.push((fps_name, fps));
        figures.push((us_name, us));
    }
    if "memcpy_12m_us".contains(only) || only.contains("frame") {
        let us = memcpy_us(UHD_I420);
        eprintln!("  memcpy_12m_us: {us:.1}");
        figures.push(("memcpy_12m_us", us));
    }
}

/// D-Bus: throughput and round trips of 64 KiB and 1 MiB, with a unix socket's
/// round trips of the same sizes beside them.
fn dbus_figures(figures: &mut Vec<(&'static str, f64)>) {
    match Bus::start() {
        Ok(bus) => {
            for (name, msg) in [("dbus_64k_gbps", K64), ("dbus_1m_gbps", M1)] {
                figures.push((name, rounds(name, || dbus_throughput(&bus, msg))));
            }
            type SizedRtt<'a> = Box<dyn Fn() -> Vec<f64> + 'a>;
            let sized: Vec<(&str, &str, SizedRtt)> = vec![
                (
                    "dbus_rtt_64k_p50_us",
                    "dbus_rtt_64k_p99_us",
                    Box::new(|| dbus_rtt(&bus, K64, 300)),
                ),
                (
                    "dbus_rtt_1m_p50_us",
                    "dbus_rtt_1m_p99_us",
                    Box::new(|| dbus_rtt(&bus, M1, 100)),
                ),
                (
                    "unix_rtt_64k_p50_us",
                    "unix_rtt_64k_p99_us",
                    Box::new(|| unix_rtt_of(K64, 300)),
                ),
                (
                    "unix_rtt_1m_p50_us",
                    "unix_rtt_1m_p99_us",
                    Box::new(|| unix_rtt_of(M1, 100)),
                ),
            ];
            for (n50, n99, f) in &sized {
                figures.extend(rtt_rounds(n50, n99, f));
            }
        }
        Err(e) => eprintln!("  no D-Bus figures: {e}"),
    }
}

/// The ratios between the figures.
fn ratios(figures: &mut Vec<(&'static str, f64)>) {
    let get = |k: &str| {
        figures
            .iter()
            .find(|(n, _)| *n == k)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    let ratios = [
        (
            "ring_vs_unix_64k",
            get("ring_64k_gbps") / get("unix_64k_gbps"),
        ),
        (
            "ring_vs_shmem_ipc_64k",
            get("ring_64k_gbps") / get("shmem_ipc_64k_gbps"),
        ),
        ("ring_vs_unix_1m", get("ring_1m_gbps") / get("unix_1m_gbps")),
        (
            "ring_vs_shmem_ipc_1m",
            get("ring_1m_gbps") / get("shmem_ipc_1m_gbps"),
        ),
    ];
    let frame_ratios = [
        (
            "unix_vs_frame_12m_cpu",
            get("unix_12m_us_per_frame") / get("frame_12m_us_per_frame"),
        ),
        (
            "frame_12m_vs_64k_cpu",
            get("frame_12m_us_per_frame") / get("frame_64k_us_per_frame"),
        ),
    ];
    let dbus_ratios = [
        (
            "ring_vs_dbus_64k",
            get("ring_64k_gbps") / get("dbus_64k_gbps"),
        ),
        ("ring_vs_dbus_1m", get("ring_1m_gbps") / get("dbus_1m_gbps")),
        (
            "unix_vs_dbus_64k",
            get("unix_64k_gbps") / get("dbus_64k_gbps"),
        ),
        ("unix_vs_dbus_1m", get("unix_1m_gbps") / get("dbus_1m_gbps")),
    ];
    figures.extend(ratios);
    figures.extend(dbus_ratios.into_iter().filter(|(_, v)| v.is_finite()));
    figures.extend(frame_ratios.into_iter().filter(|(_, v)| v.is_finite()));
}

/// Prints the figures and writes `target/bench/ring.json`.
fn write_figures(figures: &[(&str, f64)]) {
    println!("| figure | value |\n|---|---|");
    for (k, v) in figures {
        println!("| {k} | {v:.3} |");
    }

    let json = format!(
        "{{\n{}\n}}\n",
        figures
            .iter()
            .map(|(k, v)| format!("  \"{k}\": {v:.4}"))
            .collect::<Vec<_>>()
            .join(",\n")
    );
    // target/<profile>/deps/<bench> -> target/bench/ring.json
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ring.json"), json).unwrap();
    eprintln!("wrote {}", dir.join("ring.json").display());
}
