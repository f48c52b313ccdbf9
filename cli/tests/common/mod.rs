//! Running `shmring` and reading what it says.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// A private directory of named producers (`XDG_RUNTIME_DIR` of the processes
/// that use it), removed when dropped.
pub struct Runtime(pub PathBuf);

impl Runtime {
    pub fn new(tag: &str) -> Runtime {
        let p = std::env::temp_dir().join(format!("shmring-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        Runtime(p)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `shmring` with `args`, in `runtime`'s directory of named producers.
pub fn shmring_cmd(runtime: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmring"));
    c.args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `shmring` (60 s at most, then killed) and returns its exit code and stdout,
/// read as it writes (a pipe left unread would stop it).
pub fn shmring(runtime: &Path, args: &[&str]) -> (i32, String) {
    use std::io::Read;
    let mut child = shmring_cmd(runtime, args).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let out = testkit::wait_with_output(&mut child, 60, "shmring");
    let stdout = reader.join().unwrap().expect("read shmring's stdout");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(stdout).expect("shmring writes UTF-8"),
    )
}

/// `shmring ARGS --json`, parsed; panics on anything that is not its JSON.
pub fn json(runtime: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (_, out) = shmring(runtime, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The producers of a `--json` answer.
pub fn producers(v: &Value) -> &Vec<Value> {
    v["producers"].as_array().expect("a producers array")
}

/// A `gst-launch-1.0` consumer of the named producer `name` (or a socket path
/// when `name` has a slash), in `runtime`.
pub fn gst_consumer(runtime: &Path, name: &str) -> testkit::KillOnDrop {
    let target = if name.contains('/') {
        format!("socket-path={name}")
    } else {
        format!("producer-name={name}")
    };
    let child = testkit::gst_command("gst-launch-1.0")
        .env("XDG_RUNTIME_DIR", runtime)
        .args(["-q", "shmringsrc"])
        .args(target.split(' '))
        .args(["!", "fakesink", "sync=false"])
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0");
    testkit::KillOnDrop(child)
}
