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

// ----------------------------------------------------------------------------
// One pipeline in this process (`--role`).

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + sys) of this process, all threads, in ns.
fn cpu_ns() -> u64 {
    // SAFETY: a zeroed rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to our rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[derive(Default)]
struct Probe {
    n: u64,
    first_ns: u64,
    last_ns: u64,
    cpu_first: u64,
    cpu_eos: u64,
    latencies_ns: Vec<i64>,
}

/// Runs `desc` to EOS and prints `result ...` (or `error ...`). `stamp` and
/// `measure` name elements whose sink pads write / read the time stamps; `latency`
/// says whether `measure` reads them.
fn role(desc: &str, stamp: &str, measure: &str, latency: bool, hold: bool) -> ! {
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let pipeline = match gst::parse::launch(desc) {
        Ok(p) => p.downcast::<gst::Pipeline>().unwrap(),
        Err(e) => {
            println!("error cannot build pipeline: {e}");
            std::process::exit(1);
        }
    };
    if let Some(e) = pipeline.by_name(stamp) {
        e.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let b = b.make_mut();
                    if let Ok(mut m) = b.map_writable() {
                        if m.len() >= 8 {
                            m[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
                        }
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    let probe = Arc::new(Mutex::new(Probe::default()));
    if let Some(e) = pipeline.by_name(measure) {
        let p = probe.clone();
        e.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let now = monotonic_ns();
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let mut p = p.lock().unwrap();
                        if p.n == 0 {
                            p.first_ns = now;
                            p.cpu_first = cpu_ns();
                        }
                        p.n += 1;
                        p.last_ns = now;
                        if latency {
                            let mut stamp = [0u8; 8];
                            if b.copy_to_slice(0, &mut stamp).is_ok() {
                                p.latencies_ns
                                    .push(now as i64 - u64::from_le_bytes(stamp) as i64);
                            }
                        }
                    }
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        p.lock().unwrap().cpu_eos = cpu_ns();
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    // A tcpserversink drops what it renders before a client connects: hold the
    // stream (prerolled in PAUSED) until one has.
    let (client_tx, client_rx) = mpsc::channel::<()>();
    let mut gated = false;
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        if e.factory().is_some_and(|f| f.name() == "tcpserversink") {
            gated = true;
            let tx = Mutex::new(client_tx.clone());
            e.connect("client-added", false, move |_| {
                let _ = tx.lock().unwrap().send(());
                None
            });
        }
    }
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Paused).is_err() {
        println!("error {}", first_error(&bus));
        std::process::exit(1);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    if gated && client_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        println!("error no client connected");
        std::process::exit(1);
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(300),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let outcome = match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => None,
        Some(gst::MessageView::Error(e)) => Some(format!("{} ({:?})", e.error(), e.debug())),
        _ => Some("no EOS within 300 s".into()),
    };
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        if e.factory().is_some_and(|f| f.name().starts_with("shmring")) {
            println!("stats {}", e.property::<gst::Structure>("stats"));
        }
    }
    if let Some(e) = outcome {
        pipeline.set_state(gst::State::Null).unwrap();
        println!("error {e} (after {} buffers)", probe.lock().unwrap().n);
        std::process::exit(1);
    }
    let p = probe.lock().unwrap();
    let lat: Vec<String> = p.latencies_ns.iter().map(|l| l.to_string()).collect();
    println!(
        "result {} {} {} {} {} {}",
        p.n,
        p.first_ns,
        p.last_ns,
        p.cpu_first,
        p.cpu_eos.max(p.cpu_first),
        lat.join(",")
    );
    std::io::stdout().flush().unwrap();
    if hold {
        // A producer keeps its pipeline (and connections) until the consumer is
        // done: a sink that queues (tcpserversink) would lose what it has not sent.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    std::process::exit(0);
}

fn first_error(bus: &gst::Bus) -> String {
    match bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .as_ref()
        .map(|m| m.view())
    {
        Some(gst::MessageView::Error(e)) => format!("{} ({:?})", e.error(), e.debug()),
        _ => "state change failed".into(),
    }
}

// ----------------------------------------------------------------------------
// The orchestrator.

/// What one role process reported.
#[derive(Clone, Debug, Default)]
struct Report {
    n: u64,
    first_ns: u64,
    last_ns: u64,
    cpu_ns: u64,
    latencies_ns: Vec<i64>,
    stats: Option<String>,
}

impl Report {
    /// Buffers per second from the first to the last buffer.
    fn rate(&self) -> f64 {
        (self.n.saturating_sub(1)) as f64 / ((self.last_ns - self.first_ns).max(1) as f64 / 1e9)
    }
}

struct Role {
    desc: String,
    stamp: &'static str,
    measure: &'static str,
    latency: bool,
}

fn role_cmd(r: &Role, hold: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--role")
        .arg(&r.desc)
        .arg(r.stamp)
        .arg(r.measure)
        .arg(if r.latency { "1" } else { "0" })
        .arg(if hold { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads a role's output to its end (or `deadline`), returning its lines.
fn collect(child: Child, deadline: Instant) -> Result<Vec<String>, String> {
    let mut child = child;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
        }
    }
    let _ = child.wait();
    Ok(lines)
}

fn parse(lines: &[String]) -> Result<Report, String> {
    let mut r = Report::default();
    let mut got = false;
    for l in lines {
        if let Some(e) = l.strip_prefix("error ") {
            return Err(e.to_owned());
        }
        if let Some(s) = l.strip_prefix("stats ") {
            r.stats = Some(s.to_owned());
        }
        if let Some(rest) = l.strip_prefix("result ") {
            let f: Vec<&str> = rest.split(' ').collect();
            let num = |i: usize| f[i].parse::<u64>().unwrap();
            r.n = num(0);
            r.first_ns = num(1);
            r.last_ns = num(2);
            r.cpu_ns = num(4) - num(3);
            r.latencies_ns = f
                .get(5)
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
                .unwrap_or_default();
            got = true;
        }
    }
    if got {
        Ok(r)
    } else {
        Err(format!("no result: {lines:?}"))
    }
}

/// Runs a producer process and, once it is ready, a consumer process.
fn run_pair(producer: &Role, consumer: &Role) -> Result<(Report, Report), String> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut p = role_cmd(producer, true);
    let release = p.stdin.take();
    // Wait for "ready" on the producer's stdout before starting the consumer.
    let out = p.stdout.take().unwrap();
    let mut reader = BufReader::new(out);
    let mut first = String::new();
    let read = reader.read_line(&mut first);
    if read.is_err() || first.trim() != "ready" {
        let _ = p.kill();
        let _ = p.wait();
        return Err(format!("producer: {}", first.trim()));
    }
    let c = role_cmd(consumer, false);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = reader.lines().map_while(Result::ok).collect();
        let _ = tx.send(lines);
    });
    let cons = collect(c, deadline).and_then(|l| parse(&l));
    drop(release); // the producer may stop now
    let left = deadline.saturating_duration_since(Instant::now());
    let prod = match rx.recv_timeout(left) {
        Ok(lines) => {
            let _ = p.wait();
            parse(&lines)
        }
        Err(_) => {
            let _ = p.kill();
            let _ = p.wait();
            Err("did not finish within 45 s".into())
        }
    };
    match (prod, cons) {
        (Ok(p), Ok(c)) => Ok((p, c)),
        (_, Err(e)) => Err(format!("consumer: {e}")),
        (Err(e), _) => Err(format!("producer: {e}")),
    }
}

