//! A consumer process that says hello and then never reads its socket, against a
//! live `shmringsink on-slow-consumer=drop` that sends a tag before every buffer (as
//! a stream with per-buffer metadata in tags does): the sink never waits for it,
//! the honest consumer process beside it gets every buffer, and the deaf one is cut
//! off once its queue overflows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{KillOnDrop, eventually, finish, read_line, socket_path, spawn};
use gst::prelude::*;

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

#[test]
fn a_deaf_consumer_never_stalls_a_live_sink_nor_its_honest_neighbour() {
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let path = socket_path("deaf-sink");
    let ps = path.to_str().unwrap();
    let frames = 300u64;
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} ! video/x-raw,format=GRAY8,width=64,height=64,framerate=100/1 ! identity name=i ! shmringsink name=s socket-path={ps} on-slow-consumer=drop wait-for-connection=true"
    ))
    .unwrap();
    let bin = pipeline.clone().downcast::<gst::Bin>().unwrap();
    // Before every buffer, a tag of 32 KiB (9.6 MB in all, more than the 5 MiB a
    // consumer may have queued: 1 MiB and a buffer's meta list); and how long the
    // sink took for each.
    let comment = "c".repeat(32 * 1024);
    let last = Arc::new(Mutex::new(None::<Instant>));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let (l, sl) = (last.clone(), slowest.clone());
    let src = bin.by_name("i").unwrap().static_pad("src").unwrap();
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        let mut tags = gst::TagList::new();
        tags.get_mut()
            .unwrap()
            .add::<gst::tags::Comment>(&comment.as_str(), gst::TagMergeMode::Replace);
        pad.push_event(gst::event::Tag::new(tags));
        let now = Instant::now();
        if let Some(t) = l.lock().unwrap().replace(now) {
            let mut s = sl.lock().unwrap();
            *s = (*s).max(now - t);
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sink = bin.by_name("s").unwrap();
    eventually("the socket", || path.exists());
    let mut honest = spawn(PEER, &["count", ps]);
    assert!(read_line(&mut honest).starts_with("ready"));
    let mut deaf = KillOnDrop(spawn(PEER, &["evil-consumer", ps, "deaf"]));
    assert_eq!(read_line(&mut deaf.0), "ready");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within 60 s");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let stats = sink.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    // 100 buffers a second: a buffer held up by the deaf consumer's full socket
    // would show as a gap of up to block-timeout (1 s) here.
    let slowest = *slowest.lock().unwrap();
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert_eq!(stats.get::<u64>("cut-off").unwrap(), 1, "{stats}");
    let (status, out) = finish(honest);
    assert!(status.success(), "{out}");
    let figures: Vec<u64> = out
        .lines()
        .find(|l| l.starts_with("frames "))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (got, dropped, gap_ms) = (figures[0], figures[1], figures[2]);
    // It joined before the first buffer (wait-for-connection): each one reached it
    // or was counted as dropped for it, and none waited on the deaf one (before:
    // gaps of the whole block-timeout, 1 s, at each of its cut-offs).
    assert_eq!(got + dropped, frames, "{out}");
    assert!(gap_ms < 500, "{out}");
    assert!(out.contains("end "), "{out}");
}
