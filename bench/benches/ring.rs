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

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it;
    // sched_setaffinity reads it. Failure (e.g. one CPU) is harmless.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % num_cpus(), &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPUs online (not `available_parallelism`, which shrinks once we pin ourselves).
fn num_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// One side of a fork: the child (pinned to CPU 1) or the parent (pinned to CPU 0),
/// each with its end of a control socket.
enum Side {
    Child(UnixStream),
    Parent(UnixStream, libc::pid_t),
}

fn fork() -> Side {
    let (a, b) = UnixStream::pair().unwrap();
    // SAFETY: the benchmark is single-threaded when it forks, so the child may use the
    // allocator and std freely; it leaves through `child_exit` and never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(a);
        pin(1);
        Side::Child(b)
    } else {
        drop(b);
        pin(0);
        Side::Parent(a, pid)
    }
}

fn child_exit() -> ! {
    // SAFETY: ends the child without unwinding into the parent's code or running its
    // atexit handlers a second time.
    unsafe { libc::_exit(0) }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "bench child failed"
    );
}

fn signal(c: &mut UnixStream) {
    c.write_all(&[1]).unwrap();
}

fn await_signal(c: &mut UnixStream) {
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
}

/// Writes message `seq` (`len` bytes, a multiple of 8) at `p`, from word `from` on.
///
/// # Safety
/// `p` is valid for writes of `len - from * 8` bytes.
unsafe fn generate(p: *mut u8, from: usize, len: usize, seq: u64) {
    for i in from..len / 8 {
        // SAFETY: word `i` lies inside the caller's range.
        unsafe {
            p.add((i - from) * 8)
                .cast::<u64>()
                .write_unaligned(seq.wrapping_add(i as u64))
        };
    }
}

/// Reads words `from..` of a message at `p` and returns their wrapping sum.
///
/// # Safety
/// `p` is valid for reads of `len - from * 8` bytes.
unsafe fn consume(p: *const u8, from: usize, len: usize) -> u64 {
    let mut sum = 0u64;
    for i in from..len / 8 {
        // SAFETY: word `i` lies inside the caller's range.
        sum = sum.wrapping_add(unsafe { p.add((i - from) * 8).cast::<u64>().read_unaligned() });
    }
    sum
}

/// The sum `consume` must find for message `seq` of `len` bytes.
fn expected_sum(seq: u64, len: usize) -> u64 {
    let n = (len / 8) as u64;
    seq.wrapping_mul(n).wrapping_add(n * (n - 1) / 2)
}

fn check(sum: u64, seq: u64, len: usize) {
    assert_eq!(
        sum,
        expected_sum(seq, len),
        "message {seq} lost, torn or out of order"
    );
}

fn gbps(d: Duration) -> f64 {
    TOTAL as f64 / d.as_secs_f64() / 1e9
}

// ---- shmring --------------------------------------------------------------------

fn shmring_throughput<const N: usize>(cap: usize, in_place: bool) -> f64 {
    let (mut tx, fds) = Sender::<[u8; N]>::create(cap).unwrap();
    let d = match fork() {
        Side::Child(mut c) => {
            drop(tx);
            let mut rx = Receiver::<[u8; N]>::attach(fds).unwrap();
            let mut m: Box<[u8; N]> = vec![0u8; N].into_boxed_slice().try_into().unwrap();
            signal(&mut c);
            for seq in 0..(TOTAL / N) as u64 {
                let sum = if in_place {
                    loop {
                        match rx
                            .try_recv_with(|p| {
                                // SAFETY: the published slot holds N readable bytes.
                                unsafe { consume(p.cast(), 0, N) }
                            })
                            .unwrap()
                        {
                            Some(s) => break s,
                            None => rx.wait_for_data(None).unwrap(),
                        }
                    }
                } else {
                    rx.recv_into(&mut m, None).unwrap();
                    // SAFETY: `m` holds N bytes.
                    unsafe { consume(m.as_ptr(), 0, N) }
                };
                check(sum, seq, N);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(fds);
            let mut m: Box<[u8; N]> = vec![0u8; N].into_boxed_slice().try_into().unwrap();
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / N) as u64 {
                if in_place {
                    while !tx
                        .try_send_with(|p| {
                            // SAFETY: the free slot holds N writable bytes.
                            unsafe { generate(p.cast(), 0, N, seq) }
                        })
                        .unwrap()
                    {
                        tx.wait_for_room(None).unwrap();
                    }
                } else {
                    // SAFETY: `m` holds N bytes.
                    unsafe { generate(m.as_mut_ptr(), 0, N, seq) };
                    tx.send(&m).unwrap();
                }
            }
            await_signal(&mut c);
            let r = t0.elapsed();
            reap(pid);
            r
        }
    };
    gbps(d)
}

