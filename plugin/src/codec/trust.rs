//! What a producer says that `shmringsrc` hands on to GStreamer, checked in one place
//! against what GStreamer will do with it, before any buffer is built.
//!
//! Downstream elements trust caps, buffer sizes, `GstVideoMeta` plane offsets and
//! strides, `GstAudioMeta` and buffer flags: `videoconvert` reads `stride × height`
//! bytes from each plane's offset, an audio element `bpf × frames` bytes. A producer
//! controls all of them, so each is checked here; a lie is an error naming it, and the
//! stream ends (or, with `reconnect=true`, the source waits for a producer it can
//! trust).

use gst_video::VideoFormatFlags;

use super::buffer::{BufferMeta, TRAVELLING_FLAGS, VideoLayout};

/// Most a producer may say its pipeline's latency is (a longer one would make the
/// consumer's sinks wait that long for every buffer).
pub const MAX_LATENCY: gst::ClockTime = gst::ClockTime::from_seconds(60);

/// What the current caps let a buffer be: decided once per caps.
#[derive(Debug, Clone)]
pub enum Format {
    /// Raw video: every buffer is checked against this layout.
    Video(gst_video::VideoInfo),
    /// Raw audio: whole frames; non-interleaved buffers get a `GstAudioMeta`.
    Audio(gst_audio::AudioInfo),
    /// Anything else: encoded media and text (bytes GStreamer's parsers check), raw
    /// caps that fix no layout, and buffers with no caps at all. Opaque bytes: no
    /// layout meta is added, none is checked.
    Other,
}

/// Plane offsets and strides for a `GstVideoMeta`.
pub type Planes = (Vec<usize>, Vec<i32>);

/// What a checked buffer gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its flags, all of them ones that travel.
    pub flags: gst::BufferFlags,
    /// Plane offsets and strides for a `GstVideoMeta`, each plane inside the buffer.
    pub video: Option<Planes>,
    /// Samples per channel for a `GstAudioMeta` (non-interleaved audio).
    pub planar_samples: Option<usize>,
}

/// A lie of a producer, found by checking what it says against what GStreamer will
/// do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lie {
    /// Caps of more or fewer than one structure.
    CapsNotOne {
        /// The caps.
        caps: String,
    },
    /// Caps features other than system memory (memfd slots are system memory).
    CapsFeatures {
        /// The caps.
        caps: String,
        /// Their features.
        features: String,
    },
    /// Caps with ANY features.
    CapsAnyFeatures {
        /// The caps.
        caps: String,
    },
    /// Raw caps that fix a layout GStreamer cannot describe (`video` or `audio`).
    UnknownLayout {
        /// `"video"` or `"audio"`.
        media: &'static str,
        /// The caps.
        caps: String,
    },
    /// Raw audio caps of 0-byte frames.
    EmptyAudioFrames {
        /// The caps.
        caps: String,
    },
    /// A layout meta GStreamer refused for the buffer.
    LayoutDoesNotFit {
        /// `"video"` or `"audio"`.
        media: &'static str,
        /// GStreamer's reason.
        reason: String,
    },
    /// A latency over what a consumer accepts.
    Latency {
        /// The latency said.
        min: gst::ClockTime,
        /// The most accepted ([`MAX_LATENCY`]).
        limit: gst::ClockTime,
    },
    /// Buffer flags that do not travel ([`TRAVELLING_FLAGS`]).
    Flags {
        /// The flags.
        flags: u32,
        /// Those that do not travel.
        stray: u32,
    },
    /// An audio buffer with a video layout.
    AudioWithVideoLayout,
    /// An audio buffer of a part of a frame.
    PartialAudioFrame {
        /// Its length.
        len: usize,
        /// Bytes per frame.
        bpf: usize,
    },
    /// A video buffer smaller than its frame.
    VideoTooSmall {
        /// Its length.
        len: usize,
        /// What the frame needs.
        needs: usize,
        /// The frame (`WxH FORMAT`) when there was no layout; `None`: the format's
        /// own layout.
        frame: Option<String>,
    },
    /// A video layout with another number of planes than the caps' format.
    PlaneCount {
        /// Planes said.
        planes: u8,
        /// The format.
        format: String,
        /// Planes of the format.
        expected: usize,
    },
    /// A layout other than the caps' own, for a format that takes only that.
    NotTheCapsLayout {
        /// Offsets said.
        offsets: Vec<usize>,
        /// Strides said.
        strides: Vec<i32>,
        /// The format.
        format: String,
        /// The caps' offsets.
        caps_offsets: Vec<usize>,
        /// The caps' strides.
        caps_strides: Vec<i32>,
    },
    /// A plane's stride shorter than its rows.
    StrideTooSmall {
        /// The plane.
        plane: usize,
        /// Its stride.
        stride: i32,
        /// Bytes of one row.
        row: u64,
        /// The frame (`WxH FORMAT`).
        frame: String,
    },
    /// A plane that ends past the buffer.
    PlanePastEnd {
        /// The plane.
        plane: usize,
        /// Its rows.
        rows: u64,
        /// Its stride.
        stride: i32,
        /// Its offset.
        offset: usize,
        /// The buffer's length.
        len: usize,
    },
}