fn run_one(r: &Role) -> Result<Report, String> {
    let c = role_cmd(r, false);
    collect(c, Instant::now() + Duration::from_secs(45)).and_then(|l| parse(&l))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}

/// Fresh names for sockets and ports.
struct Names {
    dir: PathBuf,
    n: u32,
}

impl Names {
    fn socket(&mut self) -> String {
        self.n += 1;
        self.dir.join(format!("s{}", self.n)).display().to_string()
    }

    fn port(&mut self) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    InProcess,
    Shmring,
    ShmringCopy,
    ShmringSpin,
    ShmringSleep,
    Shm,
    ShmCopy,
    Tcp,
    UnixFd,
}

impl Transport {
    fn key(self) -> &'static str {
        match self {
            Transport::InProcess => "inprocess",
            Transport::Shmring => "shmring",
            Transport::ShmringCopy => "shmring_copy",
            Transport::ShmringSpin => "shmring_spin",
            Transport::ShmringSleep => "shmring_sleep",
            Transport::Shm => "shm",
            Transport::ShmCopy => "shm_copy",
            Transport::Tcp => "tcp",
            Transport::UnixFd => "unixfd",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Transport::InProcess => "in one process (upper bound)",
            Transport::Shmring => "shmringsink/src, zero-copy",
            Transport::ShmringCopy => "shmringsink/src, copy path",
            Transport::ShmringSpin => "shmringsink/src, spin-time=20000",
            Transport::ShmringSleep => "shmringsink/src, wake-ahead=0",
            Transport::Shm => "shmsink/shmsrc, upstream in its memory",
            Transport::ShmCopy => "shmsink/shmsrc, copying",
            Transport::Tcp => "tcpserversink/tcpclientsrc + gdp",
            Transport::UnixFd => "unixfdsink/unixfdsrc",
        }
    }

    /// Why this machine cannot run it, if it cannot.
    fn absent(self) -> Option<String> {
        let need: &[&str] = match self {
            Transport::InProcess => &[],
            Transport::Shmring
            | Transport::ShmringCopy
            | Transport::ShmringSpin
            | Transport::ShmringSleep => &[],
            Transport::Shm | Transport::ShmCopy => &["shmsink", "shmsrc"],
            Transport::Tcp => &["tcpserversink", "tcpclientsrc", "gdppay", "gdpdepay"],
            Transport::UnixFd => &["unixfdsink", "unixfdsrc"],
        };
        let missing: Vec<&str> = need
            .iter()
            .copied()
            .filter(|f| gst::ElementFactory::find(f).is_none())
            .collect();
        if missing.is_empty() {
            None
        } else if self == Transport::UnixFd {
            Some(format!(
                "{} has no {} (added in 1.24)",
                gst::version_string(),
                missing.join(", ")
            ))
        } else {
            Some(format!("elements not installed: {}", missing.join(", ")))
        }
    }
}

