//! `shmringsink`: serves buffers to any number of `shmringsrc`s over the frame channel.
//!
//! `imp` holds the element (settings, state, the GStreamer trait impls), `negotiation`
//! whose word may change the stream's caps, `publish`
//! what it sends (side messages, metas, stats, latency), `session` what it decides
//! per buffer and event with no element (tag keys, buffer metadata), `pool` the buffer
//! pool of shared slots it offers upstream.

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod imp;
mod negotiation;
pub(crate) mod pool;
mod publish;
mod session;

/// The element's debug category (its pool logs in it too).
pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsink",
        gst::DebugColorFlags::empty(),
        Some("shmring sink: serves buffers over sealed shared memory"),
    )
});

glib::wrapper! {
    /// `shmringsink`.
    pub struct ShmringSink(ObjectSubclass<imp::Sink>) @extends gst_base::BaseSink, gst::Element, gst::Object, @implements gst::URIHandler;
}

pub(crate) fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "shmringsink",
        gst::Rank::NONE,
        ShmringSink::static_type(),
    )
}