fn shmring_rtt(spin: bool, n: usize) -> Vec<f64> {
    let (mut ping, ping_fds) = Sender::<u64>::create(64).unwrap();
    let (mut pong, pong_fds) = Receiver::<u64>::create(64).unwrap();
    let spin_budget = if spin {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    ping.set_spin(spin_budget);
    pong.set_spin(spin_budget);
    match fork() {
        Side::Child(mut c) => {
            drop((ping, pong));
            let mut rx = Receiver::<u64>::attach(ping_fds).unwrap();
            let mut tx = Sender::<u64>::attach(pong_fds).unwrap();
            rx.set_spin(spin_budget);
            tx.set_spin(spin_budget);
            signal(&mut c);
            for _ in 0..n {
                let v = rx.recv().unwrap();
                tx.send(&v).unwrap();
            }
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop((ping_fds, pong_fds));
            await_signal(&mut c);
            let mut out = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t0 = Instant::now();
                ping.send(&i).unwrap();
                let v = pong.recv().unwrap();
                out.push(t0.elapsed().as_secs_f64() * 1e6);
                assert_eq!(v, i);
            }
            let r = out;
            reap(pid);
            r
        }
    }
}

// ---- unix stream socket ---------------------------------------------------------

fn unix_throughput(msg: usize) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let d = match fork() {
        Side::Child(mut c) => {
            drop(a);
            let mut m = vec![0u8; msg];
            signal(&mut c);
            for seq in 0..(TOTAL / msg) as u64 {
                b.read_exact(&mut m).unwrap();
                // SAFETY: `m` holds `msg` bytes.
                check(unsafe { consume(m.as_ptr(), 0, msg) }, seq, msg);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            let mut m = vec![0x5au8; msg];
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / msg) as u64 {
                // SAFETY: `m` holds `msg` bytes.
                unsafe { generate(m.as_mut_ptr(), 0, msg, seq) };
                a.write_all(&m).unwrap();
            }
            await_signal(&mut c);
            let r = t0.elapsed();
            reap(pid);
            r
        }
    };
    gbps(d)
}