/// A workload: a source fragment (ending in caps), the caps a reader that cannot
/// learn them must be told, and whether it is live.
struct Work {
    source: String,
    caps: String,
    live: bool,
    /// Buffers the source makes (the consumer stops after as many: not every
    /// transport carries EOS).
    n: u32,
}

/// The producer and consumer roles (or the single in-process role) of `t` on `w`.
fn roles(t: Transport, w: &Work, names: &mut Names, latency: bool) -> (Role, Option<Role>) {
    let src = &w.source;
    let stamp = if latency { "stamp" } else { "-" };
    let ident = if latency {
        "identity name=stamp ! "
    } else {
        ""
    };
    let copy = "identity drop-allocation=true ! ";
    let role = |desc: String, measure| Role {
        desc,
        stamp,
        measure,
        latency: false,
    };
    let consumer = |desc: String| Role {
        desc,
        stamp: "-",
        measure: "snk",
        latency,
    };
    let fakesink = format!(
        "fakesink name=snk sync=false enable-last-sample=false num-buffers={}",
        w.n
    );
    let live = if w.live { "true" } else { "false" };
    match t {
        Transport::InProcess => (
            Role {
                desc: format!(
                    "{src} ! {ident}fakesink name=snk sync=false enable-last-sample=false"
                ),
                stamp,
                measure: "snk",
                latency,
            },
            None,
        ),
        Transport::Shmring
        | Transport::ShmringCopy
        | Transport::ShmringSpin
        | Transport::ShmringSleep => {
            let p = names.socket();
            let c = if t == Transport::ShmringCopy {
                copy
            } else {
                ""
            };
            let spin = match t {
                Transport::ShmringSpin => " spin-time=20000",
                Transport::ShmringSleep => " wake-ahead=0",
                _ => "",
            };
            (
                role(
                    format!(
                        "{src} ! {c}{ident}shmringsink name=snk socket-path={p} wait-for-connection=true sync=false"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "shmringsrc socket-path={p} is-live={live}{spin} ! {fakesink}"
                ))),
            )
        }
        Transport::Shm | Transport::ShmCopy => {
            let p = names.socket();
            let c = if t == Transport::ShmCopy { copy } else { "" };
            (
                role(
                    format!(
                        "{src} ! {c}{ident}shmsink name=snk socket-path={p} wait-for-connection=true sync=false shm-size=134217728"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "shmsrc socket-path={p} is-live={live} ! {} ! {fakesink}",
                    w.caps
                ))),
            )
        }
        Transport::Tcp => {
            let port = names.port();
            (
                role(
                    format!(
                        "{src} ! {ident}gdppay name=snk ! tcpserversink host=127.0.0.1 port={port} sync=false"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "tcpclientsrc host=127.0.0.1 port={port} ! gdpdepay ! {fakesink}"
                ))),
            )
        }
        Transport::UnixFd => {
            let p = names.socket();
            (
                role(
                    format!("{src} ! {ident}unixfdsink name=snk socket-path={p} sync=false"),
                    "snk",
                ),
                Some(consumer(format!("unixfdsrc socket-path={p} ! {fakesink}"))),
            )
        }
    }
}

