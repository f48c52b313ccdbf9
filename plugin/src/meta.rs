//! What travels with each buffer (the frame descriptor's 88 metadata bytes) and the
//! side messages that carry caps and serialized events, ordered with the buffers.
//!
//! GStreamer 1.22 has no meta serialization API, so both are encoded here, strictly:
//! a consumer decodes whatever a hostile producer wrote into a valid value or an
//! error naming the fault.

use std::str::FromStr;

use gst::glib;

/// "No value" for a timestamp or offset (GStreamer's `NONE`).
pub const NONE: u64 = u64::MAX;
/// Most planes a video layout describes.
pub const MAX_PLANES: usize = 4;

/// Sticky keys of the side messages the sink sends (latest of each key replayed to
/// consumers that join later, in key order: stream-start, caps, latency, segment, tags, TOC).
pub mod key {
    /// `stream-start`.
    pub const STREAM_START: u32 = 1;
    /// Caps.
    pub const CAPS: u32 = 2;
    /// Stream tags: the first of `TAGS_KEPT` keys (tag events since the last
    /// buffer, in order).
    pub const TAGS: u32 = 16;
    /// Tag events kept for late joiners at most.
    pub const TAGS_KEPT: u32 = 16;
    /// The producer's upstream latency.
    pub const LATENCY: u32 = 4;
    /// The producer's segment.
    pub const SEGMENT: u32 = 5;
    /// The table of contents (after the tags, as GStreamer orders sticky events).
    pub const TOC: u32 = 32;
    /// Custom sticky events: the first of `CUSTOM_STICKY_KEPT` keys, one per event
    /// name (by its hash: two names of the same hash keep only the later one).
    pub const CUSTOM_STICKY: u32 = 33;
    /// Custom sticky event names kept for late joiners.
    pub const CUSTOM_STICKY_KEPT: u32 = 16;

    /// The key of a custom sticky event named `name`.
    pub fn custom_sticky(name: &str) -> u32 {
        // FNV-1a: the same in every process and build.
        let h = name.bytes().fold(0x811c_9dc5u32, |h, c| {
            (h ^ c as u32).wrapping_mul(0x0100_0193)
        });
        CUSTOM_STICKY + h % CUSTOM_STICKY_KEPT
    }
}

/// The buffer flags that travel across the transport: what says something about the
/// data. Memory flags (`TAG_MEMORY`) and the mini object's lock flags
/// (`LOCKABLE`, `LOCK_READONLY`, `MAY_BE_LEAKED`) describe the producer's own objects
/// and never travel; any other bit is a lie.
pub const TRAVELLING_FLAGS: gst::BufferFlags = gst::BufferFlags::LIVE
    .union(gst::BufferFlags::DECODE_ONLY)
    .union(gst::BufferFlags::DISCONT)
    .union(gst::BufferFlags::RESYNC)
    .union(gst::BufferFlags::CORRUPTED)
    .union(gst::BufferFlags::MARKER)
    .union(gst::BufferFlags::HEADER)
    .union(gst::BufferFlags::GAP)
    .union(gst::BufferFlags::DROPPABLE)
    .union(gst::BufferFlags::DELTA_UNIT)
    .union(gst::BufferFlags::SYNC_AFTER)
    .union(gst::BufferFlags::NON_DROPPABLE);

/// The layout of one video frame in its slot, as `GstVideoMeta` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VideoLayout {
    /// Planes in use (1..=4).
    pub n_planes: u8,
    /// Offset of each plane from the frame's first byte.
    pub offsets: [u32; MAX_PLANES],
    /// Stride of each plane in bytes.
    pub strides: [i32; MAX_PLANES],
}

impl VideoLayout {
    /// GStreamer's own layout of a frame of `info` (the caps' offsets and strides).
    pub fn of(info: &gst_video::VideoInfo) -> VideoLayout {
        let mut v = VideoLayout {
            n_planes: info.n_planes() as u8,
            ..Default::default()
        };
        for p in 0..info.n_planes() as usize {
            v.offsets[p] = info.offset()[p] as u32;
            v.strides[p] = info.stride()[p];
        }
        v
    }
}

