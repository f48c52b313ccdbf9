//! Systematic lies, not only hand-picked ones: for every numeric field of every
//! socket message, frame descriptor and per-buffer metadata record a producer sends
//! ([`e2e::LIE_FIELDS`]), a real producer process (`frame-peer field-liar`) sends
//! each extreme value ([`e2e::extremes`]: 0, 1, the maximum, the most negative, one
//! past the honest value), one connection each, to a `shmringsrc` in this process
//! feeding `videoconvert`. Each run ends, within its deadline, in the stream's end
//! or in an error: this process never crashes, never hangs.

use std::collections::BTreeMap;

use e2e::{KillOnDrop, LIE_FIELDS, extremes, read_line, socket_path, spawn};
use gst::prelude::*;

const PEER: &str = env!("CARGO_BIN_EXE_frame-peer");

/// One consumer run: "eos, N buffers" or "error: ...".
fn consume(path: &str) -> String {
    let p = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false ! videoconvert ! video/x-raw,format=RGBA ! fakesink name=f signal-handoffs=true"
    ))
    .unwrap();
    let bin = p.clone().downcast::<gst::Bin>().unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    bin.by_name("f")
        .unwrap()
        .connect("handoff", false, move |_| {
            n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        });
    let bus = p.bus().unwrap();
    let outcome = match p.set_state(gst::State::Playing) {
        Err(_) => {
            let m =
                bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
            match m.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Error(e)) => {
                    format!("error: {} ({:?})", e.error(), e.debug())
                }
                _ => "error: refused to start".into(),
            }
        }
        Ok(_) => {
            let m = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(20),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            );
            match m.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => {
                    format!(
                        "eos, {} buffers",
                        n.load(std::sync::atomic::Ordering::Relaxed)
                    )
                }
                Some(gst::MessageView::Error(e)) => {
                    format!("error: {} ({:?})", e.error(), e.debug())
                }
                _ => "no end within 20 s".into(),
            }
        }
    };
    p.set_state(gst::State::Null).unwrap();
    outcome
}

/// Runs every value of `field`; returns (value, outcome) pairs.
fn lie_about(field: &str, bits: u32, honest: u64) -> Vec<(u64, String)> {
    let path = socket_path("lie");
    let ps = path.to_str().unwrap();
    let mut liar = KillOnDrop(spawn(PEER, &["field-liar", ps, field]));
    assert_eq!(read_line(&mut liar.0), "ready", "{field}");
    let runs = extremes(bits, honest)
        .into_iter()
        .map(|v| (v, consume(ps)))
        .collect();
    assert_eq!(read_line(&mut liar.0), "done", "{field}");
    runs
}

#[test]
fn every_field_at_every_extreme_ends_in_the_streams_end_or_an_error() {
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    // The control: the same stream without a lie is received, one buffer, then EOS.
    for (_, outcome) in lie_about("honest", 1, 0) {
        assert_eq!(outcome, "eos, 1 buffers");
    }
    let mut report = BTreeMap::new();
    let mut hung = Vec::new();
    for &(field, bits, honest) in LIE_FIELDS {
        for (v, outcome) in lie_about(field, bits, honest) {
            if outcome.starts_with("no end") {
                hung.push(format!("{field}={v}"));
            }
            report.insert(format!("{field}={v:#x}"), outcome);
        }
    }
    for (k, v) in &report {
        println!("{k}: {v}");
    }
    assert!(hung.is_empty(), "no end within the deadline: {hung:?}");
    assert!(report.len() > 150, "{} lies told", report.len());
}
