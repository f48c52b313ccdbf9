//! `shmring://` URIs and named producers, with GStreamer's own tools: a producer
//! process named `cam` (`shmringsink producer-name=cam`) plays in `gst-play-1.0
//! shmring://cam` and in a `playbin`, and `gst_element_make_from_uri` finds both
//! elements.
//!
//! One test in this binary: it points `XDG_RUNTIME_DIR` (where named producers
//! live) at a private directory of its own before anything else runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use e2e::KillOnDrop;
use gst::prelude::*;

fn gst_command(tool: &str, runtime: &Path) -> Command {
    let mut c = e2e::gst_command(tool);
    c.env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A live 320x240 producer named `name`, `frames` long, waiting for its consumer.
fn producer(name: &str, frames: u32, runtime: &Path) -> KillOnDrop {
    let desc = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! shmringsink producer-name={name} wait-for-connection=true"
    );
    KillOnDrop(
        gst_command("gst-launch-1.0", runtime)
            .arg("-q")
            .args(desc.split_whitespace())
            .spawn()
            .expect("gst-launch-1.0 (gstreamer1.0-tools) installed"),
    )
}

/// Waits (60 s at most) for `child` to end: (success, stdout + stderr).
fn wait(child: &mut Child) -> (bool, String) {
    let o = e2e::wait_with_output(child, 60, "a GStreamer tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Plays `uri` in a `playbin` with fakesinks to its end: the raw video buffers
/// and their caps' width.
fn play(uri: &str) -> (u32, Option<i32>) {
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri)
        .property(
            "video-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .property(
            "audio-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .build()
        .unwrap();
    let sink: gst::Element = playbin.property("video-sink");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = count.clone();
    let pad = sink.static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    playbin.set_state(gst::State::Playing).unwrap();
    let bus = playbin.bus().unwrap();
    let mut width = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("playbin {uri}: {} ({:?})", e.error(), e.debug()),
            _ => {}
        }
        if width.is_none() {
            width = pad
                .current_caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("width").ok()));
        }
    }
    playbin.set_state(gst::State::Null).unwrap();
    (count.load(std::sync::atomic::Ordering::Relaxed), width)
}

#[test]
fn named_producers_play_by_uri_in_gst_play_and_playbin() {
    let runtime = std::env::temp_dir().join(format!("shmring-uri-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir_all(&runtime).unwrap();
    // SAFETY: the only test of this binary sets this before GStreamer or any other
    // thread of its own starts; nothing reads the environment concurrently.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &runtime) };
    let dir: PathBuf = runtime.join("shmring");

    // gst_element_make_from_uri: both elements, both forms.
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let src = gst::Element::make_from_uri(gst::URIType::Src, "shmring://cam", None).unwrap();
    assert_eq!(src.factory().unwrap().name(), "shmringsrc");
    assert_eq!(
        src.property::<Option<String>>("producer-name").as_deref(),
        Some("cam")
    );
    let by_path =
        gst::Element::make_from_uri(gst::URIType::Src, "shmring:///run/x/my%20cam", None).unwrap();
    assert_eq!(
        by_path.property::<Option<String>>("socket-path").as_deref(),
        Some("/run/x/my cam")
    );
    assert_eq!(
        by_path
            .dynamic_cast_ref::<gst::URIHandler>()
            .unwrap()
            .uri()
            .as_deref(),
        Some("shmring:///run/x/my%20cam")
    );
    let sink = gst::Element::make_from_uri(gst::URIType::Sink, "shmring://cam", None).unwrap();
    assert_eq!(sink.factory().unwrap().name(), "shmringsink");
    for bad in [
        "shmring://../etc",
        "shmring://a/b",
        "shmring://.hidden",
        "shmring://",
    ] {
        let e = gst::Element::make_from_uri(gst::URIType::Src, bad, None).unwrap_err();
        assert!(
            e.message().contains("producer name") || e.message().contains("no socket"),
            "{bad}: {e}"
        );
    }

    // gst-play-1.0 shmring://cam against a live producer process.
    let mut p = producer("cam", 45, &runtime);
    e2e::wait_for_path(&dir.join("cam"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the directory of producers is private");
    let mut play_cmd = gst_command("gst-play-1.0", &runtime)
        .args([
            "--videosink=fakesink",
            "--audiosink=fakesink",
            "--no-interactive",
            "shmring://cam",
        ])
        .spawn()
        .expect("gst-play-1.0 (gstreamer1.0-plugins-base-apps) installed");
    let (ok, out) = wait(&mut play_cmd);
    assert!(ok, "gst-play-1.0: {out}");
    assert!(
        !out.contains("ERROR") && !out.contains("WARNING"),
        "gst-play-1.0: {out}"
    );
    assert!(
        out.contains("Reached end of play list"),
        "gst-play-1.0: {out}"
    );
    let (ok, out) = wait(&mut p.0);
    assert!(ok, "producer: {out}");

    // playbin in this process: every frame, in the producer's caps.
    let _p = producer("cam2", 30, &runtime);
    e2e::wait_for_path(&dir.join("cam2"));
    let (frames, width) = play("shmring://cam2");
    assert_eq!(frames, 30);
    assert_eq!(width, Some(320));
    // The same by path.
    let _p = producer("cam3", 20, &runtime);
    e2e::wait_for_path(&dir.join("cam3"));
    let (frames, _) = play(&format!("shmring://{}", dir.join("cam3").display()));
    assert_eq!(frames, 20);

    // Two producers cannot take one name; the second says whose it is.
    let mut first = producer("cam4", 1000, &runtime);
    e2e::wait_for_path(&dir.join("cam4"));
    let mut second = KillOnDrop(
        gst_command("gst-launch-1.0", &runtime)
            .args("videotestsrc ! shmringsink producer-name=cam4".split_whitespace())
            .spawn()
            .unwrap(),
    );
    let (ok, out) = wait(&mut second.0);
    assert!(!ok && out.contains("cam4"), "{out}");
    let _ = first.0.kill();
    let _ = std::fs::remove_dir_all(&runtime);
}