/// Per-buffer metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferMeta {
    /// Presentation time as the buffer had it (the segment sent before says what it
    /// means; [`NONE`] if unset).
    pub pts: u64,
    /// Decoding time, likewise ([`NONE`] if unset).
    pub dts: u64,
    /// Duration ([`NONE`] if unset).
    pub duration: u64,
    /// `GST_BUFFER_OFFSET`.
    pub offset: u64,
    /// `GST_BUFFER_OFFSET_END`.
    pub offset_end: u64,
    /// The producer's base time: the monotonic clock time of its running time 0
    /// ([`NONE`] when its pipeline had no clock). Running time + base time is an
    /// absolute time both processes' clocks agree on.
    pub base_time: u64,
    /// `GstBufferFlags` bits.
    pub flags: u32,
    /// The video layout, when the buffer had a `GstVideoMeta`.
    pub video: Option<VideoLayout>,
    /// More buffers of the same buffer list follow this one.
    pub list_continues: bool,
    /// Non-zero: the tag of the meta list sent for this buffer just before it
    /// (see [`crate::metas`]).
    pub metas_tag: u16,
}

/// Encoded size (fits the frame descriptor's 88 bytes).
pub const BUFFER_META_LEN: usize = 6 * 8 + 4 + 4 + MAX_PLANES * 8;
const _: () = assert!(BUFFER_META_LEN <= shmring::frame::META_BYTES);