impl std::fmt::Display for Lie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lie::CapsNotOne { caps } => write!(f, "caps {caps} are not one structure"),
            Lie::CapsFeatures { caps, features } => write!(
                f,
                "caps {caps} have features ({features}) other than system memory"
            ),
            Lie::CapsAnyFeatures { caps } => write!(f, "caps {caps} have ANY features"),
            Lie::UnknownLayout { media, caps } => write!(
                f,
                "raw {media} caps {caps} describe no {} GStreamer knows",
                if *media == "video" {
                    "frame"
                } else {
                    "sample format"
                }
            ),
            Lie::EmptyAudioFrames { caps } => write!(f, "raw audio caps {caps} have 0-byte frames"),
            Lie::LayoutDoesNotFit { media, reason } => {
                write!(f, "{media} layout does not fit the buffer: {reason}")
            }
            Lie::Latency { min, limit } => {
                write!(
                    f,
                    "latency {min} is more than the {limit} a consumer accepts"
                )
            }
            Lie::Flags { flags, stray } => write!(
                f,
                "buffer flags 0x{flags:x} include 0x{stray:x}, which no buffer carries across"
            ),
            Lie::AudioWithVideoLayout => write!(f, "an audio buffer has a video layout"),
            Lie::PartialAudioFrame { len, bpf } => write!(
                f,
                "audio buffer of {len} bytes is not a whole number of {bpf}-byte frames"
            ),
            Lie::VideoTooSmall {
                len,
                needs,
                frame: Some(frame),
            } => write!(
                f,
                "video buffer of {len} bytes is smaller than the {needs} bytes a {frame} frame needs"
            ),
            Lie::VideoTooSmall {
                len,
                needs,
                frame: None,
            } => write!(
                f,
                "video buffer of {len} bytes is smaller than the {needs} bytes its layout needs"
            ),
            Lie::PlaneCount {
                planes,
                format,
                expected,
            } => write!(
                f,
                "video layout has {planes} planes, caps {format} say {expected}"
            ),
            Lie::NotTheCapsLayout {
                offsets,
                strides,
                format,
                caps_offsets,
                caps_strides,
            } => write!(
                f,
                "video layout offsets {offsets:?} strides {strides:?} differ from the {format} layout of the caps ({caps_offsets:?}, {caps_strides:?}), the only one taken for this format"
            ),
            Lie::StrideTooSmall {
                plane,
                stride,
                row,
                frame,
            } => write!(
                f,
                "plane {plane} stride {stride} is less than its {row}-byte rows ({frame})"
            ),
            Lie::PlanePastEnd {
                plane,
                rows,
                stride,
                offset,
                len,
            } => write!(
                f,
                "plane {plane} ({rows} rows of stride {stride} from offset {offset}) ends past the {len}-byte buffer"
            ),
        }
    }
}

