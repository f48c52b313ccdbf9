//! GStreamer pointed at the plugin this workspace built.

use std::process::Command;
use std::sync::Once;

/// The directory holding `libgstshmring.so`: the target directory of the running
/// test binary (`target/<profile>`), for `GST_PLUGIN_PATH`.
pub fn gst_plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstshmring.so").exists(),
        "{} has no libgstshmring.so: build the workspace first (cargo test --workspace)",
        dir.display()
    );
    dir
}

/// `tool` (`gst-launch-1.0`, `gst-play-1.0`, ...) with GStreamer pointed at the
/// built plugin and a registry of its own.
pub fn gst_command(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("GST_PLUGIN_PATH", gst_plugin_dir())
        .env("GST_REGISTRY", gst_plugin_dir().join("gst-registry.bin"));
    c
}

/// GStreamer initialized in this process, with the plugin's elements registered
/// (once, whichever test asks first).
pub fn init_gst() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstshmring::plugin_register_static().unwrap();
    });
}

/// The first error `pipeline` posts (message and debug text), within 60 s.
pub fn first_error(pipeline: &gst::Element) -> String {
    use gst::prelude::*;
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    format!("{} {:?}", err.error(), err.debug())
}
