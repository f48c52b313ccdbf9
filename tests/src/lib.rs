//! Helpers shared by the cross-process tests and their peer programs.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The test element: a sequence number and a check word derived from it.
pub type Element = [u64; 2];

/// The element with sequence number `seq`.
pub fn element(seq: u64) -> Element {
    [
        seq,
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_0F0F_F0F0,
    ]
}

/// Checks that `e` is the element with sequence number `seq`.
pub fn check(e: &Element, seq: u64) -> Result<(), String> {
    if *e == element(seq) {
        Ok(())
    } else {
        Err(format!("element {seq} corrupt or out of order: got {e:x?}"))
    }
}

/// A fresh socket path in the temp dir, unique in this process and across processes.
pub fn unique_socket_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "shmring-test-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

/// A listening socket a spawned peer connects to.
pub struct Rendezvous {
    listener: UnixListener,
    /// Where it listens.
    pub path: PathBuf,
}

impl Rendezvous {
    /// Listens on a fresh path.
    pub fn new(tag: &str) -> Rendezvous {
        let path = unique_socket_path(tag);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind test socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        Rendezvous { listener, path }
    }

    /// Accepts one connection, or panics after 20 s (a peer that never came).
    pub fn accept(&self) -> UnixStream {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking stream");
                    return s;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "peer did not connect within 20 s"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Spawns the peer program `bin` with `args`, stdout captured, stderr inherited.
pub fn spawn(bin: &str, args: &[&str]) -> Child {
    Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer")
}

/// Waits for `child` to exit (at most 60 s, then kills it) and returns its stdout.
pub fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            use std::io::Read;
            child.stdout.take().map(|mut s| s.read_to_string(&mut out));
            return (status, out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peer did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills `child` with SIGKILL and reaps it.
pub fn kill9(child: &mut Child) {
    child.kill().expect("SIGKILL peer");
    child.wait().expect("reap peer");
}

/// Reads one line from the child's stdout (blocking); used for "ready" handshakes.
pub fn read_line(child: &mut Child) -> String {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).expect("read peer stdout") == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Number of fds this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Number of shared-memory (memfd) mappings this process has: rings, arenas, blobs.
/// Anonymous mappings are left out on purpose: glibc adds malloc arenas when threads
/// contend, which is not a leak of ours.
pub fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count()
}

/// The bytes of test frame `seq`: its number (8 bytes, little-endian), then a pattern
/// that depends on the number, `len` bytes in all.
pub fn frame_bytes(seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u64).wrapping_mul(7).wrapping_add(seq) as u8)
        .collect();
    let n = len.min(8);
    v[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    v
}

/// Publishes test frame `seq` of `len` bytes with `seq` as its metadata; returns how
/// many consumers it went to.
pub fn publish_seq(
    p: &shmring::Producer,
    seq: u64,
    len: usize,
) -> Result<usize, shmring::PublishError> {
    let mut s = p.acquire(len)?;
    s.write(0, &frame_bytes(seq, len))?;
    s.publish(len, &seq.to_le_bytes())
}

/// Checks that `f` is test frame `seq`, payload and metadata, whatever its number in
/// the consumer's own stream.
pub fn check_frame(f: &shmring::Frame, seq: u64) -> Result<(), String> {
    if f.meta() != seq.to_le_bytes() {
        return Err(format!("frame metadata {:02x?}, expected {seq}", f.meta()));
    }
    if f.to_vec() != frame_bytes(seq, f.len()) {
        return Err(format!("frame {seq} payload corrupt"));
    }
    Ok(())
}

/// The producer's sequence number carried in a test frame's metadata.
pub fn frame_number(f: &shmring::Frame) -> u64 {
    let mut b = [0u8; 8];
    let m = f.meta();
    b[..m.len().min(8)].copy_from_slice(&m[..m.len().min(8)]);
    u64::from_le_bytes(b)
}

/// Polls `cond` every 5 ms until it holds, panicking with `what` after 20 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until every consumer `which` selects holds no slot (it has taken and
/// released every frame so far). Tests pace the producer by their honest consumers
/// with it, so that a block timeout never depends on how fast this machine is.
pub fn wait_idle(p: &shmring::Producer, which: impl Fn(&shmring::frame::ConsumerStats) -> bool) {
    eventually("honest consumers caught up", || {
        p.stats()
            .consumers
            .iter()
            .filter(|c| which(c))
            .all(|c| c.held == 0)
    });
}

/// A producer configuration that waits for slow consumers far longer than any test
/// machine needs, for tests where every consumer is honest.
pub fn patient() -> shmring::ProducerConfig {
    shmring::ProducerConfig {
        block_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// A peer process that is killed and reaped when this goes out of scope, even when
/// the test panics (so a failing test leaves no process behind).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory holding `libgstshmring.so`: the target directory of the running
/// test binary (`target/<profile>`), for `GST_PLUGIN_PATH`.
pub fn gst_plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstshmring.so").exists(),
        "{} has no libgstshmring.so: build the workspace first (cargo test --workspace)",
        dir.display()
    );
    dir
}

/// Every numeric field a producer sends a consumer, for the systematic liar
/// (`frame-peer field-liar FIELD`): its name, width in bits and honest value. The
/// liar sends a 320x240 I420 stream of one frame and a goodbye with exactly one
/// field replaced by each of [`extremes`].
pub const LIE_FIELDS: &[(&str, u32, u64)] = &[
    ("welcome.version", 32, 1),
    ("welcome.consumer_id", 32, 1),
    ("welcome.frame_ring", 32, 64),
    ("welcome.release_ring", 32, 64),
    ("welcome.max_held", 32, 4),
    ("arena.arena_id", 32, 0),
    ("arena.slot_size", 32, 118_784),
    ("arena.slots", 32, 4),
    ("drop_arena.arena_id", 32, 0),
    ("side.before_frame", 64, 0),
    ("side.sticky_key", 32, 1),
    ("goodbye.code", 32, 0),
    ("desc.arena", 32, 0),
    ("desc.slot", 32, 0),
    ("desc.offset", 32, 0),
    ("desc.len", 32, 115_200),
    ("desc.seq", 64, 0),
    ("desc.msgs", 64, 3),
    ("desc.meta_len", 16, 88),
    ("desc.dropped", 32, 0),
    ("meta.pts", 64, 0),
    ("meta.dts", 64, u64::MAX),
    ("meta.duration", 64, 33_333_333),
    ("meta.offset", 64, u64::MAX),
    ("meta.offset_end", 64, u64::MAX),
    ("meta.base_time", 64, u64::MAX),
    ("meta.flags", 32, 0),
    ("meta.n_planes", 8, 3),
    ("meta.offset0", 32, 0),
    ("meta.offset1", 32, 76_800),
    ("meta.offset2", 32, 96_000),
    ("meta.offset3", 32, 0),
    ("meta.stride0", 32, 320),
    ("meta.stride1", 32, 160),
    ("meta.stride2", 32, 160),
    ("meta.stride3", 32, 0),
];

/// Byte offset of a `meta.*` field in the per-buffer metadata record, and its width
/// in bytes.
pub fn meta_field(name: &str) -> Option<(usize, usize)> {
    let plane = |base: usize, s: &str| s.parse::<usize>().ok().map(|p| (base + p * 8, 4));
    match name.strip_prefix("meta.")? {
        "pts" => Some((0, 8)),
        "dts" => Some((8, 8)),
        "duration" => Some((16, 8)),
        "offset" => Some((24, 8)),
        "offset_end" => Some((32, 8)),
        "base_time" => Some((40, 8)),
        "flags" => Some((48, 4)),
        "n_planes" => Some((52, 1)),
        f => f
            .strip_prefix("offset")
            .and_then(|p| plane(56, p))
            .or_else(|| f.strip_prefix("stride").and_then(|p| plane(60, p))),
    }
}

/// The values a liar tries for a field of `bits` bits whose honest value is
/// `honest`: 0, 1, the maximum, the top bit alone (the most negative, read as
/// signed) and one past the honest value.
pub fn extremes(bits: u32, honest: u64) -> Vec<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut v = Vec::new();
    for x in [0, 1, max, 1u64 << (bits - 1), honest.wrapping_add(1) & max] {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// `tool` (`gst-launch-1.0`, `gst-play-1.0`, ...) with GStreamer pointed at the
/// built plugin and a registry of its own.
pub fn gst_command(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("GST_PLUGIN_PATH", gst_plugin_dir())
        .env("GST_REGISTRY", gst_plugin_dir().join("gst-registry.bin"));
    c
}

/// Waits for `p` to exist (a producer's socket), 30 s at most.
pub fn wait_for_path(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.exists() {
        assert!(Instant::now() < deadline, "no {} within 30 s", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to end, `secs` at most (then kills it and panics naming
/// `what`), and returns its output (piped stdout and stderr, where they were).
pub fn wait_with_output(child: &mut Child, secs: u64, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::io::Read;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut stderr).expect("read stderr");
    }
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine,
/// so a peer's report of when something happened compares with this process's.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user and system) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count fields after it.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / hz
}
