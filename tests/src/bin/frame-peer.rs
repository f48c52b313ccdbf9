//! The other process in the cross-process frame channel tests: an honest producer or
//! consumer, or a hostile one speaking the protocol by hand.
//!
//! Usage: `frame-peer ROLE SOCKET [ARGS]`. Prints what it did on stdout, one fact a
//! line; exits 0 when it played its role, 1 with the error on stderr otherwise.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use e2e::{LIE_FIELDS, check_frame, extremes, frame_number, meta_field, publish_seq};
use shmring::internals::arena::ProducerArena;
use shmring::internals::desc::{FrameDesc, Release};
use shmring::internals::listen::{self, SeqpacketListener};
use shmring::internals::wire::Msg;
use shmring::memfd::{self, Region, Seals};
use shmring::{Consumer, ConsumerConfig, Event, Producer, Receiver, RingFds, Sender, fdpass};

type R = Result<(), String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: frame-peer ROLE SOCKET [ARGS]");
        std::process::exit(2);
    }
    let n = |i: usize| -> u64 { args.get(i).map_or(0, |s| s.parse().expect("number")) };
    let arg = |i: usize| args.get(i).map_or("", |s| s.as_str());
    let path = args[2].as_str();
    let r = match args[1].as_str() {
        "consume" => consume(path, n(3), n(4)),
        "count" => count(path),
        "hold" => hold(path, n(3)),
        "produce" => produce(path, n(3) as usize, n(4)),
        "evil-consumer" => evil_consumer(path, arg(3)),
        "flood" => flood(path, n(3) as usize),
        "evil-producer" => evil_producer(path, arg(3)),
        "deaf-listener" => deaf_listener(path),
        "hold-lock" => hold_lock(path),
        "field-liar" => field_liar(path, arg(3)),
        other => Err(format!("unknown role {other}")),
    };
    if let Err(e) = r {
        eprintln!("frame-peer {}: {e}", args[1]);
        std::process::exit(1);
    }
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// Receives until the stream ends (or `max` frames, if not 0), checking every frame,
/// sleeping `slow_ms` after each. Prints side messages, the first frame, and totals.
fn consume(path: &str, slow_ms: u64, max: u64) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    say(format!("ready {}", c.id()));
    let (mut frames, mut drops, mut last) = (0u64, 0u64, None::<u64>);
    let outcome = loop {
        match c.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::Frame(f)) => {
                let seq = frame_number(&f);
                check_frame(&f, seq)?;
                if frames == 0 {
                    say(format!("first-frame {seq}"));
                }
                if let Some(l) = last {
                    // Frames arrive in order; with drops, the gap is what was dropped.
                    if seq != l + 1 + f.dropped_before() as u64 {
                        return Err(format!(
                            "frame {seq} after {l} with {} dropped",
                            f.dropped_before()
                        ));
                    }
                }
                last = Some(seq);
                frames += 1;
                drops += f.dropped_before() as u64;
                drop(f);
                if slow_ms > 0 {
                    std::thread::sleep(Duration::from_millis(slow_ms));
                }
                if frames == max {
                    break "max".to_string();
                }
            }
            // Long ones by their size (a test reads this output only at the end).
            Ok(Event::Side { key, payload }) if payload.len() > 64 => {
                say(format!("side {key} of {} bytes", payload.len()))
            }
            Ok(Event::Side { key, payload }) => {
                say(format!("side {key} {}", String::from_utf8_lossy(&payload)))
            }
            Ok(Event::End { reason }) => break format!("end {reason}"),
            Err(x) => break format!("error {x}"),
        }
    };
    say(format!("frames {frames} drops {drops}"));
    say(outcome);
    Ok(())
}

/// Receives `count` frames, keeps them all, says "ready" and waits to be killed.
fn hold(path: &str, count: u64) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    let mut held = Vec::new();
    while (held.len() as u64) < count {
        if let Event::Frame(f) = c.recv_timeout(Duration::from_secs(30)).map_err(e)? {
            held.push(f);
        }
    }
    say("ready");
    forever()
}

