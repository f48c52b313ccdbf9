//! `shmringsink` and `shmringsrc` in two real `gst-launch-1.0` processes, with
//! `GST_PLUGIN_PATH` pointing at the built plugin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, gst_plugin_dir as plugin_dir, socket_path};

fn launch(pipeline: &str) -> Child {
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", plugin_dir().join("gst-registry.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) installed")
}

/// Waits for `child` (at most 60 s) and returns (exit ok, stderr).
fn wait(child: Child) -> (bool, String) {
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.success(), err);
        }
        assert!(Instant::now() < deadline, "gst-launch did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_socket(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tmp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shmring-gst-{}-{tag}", std::process::id()))
}

/// Streams `source` (a pipeline fragment ending in caps) through shmring into a
/// file, and the same fragment straight into another file; the bytes must match.
fn same_bytes_as_direct(tag: &str, source: &str) {
    same_as_direct(tag, source, |a, b| a == b)
}

/// Visible pixels of I420 frames of `w`×`h` (GStreamer's default layout: strides
/// rounded up to 4, heights to 2). Row padding is left out: the source leaves it
/// uninitialised, so it differs even between two direct runs.
fn same_i420_pixels(w: usize, h: usize) -> impl Fn(&[u8], &[u8]) -> bool {
    move |a: &[u8], b: &[u8]| {
        let up = |v: usize, m: usize| v.div_ceil(m) * m;
        let (ys, cs) = (up(w, 4), up(up(w, 2) / 2, 4));
        let (cw, ch) = (up(w, 2) / 2, up(h, 2) / 2);
        let u_off = ys * up(h, 2);
        let v_off = u_off + cs * ch;
        let size = v_off + cs * ch;
        if a.len() != b.len() || a.len() % size != 0 {
            return false;
        }
        let planes = [(0, ys, w, h), (u_off, cs, cw, ch), (v_off, cs, cw, ch)];
        a.chunks(size).zip(b.chunks(size)).all(|(fa, fb)| {
            planes.iter().all(|&(off, stride, width, rows)| {
                (0..rows).all(|r| {
                    let s = off + r * stride;
                    fa[s..s + width] == fb[s..s + width]
                })
            })
        })
    }
}

fn same_as_direct(tag: &str, source: &str, same: impl Fn(&[u8], &[u8]) -> bool) {
    same_as_direct_through(tag, source, "", same)
}

