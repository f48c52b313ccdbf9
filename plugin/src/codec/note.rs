//! The note a consumer sends its producer: what its downstream accepts.
//!
//! | bytes | field                                           |
//! |-------|-------------------------------------------------|
//! | 0..5  | `caps:`                                         |
//! | 5..   | the caps text (`gst_caps_to_string`), UTF-8     |
//!
//! A note is a peer's word: the producer reads it with [`accepts_of`], which takes
//! only caps GStreamer parses, neither ANY nor empty, of at most
//! [`MAX_NOTE_STRUCTURES`] structures; anything else says nothing (the consumer is
//! then taken to accept any caps). What the producer does with it is the
//! isolation rule in `shmringsink`'s negotiation.

/// The note's prefix.
pub const PREFIX: &[u8] = b"caps:";

/// Caps in a note with more structures than this say nothing (their intersections
/// would cost the producer's streaming thread time that grows with the square of it).
pub const MAX_NOTE_STRUCTURES: usize = 32;

/// The note saying downstream accepts `caps`, or `None` when it is longer than a
/// note may be ([`shmring::frame::MAX_NOTE`]).
pub fn encode(caps: &gst::Caps) -> Option<Vec<u8>> {
    let text = caps.to_string();
    let mut note = Vec::with_capacity(PREFIX.len() + text.len());
    note.extend_from_slice(PREFIX);
    note.extend_from_slice(text.as_bytes());
    (note.len() <= shmring::frame::MAX_NOTE).then_some(note)
}

/// Whether `note` says its consumer takes any caps (`caps:ANY`).
pub fn says_any(note: &[u8]) -> bool {
    note.strip_prefix(PREFIX)
        .is_some_and(|t| t.starts_with(b"ANY"))
}

/// The caps a consumer's note says its downstream accepts; `None` for anything else
/// (unparsable, ANY or empty caps, caps of more than [`MAX_NOTE_STRUCTURES`]
/// structures, no `caps:` prefix).
pub fn accepts_of(note: &[u8]) -> Option<gst::Caps> {
    let text = std::str::from_utf8(note.strip_prefix(PREFIX)?).ok()?;
    if text.contains('\0') {
        return None;
    }
    let caps: gst::Caps = text.parse().ok()?;
    (!caps.is_any() && !caps.is_empty() && caps.size() <= MAX_NOTE_STRUCTURES).then_some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_and_junk_says_nothing() {
        gst::init().unwrap();
        let caps: gst::Caps = "video/x-raw,format=I420; video/x-raw,format=NV12"
            .parse()
            .unwrap();
        assert_eq!(accepts_of(&encode(&caps).unwrap()), Some(caps));
        let any = encode(&gst::Caps::new_any()).unwrap();
        assert!(says_any(&any));
        assert_eq!(accepts_of(&any), None);
        let many = (0..=MAX_NOTE_STRUCTURES)
            .map(|i| format!("a/b,n={i}"))
            .collect::<Vec<_>>()
            .join(";");
        for junk in [
            &b"caps:"[..],
            b"caps:EMPTY",
            b"hello",
            b"caps:a\0b",
            b"caps:\xff",
            b"video/x-raw",
            format!("caps:{many}").as_bytes(),
        ] {
            assert_eq!(accepts_of(junk), None, "{junk:?}");
        }
        let huge = gst::Caps::builder("a/b")
            .field("x", "y".repeat(shmring::frame::MAX_NOTE))
            .build();
        assert_eq!(encode(&huge), None);
    }
}
