//! Consumers in a bubblewrap sandbox, as Flatpak apps run: every namespace
//! unshared (`--unshare-all`: no network, no other process, no IPC namespace; the
//! user namespace too where the kernel allows one, see `unshare`), no
//! `/dev/shm`, none of the host's files but `/usr` (the loader, the libraries) and
//! the consumer program. The producer runs outside.
//!
//! - With the socket's directory bound in, `shmringsrc socket-path=` receives.
//! - With nothing bound but an inherited socket fd, `shmringsrc socket-fd=3`
//!   receives (the producer serves that socket with `consumer-fd=`).
//!
//! Both receive every frame zero-copy (the consumer's `copies` is 0) and the same
//! bytes as a consumer outside.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, socket_path};

const FRAMES: u32 = 30;
const SOURCE: &str = "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// `bwrap` with every namespace unshared (`unshare`), `/usr` read-only, a private `/tmp`, only
/// `/dev/null` in `/dev`, and the test programs' directory read-only.
fn sandbox(extra: &[&str]) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_gst-record"))
        .parent()
        .unwrap();
    let mut c = Command::new("bwrap");
    c.args(unshare())
        .args(["--die-with-parent", "--new-session"])
        .args(["--ro-bind", "/usr", "/usr"])
        .args(["--symlink", "usr/lib", "/lib"])
        .args(["--symlink", "usr/lib64", "/lib64"])
        .args(["--symlink", "usr/bin", "/bin"])
        .args(["--proc", "/proc", "--tmpfs", "/tmp"])
        // Not `--dev` (it makes a /dev/shm): /dev has /dev/null and nothing else.
        .args(["--dev-bind", "/dev/null", "/dev/null"])
        .args(["--ro-bind", &bin.to_string_lossy(), &bin.to_string_lossy()])
        .args(["--setenv", "HOME", "/tmp"])
        // A registry that outlives one sandboxed run, as an app's does: the
        // consumer is not slowed by scanning every plugin (a consumer on an
        // inherited socket must say hello within the producer's 2 s).
        .args(["--bind", registry_dir(), registry_dir()])
        .args(["--setenv", "GST_REGISTRY"])
        .arg(Path::new(registry_dir()).join("registry.bin"))
        .args(["--unsetenv", "GST_PLUGIN_PATH"])
        .args(extra);
    c
}

/// The sandboxed consumers' GStreamer registry directory, made and filled once
/// (by a first sandboxed run) before any test uses it.
fn registry_dir() -> &'static str {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("shmring-bwrap-registry-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let d = d.to_string_lossy().into_owned();
        let reg = Path::new(&d).join("registry.bin");
        let bin = Path::new(env!("CARGO_BIN_EXE_gst-record"))
            .parent()
            .unwrap();
        let out = Command::new("bwrap")
            .args(unshare())
            .args(["--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib"])
            .args([
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/bin",
                "/bin",
            ])
            .args(["--proc", "/proc", "--tmpfs", "/tmp", "--bind", &d, &d])
            .args(["--ro-bind", &bin.to_string_lossy(), &bin.to_string_lossy()])
            .arg("--setenv")
            .arg("GST_REGISTRY")
            .arg(&reg)
            .arg(env!("CARGO_BIN_EXE_gst-record"))
            .args(["fakesrc", "num-buffers=1", "!", "fakesink"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && reg.exists(),
            "warming the sandbox's registry: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    })
}

/// `--unshare-all`, as Flatpak apps run; where the kernel refuses a new user
/// namespace (root in a chroot, as on the CI's fresh roots: unprivileged or not, a
/// chrooted process may not make one), every other namespace, named one by one.
fn unshare() -> &'static [&'static str] {
    static FLAGS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FLAGS.get_or_init(|| {
        let all = Command::new("bwrap")
            .args(["--unshare-all", "--ro-bind", "/usr", "/usr"])
            .args([
                "--symlink",
                "usr/bin",
                "/bin",
                "--symlink",
                "usr/lib",
                "/lib",
            ])
            .args(["--symlink", "usr/lib64", "/lib64", "true"])
            .output()
            .expect("bwrap (Debian's bubblewrap, installed by make deps)");
        if all.status.success() {
            return &["--unshare-all"];
        }
        let why = String::from_utf8_lossy(&all.stderr);
        assert!(
            // Debian 12's bwrap says "create new namespace", Debian 13's "create a
            // new namespace".
            why.contains("No permissions to create"),
            "bwrap --unshare-all: {why}"
        );
        println!("no user namespace here ({why}): every other namespace unshared");
        &[
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
    })
}

fn bwrap_present() {
    let ok = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "bwrap (Debian's bubblewrap, installed by make deps) is missing"
    );
}