/// As [`same_as_direct`], with `tail` (elements ending in `!`, or nothing) before
/// each `filesink`: what the consumer's pipeline does with the buffers.
fn same_as_direct_through(
    tag: &str,
    source: &str,
    tail: &str,
    same: impl Fn(&[u8], &[u8]) -> bool,
) {
    let sock = socket_path(tag);
    let direct = tmp(&format!("{tag}-direct"));
    let through = tmp(&format!("{tag}-through"));
    let (ok, err) = wait(launch(&format!(
        "{source} ! {tail} filesink location={}",
        direct.display()
    )));
    assert!(ok, "{err}");
    let producer = launch(&format!(
        "{source} ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    ));
    wait_for_socket(&sock);
    let consumer = launch(&format!(
        "shmringsrc socket-path={} is-live=false ! {tail} filesink location={}",
        sock.display(),
        through.display()
    ));
    let (cok, cerr) = wait(consumer);
    let (pok, perr) = wait(producer);
    assert!(pok, "producer failed: {perr}");
    assert!(cok, "consumer failed: {cerr}");
    assert!(
        cerr.is_empty() && perr.is_empty(),
        "a clean run is silent: {cerr} {perr}"
    );
    let a = std::fs::read(&direct).unwrap();
    let b = std::fs::read(&through).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len(), "{tag}: byte counts");
    assert!(same(&a, &b), "{tag}: bytes differ");
    let _ = std::fs::remove_file(direct);
    let _ = std::fs::remove_file(through);
}

#[test]
fn i420_1080p_arrives_byte_identical() {
    same_bytes_as_direct(
        "i420",
        "videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=1920,height=1080",
    );
}

#[test]
fn rgba_arrives_byte_identical() {
    same_bytes_as_direct(
        "rgba",
        "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=RGBA,width=640,height=360",
    );
}

#[test]
fn odd_size_with_padded_strides_arrives_byte_identical() {
    same_as_direct(
        "odd",
        "videotestsrc num-buffers=10 pattern=smpte75 ! video/x-raw,format=I420,width=321,height=241",
        same_i420_pixels(321, 241),
    );
}

#[test]
fn s16le_audio_in_10ms_buffers_arrives_byte_identical() {
    same_bytes_as_direct(
        "s16",
        "audiotestsrc num-buffers=50 samplesperbuffer=480 wave=sine ! audio/x-raw,format=S16LE,rate=48000,channels=2",
    );
}

#[test]
fn f32le_audio_in_10ms_buffers_arrives_byte_identical() {
    same_bytes_as_direct(
        "f32",
        "audiotestsrc num-buffers=50 samplesperbuffer=441 wave=ticks ! audio/x-raw,format=F32LE,rate=44100,channels=1",
    );
}

#[test]
fn planar_audio_arrives_with_its_layout() {
    // The consumer converts the non-interleaved buffers back to interleaved:
    // `audioconvert` reads each channel where the buffer's layout says.
    same_as_direct_through(
        "planar",
        "audiotestsrc num-buffers=50 samplesperbuffer=480 wave=saw ! audio/x-raw,format=F32LE,rate=48000,channels=2 ! audioconvert ! audio/x-raw,layout=non-interleaved",
        "audioconvert ! audio/x-raw,layout=interleaved !",
        |a, b| a == b,
    );
}

#[test]
fn consumer_killed_mid_stream_the_producer_finishes_cleanly() {
    let sock = socket_path("killc");
    let producer = launch(&format!(
        "videotestsrc num-buffers=300 is-live=true ! video/x-raw,width=320,height=240,framerate=100/1 ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    ));
    wait_for_socket(&sock);
    let mut consumer = KillOnDrop(launch(&format!(
        "shmringsrc socket-path={} ! fakesink",
        sock.display()
    )));
    std::thread::sleep(Duration::from_millis(500));
    consumer.0.kill().unwrap();
    let (ok, err) = wait(producer);
    assert!(ok, "producer failed after its consumer was killed: {err}");
}

#[test]
fn producer_gone_without_eos_is_an_error_unless_reconnect() {
    let sock = socket_path("killp");
    let mut producer = KillOnDrop(launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=50/1 ! shmringsink socket-path={}",
        sock.display()
    )));
    wait_for_socket(&sock);
    let plain = launch(&format!(
        "shmringsrc socket-path={} ! fakesink",
        sock.display()
    ));
    let reconnecting = launch(&format!(
        "shmringsrc socket-path={} reconnect=true reconnect-interval=20 ! fakesink",
        sock.display()
    ));
    std::thread::sleep(Duration::from_millis(500));
    producer.0.kill().unwrap();
    let _ = producer.0.wait();
    let (ok, err) = wait(plain);
    assert!(!ok);
    assert!(err.contains("went away without ending the stream"), "{err}");
    // A new producer on the same (stale) path: the reconnecting consumer picks it up
    // and ends cleanly with its EOS.
    let producer2 = launch(&format!(
        "videotestsrc num-buffers=50 is-live=true ! video/x-raw,width=160,height=120,framerate=50/1 ! shmringsink socket-path={}",
        sock.display()
    ));
    let (ok2, err2) = wait(producer2);
    assert!(ok2, "{err2}");
    let (ok, err) = wait(reconnecting);
    assert!(ok, "reconnecting consumer failed: {err}");
}

#[test]
fn buffers_pushed_twice_arrive_intact() {
    // videorate pushes the same buffer again to double the frame rate: the sink
    // publishes it once in place, then copies it (its slot stays held meanwhile).
    same_bytes_as_direct(
        "dup",
        "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=15/1 ! videorate ! video/x-raw,framerate=30/1",
    );
}

#[test]
fn two_consumers_one_joining_late_both_get_caps_and_eos() {
    let sock = socket_path("two");
    let producer = launch(&format!(
        "videotestsrc is-live=true num-buffers=60 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    ));
    wait_for_socket(&sock);
    let first = launch(&format!(
        "shmringsrc socket-path={} ! video/x-raw,format=I420,width=320,height=240 ! fakesink",
        sock.display()
    ));
    std::thread::sleep(Duration::from_millis(700));
    // Joins mid-stream: the sticky caps reach it before its first buffer, so a
    // capsfilter that insists on them negotiates.
    let late = launch(&format!(
        "shmringsrc socket-path={} ! video/x-raw,format=I420,width=320,height=240 ! fakesink",
        sock.display()
    ));
    for (who, c) in [("producer", producer), ("first", first), ("late", late)] {
        let (ok, err) = wait(c);
        assert!(ok, "{who} failed: {err}");
        assert!(err.is_empty(), "{who} not silent: {err}");
    }
}

#[test]
fn timestamps_offsets_and_durations_survive_the_trip() {
    let sock = socket_path("pts");
    let producer = launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=GRAY8,width=16,height=16,framerate=25/1 ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    ));
    wait_for_socket(&sock);
    let consumer = Command::new("gst-launch-1.0")
        .args(
            format!(
                "-v shmringsrc socket-path={} is-live=false ! fakesink silent=false",
                sock.display()
            )
            .split_whitespace(),
        )
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", plugin_dir().join("gst-registry.bin"))
        .output()
        .unwrap();
    let (ok, err) = wait(producer);
    assert!(ok, "{err}");
    assert!(consumer.status.success());
    let out = String::from_utf8_lossy(&consumer.stdout);
    let chains: Vec<&str> = out.lines().filter(|l| l.contains("chain")).collect();
    assert_eq!(chains.len(), 5, "{out}");
    for (i, line) in chains.iter().enumerate() {
        let want = format!(
            "pts: 0:00:00.{:09}, duration: 0:00:00.040000000, offset: {i}, offset_end: {}",
            40_000_000 * i,
            i + 1
        );
        assert!(line.contains(&want), "buffer {i}: {line}\nwanted {want}");
    }
}