fn unix_rtt(n: usize) -> Vec<f64> {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    match fork() {
        Side::Child(mut c) => {
            drop(a);
            signal(&mut c);
            let mut v = [0u8; 8];
            for _ in 0..n {
                b.read_exact(&mut v).unwrap();
                b.write_all(&v).unwrap();
            }
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            await_signal(&mut c);
            let mut out = Vec::with_capacity(n);
            let mut v = [0u8; 8];
            for i in 0..n as u64 {
                let t0 = Instant::now();
                a.write_all(&i.to_le_bytes()).unwrap();
                a.read_exact(&mut v).unwrap();
                out.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            let r = out;
            reap(pid);
            r
        }
    }
}

// ---- shmem-ipc 0.3 --------------------------------------------------------------

fn dup_file(fd: std::os::fd::BorrowedFd<'_>) -> std::fs::File {
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd (or -1, checked) that we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(n >= 0);
    // SAFETY: `n` is a fresh fd nothing else owns.
    std::fs::File::from(unsafe { OwnedFd::from_raw_fd(n) })
}

fn shmem_ipc_throughput(msg: usize, ring_bytes: usize) -> f64 {
    // A ring of u64 words: messages are whole words, so chunks never split one.
    let words = msg / 8;
    let mut tx = shmem_ipc::sharedring::Sender::<u64>::new(ring_bytes / 8).unwrap();
    let memfd = dup_file(tx.memfd().as_file().as_fd());
    let empty = dup_file(tx.empty_signal().as_fd());
    let full = dup_file(tx.full_signal().as_fd());
    let d = match fork() {
        Side::Child(mut c) => {
            drop(tx);
            let mut rx =
                shmem_ipc::sharedring::Receiver::<u64>::open(ring_bytes / 8, memfd, empty, full)
                    .unwrap();
            signal(&mut c);
            for seq in 0..(TOTAL / msg) as u64 {
                let mut got = 0;
                let mut sum = 0u64;
                while got < words {
                    let mut took = 0;
                    rx.receive_raw(|p, count| {
                        took = count.min(words - got);
                        // SAFETY: shmem-ipc hands `count >= took` readable words at `p`.
                        sum =
                            sum.wrapping_add(unsafe { consume(p.cast(), got, got * 8 + took * 8) });
                        took
                    })
                    .unwrap();
                    got += took;
                    if took == 0 {
                        rx.block_until_readable().unwrap();
                    }
                }
                check(sum, seq, msg);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop((memfd, empty, full));
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / msg) as u64 {
                let mut put = 0;
                while put < words {
                    let mut took = 0;
                    tx.send_raw(|p, count| {
                        took = count.min(words - put);
                        // SAFETY: shmem-ipc hands `count >= took` writable words at `p`.
                        unsafe { generate(p.cast(), put, put * 8 + took * 8, seq) };
                        took
                    })
                    .unwrap();
                    put += took;
                    if took == 0 {
                        tx.block_until_writable().unwrap();
                    }
                }
            }
            await_signal(&mut c);
            let r = t0.elapsed();
            reap(pid);
            r
        }
    };
    gbps(d)
}

// ---- frame channel --------------------------------------------------------------

/// CPU time this process has used (all threads).
fn cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn send_u64(c: &mut UnixStream, v: u64) {
    c.write_all(&v.to_le_bytes()).unwrap();
}

fn recv_u64(c: &mut UnixStream) -> u64 {
    let mut b = [0u8; 8];
    c.read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Frames through the frame channel, one consumer, zero copy: the producer writes only
/// the frame number into each slot, the consumer reads it back (and checks it against
/// the metadata). Returns (frames/s, producer + consumer CPU µs per frame).
fn frame_channel(len: usize, frames: u64) -> (f64, f64) {
    let path = std::env::temp_dir().join(format!("shmring-bench-{}.sock", std::process::id()));
    match fork() {
        Side::Child(mut c) => {
            await_signal(&mut c); // the producer listens
            let mut con = shmring::Consumer::connect(&path, Default::default()).unwrap();
            signal(&mut c);
            let cpu0 = cpu_now();
            let mut got = 0;
            while got < frames {
                if let shmring::Event::Frame(f) = con.recv().unwrap() {
                    let mut b = [0u8; 8];
                    // SAFETY: every frame is at least 8 bytes, mapped while `f` lives.
                    unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), b.as_mut_ptr(), 8) };
                    assert_eq!(&b[..], f.meta(), "frame {got} lost or torn");
                    assert_eq!(u64::from_le_bytes(b), got);
                    got += 1;
                }
            }
            send_u64(&mut c, (cpu_now() - cpu0).as_nanos() as u64);
            drop(con);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            let p = shmring::Producer::bind(&path, Default::default()).unwrap();
            signal(&mut c);
            await_signal(&mut c);
            p.wait_for_consumers(1, Some(Duration::from_secs(10)))
                .unwrap();
            let (t0, cpu0) = (Instant::now(), cpu_now());
            for seq in 0..frames {
                let mut slot = p.acquire(len).unwrap();
                slot.write(0, &seq.to_le_bytes()).unwrap();
                slot.publish(len, &seq.to_le_bytes()).unwrap();
            }
            let child_cpu = Duration::from_nanos(recv_u64(&mut c));
            let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
            drop(p);
            reap(pid);
            (
                frames as f64 / wall.as_secs_f64(),
                (cpu + child_cpu).as_secs_f64() * 1e6 / frames as f64,
            )
        }
    }
}

