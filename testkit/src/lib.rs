//! What every test package shares (the ring's, the plugin's and the cross-process
//! tests of `e2e`): unique socket paths, waiting for a condition, a patient
//! producer, test frames that check themselves, peer processes that are always
//! reaped, and the resources a process holds (fds, memfd mappings, CPU time).
//! With feature `gst`: GStreamer pointed at the built plugin, and its first error.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "gst")]
mod gstreamer;
#[cfg(feature = "gst")]
pub use gstreamer::*;

// ---- paths ------------------------------------------------------------------

/// A fresh socket path in the temp dir, unique in this process and across processes.
pub fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "shmring-test-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

/// A program of this workspace built beside the running test binary
/// (`target/<profile>/name`), such as `frame-peer`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.exists(),
        "no {}: build the workspace first (cargo test --workspace)",
        p.display()
    );
    p
}

/// Waits for `p` to exist (a producer's socket), 30 s at most.
pub fn wait_for_path(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.exists() {
        assert!(Instant::now() < deadline, "no {} within 30 s", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- waiting ----------------------------------------------------------------

/// Polls `cond` every 5 ms until it holds, panicking with `what` after 20 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(20), || {
        cond().then_some(()).ok_or_else(String::new)
    });
}

/// Polls `cond` every 5 ms until it is `Ok`; after `limit` panics with `what` and
/// what `cond` last said.
pub fn eventually_within(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + limit;
    loop {
        match cond() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "not within {} s: {what}{}",
                    limit.as_secs(),
                    if e.is_empty() {
                        String::new()
                    } else {
                        format!(": {e}")
                    }
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A producer configuration that waits for slow consumers far longer than any test
/// machine needs, for tests where every consumer is honest.
pub fn patient() -> shmring::ProducerConfig {
    shmring::ProducerConfig {
        block_timeout: Duration::from_secs(60),
        ..Default::default()
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

/// Waits (60 s at most) until `n` consumers joined `p`.
pub fn wait_consumers(p: &shmring::Producer, n: usize) {
    p.wait_for_consumers(n, Some(Duration::from_secs(60)))
        .unwrap();
}

// ---- test frames ------------------------------------------------------------

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

// ---- processes --------------------------------------------------------------

/// A listening socket a spawned peer connects to.
pub struct Rendezvous {
    listener: UnixListener,
    /// Where it listens.
    pub path: PathBuf,
}

impl Rendezvous {
    /// Listens on a fresh path.
    pub fn new(tag: &str) -> Rendezvous {
        let path = socket_path(tag);
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

/// A peer process that is killed and reaped when this goes out of scope, even when
/// the test panics (so a failing test leaves no process behind).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