impl std::error::Error for Lie {}

/// `WxH FORMAT` of a frame of `info`.
fn frame_of(info: &gst_video::VideoInfo) -> String {
    format!("{}x{} {}", info.width(), info.height(), info.format())
}

/// Checks caps a producer sent: fixed (the decoder saw to that), system memory only,
/// and, for raw video and audio, caps GStreamer can describe.
pub fn accept_caps(caps: &gst::Caps) -> Result<Format, Lie> {
    let (s, features) = match (caps.structure(0), caps.features(0)) {
        (Some(s), f) if caps.size() == 1 => (s, f),
        _ => {
            return Err(Lie::CapsNotOne {
                caps: caps.to_string(),
            });
        }
    };
    // Buffers cross as memfd slots: system memory, whatever the caps claim. Other
    // features (memory:DMABuf, memory:GLMemory, meta:...) would make downstream
    // treat them as something they are not.
    if let Some(f) = features {
        if !f.is_any() && f.iter().any(|name| name.as_str() != "memory:SystemMemory") {
            return Err(Lie::CapsFeatures {
                caps: caps.to_string(),
                features: f.to_string(),
            });
        }
        if f.is_any() {
            return Err(Lie::CapsAnyFeatures {
                caps: caps.to_string(),
            });
        }
    }
    // Raw caps that fix no layout (no format, or no size) describe no frame:
    // GStreamer interprets nothing of such buffers, so they cross as opaque bytes,
    // as in one process. Caps that fix one must describe it truly.
    match s.name().as_str() {
        "video/x-raw" if !fixes_layout(s, &["format", "width", "height"]) => Ok(Format::Other),
        "audio/x-raw" if !fixes_layout(s, &["format", "rate", "channels"]) => Ok(Format::Other),
        "video/x-raw" => gst_video::VideoInfo::from_caps(caps)
            .map(Format::Video)
            .map_err(|_| Lie::UnknownLayout {
                media: "video",
                caps: caps.to_string(),
            }),
        "audio/x-raw" => gst_audio::AudioInfo::from_caps(caps)
            .map_err(|_| Lie::UnknownLayout {
                media: "audio",
                caps: caps.to_string(),
            })
            .and_then(|i| match i.bpf() {
                0 => Err(Lie::EmptyAudioFrames {
                    caps: caps.to_string(),
                }),
                _ => Ok(Format::Audio(i)),
            }),
        _ => Ok(Format::Other),
    }
}

/// Whether raw caps fix a layout: they have every one of `fields`.
fn fixes_layout(s: &gst::StructureRef, fields: &[&str]) -> bool {
    fields.iter().all(|f| s.has_field(*f))
}

/// Adds to `b` the layout metas a checked buffer gets: `GstVideoMeta` with its
/// checked planes, `GstAudioMeta` for non-interleaved audio.
pub fn add_layout_metas(
    b: &mut gst::BufferRef,
    format: &Format,
    checked: &Checked,
) -> Result<(), Lie> {
    match (format, checked.planar_samples, &checked.video) {
        (Format::Audio(info), Some(samples), _) => {
            gst_audio::AudioMeta::add(b, info, samples, &[]).map_err(|e| {
                Lie::LayoutDoesNotFit {
                    media: "audio",
                    reason: e.to_string(),
                }
            })?;
        }
        (Format::Video(info), _, Some((offsets, strides))) => {
            gst_video::VideoMeta::add_full(
                b,
                gst_video::VideoFrameFlags::empty(),
                info.format(),
                info.width(),
                info.height(),
                offsets,
                strides,
            )
            .map_err(|e| Lie::LayoutDoesNotFit {
                media: "video",
                reason: e.to_string(),
            })?;
        }
        _ => {}
    }
    Ok(())
}

