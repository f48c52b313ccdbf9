//! The capture half of the sandboxed-encoder example: a live camera pipeline
//! (`v4l2src` when `/dev/video0` exists, else `videotestsrc`) into `shmringsink`,
//! which serves exactly one consumer: the encoder process this program starts with
//! the other end of a socket pair as its fd 3. The encoder needs no path, no
//! filesystem and no network: it locks all of that away before the first frame.
//!
//! Usage: `sandboxed-capture [FRAMES [OUTPUT.mp4 [PROBE_PATH...]]]` (defaults 150
//! frames, `sandboxed.mp4`); probe paths are passed to the encoder, which says
//! whether it could open them from inside its sandbox.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use gst::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let frames: u32 = args.get(1).map_or(150, |s| s.parse().expect("FRAMES"));
    let output = args.get(2).map_or("sandboxed.mp4", String::as_str);
    let probes = args.get(3..).unwrap_or(&[]);
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();

    let (ours, theirs) = shmring::fdpass::seqpacket_pair().expect("socketpair");
    let camera = if std::path::Path::new("/dev/video0").exists() {
        format!("v4l2src num-buffers={frames} ! videoconvert ! videoscale")
    } else {
        format!("videotestsrc is-live=true pattern=smpte num-buffers={frames}")
    };
    let desc = format!(
        "{camera} ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! shmringsink name=sink consumer-fd={} wait-for-connection=true",
        ours.as_raw_fd()
    );
    println!("capture: {desc}");
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // The sink holds its own duplicate now.
    drop(ours);

    // The encoder: its fd 3 is our socket pair's other end, and nothing else of ours.
    let encoder = std::env::current_exe()
        .unwrap()
        .with_file_name("sandboxed-encoder");
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(&encoder);
    cmd.arg("3").arg(output).args(probes);
    // SAFETY: dup2 and fcntl are async-signal-safe and the only calls between fork
    // and exec; they make fd 3 (close-on-exec cleared) refer to the socket, which
    // stays open in this process until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let r = if theirs_fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(theirs_fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", encoder.display()));
    drop(theirs);

    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                eprintln!("capture: {} ({:?})", e.error(), e.debug());
                let _ = child.kill();
                std::process::exit(1);
            }
            _ => {}
        }
    }
    let stats = pipeline
        .by_name("sink")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "capture: sent {} frames to the encoder (zero-copy {}, copied {})",
        stats.get::<u64>("frames").unwrap(),
        stats.get::<u64>("zero-copy").unwrap(),
        stats.get::<u64>("copies").unwrap()
    );
    let status = child.wait().unwrap();
    if !status.success() {
        eprintln!("capture: the encoder failed: {status}");
        std::process::exit(1);
    }
    println!("capture: {output} written by the sandboxed encoder");
}
