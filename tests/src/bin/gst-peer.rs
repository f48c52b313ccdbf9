//! A GStreamer pipeline process for the chaos test: a live `shmringsink` producer or
//! a reconnecting `shmringsrc` consumer, with the plugin registered from this build.
//!
//! Usage: `gst-peer produce|consume SOCKET`. Prints `ready` once playing; then, for
//! each `stats` line on stdin, one line with the element's `stats` structure. At the
//! end of stdin (the test closed it, or died) it stops cleanly and exits 0. An error
//! on the bus prints `error ...` and exits 1.

use std::io::{BufRead, Write};

use gst::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: gst-peer produce|consume SOCKET");
        std::process::exit(2);
    }
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let path = &args[2];
    let desc = match args[1].as_str() {
        "produce" => format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=60/1 ! shmringsink name=e socket-path={path}"
        ),
        "consume" => format!(
            "shmringsrc name=e socket-path={path} reconnect=true reconnect-interval=20 ! fakesink sync=false"
        ),
        other => {
            eprintln!("unknown role {other}");
            std::process::exit(2);
        }
    };
    let pipeline = gst::parse::launch(&desc).unwrap();
    let e = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("e")
        .unwrap();
    let bus = pipeline.bus().unwrap();
    // Any error ends the process with status 1: the test calls that a crash.
    std::thread::spawn(move || {
        for msg in bus.iter_timed(gst::ClockTime::NONE) {
            if let gst::MessageView::Error(err) = msg.view() {
                println!("error {} {:?}", err.error(), err.debug());
                std::process::exit(1);
            }
        }
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "stats" {
            println!("{}", e.property::<gst::Structure>("stats"));
            std::io::stdout().flush().unwrap();
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}