/// Serves frames of `len` bytes every `interval_ms`, numbered from 0, after a sticky
/// side message "caps LEN" (key 1). Runs until killed.
fn produce(path: &str, len: usize, interval_ms: u64) -> R {
    // Its consumers are the tests' honest ones: wait for them as long as a slow
    // machine (or valgrind) needs.
    let p = Producer::bind(path, e2e::patient()).map_err(e)?;
    p.send_side(format!("caps {len}").as_bytes(), 1)
        .map_err(e)?;
    say("ready");
    for seq in 0.. {
        publish_seq(&p, seq, len).map_err(e)?;
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Hostile consumer: speaks the protocol by hand.
// ---------------------------------------------------------------------------------

struct RawConsumer {
    sock: OwnedFd,
    frames: Receiver<FrameDesc>,
    releases: Sender<Release>,
    /// Duplicates of the two ring memfds, for scribbling.
    frame_memfd: OwnedFd,
    release_memfd: OwnedFd,
    /// A duplicate of the producer's release doorbell, for ringing it at will.
    release_bell: OwnedFd,
}

fn recv_raw(sock: &OwnedFd) -> Result<(Msg, Vec<OwnedFd>), String> {
    let mut buf = vec![0u8; 70_000];
    let r = fdpass::recv(sock.as_fd(), &mut buf, 4, 0).map_err(e)?;
    let m = Msg::decode(&buf[..r.len], r.fds.len()).map_err(e)?;
    Ok((m, r.fds))
}

fn raw_connect(path: &str) -> Result<RawConsumer, String> {
    let sock = listen::connect(path.as_ref(), Some(soon()), None).map_err(e)?;
    let hello = Msg::Hello {
        min_version: 1,
        max_version: 1,
    };
    fdpass::send(sock.as_fd(), &hello.encode(), &[]).map_err(e)?;
    let (m, fds) = recv_raw(&sock)?;
    if !matches!(m, Msg::Welcome { .. }) {
        return Err(format!("expected Welcome, got {m:?}"));
    }
    let mut fds = fds.into_iter();
    let (fm, fb, rm, rb) = (
        fds.next().unwrap(),
        fds.next().unwrap(),
        fds.next().unwrap(),
        fds.next().unwrap(),
    );
    let frame_memfd = fm.try_clone().map_err(e)?;
    let release_memfd = rm.try_clone().map_err(e)?;
    let release_bell = rb.try_clone().map_err(e)?;
    Ok(RawConsumer {
        sock,
        frames: Receiver::attach(RingFds {
            memfd: fm,
            doorbell: fb,
        })
        .map_err(e)?,
        releases: Sender::attach(RingFds {
            memfd: rm,
            doorbell: rb,
        })
        .map_err(e)?,
        frame_memfd,
        release_memfd,
        release_bell,
    })
}

/// Reads socket messages until the producer's goodbye, printing it, then exits.
fn await_goodbye(sock: &OwnedFd) -> R {
    loop {
        match recv_raw(sock) {
            Ok((Msg::Goodbye { code, reason }, _)) => {
                say(format!("goodbye {code} {reason}"));
                return Ok(());
            }
            Ok(_) => {}
            Err(x) => {
                say(format!("socket {x}"));
                return Ok(());
            }
        }
    }
}

/// Writes `value` at byte `offset` of a shared mapping of `fd` (`len` bytes).
fn scribble(fd: &OwnedFd, len: usize, offset: usize, value: u32) -> R {
    let m = memfd::Mapping::map(fd.as_fd(), len, memfd::Access::ReadWrite).map_err(e)?;
    assert!(offset + 4 <= m.len());
    // SAFETY: offset + 4 <= len of our own mapping; we are the hostile side and write
    // on purpose into memory the producer shares with us.
    unsafe { std::ptr::write_volatile(m.as_ptr().add(offset).cast::<u32>(), value) };
    std::mem::forget(m); // keep it mapped: the producer reads it later
    Ok(())
}

/// Opens connections to `path` without a word, as fast as it can, keeping up to
/// `n` of them (the oldest goes when there are more), until killed.
fn flood(path: &str, n: usize) -> R {
    let mut open = std::collections::VecDeque::new();
    let mut made = 0usize;
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    // Until killed, or orphaned (a test that failed before killing it).
    // SAFETY: as above.
    while unsafe { libc::getppid() } == parent {
        // A full backlog may refuse for a moment: keep pushing.
        if let Ok(s) = listen::connect(path.as_ref(), Some(soon()), None) {
            open.push_back(s);
            made += 1;
            if made == n {
                say("ready");
            }
        }
        if open.len() > n {
            open.pop_front();
        }
    }
    Ok(())
}

fn evil_consumer(path: &str, act: &str) -> R {
    // Connected, but never says hello: waits for what the producer says.
    if act == "silent" {
        let sock = listen::connect(path.as_ref(), Some(soon()), None).map_err(e)?;
        say("ready");
        return await_goodbye(&sock);
    }
    let mut c = raw_connect(path)?;
    match act {
        // A slot it was never given.
        "bogus-release" => {
            c.releases.send(&Release { arena: 0, slot: 5 }).map_err(e)?;
        }
        // Says hello, gets its welcome, then reads neither its socket nor its ring.
        "deaf" => {
            say("ready");
            let _keep = c;
            forever();
        }
        // A slot it got, released twice.
        "double-release" => {
            let d = c.frames.recv().map_err(e)?;
            let r = Release::from(d.slot_ref());
            c.releases.send(&r).map_err(e)?;
            c.releases.send(&r).map_err(e)?;
        }
        // Takes frames, never gives one back (the receiving thread keeps going
        // until the producer cuts it off).
        "never-release" => {
            let mut frames = c.frames;
            std::thread::spawn(move || while frames.recv().is_ok() {});
            say("ready");
            return await_goodbye(&c.sock);
        }
        // Garbage in the indices it owns: the frame ring's tail and the release
        // ring's head.
        "scribble" => {
            let flen = memfd::size(c.frame_memfd.as_fd()).map_err(e)? as usize;
            let rlen = memfd::size(c.release_memfd.as_fd()).map_err(e)? as usize;
            scribble(&c.frame_memfd, flen, 256, 0xdead_beef)?;
            scribble(&c.release_memfd, rlen, 128, 0x7777_7777)?;
        }
        // Everything a consumer might try to write its arena.
        "map-writable" => {
            let fd = loop {
                if let (Msg::Arena { .. }, mut fds) = recv_raw(&c.sock)? {
                    break fds.pop().unwrap();
                }
            };
            let mut broke_in = false;
            for (what, ok) in arena_attacks(&fd) {
                say(format!(
                    "{what}: {}",
                    if ok { "ALLOWED" } else { "refused" }
                ));
                broke_in |= ok;
            }
            if broke_in {
                return Err("an arena attack succeeded".into());
            }
            say("ready");
            // Behaves from now on: it must still be served.
            while let Ok(d) = c.frames.recv() {
                c.releases.send(&Release::from(d.slot_ref())).map_err(e)?;
            }
            return Ok(());
        }
        // Gives every frame back at once, and rings the producer's release
        // doorbell flat out from another thread, until the producer goes.
        "furious-release" => {
            let bell = c.release_bell;
            std::thread::spawn(move || {
                loop {
                    // Saturated (EAGAIN) or not, ring again.
                    // SAFETY: writes 8 bytes from a live local to an fd we own.
                    unsafe { libc::write(bell.as_raw_fd(), [1u64].as_ptr().cast(), 8) };
                }
            });
            let released = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (mut frames, mut releases, n) = (c.frames, c.releases, released.clone());
            std::thread::spawn(move || {
                while let Ok(d) = frames.recv() {
                    if releases.send(&Release::from(d.slot_ref())).is_err() {
                        break;
                    }
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
            say("ready");
            await_goodbye(&c.sock)?;
            say(format!(
                "released {}",
                released.load(std::sync::atomic::Ordering::SeqCst)
            ));
            return Ok(());
        }
        // A datagram three times the protocol's largest message.
        "huge-msg" => {
            let big = vec![0x5a_u8; 3 * shmring::internals::wire::MAX_MESSAGE];
            fdpass::send(c.sock.as_fd(), &big, &[]).map_err(e)?;
        }
        // A message the protocol does not have.
        "garbage" => {
            fdpass::send(c.sock.as_fd(), b"SRFC\x63\x00\x00\x00\x00\x00\x00\x00", &[])
                .map_err(e)?;
        }
        other => return Err(format!("unknown act {other}")),
    }
    say("ready");
    await_goodbye(&c.sock)
}

/// Tries to get write access to an arena memfd; returns (attempt, succeeded).
fn arena_attacks(fd: &OwnedFd) -> Vec<(&'static str, bool)> {
    let raw = fd.as_raw_fd();
    let len = memfd::size(fd.as_fd()).unwrap_or(4096) as usize;
    let mut out = Vec::new();
    // SAFETY: mmap/munmap of a region we get back from the kernel only.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            raw,
            0,
        );
        out.push(("mmap read-write shared", p != libc::MAP_FAILED));
        if p != libc::MAP_FAILED {
            libc::munmap(p, len);
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            raw,
            0,
        );
        if p != libc::MAP_FAILED {
            let r = libc::mprotect(p, len, libc::PROT_READ | libc::PROT_WRITE);
            out.push(("mprotect a read-only mapping writable", r == 0));
            libc::munmap(p, len);
        }
    }
    let b = [0xffu8; 16];
    // SAFETY: pwrite from a live buffer.
    let w = unsafe { libc::pwrite(raw, b.as_ptr().cast(), b.len(), 0) };
    out.push(("pwrite", w >= 0));
    // SAFETY: plain syscalls on an fd we own.
    unsafe {
        out.push(("ftruncate", libc::ftruncate(raw, 0) == 0));
        out.push((
            "fallocate punch hole",
            libc::fallocate(
                raw,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                4096,
            ) == 0,
        ));
        out.push((
            "add a seal",
            libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) == 0,
        ));
    }
    // Through /proc: a new open of the same file, read-write.
    let proc_path = format!("/proc/self/fd/{raw}");
    let reopened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&proc_path);
    let reopened_writable = match reopened {
        Ok(f) => {
            use std::os::unix::fs::FileExt;
            f.write_at(&b, 0).is_ok()
        }
        Err(_) => false,
    };
    out.push(("reopen via /proc and write", reopened_writable));
    out
}

// ---------------------------------------------------------------------------------
// Hostile producer.
// ---------------------------------------------------------------------------------

fn evil_producer(path: &str, act: &str) -> R {
    let l = SeqpacketListener::bind(path.as_ref(), 0o600).map_err(e)?;
    say("ready");
    let sock = l.accept().map_err(e)?;
    let _hello = recv_raw(&sock)?;
    let (mut tx, ffds) = Sender::<FrameDesc>::create(64).map_err(e)?;
    let (_rx, rfds) = Receiver::<Release>::create(64).map_err(e)?;
    let welcome = Msg::Welcome {
        version: 1,
        consumer_id: 1,
        frame_ring: 64,
        release_ring: 64,
        max_held: 4,
    }
    .encode();
    let all = [
        ffds.memfd.as_fd(),
        ffds.doorbell.as_fd(),
        rfds.memfd.as_fd(),
        rfds.doorbell.as_fd(),
    ];
    let send = |bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]| {
        fdpass::send(sock.as_fd(), bytes, fds).map_err(e)
    };
    if act == "bad-welcome-fds" {
        send(&welcome, &all[..2])?;
        say("done");
        forever();
    }
    send(&welcome, &all)?;
    let arena_msg = |slot_size: u32, slots: u32| {
        Msg::Arena {
            arena_id: 0,
            slot_size,
            slots,
        }
        .encode()
    };
    let good_arena = ProducerArena::create(4096, 4).map_err(e)?;
    // `msgs`: socket messages sent before the frame (the arena announcement).
    let desc = |arena: u32, slot: u32, offset: u32, len: u32, seq: u64, msgs: u64| {
        let mut d: FrameDesc = shmring::bytemuck::Zeroable::zeroed();
        (d.arena, d.slot, d.offset, d.len, d.seq, d.msgs) = (arena, slot, offset, len, seq, msgs);
        d
    };
    match act {
        "unsealed-arena" => {
            let fd = memfd::create(c"evil", 4 * 4096).map_err(e)?;
            send(&arena_msg(4096, 4), &[fd.as_fd()])?;
        }
        "writable-arena" => {
            // Fixed size, but no F_SEAL_FUTURE_WRITE: the producer could hand
            // consumers a writable view of frames others read.
            let r = Region::create(c"evil", 4 * 4096, Seals::NONE).map_err(e)?;
            send(&arena_msg(4096, 4), &[r.fd()])?;
        }
        "undersized-arena" => {
            let r = Region::create(c"evil", 4096, Seals::FUTURE_WRITE).map_err(e)?;
            send(&arena_msg(4096, 4), &[r.fd()])?;
        }
        "desc-out-of-range" => {
            send(&arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 9, 0, 100, 0, 1)).map_err(e)?;
        }
        "desc-overflow" => {
            send(&arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 3, 4000, 200, 0, 1)).map_err(e)?;
        }
        "desc-unknown-arena" => {
            tx.send(&desc(7, 0, 0, 10, 0, 0)).map_err(e)?;
        }
        "desc-wrong-seq" => {
            send(&arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 0, 0, 10, 5, 1)).map_err(e)?;
        }
        "desc-msgs-lie" => {
            send(&arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 0, 0, 10, 0, 3)).map_err(e)?;
        }
        "ring-head" => {
            let len = memfd::size(ffds.memfd.as_fd()).map_err(e)? as usize;
            scribble(&ffds.memfd, len, 128, 1_000_000)?;
            // Garbage alone rings no bell: say something so the consumer looks.
            let m = Msg::Side {
                before_frame: 0,
                sticky_key: 0,
                payload: b"look".to_vec(),
            };
            send(&m.encode(), &[])?;
        }
        "oversized-msg" => {
            let mut big = Msg::DropArena { arena_id: 0 }.encode();
            big.resize(100 * 1024, 0);
            send(&big, &[])?;
        }
        "malformed-msg" => send(b"SRFC\xff\xff\x00\x00\x00\x00\x00\x00", &[])?,
        "wrong-fds" => send(&arena_msg(4096, 4), &[])?,
        "many-fds" => {
            let m = Msg::DropArena { arena_id: 0 }.encode();
            send(&m, &[good_arena.fd(), good_arena.fd(), good_arena.fd()])?;
        }
        "side-flood" => {
            for _ in 0..1100 {
                let m = Msg::Side {
                    before_frame: 10,
                    sticky_key: 0,
                    payload: vec![1; 8],
                };
                send(&m.encode(), &[])?;
            }
        }
        "arena-over-limit" => {
            // 3 GiB claimed (the fd is refused before it is even looked at).
            send(&arena_msg(1 << 20, 3072), &[good_arena.fd()])?;
        }
        "no-release-drain" => {
            // Frames, forever, and never a release taken back.
            send(&arena_msg(4096, 4), &[good_arena.fd()])?;
            for seq in 0..200_000 {
                if tx.send(&desc(0, 0, 0, 10, seq, 1)).is_err() {
                    break;
                }
            }
        }
        "vanish-mid-message" => {
            // A side message for a frame that never comes, then gone without a
            // goodbye (exit closes the socket and the rings' doorbells).
            let m = Msg::Side {
                before_frame: 5,
                sticky_key: 0,
                payload: b"for frame 5".to_vec(),
            };
            send(&m.encode(), &[])?;
            say("done");
            std::process::exit(0);
        }
        other => return Err(format!("unknown act {other}")),
    }
    say("done");
    forever()
}