/// The same frames through a unix stream socket, copied in and out (the payload is
/// the whole frame: a socket cannot send a frame without its bytes). Returns
/// (frames/s, CPU µs per frame).
fn unix_frames(len: usize, frames: u64) -> (f64, f64) {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    match fork() {
        Side::Child(mut c) => {
            drop(a);
            let mut m = vec![0u8; len];
            signal(&mut c);
            let cpu0 = cpu_now();
            for seq in 0..frames {
                b.read_exact(&mut m).unwrap();
                assert_eq!(m[..8], seq.to_le_bytes(), "frame {seq} lost or torn");
            }
            send_u64(&mut c, (cpu_now() - cpu0).as_nanos() as u64);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            let mut m = vec![0x5au8; len];
            await_signal(&mut c);
            let (t0, cpu0) = (Instant::now(), cpu_now());
            for seq in 0..frames {
                m[..8].copy_from_slice(&seq.to_le_bytes());
                a.write_all(&m).unwrap();
            }
            let child_cpu = Duration::from_nanos(recv_u64(&mut c));
            let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
            reap(pid);
            (
                frames as f64 / wall.as_secs_f64(),
                (cpu + child_cpu).as_secs_f64() * 1e6 / frames as f64,
            )
        }
    }
}

/// One `memcpy` of `len` bytes between two pre-faulted buffers, in µs (median of 50).
fn memcpy_us(len: usize) -> f64 {
    let src = vec![0x11u8; len];
    let mut dst = vec![0u8; len];
    let runs: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(runs)
}

// ---- report ---------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rounds(name: &str, f: impl Fn() -> f64) -> f64 {
    let runs: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    eprintln!("  {name}: {runs:.3?}");
    median(runs)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful.
    // Either way there is nothing to filter, so arguments are ignored.
    let mut figures: Vec<(&str, f64)> = Vec::new();

    eprintln!(
        "ring bench: {ROUNDS} rounds of {} MiB per transport and size",
        TOTAL >> 20
    );
    type Run = Box<dyn Fn() -> f64>;
    const K64: usize = 64 << 10;
    const M1: usize = 1 << 20;
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
    let only = std::env::var("SHMRING_BENCH_ONLY").unwrap_or_default();
    for (name, f) in &throughput {
        if name.contains(only.as_str()) {
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
        if !n50.contains(only.as_str()) {
            continue;
        }
        let runs: Vec<Vec<f64>> = (0..ROUNDS).map(|_| f()).collect();
        let p50 = median(runs.iter().map(|r| percentile(r.clone(), 0.50)).collect());
        let p99 = median(runs.iter().map(|r| percentile(r.clone(), 0.99)).collect());
        eprintln!("  {n50}: {p50:.2}, {n99}: {p99:.2}");
        figures.push((n50, p50));
        figures.push((n99, p99));
    }

    // Frame channel: frames/s and CPU per frame, beside a unix socket and a memcpy.
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
        if !fps_name.contains(only.as_str()) && !only.contains("frame") {
            continue;
        }
        let runs: Vec<(f64, f64)> = (0..ROUNDS).map(|_| f()).collect();
        let fps = median(runs.iter().map(|r| r.0).collect());
        let us = median(runs.iter().map(|r| r.1).collect());
        eprintln!("  {fps_name}: {fps:.0}, {us_name}: {us:.2}");
        figures.push((fps_name, fps));
        figures.push((us_name, us));
    }
    if "memcpy_12m_us".contains(only.as_str()) || only.contains("frame") {
        let us = memcpy_us(UHD_I420);
        eprintln!("  memcpy_12m_us: {us:.1}");
        figures.push(("memcpy_12m_us", us));
    }

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
    figures.extend(ratios);
    figures.extend(frame_ratios.into_iter().filter(|(_, v)| v.is_finite()));

    println!("| figure | value |\n|---|---|");
    for (k, v) in &figures {
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
