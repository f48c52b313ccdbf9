//! The honest consumer of the hostile-consumer matrix: `shmringsrc ! fakesink` (or
//! the consumer pipeline given), with the plugin registered from this build,
//! printing what reaches the sink as it comes, one line each:
//!
//! - `caps T CAPS` for each caps event;
//! - `buffer T PTS HASH` for each buffer (`HASH` a hash of its bytes);
//! - `error ...` on an error, then it exits 1.
//!
//! `T` is `CLOCK_MONOTONIC` in nanoseconds when the line was made, which the test
//! compares with its own clock; `PTS` the buffer's PTS in nanoseconds (`-` for
//! none). Prints `ready` once playing. Runs until killed.
//!
//! Usage: `gst-watch SOCKET [DOWNSTREAM]` (`DOWNSTREAM` defaults to `fakesink`).

use std::io::Write;

use e2e::monotonic_ns;
use gst::prelude::*;

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: gst-watch SOCKET [DOWNSTREAM]");
        std::process::exit(2);
    }
    let downstream = if args.len() > 2 {
        args[2..].join(" ")
    } else {
        "fakesink".to_owned()
    };
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let desc = format!(
        "shmringsrc socket-path={} ! identity name=watched ! {downstream}",
        args[1]
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let pad = pipeline
        .by_name("watched")
        .unwrap()
        .static_pad("src")
        .unwrap();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let hash = match b.map_readable() {
                        Ok(m) => m.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
                            (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
                        }),
                        Err(_) => 0,
                    };
                    let pts = b.pts().map_or("-".to_owned(), |p| p.nseconds().to_string());
                    say(format!("buffer {} {pts} {hash:016x}", monotonic_ns()));
                }
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Caps(c) = e.view() {
                        say(format!("caps {} {}", monotonic_ns(), c.caps()));
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    say("ready".to_owned());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                say(format!("error {} ({:?})", e.error(), e.debug()));
                std::process::exit(1);
            }
            gst::MessageView::Eos(_) => {
                say("eos".to_owned());
                break;
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
}