/// One throughput run: (buffers/s at the consumer, CPU ns per buffer of both
/// processes, producer's stats).
fn throughput(
    t: Transport,
    w: &Work,
    names: &mut Names,
) -> Result<(f64, f64, Option<String>), String> {
    match roles(t, w, names, false) {
        (one, None) => {
            let r = run_one(&one)?;
            Ok((r.rate(), r.cpu_ns as f64 / r.n as f64, None))
        }
        (p, Some(c)) => {
            let (p, c) = run_pair(&p, &c)?;
            if c.n != p.n {
                return Err(format!("consumer got {} of {} buffers", c.n, p.n));
            }
            Ok((c.rate(), (p.cpu_ns + c.cpu_ns) as f64 / c.n as f64, p.stats))
        }
    }
}

fn latency(t: Transport, w: &Work, names: &mut Names) -> Result<Vec<i64>, String> {
    let lat = match roles(t, w, names, true) {
        (one, None) => run_one(&one)?.latencies_ns,
        (p, Some(c)) => run_pair(&p, &c)?.1.latencies_ns,
    };
    if lat.len() <= WARM_UP + 10 {
        return Err(format!("only {} buffers measured", lat.len()));
    }
    let mut v = lat[WARM_UP..].to_vec();
    v.sort();
    Ok(v)
}

