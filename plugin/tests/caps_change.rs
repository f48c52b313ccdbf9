//! A resolution switch mid-stream, from a producer pipeline in this process to a
//! `gst-launch-1.0` consumer process that types no caps.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[test]
fn consumer_process_follows_a_resolution_switch() {
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    // target/<profile>/deps/caps_change-… -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let plugin_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        plugin_dir.join("libgstshmring.so").exists(),
        "build the plugin first (make test does)"
    );
    let path = std::env::temp_dir().join(format!("shmring-capschange-{}.sock", std::process::id()));
    let producer = gst::parse::launch(&format!(
        "videotestsrc name=v num-buffers=20 ! capsfilter name=f caps=video/x-raw,format=I420,width=320,height=240 ! shmringsink socket-path={} wait-for-connection=true",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let filter = producer.by_name("f").unwrap();
    // After 10 buffers, ask for another size: videotestsrc renegotiates.
    let src_pad = producer.by_name("v").unwrap().static_pad("src").unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let s2 = seen.clone();
    let f2 = filter.clone();
    src_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 9 {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", 160i32)
                .field("height", 120i32)
                .build();
            f2.set_property("caps", &caps);
        }
        gst::PadProbeReturn::Ok
    });
    producer.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new("gst-launch-1.0")
        .args(
            format!(
                "-v shmringsrc socket-path={} is-live=false ! fakesink silent=false",
                path.display()
            )
            .split_whitespace(),
        )
        .env("GST_PLUGIN_PATH", &plugin_dir)
        .env("GST_REGISTRY", plugin_dir.join("gst-registry.bin"))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let bus = producer.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    producer.set_state(gst::State::Null).unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chain"))
        .filter_map(|l| l.split(" bytes").next()?.rsplit('(').next())
        .collect();
    assert_eq!(sizes.len(), 20, "{text}");
    // 320x240 I420 then 160x120 I420, in order, and the consumer saw both caps.
    let big = sizes.iter().take_while(|s| **s == "115200").count();
    assert!(big >= 10, "{sizes:?}");
    assert!(sizes[big..].iter().all(|s| *s == "28800"), "{sizes:?}");
    assert!(text.contains("width=(int)320") && text.contains("width=(int)160"));
}
