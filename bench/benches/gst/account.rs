//! The per-buffer account (`make bench`, part `account`): what each process of a
//! transport spends per buffer, from its first buffer to EOS, in counters that do not
//! perturb the path they count.
//!
//! - CPU time (user + sys, `getrusage`) and page faults (`getrusage`);
//! - context switches, voluntary and not (`getrusage`);
//! - system calls, and of them `futex` calls (the lock waits that were contended:
//!   an uncontended lock makes none), counted by the kernel at the
//!   `raw_syscalls:sys_enter` and `syscalls:sys_enter_futex` tracepoints through
//!   `perf_event_open` (counting, not sampling: no record is written, the process
//!   is never stopped), inherited by every thread the role makes after it opened
//!   them. Where the kernel offers no tracepoints here (no tracefs, not root), the
//!   figures are `null` and the report says so;
//! - cache misses only where the machine has hardware counters (a virtual machine
//!   often has none): `null` otherwise.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::*;

/// What one process counted: each figure the counters give, in [`FIELDS`] order,
/// `None` where this machine cannot count it.
pub(crate) type Usage = [Option<u64>; FIELDS.len()];

/// The figures of a [`Usage`], as keys.
pub(crate) const FIELDS: [&str; 6] = [
    "cpu_us",
    "syscalls",
    "futex",
    "faults",
    "ctx_switches",
    "cache_misses",
];

/// The kernel counters one role process opens at its start (inherited by its
/// threads).
pub(crate) struct Counters {
    syscalls: Option<OwnedFd>,
    futex: Option<OwnedFd>,
    cache_misses: Option<OwnedFd>,
}

/// `perf_event_attr`'s first fields (the kernel takes a shorter struct by its
/// `size`, and zero for everything after).
#[repr(C)]
#[derive(Default)]
struct PerfAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_COUNT_HW_CACHE_MISSES: u64 = 3;
/// `inherit`: the threads made after count too.
const FLAG_INHERIT: u64 = 1 << 1;

/// A counting (never sampling) perf event on this process and the threads it makes
/// afterwards, or `None` where the kernel refuses it.
fn open_counter(type_: u32, config: u64) -> Option<OwnedFd> {
    let attr = PerfAttr {
        type_,
        size: std::mem::size_of::<PerfAttr>() as u32,
        config,
        flags: FLAG_INHERIT,
        ..Default::default()
    };
    // SAFETY: perf_event_open reads `size` bytes of a valid, initialised attr; pid 0
    // (this process), cpu -1 (any), no group, no flags. It returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfAttr,
            0,
            -1,
            -1,
            0,
        )
    };
    // SAFETY: a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of tracepoint `event` (`"raw_syscalls/sys_enter"`), if tracefs shows it.
fn tracepoint(event: &str) -> Option<u64> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|d| std::fs::read_to_string(format!("{d}/events/{event}/id")).ok())
        .and_then(|s| s.trim().parse().ok())
}

/// Makes the tracepoints visible where tracefs is not mounted yet (as root; a
/// no-op otherwise). Called once by the bench before it starts any role.
pub(crate) fn expose_tracepoints() {
    if tracepoint("raw_syscalls/sys_enter").is_some() {
        return;
    }
    let _ = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .stderr(Stdio::null())
        .status();
}

impl Counters {
    pub(crate) fn open() -> Counters {
        let tp = |e: &str| tracepoint(e).and_then(|id| open_counter(PERF_TYPE_TRACEPOINT, id));
        Counters {
            syscalls: tp("raw_syscalls/sys_enter"),
            futex: tp("syscalls/sys_enter_futex"),
            cache_misses: open_counter(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES),
        }
    }

    /// Everything counted so far.
    pub(crate) fn read(&self) -> Usage {
        let read = |fd: &Option<OwnedFd>| {
            let fd = fd.as_ref()?;
            let mut v = 0u64;
            // SAFETY: reads the counter's 8-byte value into a live u64.
            let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
            (n == 8).then_some(v)
        };
        // SAFETY: a zeroed rusage is a valid value; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_SELF with a pointer to our rusage.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
        [
            Some(us(ru.ru_utime) + us(ru.ru_stime)),
            read(&self.syscalls),
            read(&self.futex),
            Some((ru.ru_minflt + ru.ru_majflt) as u64),
            Some((ru.ru_nvcsw + ru.ru_nivcsw) as u64),
            read(&self.cache_misses),
        ]
    }
}

/// `after − before`, figure by figure.
pub(crate) fn delta(before: &Usage, after: &Usage) -> Usage {
    std::array::from_fn(|i| Some(after[i]?.saturating_sub(before[i]?)))
}

