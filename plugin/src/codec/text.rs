//! Values that cross as GStreamer's own text (caps, tags, structures) and as
//! nanoseconds with [`NONE`]: parsed strictly, into a value that means what the text
//! says or a [`Fault`].

use std::str::FromStr;

use gst::glib;

use super::fault::Fault;

/// "No value" for a timestamp or offset (GStreamer's `NONE`).
pub const NONE: u64 = u64::MAX;

/// Parses the text of a stream's caps: one fixed structure that reads back as itself.
pub fn caps_from_text(s: &str) -> Result<gst::Caps, Fault> {
    let what = "caps";
    if let Some(at) = s.find('\0') {
        return Err(Fault::Nul { what, at });
    }
    let caps = gst::Caps::from_str(s).map_err(|_| Fault::Unparsable {
        what,
        text: s.to_owned(),
    })?;
    // One fixed structure: "NONE", "ANY" and lists are no stream's caps; and text that
    // means one thing: " NONE" parses as a structure named NONE, which prints as
    // "NONE", which parses as no caps at all.
    let fixed = !caps.is_any() && caps.size() == 1 && caps.is_fixed();
    if !fixed || gst::Caps::from_str(&caps.to_string()).ok().as_ref() != Some(&caps) {
        return Err(Fault::NotFixed {
            what,
            text: s.to_owned(),
        });
    }
    Ok(caps)
}

/// Parses a serialized tag list (`gst_tag_list_new_from_string`).
pub fn tags_from_str(s: &str) -> Option<gst::TagList> {
    let c = std::ffi::CString::new(s).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string; the function returns a new tag
    // list (full transfer) or NULL on a parse error.
    unsafe {
        let t = gst::ffi::gst_tag_list_new_from_string(c.as_ptr());
        (!t.is_null()).then(|| glib::translate::from_glib_full(t))
    }
}

/// Tags a peer sent as text, or the fault naming `what` they were for.
pub fn tags(s: &str, what: &'static str) -> Result<gst::TagList, Fault> {
    tags_from_str(s).ok_or_else(|| Fault::Unparsable {
        what,
        text: s.to_owned(),
    })
}

/// A structure a peer sent as text, or the fault naming `what` it was for.
pub fn structure(s: &str, what: &'static str) -> Result<gst::Structure, Fault> {
    gst::Structure::from_str(s).map_err(|_| Fault::Unparsable {
        what,
        text: s.to_owned(),
    })
}

/// `Option<ClockTime>` as a u64 with [`NONE`].
pub fn ct(t: Option<gst::ClockTime>) -> u64 {
    t.map_or(NONE, |t| t.nseconds())
}

/// A u64 with [`NONE`] as `Option<ClockTime>`.
pub fn to_ct(v: u64) -> Option<gst::ClockTime> {
    (v != NONE).then(|| gst::ClockTime::from_nseconds(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_text_is_one_fixed_structure_that_reads_back() {
        gst::init().unwrap();
        assert!(caps_from_text("video/x-raw,format=I420,width=4,height=2").is_ok());
        for bad in ["ANY", "NONE", " NONE", "video/x-raw,width=[1,5]", "a;b"] {
            assert!(
                matches!(
                    caps_from_text(bad),
                    Err(Fault::NotFixed { what: "caps", .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            caps_from_text("a\0b"),
            Err(Fault::Nul {
                what: "caps",
                at: 1
            })
        );
        assert!(matches!(
            caps_from_text("video/x-raw,width=(int)x"),
            Err(Fault::Unparsable { what: "caps", .. })
        ));
    }
}
