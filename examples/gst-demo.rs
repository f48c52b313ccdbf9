//! The main job: live 1080p video from one process to another through
//! `shmringsink` / `shmringsrc`.
//!
//! `cargo run --release -p examples --example gst-demo [SECONDS]`
//!
//! The parent runs `videotestsrc is-live=true ! video/x-raw,format=I420,width=1920,
//! height=1080,framerate=30/1 ! shmringsink` and starts a copy of itself that runs
//! `shmringsrc ! fakesink sync=true` with no caps typed. Both print what they did; the
//! producer prints the sink's stats (zero-copy buffers: videotestsrc renders into the
//! shared slots).

use std::process::Command;
use std::time::Instant;

use gst::prelude::*;

fn run_until_eos(pipeline: &gst::Element) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let bus = pipeline.bus().expect("pipeline bus");
    loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) else {
            break Err("no end of stream within 60 s".to_string());
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{} ({:?})", e.error(), e.debug()));
            }
            _ => {}
        }
    }
}

fn consume(path: &str) -> Result<(), String> {
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc name=src socket-path={path} ! fakesink name=sink sync=true"
    ))
    .map_err(|e| e.to_string())?;
    let bin = pipeline.downcast_ref::<gst::Bin>().expect("a pipeline");
    let src = bin.by_name("src").expect("src");
    let sink_pad = bin
        .by_name("sink")
        .expect("sink")
        .static_pad("sink")
        .expect("pad");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = count.clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    let caps = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = caps.clone();
    sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(e)) = &info.data {
            if let gst::EventView::Caps(c) = e.view() {
                *seen.lock().unwrap() = Some(c.caps_owned());
            }
        }
        gst::PadProbeReturn::Ok
    });
    let start = Instant::now();
    let r = run_until_eos(&pipeline);
    let secs = start.elapsed().as_secs_f64();
    let n = count.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(caps) = caps.lock().unwrap().take() {
        println!(
            "consumer (pid {}): caps from the producer: {caps}",
            std::process::id()
        );
    }
    let stats = src.property::<gst::Structure>("stats");
    println!(
        "consumer: {n} frames in {secs:.2} s = {:.1} fps; src stats: {stats}",
        n as f64 / secs
    );
    let _ = pipeline.set_state(gst::State::Null);
    r
}

fn produce(secs: u32) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("shmring-gst-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("cam");
    let ps = path.to_str().unwrap();
    let frames = secs * 30;
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
         ! shmringsink name=sink socket-path={ps} wait-for-connection=true"
    ))
    .map_err(|e| e.to_string())?;
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .expect("a pipeline")
        .by_name("sink")
        .expect("sink");
    println!(
        "producer (pid {}): videotestsrc 1920x1080 I420 @ 30 fps, {frames} frames -> shmringsink socket-path={ps}",
        std::process::id()
    );
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--consume", ps])
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let r = run_until_eos(&pipeline);
    let secs = start.elapsed().as_secs_f64();
    let stats = sink.property::<gst::Structure>("stats");
    println!("producer: done in {secs:.2} s; sink stats: {stats}");
    let _ = pipeline.set_state(gst::State::Null);
    let st = child.wait().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir(&dir);
    r?;
    if !st.success() {
        return Err(format!("consumer failed: {st}"));
    }
    Ok(())
}

fn main() {
    gst::init().expect("GStreamer");
    gstshmring::plugin_register_static().expect("register shmring elements");
    let args: Vec<String> = std::env::args().collect();
    let r = if args.get(1).map(String::as_str) == Some("--consume") {
        consume(&args[2])
    } else {
        produce(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3))
    };
    if let Err(e) = r {
        eprintln!("gst-demo: {e}");
        std::process::exit(1);
    }
}
