//! A producer process that lies about what `shmringsrc` hands on to GStreamer (plane
//! strides and offsets, frame size, caps features, buffer flags, audio frames,
//! latency), against a real `gst-launch-1.0 shmringsrc ! videoconvert ! fakesink`
//! process: the consumer ends with an error naming the lie within its deadline,
//! never a crash, and never reads past the frame. And a listener that never accepts:
//! a source waiting for a producer there still stops when asked.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, gst_plugin_dir, read_line, socket_path, spawn};

const PEER: &str = env!("CARGO_BIN_EXE_gst-peer");

/// The consumer pipeline `tail` after `shmringsrc socket-path=PATH extra`.
fn consumer(path: &str, extra: &str, tail: &str) -> Child {
    let dir = gst_plugin_dir();
    Command::new("gst-launch-1.0")
        .args(format!("shmringsrc socket-path={path} {extra} ! {tail}").split_whitespace())
        .env("GST_PLUGIN_PATH", &dir)
        .env("GST_REGISTRY", dir.join("gst-registry.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) installed")
}

/// Waits at most `limit` for `child`; its status and everything it printed, or None
/// if it was still running (then it is killed).
fn outcome(mut child: Child, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Some((status, text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the liar `act` and a consumer; returns the consumer's exit and output.
fn against(act: &str, extra: &str, tail: &str) -> (std::process::ExitStatus, String) {
    let path = socket_path(act);
    let ps = path.to_str().unwrap();
    let mut liar = KillOnDrop(spawn(PEER, &["lie", act, ps]));
    assert_eq!(read_line(&mut liar.0), "ready", "liar {act}");
    let c = consumer(ps, extra, tail);
    // Its deadline: the error within seconds of the first frame, not a hang (60 s
    // leaves room for valgrind).
    outcome(c, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{act}: the consumer still ran after 60 s"))
}

/// The consumer stopped with an error that names `lie`, and was not killed by a
/// signal (SIGSEGV, SIGBUS inside GStreamer).
fn assert_refused(act: &str, extra: &str, tail: &str, lie: &str) {
    let (status, out) = against(act, extra, tail);
    assert_eq!(
        status.signal(),
        None,
        "{act}: the consumer died of a signal\n{out}"
    );
    assert_eq!(status.code(), Some(1), "{act}: {out}");
    assert!(
        out.contains(lie),
        "{act}: the error does not name {lie:?}:\n{out}"
    );
}

const CONVERT: &str = "videoconvert ! video/x-raw,format=RGBA ! fakesink";

#[test]
fn lying_video_layouts_end_the_stream_with_an_error_naming_the_lie() {
    for (act, lie) in [
        ("stride-huge", "plane 0 (240 rows of stride 1073741824"),
        (
            "stride-negative",
            "plane 0 stride -67108864 is less than its 320-byte rows",
        ),
        (
            "stride-double",
            "plane 0 (240 rows of stride 640 from offset 0) ends past the 115200-byte buffer",
        ),
        (
            "plane-past-end",
            "plane 0 (240 rows of stride 320 from offset 114880) ends past",
        ),
        (
            "short-frame",
            "video buffer of 1000 bytes is smaller than the 115200 bytes",
        ),
        ("planes-count", "video layout has 2 planes, caps I420 say 3"),
        (
            "stride-partial-pixel",
            "plane 0 stride 1279 is less than its 1280-byte rows (320x240 RGBx)",
        ),
    ] {
        assert_refused(act, "", CONVERT, lie);
    }
    // Copying does not make a lying layout safe: the copy has the same layout.
    assert_refused(
        "stride-double",
        "copy=true",
        CONVERT,
        "ends past the 115200-byte buffer",
    );
}

#[test]
fn caps_features_flags_audio_frames_latency_and_segments_that_lie_are_refused() {
    for (act, tail, lie) in [
        (
            "dmabuf-caps",
            "fakesink",
            "have features (memory:DMABuf) other than system memory",
        ),
        (
            "glmemory-caps",
            "fakesink",
            "have features (memory:GLMemory) other than system memory",
        ),
        (
            "lock-flags",
            CONVERT,
            "buffer flags 0x3 include 0x3, which no buffer carries across",
        ),
        (
            "audio-partial",
            "audioconvert ! fakesink",
            "audio buffer of 401 bytes is not a whole number of 4-byte frames",
        ),
        (
            "latency-huge",
            "fakesink",
            "latency 24:00:00.000000000 is more than the 0:01:00.000000000 a consumer accepts",
        ),
        (
            "segment-rate-zero",
            "fakesink",
            "segment rate 0 is not valid",
        ),
        (
            "segment-stop-before-start",
            "fakesink",
            "segment: stop 1 is before start 10000000000",
        ),
    ] {
        assert_refused(act, "", tail, lie);
    }
}

#[test]
fn metas_and_tocs_that_lie_are_refused_by_name() {
    for (act, lie) in [
        (
            "meta-crop-outside",
            "bad metas: crop 100x100 at 300,200 is outside the 320x240 frame",
        ),
        (
            "meta-unknown-kind",
            "bad metas: unknown meta record kind 99",
        ),
        ("meta-caption-empty", "bad metas: caption meta without data"),
        (
            "meta-time-code-invalid",
            "bad metas: time code meta time 25:00:00:00 at 30/1 is not valid",
        ),
        (
            "meta-piece-overflow",
            "bad meta piece: meta list: 20 bytes in pieces, more than 10",
        ),
        (
            "toc-too-deep",
            "bad side message: TOC: 9 levels of entries, more than 8",
        ),
    ] {
        assert_refused(act, "", CONVERT, lie);
    }
}

#[test]
fn a_meta_list_over_the_consumers_limit_or_a_clashing_custom_meta_is_skipped_and_the_stream_goes_on()
 {
    // 64 MiB claimed for every frame's metas, or a custom meta named as an existing
    // type: the consumer neither ends nor keeps the pieces (nor registers the
    // name); the frames keep coming.
    for act in ["meta-too-large", "meta-custom-clash"] {
        streams_on_despite(act, "", "fakesink silent=false -v");
    }
}

#[test]
fn frames_that_end_where_the_arena_ends_are_converted_though_gstreamer_reads_past_them() {
    // UYVP one pixel wide: GStreamer's own layout gives rows of 4 bytes, its
    // unpacker reads 5, so converting the last row reads a byte past the frame; the
    // frames fill their slots and the last slot ends where the arena does. The
    // consumer's read pad after the arena takes that read, in place and in copies.
    // Whether the page after an arena would have been mapped anyway is up to the
    // kernel, so the consumer's address space is looked at too: each arena is
    // followed by its pad, readable and belonging to no file.
    for extra in ["", "copy=true"] {
        streams_on_despite_checking(
            "uyvp-narrow",
            extra,
            "videoconvert ! video/x-raw,format=RGBA ! fakesink silent=false -v",
            &|pid| {
                let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
                let lines: Vec<&str> = maps.lines().collect();
                let range = |l: &str| {
                    let (a, b) = l
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .split_once('-')
                        .unwrap();
                    let hex = |x| u64::from_str_radix(x, 16).unwrap();
                    (hex(a), hex(b))
                };
                let mut arenas = 0;
                for (i, l) in lines.iter().enumerate() {
                    if !l.contains("/memfd:shmring-arena") {
                        continue;
                    }
                    arenas += 1;
                    let next = lines.get(i + 1).expect("a mapping after the arena");
                    let fields: Vec<&str> = next.split_whitespace().collect();
                    assert_eq!(range(next).0, range(l).1, "{l}\n{next}");
                    assert_eq!((fields[1], fields[4]), ("r--p", "0"), "{l}\n{next}");
                    let pad = range(next).1 - range(next).0;
                    assert!(pad >= shmring::frame::READ_PAD as u64, "{l}\n{next}");
                }
                assert!(arenas > 0, "no arena mapped by the consumer:\n{maps}");
            },
        );
    }
}

fn streams_on_despite(act: &str, extra: &str, tail: &str) {
    streams_on_despite_checking(act, extra, tail, &|_| {});
}

/// The liar `act` streams to a consumer (`extra` set on the source, `tail` after
/// it) that takes 20 frames without an error (`check` looks at the consumer's pid
/// meanwhile) and reports the producer's disappearance when it is killed.
fn streams_on_despite_checking(act: &str, extra: &str, tail: &str, check: &dyn Fn(u32)) {
    let path = socket_path(act);
    let ps = path.to_str().unwrap();
    let mut p = KillOnDrop(spawn(PEER, &["lie", act, ps]));
    assert_eq!(read_line(&mut p.0), "ready");
    let mut c = consumer(ps, extra, tail);
    let mut lines = Lines::of(&mut c);
    let frames = |l: &[String]| l.iter().filter(|l| l.contains("chain")).count();
    assert!(lines.until(|l| frames(l) >= 20), "{:?}", lines.seen);
    assert!(
        lines.seen.iter().all(|l| !l.contains("ERROR")),
        "{:?}",
        lines.seen
    );
    check(c.id());
    drop(p);
    let (_, out) = outcome(c, Duration::from_secs(60)).expect("consumer ends");
    assert!(
        out.contains("The producer went away without ending the stream"),
        "{out}"
    );
}

/// What a child prints on stdout, read as it comes (by a thread).
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        use std::io::BufRead;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 60 s, however slow the machine or valgrind) until `enough`
    /// holds for the lines seen so far.
    fn until(&mut self, enough: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !enough(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return false,
            }
        }
        true
    }
}

#[test]
fn an_honest_producer_of_the_same_stream_is_received() {
    // The control case: the same producer without a lie streams until it is gone.
    let path = socket_path("honest");
    let ps = path.to_str().unwrap();
    let mut p = KillOnDrop(spawn(PEER, &["lie", "honest", ps]));
    assert_eq!(read_line(&mut p.0), "ready");
    let mut c = consumer(
        ps,
        "",
        "videoconvert ! video/x-raw,format=RGBA ! fakesink silent=false -v",
    );
    let mut lines = Lines::of(&mut c);
    let frames = |l: &[String]| l.iter().filter(|l| l.contains("chain")).count();
    assert!(lines.until(|l| frames(l) >= 20), "{:?}", lines.seen);
    drop(p);
    let (status, err) = outcome(c, Duration::from_secs(60)).expect("consumer ends");
    // Killed without a goodbye: the source reports the producer's disappearance,
    // after having streamed (no earlier error).
    lines.until(|l| l.iter().any(|l| l.contains("went away")));
    let out = format!("{}\n{err}", lines.seen.join("\n"));
    assert!(
        out.contains("The producer went away without ending the stream"),
        "{status:?} {out}"
    );
    assert!(!out.contains("Producer sent"), "{out}");
}

#[test]
fn a_source_waiting_at_a_listener_that_never_accepts_stops_on_sigint() {
    let path = socket_path("deaf");
    let ps = path.to_str().unwrap();
    let frame_peer = env!("CARGO_BIN_EXE_frame-peer");
    let mut deaf = KillOnDrop(spawn(frame_peer, &["deaf-listener", ps]));
    assert!(read_line(&mut deaf.0).starts_with("ready"));
    let mut c = consumer(ps, "reconnect=true reconnect-interval=20", "fakesink");
    let mut lines = Lines::of(&mut c);
    // Playing (the source waits for a producer in its streaming thread), then asked
    // to stop.
    assert!(
        lines.until(|l| l.iter().any(|l| l.contains("Setting pipeline to PLAYING"))),
        "{:?}",
        lines.seen
    );
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let (status, err) =
        outcome(c, Duration::from_secs(60)).expect("gst-launch-1.0 still ran 60 s after SIGINT");
    lines.until(|l| l.iter().any(|l| l.contains("Freeing pipeline")));
    let out = format!("{}\n{err}", lines.seen.join("\n"));
    assert_eq!(status.signal(), None, "{out}");
    assert!(out.contains("Interrupt"), "{out}");
}
