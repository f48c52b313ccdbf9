//! What travels with each buffer in its frame descriptor's 88 metadata bytes.
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..8   | PTS (`u64`, [`NONE`] if unset)                          |
//! | 8..16  | DTS                                                     |
//! | 16..24 | duration                                                |
//! | 24..32 | `GST_BUFFER_OFFSET`                                     |
//! | 32..40 | `GST_BUFFER_OFFSET_END`                                 |
//! | 40..48 | the producer's base time                                |
//! | 48..52 | buffer flags (`u32`, only [`TRAVELLING_FLAGS`])         |
//! | 52     | video planes (0: no `GstVideoMeta`; at most [`MAX_PLANES`]) |
//! | 53     | 1 if more buffers of the same buffer list follow, else 0 |
//! | 54..56 | tag of the meta list sent just before (`u16`, 0: none)  |
//! | 56..88 | per plane: offset (`u32`), stride (`i32`)               |
//!
//! The bytes are a `#[repr(C)]` plain-old-data record ([`MetaWire`]) in the byte
//! order of the machine both processes share; any bytes a producer wrote read as a
//! value, and [`BufferMeta::decode`] then checks every field.

use bytemuck::{Pod, Zeroable};

use super::fault::Fault;
use super::text::NONE;

/// Most planes a video layout describes.
pub const MAX_PLANES: usize = 4;

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
    /// (see [`super::metas`]).
    pub metas_tag: u16,
}

/// One plane's place in the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PlaneWire {
    /// Offset from the frame's first byte.
    pub offset: u32,
    /// Stride in bytes.
    pub stride: i32,
}

/// The record as it lies in the descriptor (see the table above).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MetaWire {
    /// PTS, DTS, duration, offset, offset end, base time.
    pub times: [u64; 6],
    /// Buffer flags.
    pub flags: u32,
    /// Video planes (0: none).
    pub n_planes: u8,
    /// 1: more buffers of the list follow.
    pub list_mark: u8,
    /// Tag of the meta list sent before.
    pub metas_tag: u16,
    /// Each plane's offset and stride.
    pub planes: [PlaneWire; MAX_PLANES],
}

/// Encoded size (fits the frame descriptor's 88 bytes).
pub const BUFFER_META_LEN: usize = std::mem::size_of::<MetaWire>();
const _: () = assert!(BUFFER_META_LEN == 88);
const _: () = assert!(BUFFER_META_LEN <= shmring::frame::META_BYTES);

impl BufferMeta {
    /// The record.
    pub fn to_wire(&self) -> MetaWire {
        let mut w = MetaWire {
            times: [
                self.pts,
                self.dts,
                self.duration,
                self.offset,
                self.offset_end,
                self.base_time,
            ],
            flags: self.flags,
            list_mark: self.list_continues as u8,
            metas_tag: self.metas_tag,
            ..MetaWire::default()
        };
        if let Some(v) = &self.video {
            w.n_planes = v.n_planes;
            for (p, plane) in w.planes.iter_mut().enumerate() {
                *plane = PlaneWire {
                    offset: v.offsets[p],
                    stride: v.strides[p],
                };
            }
        }
        w
    }

    /// The encoded bytes.
    pub fn encode(&self) -> [u8; BUFFER_META_LEN] {
        bytemuck::cast(self.to_wire())
    }

    /// Decodes metadata a producer published.
    pub fn decode(b: &[u8]) -> Result<BufferMeta, Fault> {
        if b.len() != BUFFER_META_LEN {
            return Err(Fault::Size {
                what: "buffer metadata",
                len: b.len(),
                expected: BUFFER_META_LEN,
            });
        }
        BufferMeta::from_wire(&bytemuck::pod_read_unaligned(b))
    }

    /// Checks a record a producer wrote.
    pub fn from_wire(w: &MetaWire) -> Result<BufferMeta, Fault> {
        let what = "buffer metadata";
        if w.list_mark > 1 {
            return Err(Fault::Value {
                what,
                field: "list mark",
                value: w.list_mark.into(),
            });
        }
        if w.n_planes as usize > MAX_PLANES {
            return Err(Fault::Limit {
                what,
                field: "video planes",
                value: w.n_planes.into(),
                limit: MAX_PLANES as u64,
            });
        }
        let video = (w.n_planes > 0).then(|| VideoLayout {
            n_planes: w.n_planes,
            offsets: w.planes.map(|p| p.offset),
            strides: w.planes.map(|p| p.stride),
        });
        let [pts, dts, duration, offset, offset_end, base_time] = w.times;
        Ok(BufferMeta {
            pts,
            dts,
            duration,
            offset,
            offset_end,
            base_time,
            flags: w.flags,
            video,
            list_continues: w.list_mark == 1,
            metas_tag: w.metas_tag,
        })
    }

    /// Metadata with nothing set (no times, no flags, no layout).
    pub fn none() -> BufferMeta {
        BufferMeta {
            pts: NONE,
            dts: NONE,
            duration: NONE,
            offset: NONE,
            offset_end: NONE,
            base_time: NONE,
            flags: 0,
            video: None,
            list_continues: false,
            metas_tag: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The byte table above, read back from the bytes.
        assert_eq!(b[48..52], 0x40u32.to_ne_bytes());
        assert_eq!((b[52], b[53]), (3, 1));
        assert_eq!(b[54..56], 513u16.to_ne_bytes());
        assert_eq!(b[64..68], 100u32.to_ne_bytes());
        b[52] = 9;
        assert_eq!(
            BufferMeta::decode(&b),
            Err(Fault::Limit {
                what: "buffer metadata",
                field: "video planes",
                value: 9,
                limit: 4
            })
        );
        b[52] = 3;
        b[53] = 2;
        assert!(matches!(
            BufferMeta::decode(&b),
            Err(Fault::Value {
                field: "list mark",
                value: 2,
                ..
            })
        ));
        assert_eq!(
            BufferMeta::decode(&b[..10]),
            Err(Fault::Size {
                what: "buffer metadata",
                len: 10,
                expected: 88
            })
        );
        assert_eq!(
            BufferMeta::decode(&BufferMeta::none().encode()),
            Ok(BufferMeta::none())
        );
    }
}
