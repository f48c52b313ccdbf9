//! `shmringsrc`: receives the buffers, caps and events of a `shmringsink` in another
//! process.
//!
//! `imp` holds the element (settings, state, the GStreamer trait impls), `receive`
//! what it makes of what the producer says; the checks everything the producer
//! says passes before it reaches GStreamer are [`crate::codec::trust`].

use gst::glib;
use gst::prelude::*;

mod imp;
mod receive;

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