/// Checks a producer's latency: a range of at most [`MAX_LATENCY`].
pub fn accept_latency(min: u64, max: u64) -> Result<(), Lie> {
    if min > MAX_LATENCY.nseconds() {
        return Err(Lie::Latency {
            min: gst::ClockTime::from_nseconds(min),
            limit: MAX_LATENCY,
        });
    }
    // decode saw to max >= min (or none).
    let _ = max;
    Ok(())
}

impl Format {
    /// Checks one buffer of `len` bytes with metadata `m` against the caps.
    pub fn check(&self, len: usize, m: &BufferMeta) -> Result<Checked, Lie> {
        let flags = gst::BufferFlags::from_bits_retain(m.flags);
        let stray = flags.difference(TRAVELLING_FLAGS);
        if !stray.is_empty() {
            return Err(Lie::Flags {
                flags: m.flags,
                stray: stray.bits(),
            });
        }
        let mut checked = Checked {
            flags,
            video: None,
            planar_samples: None,
        };
        match self {
            Format::Video(info) => {
                checked.video = check_video(info, len, m.video.as_ref())?;
            }
            Format::Audio(info) => {
                if m.video.is_some() {
                    return Err(Lie::AudioWithVideoLayout);
                }
                let bpf = info.bpf() as usize;
                if len % bpf != 0 {
                    return Err(Lie::PartialAudioFrame { len, bpf });
                }
                if info.layout() == gst_audio::AudioLayout::NonInterleaved {
                    checked.planar_samples = Some(len / bpf);
                }
            }
            // Opaque bytes: a video layout the caps do not need is left behind
            // (nothing downstream would read it), as is anything else of layout.
            Format::Other => {}
        }
        Ok(checked)
    }
}

/// A raw video buffer: with no layout, at least the size the caps give a frame; with
/// one, every plane (offset + stride × its height) inside the buffer, and every
/// stride at least the plane's row of pixels. Formats whose planes GStreamer lays
/// out in tiles, packs in ways not described by a stride (v210, UYVP, tiled NV12)
/// or follow with a palette plane (RGB8P) take only the caps' own layout.
fn check_video(
    info: &gst_video::VideoInfo,
    len: usize,
    layout: Option<&VideoLayout>,
) -> Result<Option<Planes>, Lie> {
    let Some(v) = layout else {
        if len < info.size() {
            return Err(Lie::VideoTooSmall {
                len,
                needs: info.size(),
                frame: Some(frame_of(info)),
            });
        }
        return Ok(None);
    };
    let n = info.n_planes() as usize;
    if v.n_planes as usize != n {
        return Err(Lie::PlaneCount {
            planes: v.n_planes,
            format: info.format().to_string(),
            expected: n,
        });
    }
    let offsets: Vec<usize> = v.offsets[..n].iter().map(|&o| o as usize).collect();
    let strides = v.strides[..n].to_vec();
    if !has_rows(info) {
        if offsets != info.offset()[..n] || strides != info.stride()[..n] {
            return Err(Lie::NotTheCapsLayout {
                offsets,
                strides,
                format: info.format().to_string(),
                caps_offsets: info.offset()[..n].to_vec(),
                caps_strides: info.stride()[..n].to_vec(),
            });
        }
        if len < info.size() {
            return Err(Lie::VideoTooSmall {
                len,
                needs: info.size(),
                frame: None,
            });
        }
        return Ok(Some((offsets, strides)));
    }
    for p in 0..n {
        let (row, rows) = plane_extent(info, p);
        let stride = strides[p];
        if stride < 0 || (stride as u64) < row {
            return Err(Lie::StrideTooSmall {
                plane: p,
                stride,
                row,
                frame: frame_of(info),
            });
        }
        // The last row needs only its pixels; every other row a whole stride.
        let end = (offsets[p] as u64)
            .checked_add((stride as u64) * rows.saturating_sub(1))
            .and_then(|e| e.checked_add(if rows == 0 { 0 } else { row }));
        match end {
            Some(end) if end <= len as u64 => {}
            _ => {
                return Err(Lie::PlanePastEnd {
                    plane: p,
                    rows,
                    stride,
                    offset: offsets[p],
                    len,
                });
            }
        }
    }
    Ok(Some((offsets, strides)))
}

