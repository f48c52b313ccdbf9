//! Hostile consumers: they speak the protocol by hand and lie, flood, hoard, scribble
//! or try to write what they may only read.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use shmring::internals::desc::{FrameDesc, Release};
use shmring::internals::listen::{self};
use shmring::internals::wire::Msg;
use shmring::memfd::{self};
use shmring::{Receiver, RingFds, Sender, fdpass};

use super::{R, e, forever, say, soon};

pub(super) struct RawConsumer {
    sock: OwnedFd,
    frames: Receiver<FrameDesc>,
    releases: Sender<Release>,
    /// Duplicates of the two ring memfds, for scribbling.
    frame_memfd: OwnedFd,
    release_memfd: OwnedFd,
    /// A duplicate of the producer's release doorbell, for ringing it at will.
    release_bell: OwnedFd,
}

pub(super) fn recv_raw(sock: &OwnedFd) -> Result<(Msg, Vec<OwnedFd>), String> {
    let mut buf = vec![0u8; 70_000];
    let r = fdpass::recv(sock.as_fd(), &mut buf, 4, 0).map_err(e)?;
    let m = Msg::decode(&buf[..r.len], r.fds.len()).map_err(e)?;
    Ok((m, r.fds))
}

pub(super) fn raw_connect(path: &str) -> Result<RawConsumer, String> {
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
pub(super) fn await_goodbye(sock: &OwnedFd) -> R {
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
pub(super) fn scribble(fd: &OwnedFd, len: usize, offset: usize, value: u32) -> R {
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
pub(super) fn flood(path: &str, n: usize) -> R {
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

pub(super) fn evil_consumer(path: &str, act: &str) -> R {
    if let Some(r) = before_hello(path, act) {
        return r;
    }
    let mut c = raw_connect(path)?;
    match act {
        // Says goodbye with the largest reason and a code no one defined, then
        // keeps talking as if it had not.
        "goodbye" => {
            let bye = Msg::Goodbye {
                code: u32::MAX,
                reason: "g".repeat(shmring::internals::wire::MAX_REASON),
            };
            fdpass::send(c.sock.as_fd(), &bye.encode(), &[]).map_err(e)?;
            let note = Msg::Note {
                payload: b"caps:video/x-raw, format=(string)GRAY8".to_vec(),
            };
            let _ = fdpass::send(c.sock.as_fd(), &note.encode(), &[]);
            say("ready");
            return await_goodbye(&c.sock);
        }
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
        "map-writable" => return map_writable(c),
        // Gives every frame back at once, and rings the producer's release
        // doorbell flat out from another thread, until the producer goes.
        "furious-release" => return furious_release(c),
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

/// The acts of a consumer that never says a proper hello; `None` for the others.
fn before_hello(path: &str, act: &str) -> Option<R> {
    let first = match act {
        // Connected, but never says hello: waits for what the producer says.
        "silent" => None,
        // Speaks out of turn: a note where its hello should be.
        "note-first" => Some(Msg::Note {
            payload: b"caps:video/x-raw, format=(string)GRAY8".to_vec(),
        }),
        // A hello no producer can speak: versions at their extremes.
        "hello-versions" => Some(Msg::Hello {
            min_version: u32::MAX,
            max_version: u32::MAX,
        }),
        _ => return None,
    };
    let run = || {
        let sock = listen::connect(path.as_ref(), Some(soon()), None).map_err(e)?;
        if let Some(m) = first {
            fdpass::send(sock.as_fd(), &m.encode(), &[]).map_err(e)?;
        }
        say("ready");
        await_goodbye(&sock)
    };
    Some(run())
}

/// Everything a consumer might try to write its arena; then it behaves, and must
/// still be served.
fn map_writable(mut c: RawConsumer) -> R {
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
    Ok(())
}

/// Gives every frame back at once, and rings the producer's release doorbell flat
/// out from another thread, until the producer goes.
fn furious_release(c: RawConsumer) -> R {
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
    Ok(())
}

/// Tries to get write access to an arena memfd; returns (attempt, succeeded).
pub(super) fn arena_attacks(fd: &OwnedFd) -> Vec<(&'static str, bool)> {
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

/// The notes of a set, for [`notes`]: formats a consumer may flap between, or
/// extreme notes (the largest allowed, caps of too many structures, bytes that are
/// no text, no caps, caps with absurd values, caps that fix nothing).
fn note_set(set: &str) -> Result<Vec<Vec<u8>>, String> {
    let caps = |f: &str| format!("caps:video/x-raw, format=(string){f}").into_bytes();
    Ok(match set {
        "gray-rgba" => vec![caps("GRAY8"), caps("RGBA")],
        "three" => vec![caps("GRAY8"), caps("RGBA"), caps("ARGB64")],
        "extreme" => {
            let mut biggest = b"caps:video/x-raw, format=(string)GRAY8, comment=(string)".to_vec();
            biggest.resize(shmring::frame::MAX_NOTE, b'x');
            let many: Vec<String> = (0..200)
                .map(|i| format!("video/x-raw, format=(string)GRAY8, width=(int){i}"))
                .collect();
            let mut many = format!("caps:{}", many.join("; ")).into_bytes();
            many.truncate(shmring::frame::MAX_NOTE);
            vec![
                biggest,
                many,
                vec![0xff; shmring::frame::MAX_NOTE],
                b"caps:\xff\xfe\0video/x-raw".to_vec(),
                b"caps:video/x-raw, width=(int)2147483647, height=(int)2147483647, framerate=(fraction)2147483647/1".to_vec(),
                b"caps:video/x-raw(memory:DMABuf), format=(string)DMA_DRM".to_vec(),
                b"caps:ANY".to_vec(),
                b"caps:EMPTY".to_vec(),
                b"caps:".to_vec(),
                Vec::new(),
            ]
        }
        other => return Err(format!("unknown note set {other}")),
    })
}

/// A consumer of the public API only that tells the producer, again and again,
/// what it accepts: the notes of `set` in turn, one every `every_ms` (0: as fast
/// as its socket takes them), while taking every frame on time. Refused or cut
/// off, it prints `end REASON` and connects again. Prints `ready` once connected
/// the first time; runs until killed.
pub(super) fn notes(path: &str, set: &str, every_ms: u64) -> R {
    use shmring::{Consumer, ConsumerConfig, Event};
    use std::time::{Duration, Instant};
    let notes = note_set(set)?;
    let every = Duration::from_millis(every_ms);
    let mut k = 0usize;
    let mut first = true;
    loop {
        let mut c = match Consumer::connect(path, ConsumerConfig::default()) {
            Ok(c) => c,
            Err(x) => {
                say(format!("connect {x}"));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if std::mem::take(&mut first) {
            say("ready");
        }
        let mut next = Instant::now();
        let mut sent = 0u64;
        loop {
            if Instant::now() >= next {
                // A full socket (the producer reads at its own pace) is no reason
                // to stop: the next note goes when there is room.
                if c.send_note(&notes[k % notes.len()]).is_ok() {
                    k += 1;
                    sent += 1;
                }
                next = Instant::now() + every;
            }
            let wait = next.saturating_duration_since(Instant::now());
            match c.recv_timeout(wait) {
                Ok(Event::Frame(f)) => drop(f),
                Ok(Event::Side { .. }) => {}
                Ok(Event::End { reason }) => {
                    say(format!("end {reason} (after {sent} notes)"));
                    break;
                }
                Err(shmring::RecvError::Timeout) => {}
                Err(x) => {
                    say(format!("error {x} (after {sent} notes)"));
                    break;
                }
            }
        }
    }
}

/// Asks the producer what it serves `per_second` times a second (as many device
/// monitors at once would), each probe on a connection of its own; prints `ready`
/// after the first answer, then runs until killed.
pub(super) fn probes(path: &str, per_second: u64) -> R {
    use std::time::{Duration, Instant};
    let every = Duration::from_nanos(1_000_000_000 / per_second.max(1));
    let mut next = Instant::now();
    let mut answered = 0u64;
    loop {
        if shmring::Consumer::probe(path, Duration::from_secs(2)).is_ok() {
            answered += 1;
            if answered == 1 {
                say("ready");
            }
        }
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
