//! Who may connect and who may read frames: a consumer process running as another
//! user (`setpriv`, which needs root: CI runs as root) is refused by the default
//! socket mode and by `allowed_uids`, and let in when neither stops it; and no shared
//! memory of a stream has a name that someone not handed its fd could open.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{publish_seq, socket_path};
use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig};

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");
const NOBODY: u32 = 65534;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this test must run there"
        );
        eprintln!("not root: setpriv cannot switch users here; skipped");
    }
    root
}

/// The peer program, copied where any user may run it (the build directory may be
/// private to root).
fn public_peer() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("frame-peer");
    if !bin.exists() {
        std::fs::copy(PEER, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// `frame-peer consume <path> 0 1` as user `nobody`, while `p` publishes frames.
fn consume_as_nobody(p: &Producer, path: &std::path::Path) -> Output {
    let child = Command::new("setpriv")
        .args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(public_peer())
        .args(["consume", path.to_str().unwrap(), "0", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) installed");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 0;
    // Feed frames until the peer is done (it takes one, or was refused).
    let done = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !done.is_finished() {
        assert!(
            Instant::now() < deadline,
            "peer {pid} neither refused nor served"
        );
        if p.stats().consumers.iter().any(|c| c.pid == pid as i32) {
            publish_seq(p, seq, 4096).unwrap();
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done.join().unwrap()
}

#[test]
fn another_user_is_refused_by_the_socket_mode_and_by_the_uid_list() {
    if !root() {
        return;
    }
    // Default mode 0600: the other user cannot even connect.
    let path = socket_path("mode");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let out = consume_as_nobody(&p, &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(p.stats().joined, 0);

    // A socket anyone may open, but a uid list without `nobody`: refused by name.
    let path = socket_path("uids");
    let cfg = ProducerConfig {
        socket_mode: 0o666,
        allowed_uids: vec![0],
        ..Default::default()
    };
    let p = Producer::bind(&path, cfg).unwrap();
    let out = consume_as_nobody(&p, &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("uid {NOBODY}")), "{err}");
    assert_eq!((p.stats().joined, p.stats().refused), (0, 1));

    // Neither: the same peer, as the same user, is served (so the refusals above
    // were the defences, not setpriv or the peer failing).
    let path = socket_path("open");
    let cfg = ProducerConfig {
        socket_mode: 0o666,
        ..Default::default()
    };
    let p = Producer::bind(&path, cfg).unwrap();
    let out = consume_as_nobody(&p, &path);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains("first-frame"), "{so}");
}

#[test]
fn stream_memory_has_no_name_to_open() {
    let shm_before: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let path = socket_path("anon");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish_seq(&p, 0, 1 << 20).unwrap();
    let Event::Frame(f) = c.recv_timeout(Duration::from_secs(60)).unwrap() else {
        panic!("expected a frame")
    };
    // Nothing new in /dev/shm (POSIX shared memory has names; ours does not) ...
    let shm_now: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let new: Vec<_> = shm_now.iter().filter(|n| !shm_before.contains(n)).collect();
    assert!(new.is_empty(), "named shared memory appeared: {new:?}");
    // ... and every shared mapping of this process is an anonymous memfd, which only
    // a holder of its fd can map.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let shared: Vec<&str> = maps
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|perm| perm.ends_with('s'))
        })
        .collect();
    assert!(!shared.is_empty(), "the frame's arena is mapped shared");
    for l in &shared {
        assert!(
            l.contains("/memfd:") || l.contains("/dev/zero"),
            "a shared mapping with a path: {l}"
        );
        assert!(!l.contains("/dev/shm/"), "{l}");
    }
    drop(f);
}
