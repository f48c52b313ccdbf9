//! Helpers shared by the cross-process tests and their peer programs.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
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
pub fn publish_seq(p: &shmring::Producer, seq: u64, len: usize) -> shmring::Result<usize> {
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