/// Runs `f` for every transport in turn, `ROUNDS` times over (interleaved, so that
/// the machine's slow and fast moments fall on all of them alike); medians of
/// each's (rate, CPU ns per buffer), `None` for one that cannot run here or failed
/// (the reason noted under `{tag}_{transport}`).
fn rounds(
    transports: &[Transport],
    out: &mut Out,
    tag: &str,
    f: impl Fn(Transport, &mut Names) -> Result<(f64, f64), String>,
    names: &mut Names,
) -> Vec<(Transport, Option<(f64, f64)>)> {
    // (transport, why absent, results, failures)
    type Runs = (Transport, Option<String>, Vec<(f64, f64)>, Vec<String>);
    let mut got: Vec<Runs> = transports
        .iter()
        .map(|&t| (t, t.absent(), Vec::new(), Vec::new()))
        .collect();
    for round in 0..ROUNDS {
        for (t, absent, ok, failed) in got.iter_mut() {
            if absent.is_some() {
                continue;
            }
            eprintln!("{tag} {} round {}", t.key(), round + 1);
            let r = f(*t, names);
            out.by_round
                .entry(format!("{tag}_{}", t.key()))
                .or_default()
                .push(r.as_ref().ok().copied());
            match r {
                Ok(x) => ok.push(x),
                Err(e) => {
                    eprintln!("  failed: {e}");
                    failed.push(e);
                }
            }
        }
    }
    got.into_iter()
        .map(|(t, absent, ok, failed)| {
            let key = format!("{tag}_{}", t.key());
            if let Some(why) = absent {
                out.notes.insert(key, why);
                return (t, None);
            }
            if !failed.is_empty() {
                out.notes.insert(
                    key.clone(),
                    format!("{} of {ROUNDS} rounds failed: {}", failed.len(), failed[0]),
                );
            }
            if ok.is_empty() {
                return (t, None);
            }
            let rates = ok.iter().map(|x| x.0);
            let lo = rates.clone().fold(f64::INFINITY, f64::min);
            let hi = rates.fold(0f64, f64::max);
            out.spread.insert(key, (lo, hi));
            (
                t,
                Some((
                    median(ok.iter().map(|x| x.0).collect()),
                    median(ok.iter().map(|x| x.1).collect()),
                )),
            )
        })
        .collect()
}

/// The figures, in order, and the table rows.
#[derive(Default)]
struct Out {
    json: Vec<(String, Option<f64>)>,
    notes: BTreeMap<String, String>,
    /// Slowest and fastest round of each `{tag}_{transport}`.
    spread: BTreeMap<String, (f64, f64)>,
    /// Each round's (rate, CPU ns per buffer) of each `{tag}_{transport}`, `None`
    /// for a failed round.
    by_round: BTreeMap<String, Vec<Option<(f64, f64)>>>,
}

