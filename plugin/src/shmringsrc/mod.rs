//! `shmringsrc`: receives the buffers, caps and events of a `shmringsink` in another
//! process.
//!
//! `imp` holds the element (settings, the GStreamer trait impls, `create`);
//! `session` decides what each event of the producer makes, with no element (unit
//! tested without a pipeline); `receive` connects and does what the session
//! decided. The checks everything the producer says passes before it reaches
//! GStreamer are [`crate::codec::trust`].

use std::sync::LazyLock;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

mod imp;
mod receive;
mod session;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsrc",
        gst::DebugColorFlags::empty(),
        Some("shmring source: receives buffers over sealed shared memory"),
    )
});

/// How long a source waits for a producer it told what downstream accepts to send
/// caps downstream takes.
const CAPS_GRACE: Duration = Duration::from_secs(5);

glib::wrapper! {
    /// `shmringsrc`.
    pub struct ShmringSrc(ObjectSubclass<imp::Src>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object, @implements gst::URIHandler;
}

pub(crate) fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "shmringsrc",
        gst::Rank::NONE,
        ShmringSrc::static_type(),
    )
}
