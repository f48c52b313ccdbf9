//! The body of the `meta_decode` fuzz target (`fuzz/`), here so that the stable test
//! replaying its committed corpus runs exactly what the fuzzer runs. Not part of the
//! API.

use crate::codec::trust;
use crate::codec::{BUFFER_META_LEN, BufferMeta, Side};

/// Decodes what a producer sent a `shmringsrc`: if the first byte is 0xfe, the rest
/// is a buffer's meta list (decoded for a 320x240 frame, then added to a buffer);
/// else if it is even, the rest is a buffer's metadata; if odd, a side message
/// (caps, events, latency). Whatever decodes must round-trip. Returns whether it
/// decoded.
pub fn meta_decode(data: &[u8]) -> bool {
    let Some((&kind, rest)) = data.split_first() else {
        return false;
    };
    if kind == 0xfe {
        gst::init().expect("GStreamer");
        let frame = crate::codec::metas::Frame {
            size: Some((320, 240)),
        };
        return match crate::codec::metas::decode(rest, frame) {
            Ok(list) => {
                let again = crate::codec::metas::decode(&crate::codec::metas::encode(&list), frame)
                    .expect("re-decodes");
                assert_eq!(again, list, "meta list does not round-trip");
                let mut b = gst::Buffer::new();
                crate::codec::metas::apply(b.get_mut().expect("new"), list, &Default::default());
                true
            }
            Err(_) => false,
        };
    }
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

/// Frame memory laid out as a consumer's worst case, a frame at the end of its
/// arena: the frame's last byte is followed by the arena's read pad
/// ([`shmring::frame::READ_PAD`] zero bytes, which GStreamer's unpackers may read
/// into) and then an inaccessible page; another one comes before the page the frame
/// starts in. Any read past the pad (by GStreamer's C code, which the sanitizer
/// does not see) faults.
struct Guarded {
    base: *mut u8,
    total: usize,
    start: usize,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and only ever read through it.
unsafe impl Send for Guarded {}

impl Guarded {
    fn new(len: usize) -> Guarded {
        let page = 4096;
        let pad = shmring::frame::READ_PAD.div_ceil(page) * page;
        let body = len.div_ceil(page).max(1) * page;
        let total = body + pad + 2 * page;
        // SAFETY: an anonymous private mapping of `total` bytes, checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        let base = base.cast::<u8>();
        // SAFETY: the body and the pad after it lie inside the mapping made above;
        // only they are opened (the pad stays zero, as a fresh anonymous page is).
        let r = unsafe {
            libc::mprotect(
                base.add(page).cast(),
                body + pad,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        assert_eq!(r, 0, "mprotect");
        let start = page + body - len;
        // SAFETY: `start..start + len` is inside the readable, writable body.
        unsafe { std::ptr::write_bytes(base.add(start), 0x80, len) };
        Guarded {
            base,
            total,
            start,
            len,
        }
    }
}

impl AsRef<[u8]> for Guarded {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..start + len` is mapped readable and written, and nothing
        // writes it after `new`.
        unsafe { std::slice::from_raw_parts(self.base.add(self.start), self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.total) };
    }
}

/// The consumer's path from what a producer says to what GStreamer does with it:
/// `[format u8][width u16][height u16][frame length u32][88 bytes of metadata]`
/// picks raw video caps (any format GStreamer knows, up to 256x256), a frame length
/// and metadata; what `trust` accepts is built into a buffer exactly as
/// `shmringsrc` builds it (in guarded memory), mapped as a `GstVideoFrame` and
/// converted to RGBA. Nothing may read past the frame and its read pad. Returns
/// whether the buffer was accepted.
pub fn video_frame(data: &[u8]) -> bool {
    if data.len() < 9 + BUFFER_META_LEN {
        return false;
    }
    gst::init().expect("GStreamer");
    let formats: Vec<gst_video::VideoFormat> = gst_video::VideoFormat::iter_raw().collect();
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as u32;
    let format = formats[data[0] as usize % formats.len()];
    let (w, h) = (1 + u16_at(1) % 256, 1 + u16_at(3) % 256);
    let Ok(info) = gst_video::VideoInfo::builder(format, w, h).build() else {
        return false;
    };
    let Ok(caps) = info.to_caps() else {
        return false;
    };
    let Ok(accepted) = trust::accept_caps(&caps) else {
        return false;
    };
    let len = u32::from_le_bytes(data[5..9].try_into().expect("4 bytes")) as usize
        % (2 * info.size() + 4096);
    let Ok(m) = BufferMeta::decode(&data[9..9 + BUFFER_META_LEN]) else {
        return false;
    };
    let Ok(checked) = accepted.check(len, &m) else {
        return false;
    };
    let mut buffer = gst::Buffer::from_slice(Guarded::new(len));
    let b = buffer.get_mut().expect("fresh buffer");
    b.set_flags(checked.flags);
    if trust::add_layout_metas(b, &accepted, &checked).is_err() {
        return false;
    }
    let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info)
    else {
        // GStreamer refusing to map it is fine: it read nothing outside.
        return true;
    };
    let out_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, w, h)
        .build()
        .expect("RGBA info");
    if let Ok(conv) = gst_video::VideoConverter::new(&info, &out_info, None) {
        let mut out = gst::Buffer::with_size(out_info.size()).expect("output buffer");
        let mut out_frame = gst_video::VideoFrameRef::from_buffer_ref_writable(
            out.get_mut().expect("fresh"),
            &out_info,
        )
        .expect("maps the output");
        conv.frame_ref(&frame, &mut out_frame);
    }
    true
}
