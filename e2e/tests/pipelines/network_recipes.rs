//! The README's recipes for going past one machine, over loopback: a producer
//! process, a `shmringsrc` process that encodes and sends (RTP over UDP, or SRT),
//! and a receiver process that decodes. The decoded frames must be those of the
//! same source encoded and decoded in one pipeline (x264 is deterministic for the
//! same input and settings), byte for byte.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, gst_plugin_dir, socket_path};

const FRAMES: u32 = 60;
const CAPS: &str = "video/x-raw,format=I420,width=320,height=240,framerate=30/1";

fn gst_launch(desc: &str) -> KillOnDrop {
    KillOnDrop(
        e2e::gst_command("gst-launch-1.0")
            .arg("-q")
            .args(desc.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gst-launch-1.0 (gstreamer1.0-tools) installed"),
    )
}

fn record(desc: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gst-record"))
        .args(desc.split_whitespace())
        .env("GST_REGISTRY", gst_plugin_dir().join("gst-registry.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `bytes=` hash of every buffer `gst-record` printed, waiting 60 s at most.
fn hashes(mut child: Child) -> Vec<String> {
    let o = e2e::wait_with_output(&mut child, 60, "the receiver");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("error"), "{out}");
    out.lines()
        .filter(|l| l.contains(" buffer "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("bytes=")))
        .map(str::to_owned)
        .collect()
}

/// The same frames encoded and decoded in one pipeline.
fn direct() -> Vec<String> {
    hashes(record(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! {CAPS} ! videoconvert ! x264enc tune=zerolatency ! h264parse ! avdec_h264 ! fakesink name=rec"
    )))
}

/// Whether something listens on UDP `port` (the receiver is up).
fn udp_bound(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| t.contains(&hex))
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn producer() -> (KillOnDrop, std::path::PathBuf) {
    let p = socket_path("net");
    let producer = gst_launch(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! {CAPS} ! shmringsink socket-path={} wait-for-connection=true",
        p.display()
    ));
    e2e::wait_for_path(&p);
    (producer, p)
}

#[test]
fn rtp_over_udp_from_a_consumer_decodes_the_same_frames() {
    let want = direct();
    assert_eq!(want.len(), FRAMES as usize);
    let (_producer, p) = producer();
    let port = free_port();
    let receiver = record(&format!(
        "udpsrc port={port} caps=application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! rtph264depay ! h264parse ! avdec_h264 ! fakesink name=rec num-buffers={FRAMES}"
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !udp_bound(port) {
        assert!(Instant::now() < deadline, "the receiver did not bind");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _sender = gst_launch(&format!(
        "shmringsrc socket-path={} ! videoconvert ! x264enc tune=zerolatency ! rtph264pay config-interval=1 ! udpsink host=127.0.0.1 port={port}",
        p.display()
    ));
    assert_eq!(hashes(receiver), want);
}

#[test]
fn srt_from_a_consumer_decodes_the_same_frames() {
    let want = direct();
    let (_producer, p) = producer();
    let port = free_port();
    // The sender listens (as in the README), the receiver calls it.
    let _sender = gst_launch(&format!(
        "shmringsrc socket-path={} ! videoconvert ! x264enc tune=zerolatency ! mpegtsmux ! srtsink uri=srt://:{port}",
        p.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !udp_bound(port) {
        assert!(Instant::now() < deadline, "the SRT sender did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last frames can stay in the demuxer and parser until an end of stream,
    // which a receiver of a network stream does not always see: all but a few.
    let n = FRAMES as usize - 5;
    let receiver = record(&format!(
        "srtsrc uri=srt://127.0.0.1:{port} ! tsdemux ! h264parse ! avdec_h264 ! fakesink name=rec num-buffers={n}"
    ));
    // (The probe also sees the buffer the sink refuses after its last one.)
    let got = hashes(receiver);
    assert!(got.len() >= n, "{} of {n} frames", got.len());
    assert_eq!(got[..n], want[..n]);
}