impl Out {
    fn put(&mut self, name: String, v: Option<f64>) {
        eprintln!(
            "  {name} = {}",
            v.map_or("null".into(), |v| format!("{v:.3}"))
        );
        self.json.push((name, v));
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.json
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| *v)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--role") {
        role(&args[2], &args[3], &args[4], args[5] == "1", args[6] == "1");
    }
    gst::init().unwrap();
    let dir = std::env::temp_dir().join(format!("shmring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut names = Names {
        dir: dir.clone(),
        n: 0,
    };
    let mut out = Out::default();
    let started = Instant::now();
    // For experiments: `SHMRING_GST_BENCH_ONLY=latency` (or video, audio; commas)
    // runs only those parts (the report then has only their figures).
    let only = std::env::var("SHMRING_GST_BENCH_ONLY").unwrap_or_default();
    let runs_part = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);

    // -- video throughput --
    let video = |w: u32, h: u32, n: u32| Work {
        source: format!(
            "videotestsrc num-buffers={n} pattern=black ! video/x-raw,format=I420,width={w},height={h},framerate=30/1"
        ),
        caps: format!("video/x-raw,format=I420,width={w},height={h},framerate=30/1"),
        live: false,
        n,
    };
    let video_transports = [
        Transport::InProcess,
        Transport::Shmring,
        Transport::ShmringCopy,
        Transport::Shm,
        Transport::ShmCopy,
        Transport::Tcp,
        Transport::UnixFd,
    ];
    for (tag, w, h, frame_bytes) in [
        ("v1080", 1920, 1080, 1920 * 1080 * 3 / 2),
        ("v4k", 3840, 2160, 3840 * 2160 * 3 / 2),
    ]
    .into_iter()
    .filter(|_| runs_part("video"))
    {
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
            &video_transports,
            &mut out,
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
            &mut names,
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
    // memcpy of one 4K frame, for scale.
    {
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

    // -- audio, unpaced --
    let audio = |n: u32, live: bool| Work {
        source: format!(
            "audiotestsrc num-buffers={n} samplesperbuffer=480 wave=sine-table is-live={live} ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved"
        ),
        caps: "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved".into(),
        live,
        n,
    };
    let audio_transports = [
        Transport::InProcess,
        Transport::Shmring,
        Transport::Shm,
        Transport::Tcp,
        Transport::UnixFd,
    ];
    let runs = if runs_part("audio") {
        rounds(
            &audio_transports,
            &mut out,
            "audio",
            |t, names| throughput(t, &audio(100_000, false), names).map(|r| (r.0, r.1)),
            &mut names,
        )
    } else {
        Vec::new()
    };
    for (t, v) in runs {
        out.put(format!("audio_{}_bufs_per_s", t.key()), v.map(|v| v.0));
    }

    // -- latency, live --
    let lat_transports = [
        Transport::InProcess,
        Transport::Shmring,
        Transport::ShmringSleep,
        Transport::ShmringSpin,
        Transport::Shm,
        Transport::Tcp,
        Transport::UnixFd,
    ];
    let video_live = Work {
        source: "videotestsrc is-live=true num-buffers=70 pattern=black ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1".into(),
        caps: "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1".into(),
        live: true,
        n: 70,
    };
    // Interleaved rounds, samples pooled: one hiccup of the machine lands on every
    // transport alike instead of on whichever ran at the time.
    const LAT_ROUNDS: usize = 3;
    for (tag, wk) in [("audio", audio(200, true)), ("v1080", video_live)]
        .into_iter()
        .filter(|_| runs_part("latency"))
    {
        let mut samples: Vec<(Transport, Result<Vec<i64>, String>)> = lat_transports
            .iter()
            .map(|&t| (t, t.absent().map_or(Ok(Vec::new()), Err)))
            .collect();
        for round in 0..LAT_ROUNDS {
            for (t, r) in samples.iter_mut() {
                let Ok(v) = r else { continue };
                eprintln!("{tag} {} latency round {}", t.key(), round + 1);
                match latency(*t, &wk, &mut names) {
                    Ok(mut got) => v.append(&mut got),
                    Err(e) => *r = Err(format!("failed: {e}")),
                }
            }
        }
        for (t, r) in samples {
            let key = format!("{tag}_{}", t.key());
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
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("benchmark ran {:.0} s", started.elapsed().as_secs_f64());
    report(&out, &lat_transports, &video_transports);
}

// ----------------------------------------------------------------------------
// Output: JSON, markdown, plots.

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<bench> -> target/bench
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A median with the spread of its rounds: `2817 (2500–3000)`.
fn fmt_spread(out: &Out, figure: &str, key: &str) -> String {
    match (out.get(figure), out.spread.get(key)) {
        (Some(v), Some((lo, hi))) => format!("{v:.0} ({lo:.0}–{hi:.0})"),
        (v, _) => fmt(v, 0),
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no memory-safety preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{date} on {cpu} ({cpus} CPUs), {}", gst::version_string())
}

fn report(out: &Out, lat: &[Transport], video: &[Transport]) {
    let dir = target_dir();
    // The ring-level figures of the same `make bench`, when it ran first.
    let ring: Vec<(String, Option<f64>)> = std::fs::read_to_string(dir.join("ring.json"))
        .ok()
        .map(|s| parse_flat_json(&s))
        .unwrap_or_default();
    let mut json = String::from("{\n");
    let all: Vec<&(String, Option<f64>)> = out.json.iter().chain(ring.iter()).collect();
    for (i, (k, v)) in all.iter().enumerate() {
        let v = v.map_or("null".into(), |v| format!("{v}"));
        let comma = if i + 1 < all.len() { "," } else { "" };
        json.push_str(&format!("  \"{k}\": {v}{comma}\n"));
    }
    json.push_str("}\n");
    std::fs::write(dir.join("gst.json"), json).unwrap();

    let mut md = format!("Measured {} by `make bench`.\n\n", machine());
    md.push_str("**Raw video, non-live, `sync=false`** (frames/s at the consumer: median of 5 interleaved rounds, slowest–fastest in brackets; ratio to the in-process pipeline; CPU of both processes per frame)\n\n");
    md.push_str("| transport | 1080p fps | × in-process | 1080p CPU ms/frame | 4K fps | × in-process | 4K GB/s | 4K CPU ms/frame |\n|---|---|---|---|---|---|---|---|\n");
    for t in video {
        let k = t.key();
        let f = |n: &str| out.get(&format!("{n}_{k}_fps"));
        let note = out
            .notes
            .get(&format!("v1080_{k}"))
            .or_else(|| out.notes.get(&format!("v4k_{k}")))
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.label(),
            note,
            fmt_spread(out, &format!("v1080_{k}_fps"), &format!("v1080_{k}")),
            ratio(f("v1080"), out.get("v1080_inprocess_fps")),
            fmt(out.get(&format!("v1080_{k}_cpu_ms_per_frame")), 3),
            fmt_spread(out, &format!("v4k_{k}_fps"), &format!("v4k_{k}")),
            ratio(f("v4k"), out.get("v4k_inprocess_fps")),
            fmt(out.get(&format!("v4k_{k}_gbps")), 2),
            fmt(out.get(&format!("v4k_{k}_cpu_ms_per_frame")), 3),
        ));
    }
    let (t1080, t4k) = (
        out.get("v1080_shmring_transport_cpu_ms_per_frame"),
        out.get("v4k_shmring_transport_cpu_ms_per_frame"),
    );
    md.push_str(&format!(
        "\nTransport CPU per frame, zero-copy (both processes minus the in-process pipeline, round by round, median): 1080p {} ms, 4K {} ms.\n",
        fmt(t1080, 3),
        fmt(t4k, 3)
    ));
    md.push_str(&format!(
        "\nOne `memcpy` of a 4K I420 frame: {} ms.\n\n",
        fmt(out.get("memcpy_4k_frame_ms"), 2)
    ));
    md.push_str("**Audio S16LE 48 kHz stereo, 10 ms buffers**: unpaced buffers/s (non-live, `wave=sine-table`, median of 5 interleaved rounds); live latency from the producer's push to the consumer's arrival (µs; `CLOCK_MONOTONIC` written into each buffer; 3 interleaved rounds pooled, the first 10 buffers of each left out)\n\n");
    md.push_str("| transport | unpaced bufs/s | audio p50 | p99 | max | 1080p live p50 | p99 | max |\n|---|---|---|---|---|---|---|---|\n");
    for t in lat {
        let k = t.key();
        let note = out
            .notes
            .get(&format!("audio_{k}_lat"))
            .or_else(|| out.notes.get(&format!("audio_{k}")))
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let g = |n: String| out.get(&n);
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.label(),
            note,
            fmt_spread(out, &format!("audio_{k}_bufs_per_s"), &format!("audio_{k}")),
            fmt(g(format!("audio_{k}_p50_us")), 1),
            fmt(g(format!("audio_{k}_p99_us")), 1),
            fmt(g(format!("audio_{k}_max_us")), 1),
            fmt(g(format!("v1080_{k}_p50_us")), 1),
            fmt(g(format!("v1080_{k}_p99_us")), 1),
            fmt(g(format!("v1080_{k}_max_us")), 1),
        ));
    }
    if !ring.is_empty() {
        md.push_str("\n**Ring and frame channel alone** (`target/bench/ring.json`, same run)\n\n| figure | value |\n|---|---|\n");
        for (k, v) in &ring {
            md.push_str(&format!("| `{k}` | {} |\n", fmt(*v, 3)));
        }
    }
    std::fs::write(dir.join("gst.md"), &md).unwrap();
    println!("{md}");
    if let Err(e) = plots(out, video, lat, &dir) {
        eprintln!("plots not drawn: {e}");
    }
    eprintln!(
        "wrote {}/gst.json, gst.md, video.png, latency.png",
        dir.display()
    );
}

