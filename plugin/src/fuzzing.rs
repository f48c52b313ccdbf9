//! The body of the `meta_decode` fuzz target (`fuzz/`), here so that the stable test
//! replaying its committed corpus runs exactly what the fuzzer runs. Not part of the
//! API.

use crate::meta::{BUFFER_META_LEN, BufferMeta, Side};

/// Decodes what a producer sent a `shmringsrc`: if the first byte is even, the rest
/// is a buffer's metadata; if odd, a side message (caps, events, latency). Whatever
/// decodes must round-trip. Returns whether it decoded.
pub fn meta_decode(data: &[u8]) -> bool {
    let Some((&kind, rest)) = data.split_first() else {
        return false;
    };
    if kind % 2 == 0 {
        match BufferMeta::decode(rest) {
            Ok(m) => {
                let again = BufferMeta::decode(&m.encode()).expect("re-decodes");
                assert_eq!(again, m, "buffer metadata does not round-trip");
                assert_eq!(rest.len(), BUFFER_META_LEN);
                true
            }
            Err(_) => false,
        }
    } else {
        gst::init().expect("GStreamer");
        match Side::decode(rest) {
            Ok(s) => {
                let again = Side::decode(&s.encode()).expect("re-decodes");
                assert_eq!(again, s, "side message does not round-trip");
                true
            }
            Err(_) => false,
        }
    }
}
