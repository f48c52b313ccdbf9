//! The sandboxed half of the sandboxed-encoder example: receives video from the
//! capture process over an inherited, already connected socket (`shmringsrc
//! socket-fd=N`), locks itself down, then encodes H.264 into MP4.
//!
//! The lockdown, before any frame arrives:
//! - **Landlock** (Linux ≥ 5.13): no filesystem access except the output file; no TCP
//!   bind or connect; no signals to, nor abstract sockets of, processes outside.
//! - **seccomp**: `socket(2)` refuses every family but `AF_UNIX` (no UDP, no raw, no
//!   netlink either).
//!
//! Where the kernel lacks Landlock it says so and carries on without it.
//!
//! Usage: `sandboxed-encoder SOCKET_FD OUTPUT.mp4 [PROBE_PATH...]`: after locking
//! down, it tries to open each `PROBE_PATH` (and to open a network socket) and says
//! what happened, so a test can check that the sandbox holds.

use std::io::Write;

use gst::prelude::*;
use landlock::{
    ABI, Access, AccessFs, AccessNet, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    path_beneath_rules,
};

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "encoder: {}", line.as_ref());
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: sandboxed-encoder SOCKET_FD OUTPUT.mp4 [PROBE_PATH...]");
        std::process::exit(2);
    }
    let fd: i32 = args[1].parse().expect("SOCKET_FD is a number");
    let output = &args[2];
    if let Err(e) = run(fd, output, &args[3..]) {
        eprintln!("encoder: {e}");
        std::process::exit(1);
    }
}

fn run(fd: i32, output: &str, probes: &[String]) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstshmring::plugin_register_static().map_err(|e| e.to_string())?;
    // Everything that reads the disk happens now: plugins are loaded as the
    // pipeline is built, and the output file is created so that it can be named in
    // the sandbox's rules.
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc socket-fd={fd} ! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink name=out"
    ))
    .map_err(|e| format!("cannot build the pipeline (x264enc is in gstreamer1.0-plugins-ugly): {e}"))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("out")
        .unwrap()
        .set_property("location", output);
    std::fs::File::create(output).map_err(|e| format!("cannot create {output}: {e}"))?;

    lock_down(output)?;
    for p in probes {
        match std::fs::OpenOptions::new().read(true).open(p) {
            Ok(_) => say(format!("open {p}: ALLOWED")),
            Err(e) => say(format!("open {p}: denied ({e})")),
        }
    }
    if !probes.is_empty() {
        // SAFETY: socket(2) with constant arguments; the fd, if any, is closed below.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        if s >= 0 {
            // SAFETY: closes the fd just created, owned by nothing else.
            unsafe { libc::close(s) };
            say("network socket: ALLOWED");
        } else {
            say(format!(
                "network socket: denied ({})",
                std::io::Error::last_os_error()
            ));
        }
    }

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let bus = pipeline.bus().unwrap();
    let result = loop {
        let msg = bus.timed_pop(gst::ClockTime::NONE).unwrap();
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{} ({:?})", e.error(), e.debug()));
            }
            _ => {}
        }
    };
    let src = pipeline.iterate_sources().next().ok().flatten();
    let stats = src.map(|s| s.property::<gst::Structure>("stats"));
    pipeline.set_state(gst::State::Null).unwrap();
    result?;
    if let Some(s) = stats {
        say(format!(
            "encoded {} frames into {output} (received zero-copy: copies={})",
            s.get::<u64>("frames").unwrap_or(0),
            s.get::<u64>("copies").unwrap_or(0)
        ));
    }
    Ok(())
}

/// Landlock on the filesystem, TCP, signals and abstract sockets; seccomp on
/// `socket(2)`. Best effort on old kernels, and says which.
fn lock_down(output: &str) -> Result<(), String> {
    // Both apply to this thread and the threads it starts from now on: a thread
    // already running would stay outside.
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    if threads != 1 {
        return Err(format!(
            "{threads} threads before the lockdown: they would escape it"
        ));
    }
    let abi = ABI::V6;
    let status = landlock::Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules([output], AccessFs::from_file(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => {
            say("sandbox: Landlock enforced (files: only the output; no TCP; no signals out)")
        }
        RulesetStatus::PartiallyEnforced => {
            say("sandbox: Landlock partly enforced (this kernel knows only some of the rules)")
        }
        RulesetStatus::NotEnforced => say(
            "sandbox: this kernel has no Landlock (needs Linux >= 5.13 with landlock in lsm=): files and TCP are NOT restricted",
        ),
    }
    deny_network_sockets()?;
    say("sandbox: seccomp allows only AF_UNIX sockets");
    Ok(())
}

/// A seccomp filter: `socket(family, ...)` fails with `EACCES` unless `family` is
/// `AF_UNIX`; every other system call is allowed.
fn deny_network_sockets() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    // Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6].
    const NR: u32 = 0;
    const ARCH_OFF: u32 = 4;
    const ARG0: u32 = 16;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filter = [
        stmt(ld, ARCH_OFF),
        // Another architecture's calling convention: refuse everything.
        jump(jeq, ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, NR),
        jump(jeq, libc::SYS_socket as u32, 0, 3),
        stmt(ld, ARG0),
        jump(jeq, libc::AF_UNIX as u32, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EACCES as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only. PR_SET_SECCOMP reads
    // `prog`, which points at `filter`; both outlive the call, and the kernel copies
    // the program.
    let ok = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!("seccomp: {}", std::io::Error::last_os_error()))
    }
}
