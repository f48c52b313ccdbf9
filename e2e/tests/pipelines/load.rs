//! Load: eight `shmringsrc` consumer processes on one live 1080p `shmringsink`
//! producer (in this process, so its statistics and memory can be read). Every
//! consumer gets every frame, nothing is dropped or cut off, and the producer's
//! memory stays flat while it streams; its shared mappings go when it stops.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, gst_plugin_dir as plugin_dir, mappings, socket_path};
use gst::prelude::*;

const CONSUMERS: usize = 8;
const FRAMES: u64 = 150;

fn consumer(path: &str) -> Child {
    Command::new("gst-launch-1.0")
        .args([
            "-q",
            "shmringsrc",
            &format!("socket-path={path}"),
            "!",
            "fakesink",
        ])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", plugin_dir().join("gst-registry.bin"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) installed")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn stats(sink: &gst::Element) -> gst::Structure {
    sink.property::<gst::Structure>("stats")
}

#[test]
fn eight_consumers_on_one_1080p_producer_get_every_frame() {
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let mappings_before = mappings();
    let path = socket_path("load");
    let path = path.to_str().unwrap();
    // Block policy with a patient timeout: a consumer the machine is slow to
    // schedule makes the live producer wait, never lose it (this is about load, not
    // about timing).
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={FRAMES} pattern=ball ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 ! shmringsink name=s socket-path={path} max-consumers={CONSUMERS} on-slow-consumer=block block-timeout=60000"
    ))
    .unwrap();
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("s")
        .unwrap();
    // Live: PAUSED makes no data, but the socket is there.
    pipeline.set_state(gst::State::Paused).unwrap();
    let consumers: Vec<KillOnDrop> = (0..CONSUMERS).map(|_| KillOnDrop(consumer(path))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats(&sink).get::<u32>("consumers").unwrap() < CONSUMERS as u32 {
        assert!(Instant::now() < deadline, "consumers did not all connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    // Memory once the slots are all in use, and at the end.
    let bus = pipeline.bus().unwrap();
    let mut rss_warm = None;
    let mut last_full = None;
    let end = loop {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "no EOS"
        );
        if let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            break m;
        }
        let st = stats(&sink);
        let frames = st.get::<u64>("frames").unwrap();
        if rss_warm.is_none() && frames >= 30 {
            rss_warm = Some(rss_kib());
        }
        // Consumers leave once they have the EOS: judge each on the last
        // snapshot that still holds all eight.
        if st.get::<u32>("consumers").unwrap() == CONSUMERS as u32 {
            last_full = Some(st);
        }
    };
    assert!(
        matches!(end.view(), gst::MessageView::Eos(_)),
        "producer error: {end:?}"
    );
    let rss_end = rss_kib();
    let s = stats(&sink);
    assert_eq!(s.get::<u64>("frames").unwrap(), FRAMES);
    assert_eq!(s.get::<u64>("drops").unwrap(), 0);
    assert_eq!(s.get::<u64>("cut-off").unwrap(), 0);
    // In one snapshot, every consumer had been sent every frame published so far.
    let full = last_full.expect("all eight consumers were served");
    let published = full.get::<u64>("frames").unwrap();
    assert!(
        published >= FRAMES / 2,
        "snapshot taken after {published} frames"
    );
    let per = full.get::<gst::Array>("consumer-stats").unwrap();
    assert_eq!(per.len(), CONSUMERS);
    for c in per.iter() {
        let c = c.get::<gst::Structure>().unwrap();
        assert_eq!(c.get::<u64>("frames").unwrap(), published, "{c}");
        assert_eq!(c.get::<u64>("drops").unwrap(), 0, "{c}");
    }
    // Flat: 120 more 3 MB frames to eight consumers cost no memory beyond noise.
    let grew = rss_end.saturating_sub(rss_warm.expect("30 frames streamed"));
    assert!(
        grew < 16 * 1024,
        "producer RSS grew {grew} KiB while streaming"
    );
    // Every consumer saw EOS and exited cleanly.
    let deadline = Instant::now() + Duration::from_secs(60);
    for mut c in consumers {
        let status = loop {
            if let Some(st) = c.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "a consumer did not end after EOS"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        use std::io::Read;
        c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success() && err.is_empty(), "consumer: {err}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        mappings(),
        mappings_before,
        "the producer's arenas are unmapped"
    );
}