/// A [`Usage`] as a line's words (`-` for what was not counted).
pub(crate) fn encode(u: &Usage) -> String {
    u.iter()
        .map(|v| v.map_or("-".into(), |v| v.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The [`Usage`] of a `usage ...` line.
pub(crate) fn decode(words: &str) -> Option<Usage> {
    let v: Vec<Option<u64>> = words.split(' ').map(|w| w.parse().ok()).collect();
    (v.len() == FIELDS.len()).then(|| std::array::from_fn(|i| v[i]))
}

/// The runs the account is made of: (stream, workload, transports).
fn runs() -> Vec<(&'static str, Work, Vec<Transport>)> {
    let video = |live: bool, n: u32| Work {
        source: format!(
            "videotestsrc num-buffers={n} pattern=black is-live={live} ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1"
        ),
        caps: "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1".into(),
        live,
        n,
    };
    vec![
        (
            "v1080",
            video(false, 3000),
            vec![
                Transport::InProcess,
                Transport::InProcessQueue,
                Transport::InProcessApp,
                Transport::Shmring,
                Transport::Shm,
            ],
        ),
        (
            "v1080_live",
            video(true, 150),
            vec![
                Transport::InProcess,
                Transport::InProcessQueue,
                Transport::InProcessApp,
                Transport::Shmring,
                Transport::ShmringSpin,
                Transport::Shm,
            ],
        ),
    ]
}

/// Rounds of each run; medians.
const ACCOUNT_ROUNDS: usize = 3;

/// Each process's usage per buffer, for every run and transport: keys
/// `acct_{stream}_{transport}_{producer|consumer|process}_{figure}_per_buf`.
pub(crate) fn account(out: &mut Out, names: &mut Names) {
    for (tag, work, transports) in runs() {
        for t in transports {
            if let Some(why) = t.absent() {
                out.notes.insert(format!("acct_{tag}_{}", t.key()), why);
                continue;
            }
            // (side, figure) → per-buffer values of the rounds.
            let mut got: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
            for round in 0..ACCOUNT_ROUNDS {
                eprintln!("account {tag} {} round {}", t.key(), round + 1);
                match usage_run(t, &work, names) {
                    Ok(sides) => {
                        for (side, n, u) in sides {
                            for (i, v) in u.iter().enumerate() {
                                if let Some(v) = v {
                                    got.entry((side, i)).or_default().push(*v as f64 / n as f64);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("  failed: {e}");
                        out.notes.insert(format!("acct_{tag}_{}", t.key()), e);
                    }
                }
            }
            for side in ["process", "producer", "consumer"] {
                for (i, f) in FIELDS.iter().enumerate() {
                    if let Some(v) = got.remove(&(side, i)) {
                        out.put(
                            format!("acct_{tag}_{}_{side}_{f}_per_buf", t.key()),
                            Some(median(v)),
                        );
                    }
                }
            }
        }
    }
}

/// One run's usage: (side, buffers, usage) of each process.
fn usage_run(
    t: Transport,
    w: &Work,
    names: &mut Names,
) -> Result<Vec<(&'static str, u64, Usage)>, String> {
    let need = |r: &Report| r.usage.ok_or_else(|| "no usage reported".to_string());
    Ok(match roles(t, w, names, w.live) {
        (one, None) => {
            let r = run_one(&one)?;
            vec![("process", r.n.max(1), need(&r)?)]
        }
        (p, Some(c)) => {
            let (p, c) = run_pair(&p, &c)?;
            vec![
                ("producer", c.n.max(1), need(&p)?),
                ("consumer", c.n.max(1), need(&c)?),
            ]
        }
    })
}

/// The account's table for `gst.md`.
pub(crate) fn table(out: &Out) -> String {
    let mut md = String::from(
        "**Per-buffer account** (1080p I420; each process from its first buffer to EOS, median of 3 rounds; µs of CPU, then counts per buffer; system calls and `futex` calls counted by the kernel's tracepoints, `n/a` where this machine offers none; cache misses need hardware counters)\n\n| stream | transport | process | CPU µs | syscalls | futex | page faults | ctx switches | cache misses |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (tag, _, transports) in runs() {
        for t in transports {
            for side in ["process", "producer", "consumer"] {
                let key = |f: &str| format!("acct_{tag}_{}_{side}_{f}_per_buf", t.key());
                if !out.json.iter().any(|(k, _)| *k == key("cpu_us")) {
                    continue;
                }
                let cells: Vec<String> = FIELDS
                    .iter()
                    .map(|f| out.get(&key(f)).map_or("n/a".into(), |v| format!("{v:.2}")))
                    .collect();
                md.push_str(&format!(
                    "| {tag} | {} | {side} | {} |\n",
                    t.label(),
                    cells.join(" | ")
                ));
            }
        }
    }
    md.push('\n');
    md
}