/// In a child between fork and exec: makes `raw` its fd 3, kept across exec. Only
/// async-signal-safe calls (dup2, fcntl).
fn as_fd_3(raw: i32) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl on fds of this process; no memory is touched.
    let r = unsafe {
        if raw == 3 {
            libc::fcntl(3, libc::F_SETFD, 0)
        } else {
            libc::dup2(raw, 3)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn producer(desc: &str, inherit: Option<&OwnedFd>) -> KillOnDrop {
    let mut c = e2e::gst_command("gst-launch-1.0");
    c.arg("-q")
        .args(desc.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(fd) = inherit {
        let raw = fd.as_raw_fd();
        // SAFETY: between fork and exec only `as_fd_3` runs (async-signal-safe
        // calls); it makes the socket fd 3 of the child, without close-on-exec.
        unsafe {
            c.pre_exec(move || as_fd_3(raw));
        }
    }
    KillOnDrop(
        c.spawn()
            .expect("gst-launch-1.0 (gstreamer1.0-tools) installed"),
    )
}

/// What the consumer `c` printed, waiting 60 s at most: (buffer hashes, its stats).
fn received(c: Child) -> (Vec<String>, String) {
    let mut c = KillOnDrop(c);
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the consumer did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::io::Read;
    let mut out = String::new();
    c.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let hashes = out
        .lines()
        .filter(|l| l.contains(" buffer "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("bytes=")))
        .map(str::to_owned)
        .collect();
    let stats = out
        .lines()
        .find(|l| l.starts_with("src stats"))
        .unwrap_or_else(|| panic!("no stats from the consumer: {out}{err}"))
        .to_owned();
    (hashes, stats)
}

fn consumer_args(src: &str) -> Vec<String> {
    format!("{src} name=src ! fakesink name=rec num-buffers={FRAMES}")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The frames as a consumer outside any sandbox receives them.
fn outside() -> Vec<String> {
    let p = socket_path("outside");
    let _prod = producer(
        &format!(
            "{SOURCE} ! shmringsink socket-path={} wait-for-connection=true",
            p.display()
        ),
        None,
    );
    e2e::wait_for_path(&p);
    let c = Command::new(env!("CARGO_BIN_EXE_gst-record"))
        .args(consumer_args(&format!(
            "shmringsrc socket-path={}",
            p.display()
        )))
        .env("SHMRING_REC_STATS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    received(c).0
}

fn zero_copy(stats: &str) {
    assert!(
        stats.contains(&format!("frames=(guint64){FRAMES}")),
        "{stats}"
    );
    assert!(stats.contains("copies=(guint64)0"), "{stats}");
}

#[test]
fn the_sandbox_has_no_dev_shm_and_none_of_the_hosts_files() {
    bwrap_present();
    // The test programs' directory is bound in, so its parents exist (empty): the
    // project's own files next to it do not.
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    assert!(readme.exists());
    let check = format!(
        "for f in /dev/shm /etc/hostname {}; do [ -e $f ] && echo found $f; done; echo sealed",
        readme.display()
    );
    let out = sandbox(&["sh", "-c", &check]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sealed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sandboxed_consumer_with_the_socket_directory_bound_receives_zero_copy() {
    bwrap_present();
    let want = outside();
    let dir: PathBuf = std::env::temp_dir().join(format!("shmring-bwrap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("cam");
    let _prod = producer(
        &format!(
            "{SOURCE} ! shmringsink socket-path={} wait-for-connection=true",
            p.display()
        ),
        None,
    );
    e2e::wait_for_path(&p);
    let d = dir.to_string_lossy().into_owned();
    let c = sandbox(&["--bind", &d, &d, "--setenv", "SHMRING_REC_STATS", "1"])
        .arg(env!("CARGO_BIN_EXE_gst-record"))
        .args(consumer_args(&format!(
            "shmringsrc socket-path={}",
            p.display()
        )))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (got, stats) = received(c);
    zero_copy(&stats);
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sandboxed_consumer_with_only_an_inherited_socket_receives_zero_copy() {
    bwrap_present();
    let want = outside();
    // A seqpacket pair: what the frame channel speaks.
    let (producer_end, consumer_end) = shmring::fdpass::socket_pair(libc::SOCK_SEQPACKET).unwrap();
    let _prod = producer(
        &format!("{SOURCE} ! shmringsink consumer-fd=3 wait-for-connection=true"),
        Some(&producer_end),
    );
    drop(producer_end);
    let raw = consumer_end.as_raw_fd();
    let mut c = sandbox(&["--setenv", "SHMRING_REC_STATS", "1"]);
    c.arg(env!("CARGO_BIN_EXE_gst-record"))
        .args(consumer_args("shmringsrc socket-fd=3"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: as in `producer`: only `as_fd_3` between fork and exec; bwrap passes
    // fd 3 on to the sandboxed program.
    unsafe {
        c.pre_exec(move || as_fd_3(raw));
    }
    let child = c.spawn().unwrap();
    drop(consumer_end);
    let (got, stats) = received(child);
    zero_copy(&stats);
    assert_eq!(got, want);
}
