//! `shmringdeviceprovider`: `gst-device-monitor-1.0` lists the named producers with
//! their caps and class, a monitor sees producers appear and vanish (killed, their
//! socket left behind), `gst_device_create_element` gives a `shmringsrc` that
//! receives, a probe is never counted as a consumer, and producers that lie to
//! probes (junk, ANY, the wrong message, an oversized answer, silence) are not
//! listed and hold nothing up.
//!
//! One test in this binary: it points `XDG_RUNTIME_DIR` (where named producers
//! live) at a private directory of its own before anything else runs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::KillOnDrop;
use gst::prelude::*;

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next device message on the monitor's bus about producer `name`: added
/// (true) or removed (false), with the device.
fn next_about(monitor: &gst::DeviceMonitor, name: &str, secs: u64) -> (bool, gst::Device) {
    let bus = monitor.bus();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let display = format!("shmring producer {name}");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no device message about {name} within {secs} s"
        );
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
        else {
            continue;
        };
        let (added, d) = match msg.view() {
            gst::MessageView::DeviceAdded(m) => (true, m.device()),
            gst::MessageView::DeviceRemoved(m) => (false, m.device()),
            _ => continue,
        };
        if d.display_name() == display {
            return (added, d);
        }
    }
}

fn producer_process(desc: &str, runtime: &Path) -> KillOnDrop {
    KillOnDrop(
        e2e::gst_command("gst-launch-1.0")
            .arg("-q")
            .args(desc.split_whitespace())
            .env("XDG_RUNTIME_DIR", runtime)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0 (gstreamer1.0-tools) installed"),
    )
}

#[test]
fn the_device_monitor_lists_named_producers_as_they_come_and_go() {
    let runtime = std::env::temp_dir().join(format!("shmring-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir_all(&runtime).unwrap();
    // SAFETY: the only test of this binary sets this before GStreamer or any other
    // thread of its own starts; nothing reads the environment concurrently.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &runtime) };
    let dir = runtime.join("shmring");
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();

    // A producer in this process, so that its stats can be read.
    let cam = gst::parse::launch(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! shmringsink name=snk producer-name=cam",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    cam.set_state(gst::State::Playing).unwrap();
    let snk = cam.by_name("snk").unwrap();
    let stats = || snk.property::<gst::Structure>("stats");
    wait_until("the producer's first frame", 30, || {
        stats().get::<u64>("frames").unwrap_or(0) > 0
    });

    // Producers that lie to probes, each a process in the directory: none is
    // listed, and none holds the monitor up (a silent one costs its 300 ms).
    let mut liars = Vec::new();
    for act in ["junk-caps", "any-caps", "welcome", "huge", "silent"] {
        let mut c = e2e::spawn(
            env!("CARGO_BIN_EXE_frame-peer"),
            &[
                "probe-liar",
                &dir.join(format!("liar-{act}")).to_string_lossy(),
                act,
            ],
        );
        assert_eq!(e2e::read_line(&mut c), "ready");
        liars.push(KillOnDrop(c));
    }

    // gst-device-monitor-1.0 lists it, with caps and class, and how to receive it.
    let started = Instant::now();
    let out = e2e::gst_command("gst-device-monitor-1.0")
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("gst-device-monitor-1.0 (gstreamer1.0-plugins-base-apps) installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("shmring producer cam"), "{text}");
    assert!(text.contains("Video/Source"), "{text}");
    assert!(
        text.contains("video/x-raw") && text.contains("320"),
        "{text}"
    );
    assert!(text.contains("shmringsrc producer-name=cam"), "{text}");
    assert!(!text.contains("liar"), "a liar was listed: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the monitor took {:?}",
        started.elapsed()
    );
    // Probed, never a consumer.
    let s = stats();
    assert!(s.get::<u64>("probes").unwrap() >= 1, "{s}");
    assert_eq!(s.get::<u32>("consumers").unwrap(), 0, "{s}");

    // A monitor in this process: the producer there, one appearing, one killed.
    let monitor = gst::DeviceMonitor::new();
    monitor.set_show_all_devices(true);
    monitor.start().unwrap();
    let listed = monitor
        .devices()
        .into_iter()
        .find(|d| d.display_name() == "shmring producer cam")
        .expect("cam listed at start");
    assert_eq!(listed.device_class(), "Video/Source");
    let props = listed.properties().unwrap();
    assert_eq!(
        props.get::<String>("shmring.socket-path").unwrap(),
        dir.join("cam").to_string_lossy()
    );

    let mut mic = producer_process(
        "audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! shmringsink producer-name=mic",
        &runtime,
    );
    let (added, d) = next_about(&monitor, "mic", 20);
    assert!(added);
    assert_eq!(d.device_class(), "Audio/Source");
    assert!(d.caps().unwrap().to_string().contains("audio/x-raw"));
    e2e::kill9(&mut mic.0);
    assert!(
        dir.join("mic").exists(),
        "a killed producer leaves its socket"
    );
    let (added, _) = next_about(&monitor, "mic", 20);
    assert!(!added, "a killed producer is removed");

    // The listed device makes a ready source that receives.
    let src = listed.create_element(None).unwrap();
    assert_eq!(src.factory().unwrap().name(), "shmringsrc");
    let pipe = gst::Pipeline::new();
    let sink = gst::ElementFactory::make("fakesink")
        .property("num-buffers", 10i32)
        .build()
        .unwrap();
    pipe.add_many([&src, &sink]).unwrap();
    src.link(&sink).unwrap();
    pipe.set_state(gst::State::Playing).unwrap();
    let msg = pipe
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("10 buffers within 30 s");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    pipe.set_state(gst::State::Null).unwrap();
    monitor.stop();
    cam.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&runtime);
}