/// A flat `{"name": number-or-null}` object, as `ring.json` is written.
fn parse_flat_json(s: &str) -> Vec<(String, Option<f64>)> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().trim_end_matches(',').split_once(':')?;
            let k = k.trim().trim_matches('"').to_owned();
            Some((k, v.trim().parse().ok()))
        })
        .collect()
}

/// The label under the middle of group `x` of bars (one group per transport).
fn group_label(shown: &[Transport], x: f64) -> String {
    if (x.fract() - 0.5).abs() > 0.01 {
        return String::new();
    }
    shown
        .get(x.floor() as usize)
        .map(|t| t.key().to_owned())
        .unwrap_or_default()
}

fn plots(
    out: &Out,
    video: &[Transport],
    lat: &[Transport],
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVuSans.ttf (fonts-dejavu-core): {e}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into()))
        .map_err(|_| "bad font")?;

    // Video: frames/s relative to the in-process pipeline, 1080p and 4K side by side.
    let shown: Vec<Transport> = video
        .iter()
        .copied()
        .filter(|t| out.get(&format!("v1080_{}_fps", t.key())).is_some())
        .collect();
    let top = ["v1080", "v4k"]
        .iter()
        .flat_map(|tag| {
            let base = out.get(&format!("{tag}_inprocess_fps"));
            shown
                .iter()
                .filter_map(move |t| Some(out.get(&format!("{tag}_{}_fps", t.key()))? / base?))
        })
        .fold(1.2f64, f64::max)
        * 1.05;
    let path = dir.join("video.png");
    let root = BitMapBackend::new(&path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Raw I420 video, two processes: frames/s relative to one process",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..shown.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // A label in the middle of each group of bars.
        .x_labels(shown.len() * 2 + 1)
        .x_label_formatter(&|x| group_label(&shown, *x))
        .y_desc("× in-process frames/s")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, (tag, color)) in [("v1080", BLUE), ("v4k", RED)].iter().enumerate() {
        let base = out.get(&format!("{tag}_inprocess_fps"));
        let bars: Vec<Rectangle<(f64, f64)>> = shown
            .iter()
            .enumerate()
            .filter_map(|(x, t)| {
                let v = out.get(&format!("{tag}_{}_fps", t.key()))? / base?;
                let x0 = x as f64 + 0.1 + 0.4 * i as f64;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.38, v)],
                    color.mix(0.7).filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(if *tag == "v1080" { "1080p" } else { "4K" })
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;

    // Latency: p50 and p99 per transport (log scale), audio and 1080p video.
    let path = dir.join("latency.png");
    let root = BitMapBackend::new(&path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let shown: Vec<Transport> = lat
        .iter()
        .copied()
        .filter(|t| out.get(&format!("audio_{}_p50_us", t.key())).is_some())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Live latency, producer push to consumer arrival (µs, log scale)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..shown.len() as f64, (0.5f64..100_000f64).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // A label in the middle of each group of bars.
        .x_labels(shown.len() * 2 + 1)
        .x_label_formatter(&|x| group_label(&shown, *x))
        .y_desc("µs")
        .label_style(("sans-serif", 16))
        .draw()?;
    let series = [
        ("audio", "p50", "audio p50", BLUE.mix(0.9)),
        ("audio", "p99", "audio p99", BLUE.mix(0.4)),
        ("v1080", "p50", "1080p p50", RED.mix(0.9)),
        ("v1080", "p99", "1080p p99", RED.mix(0.4)),
    ];
    for (i, (tag, p, label, color)) in series.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = shown
            .iter()
            .enumerate()
            .filter_map(|(x, t)| {
                let v = out.get(&format!("{tag}_{}_{p}_us", t.key()))?;
                let x0 = x as f64 + 0.08 + 0.21 * i as f64;
                Some(Rectangle::new(
                    [(x0, 0.5), (x0 + 0.19, v.max(0.5))],
                    color.filled(),
                ))
            })
            .collect();
        let c = *color;
        chart
            .draw_series(bars)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
