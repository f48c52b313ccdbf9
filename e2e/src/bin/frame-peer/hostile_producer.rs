//! Hostile producers: they speak the protocol by hand and lie (about seals, sizes,
//! descriptors, every numeric field), vanish, never accept, or keep the path's lock.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use e2e::{LIE_FIELDS, extremes, meta_field};
use shmring::internals::arena::ProducerArena;
use shmring::internals::desc::{FrameDesc, Release};
use shmring::internals::listen::SeqpacketListener;
use shmring::internals::wire::Msg;
use shmring::memfd::{self, Region, Seals};
use shmring::{Receiver, Sender, fdpass};

use super::hostile_consumer::{recv_raw, scribble};
use super::{R, e, forever, say};

pub(super) fn evil_producer(path: &str, act: &str) -> R {
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
    let send = |bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]| send(&sock, bytes, fds);
    if act == "bad-welcome-fds" {
        send(&welcome, &all[..2])?;
        say("done");
        forever();
    }
    send(&welcome, &all)?;
    let good_arena = ProducerArena::create(4096, 4).map_err(e)?;
    let handled = arena_lie(act, &sock, &mut tx, &good_arena)?
        || message_lie(act, &sock, &mut tx, &ffds.memfd, &good_arena)?;
    if !handled {
        return Err(format!("unknown act {act}"));
    }
    say("done");
    forever()
}

fn send(sock: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) -> R {
    fdpass::send(sock.as_fd(), bytes, fds).map_err(e)
}

fn arena_msg(slot_size: u32, slots: u32) -> Vec<u8> {
    Msg::Arena {
        arena_id: 0,
        slot_size,
        slots,
    }
    .encode()
}

/// A descriptor; `msgs`: socket messages sent before the frame (the arena
/// announcement).
fn desc(arena: u32, slot: u32, offset: u32, len: u32, seq: u64, msgs: u64) -> FrameDesc {
    let mut d: FrameDesc = shmring::bytemuck::Zeroable::zeroed();
    (d.arena, d.slot, d.offset, d.len, d.seq, d.msgs) = (arena, slot, offset, len, seq, msgs);
    d
}