impl BufferMeta {
    /// The encoded bytes.
    pub fn encode(&self) -> [u8; BUFFER_META_LEN] {
        let mut b = [0u8; BUFFER_META_LEN];
        let words = [
            self.pts,
            self.dts,
            self.duration,
            self.offset,
            self.offset_end,
            self.base_time,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[48..52].copy_from_slice(&self.flags.to_le_bytes());
        b[53] = self.list_continues as u8;
        b[54..56].copy_from_slice(&self.metas_tag.to_le_bytes());
        if let Some(v) = &self.video {
            b[52] = v.n_planes;
            for p in 0..MAX_PLANES {
                let o = 56 + p * 8;
                b[o..o + 4].copy_from_slice(&v.offsets[p].to_le_bytes());
                b[o + 4..o + 8].copy_from_slice(&v.strides[p].to_le_bytes());
            }
        }
        b
    }

    /// Decodes metadata a producer published.
    pub fn decode(b: &[u8]) -> Result<BufferMeta, String> {
        if b.len() != BUFFER_META_LEN {
            return Err(format!(
                "buffer metadata is {} bytes, expected {BUFFER_META_LEN}",
                b.len()
            ));
        }
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let n_planes = b[52];
        if b[53] > 1 {
            return Err(format!(
                "buffer metadata byte 53 is {}, not a list mark",
                b[53]
            ));
        }
        if n_planes as usize > MAX_PLANES {
            return Err(format!("video layout has {n_planes} planes"));
        }
        let video = (n_planes > 0).then(|| {
            let mut v = VideoLayout {
                n_planes,
                ..Default::default()
            };
            for p in 0..MAX_PLANES {
                let o = 56 + p * 8;
                v.offsets[p] = u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
                v.strides[p] = i32::from_le_bytes(b[o + 4..o + 8].try_into().expect("4 bytes"));
            }
            v
        });
        Ok(BufferMeta {
            pts: w(0),
            dts: w(1),
            duration: w(2),
            offset: w(3),
            offset_end: w(4),
            base_time: w(5),
            flags: u32::from_le_bytes(b[48..52].try_into().expect("4 bytes")),
            video,
            list_continues: b[53] == 1,
            metas_tag: u16::from_le_bytes([b[54], b[55]]),
        })
    }
}

/// A side message of the sink: caps or a serialized event.
#[derive(Clone, Debug, PartialEq)]
pub enum Side {
    /// New caps.
    Caps(gst::Caps),
    /// `stream-start` with its stream id (group ids are local to a process: a
    /// consumer makes its own).
    StreamStart {
        /// The stream id.
        stream_id: String,
    },
    /// A tag list (stream or global scope).
    Tags(gst::TagList),
    /// A gap: no data for `duration` from `pts` (a timestamp of the producer's segment).
    Gap {
        /// Start, in the producer's segment.
        pts: u64,
        /// Length ([`NONE`] if unknown).
        duration: u64,
    },
    /// End of stream.
    Eos,
    /// A custom downstream serialized event.
    Custom(gst::Structure),
    /// The latency of the producer's pipeline upstream of its sink: a buffer with
    /// running time `t` reaches the sink at `t + min` at the earliest.
    Latency {
        /// Whether the producer's upstream is live.
        live: bool,
        /// Minimum latency in nanoseconds.
        min: u64,
        /// Maximum latency in nanoseconds ([`NONE`]: unbounded).
        max: u64,
    },
    /// The producer's (time) segment: buffer timestamps travel as they are, and
    /// this says what they mean.
    Segment(gst::FormattedSegment<gst::ClockTime>),
    /// A custom downstream sticky event.
    CustomSticky(gst::Structure),
    /// The producer's pipeline flushed (a flushing seek): what consumers hold
    /// stays theirs, the stream goes on from the segment that follows.
    Flush,
    /// A piece of the next buffer's meta list (tag, list length, bytes: see
    /// [`crate::metas::Assembly`]).
    MetaPiece(Vec<u8>),
    /// A table of contents, as [`crate::toc::encode`] wrote it (checked by
    /// [`crate::toc::decode`] when this message is decoded).
    Toc(Vec<u8>),
}

const T_CAPS: u8 = 1;
const T_STREAM_START: u8 = 2;
const T_TAGS: u8 = 3;
const T_GAP: u8 = 4;
const T_EOS: u8 = 5;
const T_CUSTOM: u8 = 6;
const T_LATENCY: u8 = 7;
const T_SEGMENT: u8 = 8;
const T_CUSTOM_STICKY: u8 = 9;
const T_FLUSH: u8 = 10;
/// Tags of global scope (`T_TAGS`: of stream scope, GStreamer's default).
const T_TAGS_GLOBAL: u8 = 13;
/// The type byte of a meta piece.
pub const T_META_PIECE: u8 = 11;
/// The type byte of a TOC.
pub const T_TOC: u8 = 12;

/// Bytes of a segment message's body: flags, two rates, eight times.
const SEGMENT_LEN: usize = 4 + 2 * 8 + 8 * 8;

fn segment_encode(seg: &gst::FormattedSegment<gst::ClockTime>) -> Vec<u8> {
    let mut b = Vec::with_capacity(SEGMENT_LEN);
    b.extend_from_slice(&seg.flags().bits().to_le_bytes());
    b.extend_from_slice(&seg.rate().to_le_bytes());
    b.extend_from_slice(&seg.applied_rate().to_le_bytes());
    for t in [
        seg.start(),
        seg.stop(),
        seg.time(),
        seg.base(),
        seg.offset(),
        seg.position(),
        seg.duration(),
    ] {
        b.extend_from_slice(&ct(t).to_le_bytes());
    }
    // Reserved.
    b.extend_from_slice(&0u64.to_le_bytes());
    b
}

/// Decodes and checks a segment a peer sent: rates finite and not zero, start,
/// time and base known, stop (when known) not before start, only known flags.
fn segment_decode(body: &[u8]) -> Result<gst::FormattedSegment<gst::ClockTime>, String> {
    if body.len() != SEGMENT_LEN {
        return Err(format!(
            "segment message is {} bytes, not {SEGMENT_LEN}",
            body.len()
        ));
    }
    let u64_at =
        |i: usize| u64::from_le_bytes(body[20 + 8 * i..28 + 8 * i].try_into().expect("8 bytes"));
    let flags = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
    let rate = f64::from_le_bytes(body[4..12].try_into().expect("8 bytes"));
    let applied_rate = f64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
    let flags = gst::SegmentFlags::from_bits(flags)
        .ok_or_else(|| format!("segment flags {flags:#x} are not GStreamer's"))?;
    for (what, r) in [("rate", rate), ("applied rate", applied_rate)] {
        if !r.is_finite() || r == 0.0 {
            return Err(format!("segment {what} {r} is not a rate"));
        }
    }
    let (start, stop, time, base, offset, position, duration) = (
        u64_at(0),
        u64_at(1),
        u64_at(2),
        u64_at(3),
        u64_at(4),
        u64_at(5),
        u64_at(6),
    );
    if start == NONE || time == NONE || base == NONE || offset == NONE {
        return Err("segment start, time, base and offset must be known".into());
    }
    if stop != NONE && stop < start {
        return Err(format!("segment stop {stop} is before its start {start}"));
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_flags(flags);
    seg.set_rate(rate);
    seg.set_applied_rate(applied_rate);
    seg.set_start(to_ct(start));
    seg.set_stop(to_ct(stop));
    seg.set_time(to_ct(time));
    seg.set_base(to_ct(base));
    seg.set_offset(to_ct(offset));
    seg.set_position(to_ct(position));
    seg.set_duration(to_ct(duration));
    Ok(seg)
}

impl Side {
    /// The message bytes: a type byte, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let (t, body): (u8, Vec<u8>) = match self {
            Side::Caps(c) => (T_CAPS, c.to_string().into_bytes()),
            Side::StreamStart { stream_id } => (T_STREAM_START, stream_id.clone().into_bytes()),
            Side::Tags(t) => {
                let ty = match t.scope() {
                    gst::TagScope::Global => T_TAGS_GLOBAL,
                    _ => T_TAGS,
                };
                (ty, t.to_string().into_bytes())
            }
            Side::Gap { pts, duration } => {
                let mut b = pts.to_le_bytes().to_vec();
                b.extend_from_slice(&duration.to_le_bytes());
                (T_GAP, b)
            }
            Side::Eos => (T_EOS, Vec::new()),
            Side::Flush => (T_FLUSH, Vec::new()),
            Side::MetaPiece(b) => (T_META_PIECE, b.clone()),
            Side::Toc(b) => (T_TOC, b.clone()),
            Side::Custom(s) => (T_CUSTOM, s.to_string().into_bytes()),
            Side::CustomSticky(s) => (T_CUSTOM_STICKY, s.to_string().into_bytes()),
            Side::Segment(seg) => (T_SEGMENT, segment_encode(seg)),
            Side::Latency { live, min, max } => {
                let mut b = vec![*live as u8];
                b.extend_from_slice(&min.to_le_bytes());
                b.extend_from_slice(&max.to_le_bytes());
                (T_LATENCY, b)
            }
        };
        let mut out = vec![t];
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a side message; anything malformed is an error naming it.
    pub fn decode(b: &[u8]) -> Result<Side, String> {
        let (&t, body) = b.split_first().ok_or("empty side message")?;
        let text = || {
            let t = std::str::from_utf8(body).map_err(|e| format!("side message text: {e}"))?;
            // GStreamer takes C strings: an interior NUL would make the bindings panic.
            match t.find('\0') {
                Some(at) => Err(format!("side message text has a NUL byte at {at}")),
                None => Ok(t),
            }
        };
        Ok(match t {
            T_CAPS => Side::Caps(caps_from_text(text()?)?),
            T_STREAM_START => Side::StreamStart {
                stream_id: text()?.to_owned(),
            },
            T_TAGS | T_TAGS_GLOBAL => {
                let s = text()?;
                let mut tags = tags_from_str(s).ok_or_else(|| format!("unparsable tags {s:?}"))?;
                // The scope is no part of the text: it travels in the type.
                let scope = if t == T_TAGS_GLOBAL {
                    gst::TagScope::Global
                } else {
                    gst::TagScope::Stream
                };
                tags.make_mut().set_scope(scope);
                Side::Tags(tags)
            }
            T_GAP => {
                if body.len() != 16 {
                    return Err("gap message is not 16 bytes".into());
                }
                Side::Gap {
                    pts: u64::from_le_bytes(body[..8].try_into().expect("8 bytes")),
                    duration: u64::from_le_bytes(body[8..].try_into().expect("8 bytes")),
                }
            }
            T_EOS if body.is_empty() => Side::Eos,
            T_FLUSH if body.is_empty() => Side::Flush,
            T_META_PIECE => Side::MetaPiece(body.to_vec()),
            T_TOC => {
                crate::toc::decode(body)?;
                Side::Toc(body.to_vec())
            }
            T_CUSTOM => {
                let s = text()?;
                Side::Custom(
                    gst::Structure::from_str(s)
                        .map_err(|_| format!("unparsable structure {s:?}"))?,
                )
            }
            T_CUSTOM_STICKY => {
                let s = text()?;
                Side::CustomSticky(
                    gst::Structure::from_str(s)
                        .map_err(|_| format!("unparsable structure {s:?}"))?,
                )
            }
            T_SEGMENT => Side::Segment(segment_decode(body)?),
            T_LATENCY => {
                if body.len() != 17 || body[0] > 1 {
                    return Err("latency message is not a flag and two times".into());
                }
                let min = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
                let max = u64::from_le_bytes(body[9..].try_into().expect("8 bytes"));
                if min == NONE || (max != NONE && max < min) {
                    return Err(format!("latency min {min} max {max} is not a range"));
                }
                Side::Latency {
                    live: body[0] == 1,
                    min,
                    max,
                }
            }
            t => return Err(format!("unknown side message type {t}")),
        })
    }
}

/// Parses the text of a stream's caps: one fixed structure that reads back as itself.
pub fn caps_from_text(s: &str) -> Result<gst::Caps, String> {
    if let Some(at) = s.find('\0') {
        return Err(format!("caps text has a NUL byte at {at}"));
    }
    let caps = gst::Caps::from_str(s).map_err(|_| format!("unparsable caps {s:?}"))?;
    // One fixed structure: "NONE", "ANY" and lists are no stream's caps.
    if caps.is_any() || caps.size() != 1 || !caps.is_fixed() {
        return Err(format!("caps {caps} are not fixed"));
    }
    // And text that means one thing: " NONE" parses as a structure named
    // NONE, which prints as "NONE", which parses as no caps at all.
    if gst::Caps::from_str(&caps.to_string()).ok().as_ref() != Some(&caps) {
        return Err(format!("caps {s:?} do not read back as themselves"));
    }
    Ok(caps)
}

/// Parses a serialized tag list (`gst_tag_list_new_from_string`).
pub(crate) fn tags_from_str(s: &str) -> Option<gst::TagList> {
    let c = std::ffi::CString::new(s).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string; the function returns a new tag
    // list (full transfer) or NULL on a parse error.
    unsafe {
        let t = gst::ffi::gst_tag_list_new_from_string(c.as_ptr());
        (!t.is_null()).then(|| glib::translate::from_glib_full(t))
    }
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
    fn tags_keep_their_scope_across() {
        gst::init().unwrap();
        for scope in [gst::TagScope::Global, gst::TagScope::Stream] {
            let mut t = gst::TagList::new();
            {
                let t = t.get_mut().unwrap();
                t.add::<gst::tags::Title>(&"x", gst::TagMergeMode::Replace);
                t.set_scope(scope);
            }
            let Side::Tags(back) = Side::decode(&Side::Tags(t).encode()).unwrap() else {
                panic!("not tags")
            };
            assert_eq!(back.scope(), scope);
            assert_eq!(back.get::<gst::tags::Title>().unwrap().get(), "x");
        }
    }

    #[test]
    fn buffer_meta_round_trips_and_bad_layouts_are_refused() {
        let m = BufferMeta {
            pts: 1,
            dts: NONE,
            duration: 3,
            offset: 4,
            offset_end: 5,
            base_time: 6,
            flags: 0x40,
            video: Some(VideoLayout {
                n_planes: 3,
                offsets: [0, 100, 150, 0],
                strides: [10, 5, 5, 0],
            }),
            list_continues: true,
            metas_tag: 513,
        };
        assert_eq!(BufferMeta::decode(&m.encode()).unwrap(), m);
        let mut b = m.encode();
        b[52] = 9;
        assert_eq!(
            BufferMeta::decode(&b).unwrap_err(),
            "video layout has 9 planes"
        );
        assert!(BufferMeta::decode(&b[..10]).is_err());
    }

    #[test]
    fn side_messages_round_trip_and_garbage_is_refused() {
        gst::init().unwrap();
        let msgs = [
            Side::Caps(gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2").unwrap()),
            Side::StreamStart {
                stream_id: "abc".into(),
            },
            Side::Gap {
                pts: 10,
                duration: NONE,
            },
            Side::Eos,
            Side::Custom(gst::Structure::from_str("my-event, n=(int)3").unwrap()),
            Side::Latency {
                live: true,
                min: 33_000_000,
                max: NONE,
            },
        ];
        for m in msgs {
            assert_eq!(Side::decode(&m.encode()).unwrap(), m);
        }
        assert!(Side::decode(&[]).is_err());
        let mut lat = Side::Latency {
            live: true,
            min: 5,
            max: 4,
        }
        .encode();
        assert_eq!(
            Side::decode(&lat).unwrap_err(),
            "latency min 5 max 4 is not a range"
        );
        assert!(Side::decode(&lat[..5]).is_err(), "short");
        lat[1] = 2;
        assert!(
            Side::decode(&lat).is_err(),
            "a flag that is neither 0 nor 1"
        );
        assert!(Side::decode(&[T_CAPS, 0xff]).is_err());
        // Found by the fuzzer: text with a NUL byte made GStreamer's bindings panic.
        for t in [T_CAPS, T_STREAM_START, T_TAGS, T_CUSTOM] {
            assert_eq!(
                Side::decode(&[t, b'a', 0, b'b']).unwrap_err(),
                "side message text has a NUL byte at 1"
            );
        }
        assert!(Side::decode(b"\x01video/x-raw,width=[1,5]").is_err());
        assert_eq!(
            Side::decode(&[99]).unwrap_err(),
            "unknown side message type 99"
        );
    }
}