/// Whether the format's planes are rows of whole pixels that a stride describes:
/// not tiled, bit-packed or followed by a palette (v210, UYVP, tiled NV12, RGB8P),
/// and every component with a pixel stride (IYU1's 6 bytes for 4 pixels has none).
/// Only such planes get [`plane_extent`]; others take the caps' own layout.
pub fn has_rows(info: &gst_video::VideoInfo) -> bool {
    let finfo = info.format_info();
    let n_components = finfo.n_components() as usize;
    !finfo
        .flags()
        .intersects(VideoFormatFlags::COMPLEX | VideoFormatFlags::TILED | VideoFormatFlags::PALETTE)
        && finfo.pixel_stride()[..n_components].iter().all(|&s| s > 0)
}

/// Plane `p`'s row size in bytes and number of rows, from the format's components:
/// whole pixels of each component's pixel stride, since that is what GStreamer's
/// unpackers read (an RGBx pixel is one 4-byte load although its components end at
/// byte 3; a 10-bit component in a 32-bit word is read as the word). Only for
/// formats whose every component has a pixel stride.
pub fn plane_extent(info: &gst_video::VideoInfo, p: usize) -> (u64, u64) {
    let finfo = info.format_info();
    let (mut row, mut rows) = (0u64, 0u64);
    for c in 0..finfo.n_components() as usize {
        if finfo.plane()[c] as usize != p {
            continue;
        }
        let w = finfo.scale_width(c as u8, info.width()) as u64;
        let h = finfo.scale_height(c as u8, info.height()) as u64;
        let pstride = finfo.pixel_stride()[c] as u64;
        // The component's last pixel group ends at most a pixel stride after its
        // start; its bits (shifted, maybe wider than the stride) end here.
        let bits = (finfo.shift()[c] + finfo.depth()[c]) as u64;
        let end = if w == 0 {
            0
        } else {
            (pstride * w).max(pstride * (w - 1) + finfo.poffset()[c] as u64 + bits.div_ceil(8))
        };
        row = row.max(end);
        rows = rows.max(h);
    }
    (row, rows)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::codec::NONE;

    fn meta(video: Option<VideoLayout>) -> BufferMeta {
        BufferMeta {
            pts: 0,
            video,
            ..BufferMeta::none()
        }
    }

    fn caps(s: &str) -> gst::Caps {
        gst::init().unwrap();
        gst::Caps::from_str(s).unwrap()
    }

    fn i420() -> (Format, gst_video::VideoInfo) {
        let f = accept_caps(&caps("video/x-raw,format=I420,width=320,height=240")).unwrap();
        let Format::Video(info) = f.clone() else {
            panic!()
        };
        (f, info)
    }

    #[test]
    fn raw_caps_that_fix_no_layout_carry_opaque_bytes_and_ignore_a_layout() {
        for c in [
            "video/x-raw",
            "video/x-raw,format=I420",
            "video/x-raw,width=320,height=240",
            "audio/x-raw",
            "audio/x-raw,format=S16LE,channels=2",
        ] {
            let f = accept_caps(&caps(c)).unwrap();
            assert!(matches!(f, Format::Other), "{c}: {f:?}");
            // Any size, and a video layout nobody needs is left behind.
            let mut l = VideoLayout {
                n_planes: 1,
                ..Default::default()
            };
            l.strides[0] = -5;
            let checked = f.check(3, &meta(Some(l))).unwrap();
            assert_eq!(checked.video, None);
            assert_eq!(f.check(0, &meta(None)).unwrap().video, None);
        }
        // Caps that fix a layout must still describe it truly.
        assert!(accept_caps(&caps("video/x-raw,format=NOPE,width=4,height=4")).is_err());
        assert!(accept_caps(&caps("audio/x-raw,format=S16LE,rate=0,channels=2")).is_err());
        // A lie about flags is a lie whatever the caps.
        let mut m = meta(None);
        m.flags = 1 << 31;
        assert!(Format::Other.check(8, &m).is_err());
    }

    #[test]
    fn honest_layouts_pass_for_every_plain_format() {
        gst::init().unwrap();
        for fmt in gst_video::VideoFormat::iter_raw() {
            let Ok(info) = gst_video::VideoInfo::builder(fmt, 321, 241).build() else {
                continue;
            };
            let f = Format::Video(info.clone());
            let size = info.size();
            assert_eq!(f.check(size, &meta(None)).unwrap().video, None, "{fmt:?}");
            let ok = f.check(size, &meta(Some(VideoLayout::of(&info))));
            assert!(ok.is_ok(), "{fmt:?}: {ok:?}");
            assert!(f.check(size - 1, &meta(None)).is_err(), "{fmt:?}");
        }
    }

    #[test]
    fn lying_layouts_are_refused_by_name() {
        let (f, info) = i420();
        let size = info.size();
        let mut v = VideoLayout::of(&info);
        let lie = |v: VideoLayout| f.check(size, &meta(Some(v))).unwrap_err();
        let honest = v;
        v.strides[0] = 1 << 30;
        assert!(
            matches!(
                lie(v),
                Lie::PlanePastEnd {
                    plane: 0,
                    rows: 240,
                    stride: 1073741824,
                    ..
                }
            ),
            "{}",
            lie(v)
        );
        v = honest;
        v.strides[0] = -(1 << 26);
        assert!(matches!(
            lie(v),
            Lie::StrideTooSmall {
                plane: 0,
                stride: -67108864,
                row: 320,
                ..
            }
        ));
        v = honest;
        v.strides[0] = 640;
        assert!(
            matches!(lie(v), Lie::PlanePastEnd { len: 115200, .. }),
            "{}",
            lie(v)
        );
        v = honest;
        v.strides[1] = 159;
        assert!(matches!(
            lie(v),
            Lie::StrideTooSmall {
                plane: 1,
                stride: 159,
                row: 160,
                ..
            }
        ));
        v = honest;
        v.offsets[2] = (size - 160) as u32;
        assert!(
            matches!(lie(v), Lie::PlanePastEnd { plane: 2, .. }),
            "{}",
            lie(v)
        );
        v = honest;
        v.n_planes = 2;
        assert_eq!(
            lie(v),
            Lie::PlaneCount {
                planes: 2,
                format: "I420".into(),
                expected: 3
            }
        );
        assert_eq!(
            lie(v).to_string(),
            "video layout has 2 planes, caps I420 say 3"
        );
        // A plane starting one row before the end: only its first row fits.
        v = honest;
        v.offsets[0] = (size - 320) as u32;
        assert!(
            matches!(lie(v), Lie::PlanePastEnd { plane: 0, .. }),
            "{}",
            lie(v)
        );
        assert_eq!(
            f.check(size - 1, &meta(None)).unwrap_err(),
            Lie::VideoTooSmall {
                len: size - 1,
                needs: 115200,
                frame: Some("320x240 I420".into())
            }
        );
    }

    #[test]
    fn a_stride_short_of_the_whole_pixels_gstreamer_reads_is_refused() {
        gst::init().unwrap();
        // Components ending before their pixel does (RGBx's x, 10 bits in 4 bytes,
        // 15 bits in 2): GStreamer reads the whole pixel of the last column.
        for (fmt, row) in [
            (gst_video::VideoFormat::Rgbx, 4 * 33),
            (gst_video::VideoFormat::Rgb15, 2 * 33),
            (gst_video::VideoFormat::Bgr10a2Le, 4 * 33),
            (gst_video::VideoFormat::Yuy2, 4 * 17),
        ] {
            let info = gst_video::VideoInfo::builder(fmt, 33, 4).build().unwrap();
            let f = Format::Video(info.clone());
            let mut v = VideoLayout::of(&info);
            v.strides[0] = row;
            assert!(f.check(info.size(), &meta(Some(v))).is_ok(), "{fmt:?}");
            v.strides[0] = row - 1;
            let e = f.check(info.size(), &meta(Some(v))).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "plane 0 stride {} is less than its {row}-byte rows (33x4 {fmt})",
                    row - 1
                )
            );
        }
        // Pixel groups without a pixel stride (IYU1: 6 bytes for 4 pixels) take the
        // caps' own layout only.
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Iyu1, 33, 4)
            .build()
            .unwrap();
        let f = Format::Video(info.clone());
        let mut v = VideoLayout::of(&info);
        assert!(f.check(info.size(), &meta(Some(v))).is_ok());
        v.strides[0] -= 4;
        let e = f.check(info.size(), &meta(Some(v))).unwrap_err();
        assert!(matches!(e, Lie::NotTheCapsLayout { .. }), "{e}");
    }

    #[test]
    fn caps_features_and_flags_that_do_not_travel_are_refused() {
        for c in [
            "video/x-raw(memory:DMABuf),format=I420,width=4,height=4",
            "video/x-raw(memory:GLMemory),format=RGBA,width=4,height=4",
            "video/x-raw(meta:GstVideoOverlayComposition),format=RGBA,width=4,height=4",
        ] {
            let e = accept_caps(&caps(c)).unwrap_err();
            assert!(matches!(e, Lie::CapsFeatures { .. }), "{e}");
        }
        assert!(
            accept_caps(&caps(
                "video/x-raw(memory:SystemMemory),format=I420,width=4,height=4"
            ))
            .is_ok()
        );
        assert!(accept_caps(&caps("video/x-h264,stream-format=avc")).is_ok());
        // A frame whose size overflows: GStreamer cannot describe it.
        assert!(matches!(
            accept_caps(&caps(
                "video/x-raw,format=RGBA,width=2147483647,height=2147483647"
            ))
            .unwrap_err(),
            Lie::UnknownLayout { media: "video", .. }
        ));
        let (f, info) = i420();
        let mut m = meta(None);
        m.flags = (gst::BufferFlags::DISCONT | gst::BufferFlags::DELTA_UNIT).bits();
        assert_eq!(
            f.check(info.size(), &m).unwrap().flags,
            gst::BufferFlags::DISCONT | gst::BufferFlags::DELTA_UNIT
        );
        for bad in [1u32, 2, 4, gst::BufferFlags::TAG_MEMORY.bits(), 1 << 31] {
            m.flags = bad;
            assert!(matches!(
                f.check(info.size(), &m).unwrap_err(),
                Lie::Flags { .. }
            ));
        }
    }

    #[test]
    fn audio_is_whole_frames_and_has_no_video_layout() {
        let f = accept_caps(&caps(
            "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved",
        ))
        .unwrap();
        assert!(f.check(400, &meta(None)).is_ok());
        assert_eq!(
            f.check(401, &meta(None)).unwrap_err(),
            Lie::PartialAudioFrame { len: 401, bpf: 4 }
        );
        let (_, info) = i420();
        assert!(f.check(400, &meta(Some(VideoLayout::of(&info)))).is_err());
        let planar = accept_caps(&caps(
            "audio/x-raw,format=F32LE,rate=48000,channels=2,layout=non-interleaved",
        ))
        .unwrap();
        assert_eq!(
            planar.check(800, &meta(None)).unwrap().planar_samples,
            Some(100)
        );
        assert!(accept_latency(MAX_LATENCY.nseconds() + 1, NONE).is_err());
        assert!(accept_latency(20_000_000, NONE).is_ok());
    }
}