/// Lies about arenas and descriptors; `false` for another act.
fn arena_lie(
    act: &str,
    sock: &OwnedFd,
    tx: &mut Sender<FrameDesc>,
    good_arena: &ProducerArena,
) -> Result<bool, String> {
    match act {
        "unsealed-arena" => {
            let fd = memfd::create(c"evil", 4 * 4096).map_err(e)?;
            send(sock, &arena_msg(4096, 4), &[fd.as_fd()])?;
        }
        "writable-arena" => {
            // Fixed size, but no F_SEAL_FUTURE_WRITE: the producer could hand
            // consumers a writable view of frames others read.
            let r = Region::create(c"evil", 4 * 4096, Seals::NONE).map_err(e)?;
            send(sock, &arena_msg(4096, 4), &[r.fd()])?;
        }
        "undersized-arena" => {
            let r = Region::create(c"evil", 4096, Seals::FUTURE_WRITE).map_err(e)?;
            send(sock, &arena_msg(4096, 4), &[r.fd()])?;
        }
        "desc-out-of-range" => {
            send(sock, &arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 9, 0, 100, 0, 1)).map_err(e)?;
        }
        "desc-overflow" => {
            send(sock, &arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 3, 4000, 200, 0, 1)).map_err(e)?;
        }
        "desc-unknown-arena" => {
            tx.send(&desc(7, 0, 0, 10, 0, 0)).map_err(e)?;
        }
        "desc-wrong-seq" => {
            send(sock, &arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 0, 0, 10, 5, 1)).map_err(e)?;
        }
        "desc-msgs-lie" => {
            send(sock, &arena_msg(4096, 4), &[good_arena.fd()])?;
            tx.send(&desc(0, 0, 0, 10, 0, 3)).map_err(e)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Lies in messages and rings; `false` for another act.
fn message_lie(
    act: &str,
    sock: &OwnedFd,
    tx: &mut Sender<FrameDesc>,
    frame_memfd: &OwnedFd,
    good_arena: &ProducerArena,
) -> Result<bool, String> {
    match act {
        "ring-head" => {
            let len = memfd::size(frame_memfd.as_fd()).map_err(e)? as usize;
            scribble(frame_memfd, len, 128, 1_000_000)?;
            // Garbage alone rings no bell: say something so the consumer looks.
            let m = Msg::Side {
                before_frame: 0,
                sticky_key: 0,
                payload: b"look".to_vec(),
            };
            send(sock, &m.encode(), &[])?;
        }
        "oversized-msg" => {
            let mut big = Msg::DropArena { arena_id: 0 }.encode();
            big.resize(100 * 1024, 0);
            send(sock, &big, &[])?;
        }
        "malformed-msg" => send(sock, b"SRFC\xff\xff\x00\x00\x00\x00\x00\x00", &[])?,
        "wrong-fds" => send(sock, &arena_msg(4096, 4), &[])?,
        "many-fds" => {
            let m = Msg::DropArena { arena_id: 0 }.encode();
            send(
                sock,
                &m,
                &[good_arena.fd(), good_arena.fd(), good_arena.fd()],
            )?;
        }
        "side-flood" => {
            for _ in 0..1100 {
                let m = Msg::Side {
                    before_frame: 10,
                    sticky_key: 0,
                    payload: vec![1; 8],
                };
                send(sock, &m.encode(), &[])?;
            }
        }
        "arena-over-limit" => {
            // 3 GiB claimed (the fd is refused before it is even looked at).
            send(sock, &arena_msg(1 << 20, 3072), &[good_arena.fd()])?;
        }
        "no-release-drain" => {
            // Frames, forever, and never a release taken back.
            send(sock, &arena_msg(4096, 4), &[good_arena.fd()])?;
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
            send(sock, &m.encode(), &[])?;
            say("done");
            std::process::exit(0);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Listens on `path` and never accepts: it fills its own backlog with connections of
/// its own, so that anyone else's `connect(2)` finds it full.
pub(super) fn deaf_listener(path: &str) -> R {
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
pub(super) fn hold_lock(path: &str) -> R {
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
pub(super) fn field_liar(path: &str, field: &str) -> R {
    gst::init().map_err(e)?;
    use gstshmring::codec::{Side, key};
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
        let d = lying_frame(field, v, &pick);
        let _ = tx.try_send(&d);
        if field == "drop_arena.arena_id" {
            send(&Msg::DropArena { arena_id: v as u32 }, &[]);
        }
        let bye = Msg::Goodbye {
            code: pick("goodbye.code", 0) as u32,
            reason: "done".into(),
        };
        send(&bye, &[]);
        await_hangup(&sock);
    }
    say("done");
    Ok(())
}

/// The one frame of a field liar's stream: 320x240 I420 in slot 0, with `field`
/// (a metadata or descriptor field) replaced by `v`.
fn lying_frame(field: &str, v: u64, pick: &dyn Fn(&str, u64) -> u64) -> FrameDesc {
    use gstshmring::codec::{BufferMeta, NONE, VideoLayout};
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
        list_continues: false,
        metas_tag: 0,
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
    d
}

/// Until the consumer hangs up (at most 30 s).
fn await_hangup(sock: &OwnedFd) {
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

/// Answers every connection (a probe, as the device provider and `shmring` send)
/// with `act`: `junk-caps` a description that is no caps, `any-caps` the caps ANY,
/// `welcome` a welcome without its fds, `silent` nothing at all (held open), `huge`
/// a description over the protocol's limit; after an honest description,
/// `stats-garbage` a `Stats` of a version nobody reads, `stats-huge` counters at
/// their largest and the most consumers a `Stats` lists, `stats-silent` nothing
/// more (held open), `stats-flood` datagrams until the prober leaves. Forever.
pub(super) fn probe_liar(path: &str, act: &str) -> R {
    let l = SeqpacketListener::bind(path.as_ref(), 0o600).map_err(e)?;
    say("ready");
    let mut held = Vec::new();
    loop {
        let sock = l.accept().map_err(e)?;
        let _probe = recv_raw(&sock)?;
        if let Some(rest) = act.strip_prefix("stats-") {
            let desc = Msg::Description {
                payload: b"video/x-raw, width=(int)64".to_vec(),
            };
            let _ = fdpass::send(sock.as_fd(), &desc.encode(), &[]);
            if let Some(sock) = stats_lie(sock, rest)? {
                held.push(sock);
            }
            continue;
        }
        let reply = match act {
            "junk-caps" => Msg::Description {
                payload: b"video/x-raw, width=(int)((((".to_vec(),
            }
            .encode(),
            "any-caps" => Msg::Description {
                payload: b"ANY".to_vec(),
            }
            .encode(),
            "welcome" => Msg::Welcome {
                version: 1,
                consumer_id: 1,
                frame_ring: 64,
                release_ring: 64,
                max_held: 4,
            }
            .encode(),
            "huge" => {
                let mut m = Msg::Description {
                    payload: vec![b'v'; 1024],
                }
                .encode();
                m[12..16].copy_from_slice(&(1u32 << 20).to_le_bytes());
                m
            }
            "silent" => {
                held.push(sock);
                continue;
            }
            other => return Err(format!("unknown probe lie {other}")),
        };
        let _ = fdpass::send(sock.as_fd(), &reply, &[]);
    }
}

/// The `Stats` lie `act` on a probe's connection (see [`probe_liar`]); the
/// connection back when it is to be held open.
fn stats_lie(sock: OwnedFd, act: &str) -> Result<Option<OwnedFd>, String> {
    use shmring::frame::{ConsumerStats, ProducerStats};
    let honest = |consumers: usize| {
        let c = ConsumerStats {
            id: u32::MAX,
            pid: i32::MAX,
            uid: u32::MAX,
            frames: u64::MAX,
            bytes: u64::MAX,
            drops: u64::MAX,
            held: usize::MAX,
            queued: usize::MAX,
            pending: u64::MAX,
            policy: shmring::Policy::Drop,
        };
        ProducerStats {
            frames: u64::MAX,
            bytes: u64::MAX,
            consumers: vec![c; consumers],
            joined: u64::MAX,
            slot_size: usize::MAX,
            slots: usize::MAX,
            free_slots: usize::MAX,
            block_timeout: Duration::from_micros(u64::MAX - 1),
            ..Default::default()
        }
    };
    match act {
        "garbage" => {
            let mut m = Msg::Stats {
                stats: Box::new(honest(1)),
            }
            .encode();
            m[12..16].copy_from_slice(&7u32.to_le_bytes());
            let _ = fdpass::send(sock.as_fd(), &m, &[]);
            Ok(None)
        }
        "huge" => {
            let max = shmring::frame::MAX_STATS_CONSUMERS;
            let m = Msg::Stats {
                stats: Box::new(honest(max)),
            };
            let _ = fdpass::send(sock.as_fd(), &m.encode(), &[]);
            Ok(None)
        }
        "silent" => Ok(Some(sock)),
        "flood" => {
            let junk = vec![0xa5u8; 60_000];
            std::thread::spawn(
                move || {
                    while fdpass::send(sock.as_fd(), &junk, &[]).is_ok() {}
                },
            );
            Ok(None)
        }
        other => Err(format!("unknown stats lie {other}")),
    }
}