/// A connect deadline far beyond what a listener at work needs.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(30)
}

/// Listens on `path` and never accepts: it fills its own backlog with connections of
/// its own, so that anyone else's `connect(2)` finds it full.
fn deaf_listener(path: &str) -> R {
    use std::os::fd::FromRawFd;
    let l = SeqpacketListener::bind(path.as_ref(), 0o600).map_err(e)?;
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(path.as_bytes()) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let mut own = Vec::new();
    loop {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(e(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `a` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) }
            != 0
        {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EAGAIN) {
                break; // the backlog is full
            }
            return Err(e(err));
        }
        own.push(fd);
    }
    say(format!("ready {}", own.len()));
    let _keep = (l, own);
    forever()
}

/// Holds the `flock` a producer binding `path` takes on `.NAME.lock` beside it.
fn hold_lock(path: &str) -> R {
    let p = std::path::Path::new(path);
    let lock = p.with_file_name(format!(
        ".{}.lock",
        p.file_name().unwrap().to_string_lossy()
    ));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(e)?;
    // SAFETY: flock on our own open file.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(e(std::io::Error::last_os_error()));
    }
    say("ready");
    let _keep = f;
    forever()
}

/// For each of [`extremes`] of `field` (one of [`LIE_FIELDS`]), serves one consumer
/// a 320x240 I420 stream of one frame and a goodbye, with that field replaced by the
/// value, then waits for the consumer to hang up before the next.
fn field_liar(path: &str, field: &str) -> R {
    gst::init().map_err(e)?;
    use gstshmring::meta::{BufferMeta, NONE, Side, VideoLayout, key};
    // `honest`: the control, two connections with no lie at all.
    let (bits, honest) = match LIE_FIELDS.iter().find(|f| f.0 == field) {
        Some(&(_, bits, honest)) => (bits, honest),
        None if field == "honest" => (1, 0),
        None => return Err(format!("unknown field {field}")),
    };
    let l = SeqpacketListener::bind(path.as_ref(), 0o600).map_err(e)?;
    say("ready");
    for v in extremes(bits, honest) {
        let sock = l.accept().map_err(e)?;
        let pick = |name: &str, honest: u64| if name == field { v } else { honest };
        let _hello = recv_raw(&sock)?;
        let (mut tx, ffds) = Sender::<FrameDesc>::create(64).map_err(e)?;
        let (_rx, rfds) = Receiver::<Release>::create(64).map_err(e)?;
        let welcome = Msg::Welcome {
            version: pick("welcome.version", 1) as u32,
            consumer_id: pick("welcome.consumer_id", 1) as u32,
            frame_ring: pick("welcome.frame_ring", 64) as u32,
            release_ring: pick("welcome.release_ring", 64) as u32,
            max_held: pick("welcome.max_held", 4) as u32,
        };
        let fds = [
            ffds.memfd.as_fd(),
            ffds.doorbell.as_fd(),
            rfds.memfd.as_fd(),
            rfds.doorbell.as_fd(),
        ];
        // A consumer that refused an earlier lie may be gone: what fails to send
        // is its business, never this process's.
        let send = |m: &Msg, fds: &[std::os::fd::BorrowedFd<'_>]| {
            let _ = fdpass::send_flags(sock.as_fd(), &m.encode(), fds, libc::MSG_DONTWAIT);
        };
        send(&welcome, &fds);
        let arena = ProducerArena::create(115_200, 4).map_err(e)?;
        let announce = Msg::Arena {
            arena_id: pick("arena.arena_id", 0) as u32,
            slot_size: pick("arena.slot_size", arena.slot_size() as u64) as u32,
            slots: pick("arena.slots", 4) as u32,
        };
        send(&announce, &[arena.fd()]);
        let sides = [
            (
                key::STREAM_START,
                Side::StreamStart {
                    stream_id: "liar".into(),
                },
            ),
            (
                key::CAPS,
                Side::Caps(
                    "video/x-raw,format=I420,width=320,height=240,framerate=30/1"
                        .parse()
                        .map_err(e)?,
                ),
            ),
        ];
        for (k, (sticky, side)) in sides.iter().enumerate() {
            let m = Msg::Side {
                before_frame: if k == 0 {
                    pick("side.before_frame", 0)
                } else {
                    0
                },
                sticky_key: if k == 0 {
                    pick("side.sticky_key", *sticky as u64) as u32
                } else {
                    *sticky
                },
                payload: side.encode(),
            };
            send(&m, &[]);
        }
        // SAFETY: slot 0 of our own arena, 115200 bytes inside its 118784.
        unsafe { std::ptr::write_bytes(arena.slot_ptr(0), 0x80, 115_200) };
        let mut layout = VideoLayout {
            n_planes: 3,
            ..Default::default()
        };
        (layout.offsets[..3]).copy_from_slice(&[0, 76_800, 96_000]);
        (layout.strides[..3]).copy_from_slice(&[320, 160, 160]);
        let mut meta = BufferMeta {
            pts: 0,
            dts: NONE,
            duration: 33_333_333,
            offset: NONE,
            offset_end: NONE,
            base_time: NONE,
            flags: 0,
            video: Some(layout),
        }
        .encode()
        .to_vec();
        if let Some((at, width)) = meta_field(field) {
            meta[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        let mut d: FrameDesc = shmring::bytemuck::Zeroable::zeroed();
        d.arena = pick("desc.arena", 0) as u32;
        d.slot = pick("desc.slot", 0) as u32;
        d.offset = pick("desc.offset", 0) as u32;
        d.len = pick("desc.len", 115_200) as u32;
        d.seq = pick("desc.seq", 0);
        d.msgs = pick("desc.msgs", 3);
        d.meta_len = pick("desc.meta_len", meta.len() as u64) as u16;
        d.dropped = pick("desc.dropped", 0) as u32;
        d.meta[..meta.len()].copy_from_slice(&meta);
        let _ = tx.try_send(&d);
        if field == "drop_arena.arena_id" {
            send(&Msg::DropArena { arena_id: v as u32 }, &[]);
        }
        let bye = Msg::Goodbye {
            code: pick("goodbye.code", 0) as u32,
            reason: "done".into(),
        };
        send(&bye, &[]);
        // Until the consumer hangs up (at most 30 s).
        let mut p = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            // SAFETY: poll on one pollfd we own.
            unsafe { libc::poll(p.as_mut_ptr(), 1, 100) };
            if p[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                break;
            }
            // Drain what the consumer says (its goodbye), so that a hang-up shows.
            let mut buf = [0u8; 512];
            // SAFETY: reads into our own buffer without blocking.
            unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
        }
    }
    say("done");
    Ok(())
}

/// Receives until the stream ends, whatever the frames hold (a GStreamer stream);
/// prints the totals and the longest gap between two frames.
fn count(path: &str) -> R {
    let mut c = Consumer::connect(path, ConsumerConfig::default()).map_err(e)?;
    say(format!("ready {}", c.id()));
    let (mut frames, mut drops) = (0u64, 0u64);
    let (mut last, mut gap) = (None::<std::time::Instant>, Duration::ZERO);
    let outcome = loop {
        match c.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::Frame(f)) => {
                let now = std::time::Instant::now();
                if let Some(l) = last.replace(now) {
                    gap = gap.max(now - l);
                }
                frames += 1;
                drops += f.dropped_before() as u64;
            }
            Ok(Event::Side { .. }) => {}
            Ok(Event::End { reason }) => break format!("end {reason}"),
            Err(x) => break format!("error {x}"),
        }
    };
    say(format!(
        "frames {frames} drops {drops} gap-ms {}",
        gap.as_millis()
    ));
    say(outcome);
    Ok(())
}
