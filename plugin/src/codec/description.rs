//! What a producer tells a probe about itself (the device provider, `gst-device-monitor`):
//! its caps as text (`gst_caps_to_string`, UTF-8), or nothing before it has caps or
//! when they are longer than [`shmring::frame::MAX_DESCRIPTION`].

/// Sets `producer`'s description to `caps`; `false` when they are too long to
/// describe it (it then says nothing rather than caps it no longer has).
pub fn announce(producer: &shmring::Producer, caps: &gst::Caps) -> bool {
    if producer
        .set_description(caps.to_string().as_bytes())
        .is_ok()
    {
        return true;
    }
    let _ = producer.set_description(b"");
    false
}

/// The caps a producer's description names; `None` for none yet, or for anything
/// that is not caps GStreamer takes (a description is a peer's word).
pub fn caps_of(desc: &[u8]) -> Option<gst::Caps> {
    let text = std::str::from_utf8(desc).ok()?;
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    let caps: gst::Caps = text.parse().ok()?;
    (!caps.is_any() && !caps.is_empty()).then_some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_caps_and_junk_names_none() {
        gst::init().unwrap();
        let v = caps_of(b"video/x-raw, format=(string)I420, width=(int)64");
        assert_eq!(v.unwrap().structure(0).unwrap().name(), "video/x-raw");
        for junk in [&b""[..], b"ANY", b"EMPTY", b"\xff", b"a\0b", b"((("] {
            assert_eq!(caps_of(junk), None, "{junk:?}");
        }
    }
}
