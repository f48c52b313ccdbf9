//! The `GstMeta`s of a buffer, across the transport.
//!
//! The frame descriptor's 88 bytes hold timestamps, flags and the video layout
//! ([`crate::meta::BufferMeta`]); every other meta of a buffer travels as a record
//! list sent just before it, in side messages (cut into pieces of at most
//! [`CHUNK`] bytes), and the buffer's descriptor names that list by a tag, so that
//! a list whose buffer was dropped for a consumer never lands on the next one.
//!
//! GStreamer 1.22 has no meta serialization, so the well-known metas have an
//! encoding of ours here, strict both ways:
//!
//! | meta | record body |
//! |---|---|
//! | `GstReferenceTimestampMeta` | timestamp, duration, reference caps |
//! | `GstVideoTimeCodeMeta` | fps, flags, h:m:s:f, field count, daily jam |
//! | `GstVideoCaptionMeta` | caption type, data |
//! | `GstVideoRegionOfInterestMeta` | id, parent id, rect, type, params |
//! | `GstVideoCropMeta` | rect |
//! | `GstAudioLevelMeta` | level, voice activity |
//! | `GstVideoSEIUserDataUnregisteredMeta` | uuid, data |
//! | `GstProtectionMeta` | its structure |
//! | a `GstCustomMeta` | its name, its structure |
//!
//! On GStreamer ≥ 1.24 (looked up when the plugin runs, so one build serves 1.22
//! and 1.26) any other meta that implements `gst_meta_serialize` travels in
//! GStreamer's own form, and the consumer hands it to `gst_meta_deserialize` only
//! after checking its header (GStreamer trusts the name length it reads) and that
//! the meta is registered in the consumer's process.
//!
//! Nothing a producer writes is trusted: every record is decoded into a valid value
//! or an error naming the fault; sizes are bounded; rectangles lie inside the frame
//! the caps describe; a custom meta is added only when its name is registered in the
//! consumer's process or listed by the user. A meta that cannot cross is counted
//! and logged once by name, never dropped in silence.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::str::FromStr;
use std::sync::OnceLock;

use gst::glib;
use gst::prelude::*;

/// Bytes of one side message's piece of a record list.
pub const CHUNK: usize = shmring::frame::MAX_SIDE_PAYLOAD - PIECE_HEADER;
/// Type byte, tag (2), total length (4).
pub const PIECE_HEADER: usize = 1 + 2 + 4;
/// Most records one buffer's list holds.
pub const MAX_RECORDS: usize = 256;
/// Most parameters of a region of interest.
pub const MAX_ROI_PARAMS: usize = 64;
/// The default limit on one buffer's record list, both ways.
pub const DEFAULT_MAX_BYTES: u32 = 4 << 20;

const K_REFERENCE_TIMESTAMP: u8 = 1;
const K_TIME_CODE: u8 = 2;
const K_CAPTION: u8 = 3;
const K_ROI: u8 = 4;
const K_CROP: u8 = 5;
const K_AUDIO_LEVEL: u8 = 6;
const K_CUSTOM: u8 = 7;
const K_SEI_UNREGISTERED: u8 = 8;
const K_PROTECTION: u8 = 9;
const K_SERIALIZED: u8 = 10;

/// One meta, as it travels.
#[derive(Clone, Debug, PartialEq)]
pub enum Carried {
    /// `GstReferenceTimestampMeta`.
    ReferenceTimestamp {
        /// What the timestamp refers to (e.g. `timestamp/x-ntp`).
        reference: gst::Caps,
        /// Nanoseconds.
        timestamp: u64,
        /// Nanoseconds, or [`crate::meta::NONE`].
        duration: u64,
    },
    /// `GstVideoTimeCodeMeta`.
    TimeCode {
        /// Frame rate numerator and denominator.
        fps: (i32, i32),
        /// `GstVideoTimeCodeFlags`.
        flags: u32,
        /// Hours, minutes, seconds, frames.
        hmsf: [u32; 4],
        /// Field count.
        field_count: u32,
        /// The latest daily jam, ISO 8601, if any.
        daily_jam: Option<String>,
    },
    /// `GstVideoCaptionMeta`.
    Caption {
        /// `GstVideoCaptionType` (1..=4).
        kind: i32,
        /// The caption bytes (not empty).
        data: Vec<u8>,
    },
    /// `GstVideoRegionOfInterestMeta`.
    Roi {
        /// The region's type (a quark's name).
        roi_type: String,
        /// Its id and its parent's.
        id: i32,
        /// Its parent's id.
        parent_id: i32,
        /// x, y, width, height.
        rect: [u32; 4],
        /// Its parameters.
        params: Vec<gst::Structure>,
    },
    /// `GstVideoCropMeta`: x, y, width, height.
    Crop([u32; 4]),
    /// `GstAudioLevelMeta`.
    AudioLevel {
        /// -dBov, 0..=127.
        level: u8,
        /// Voice activity.
        voice_activity: bool,
    },
    /// A `GstCustomMeta`.
    Custom {
        /// The registered name.
        name: String,
        /// Its structure.
        fields: gst::Structure,
    },
    /// `GstVideoSEIUserDataUnregisteredMeta`.
    SeiUnregistered {
        /// The UUID.
        uuid: [u8; 16],
        /// The payload (not empty).
        data: Vec<u8>,
    },
    /// `GstProtectionMeta`.
    Protection(gst::Structure),
    /// A meta in GStreamer's own serialized form (≥ 1.24): its registered name and
    /// the bytes `gst_meta_serialize` wrote, header included.
    Serialized {
        /// The meta's implementation name.
        name: String,
        /// The whole serialization.
        bytes: Vec<u8>,
    },
}

/// What the frame of a decoded record must fit (rectangles inside it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Width and height from the caps, when they say.
    pub size: Option<(u32, u32)>,
}

impl Frame {
    /// The frame the caps describe.
    pub fn of(caps: Option<&gst::Caps>) -> Frame {
        let size = caps.and_then(|c| c.structure(0)).and_then(|s| {
            let w = s.get::<i32>("width").ok()?;
            let h = s.get::<i32>("height").ok()?;
            Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
        });
        Frame { size }
    }
}

/// The metas of `buffer` that travel, and the names of those that cannot (the
/// video layout travels in the descriptor; a parent-buffer meta says how the
/// producer holds memory, which means nothing to another process).
pub fn collect(buffer: &gst::BufferRef) -> (Vec<Carried>, Vec<String>) {
    let mut out = Vec::new();
    let mut cannot = Vec::new();
    for m in buffer.iter_meta::<gst::Meta>() {
        let api = m.api();
        if api == gst_video::VideoMeta::meta_api() || api == gst::ParentBufferMeta::meta_api() {
            continue;
        }
        match carried_of(&m) {
            Some(c) => out.push(c),
            None => match serialized(&m) {
                Some(c) => out.push(c),
                None => cannot.push(m.type_().name().to_string()),
            },
        }
    }
    (out, cannot)
}

fn carried_of(m: &gst::MetaRef<'_, gst::Meta>) -> Option<Carried> {
    if let Some(c) = m.try_as_custom_meta() {
        return Some(Carried::Custom {
            name: m.type_().name().to_string(),
            fields: c.structure().to_owned(),
        });
    }
    if let Some(r) = m.downcast_ref::<gst::ReferenceTimestampMeta>() {
        return Some(Carried::ReferenceTimestamp {
            reference: r.reference_owned(),
            timestamp: r.timestamp().nseconds(),
            duration: crate::meta::ct(r.duration()),
        });
    }
    if let Some(t) = m.downcast_ref::<gst_video::VideoTimeCodeMeta>() {
        let tc = t.tc();
        let fps = tc.fps();
        return Some(Carried::TimeCode {
            fps: (fps.numer(), fps.denom()),
            flags: tc.flags().bits(),
            hmsf: [tc.hours(), tc.minutes(), tc.seconds(), tc.frames()],
            field_count: tc.field_count(),
            daily_jam: tc
                .latest_daily_jam()
                .and_then(|d| d.format("%Y-%m-%dT%H:%M:%S%:z").ok())
                .map(|s| s.to_string()),
        });
    }
    if let Some(c) = m.downcast_ref::<gst_video::VideoCaptionMeta>() {
        return Some(Carried::Caption {
            kind: c.caption_type().into_glib(),
            data: c.data().to_vec(),
        });
    }
    if let Some(r) = m.downcast_ref::<gst_video::VideoRegionOfInterestMeta>() {
        let (x, y, w, h) = r.rect();
        return Some(Carried::Roi {
            roi_type: r.roi_type().to_owned(),
            id: r.id(),
            parent_id: r.parent_id(),
            rect: [x, y, w, h],
            params: r.params().map(|p| p.to_owned()).collect(),
        });
    }
    if let Some(c) = m.downcast_ref::<gst_video::VideoCropMeta>() {
        let (x, y, w, h) = c.rect();
        return Some(Carried::Crop([x, y, w, h]));
    }
    if let Some(a) = m.downcast_ref::<gst_audio::AudioLevelMeta>() {
        return Some(Carried::AudioLevel {
            level: a.level(),
            voice_activity: a.voice_activity(),
        });
    }
    if let Some(s) = m.downcast_ref::<gst_video::video_meta::VideoSeiUserDataUnregisteredMeta>() {
        return Some(Carried::SeiUnregistered {
            uuid: s.uuid(),
            data: s.data().to_vec(),
        });
    }
    if let Some(p) = m.downcast_ref::<gst::ProtectionMeta>() {
        return Some(Carried::Protection(p.info().to_owned()));
    }
    None
}

use glib::translate::IntoGlib;

/// GStreamer ≥ 1.24's meta serialization, if the running GStreamer has it.
struct Serialization {
    serialize: unsafe extern "C" fn(*const gst::ffi::GstMeta, *mut glib::ffi::GByteArray) -> i32,
    deserialize: unsafe extern "C" fn(
        *mut gst::ffi::GstBuffer,
        *const u8,
        usize,
        *mut u32,
    ) -> *mut gst::ffi::GstMeta,
}

fn serialization() -> Option<&'static Serialization> {
    static S: OnceLock<Option<Serialization>> = OnceLock::new();
    S.get_or_init(|| {
        let find = |name: &CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT looks a symbol up among the loaded
            // libraries (libgstreamer is loaded: we run inside it); a null result is
            // handled.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let s = find(c"gst_meta_serialize_simple")?;
        let d = find(c"gst_meta_deserialize")?;
        // SAFETY: both symbols are GStreamer's (since 1.24), with these signatures:
        // gboolean gst_meta_serialize_simple(const GstMeta*, GByteArray*) and
        // GstMeta* gst_meta_deserialize(GstBuffer*, const guint8*, gsize, guint32*).
        unsafe {
            Some(Serialization {
                serialize: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(
                        *const gst::ffi::GstMeta,
                        *mut glib::ffi::GByteArray,
                    ) -> i32,
                >(s),
                deserialize: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(
                        *mut gst::ffi::GstBuffer,
                        *const u8,
                        usize,
                        *mut u32,
                    ) -> *mut gst::ffi::GstMeta,
                >(d),
            })
        }
    })
    .as_ref()
}

/// Whether this process's GStreamer serializes metas (≥ 1.24).
pub fn gstreamer_serializes() -> bool {
    serialization().is_some()
}

fn serialized(m: &gst::MetaRef<'_, gst::Meta>) -> Option<Carried> {
    let s = serialization()?;
    // SAFETY: `m` is a live meta of a buffer we hold; the array is ours, freed below
    // after its bytes are copied out.
    unsafe {
        let arr = glib::ffi::g_byte_array_new();
        let ok = (s.serialize)(m.as_ptr(), arr) != 0;
        let bytes = if ok && !(*arr).data.is_null() {
            std::slice::from_raw_parts((*arr).data, (*arr).len as usize).to_vec()
        } else {
            Vec::new()
        };
        glib::ffi::g_byte_array_unref(arr);
        if !ok {
            return None;
        }
        let name = serialized_name(&bytes).ok()?.to_owned();
        Some(Carried::Serialized { name, bytes })
    }
}

/// The name in a serialization's header, after checking the header as
/// `gst_meta_deserialize` reads it: `[total u32][name_len u32][name][NUL][version]`,
/// total equal to the bytes, the name inside them, printable and NUL-terminated.
fn serialized_name(b: &[u8]) -> Result<&str, String> {
    if b.len() < 10 {
        return Err(format!(
            "serialized meta of {} bytes has no header",
            b.len()
        ));
    }
    let total = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
    let name_len = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
    if total != b.len() {
        return Err(format!(
            "serialized meta says {total} bytes, has {}",
            b.len()
        ));
    }
    if name_len == 0 || name_len > 256 || 8 + name_len + 2 > total {
        return Err(format!("serialized meta name of {name_len} bytes"));
    }
    let name = &b[8..8 + name_len];
    if b[8 + name_len] != 0 || !name.iter().all(|c| c.is_ascii_graphic()) {
        return Err("serialized meta name is not printable text ending in NUL".into());
    }
    Ok(std::str::from_utf8(name).expect("ascii"))
}

// ---- encoding ---------------------------------------------------------------

pub(crate) struct W(pub(crate) Vec<u8>);

impl W {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v)
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b)
    }
    pub(crate) fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes())
    }
}

/// Encodes one buffer's metas as a record list.
pub fn encode(metas: &[Carried]) -> Vec<u8> {
    let mut w = W(Vec::new());
    for m in metas {
        let mut b = W(Vec::new());
        let kind = match m {
            Carried::ReferenceTimestamp {
                reference,
                timestamp,
                duration,
            } => {
                b.u64(*timestamp);
                b.u64(*duration);
                b.text(&reference.to_string());
                K_REFERENCE_TIMESTAMP
            }
            Carried::TimeCode {
                fps,
                flags,
                hmsf,
                field_count,
                daily_jam,
            } => {
                b.i32(fps.0);
                b.i32(fps.1);
                b.u32(*flags);
                for v in hmsf {
                    b.u32(*v);
                }
                b.u32(*field_count);
                b.text(daily_jam.as_deref().unwrap_or(""));
                K_TIME_CODE
            }
            Carried::Caption { kind, data } => {
                b.i32(*kind);
                b.bytes(data);
                K_CAPTION
            }
            Carried::Roi {
                roi_type,
                id,
                parent_id,
                rect,
                params,
            } => {
                b.i32(*id);
                b.i32(*parent_id);
                for v in rect {
                    b.u32(*v);
                }
                b.text(roi_type);
                b.u16(params.len() as u16);
                for p in params {
                    b.text(&p.to_string());
                }
                K_ROI
            }
            Carried::Crop(rect) => {
                for v in rect {
                    b.u32(*v);
                }
                K_CROP
            }
            Carried::AudioLevel {
                level,
                voice_activity,
            } => {
                b.u8(*level);
                b.u8(*voice_activity as u8);
                K_AUDIO_LEVEL
            }
            Carried::Custom { name, fields } => {
                b.text(name);
                b.text(&fields.to_string());
                K_CUSTOM
            }
            Carried::SeiUnregistered { uuid, data } => {
                b.0.extend_from_slice(uuid);
                b.bytes(data);
                K_SEI_UNREGISTERED
            }
            Carried::Protection(s) => {
                b.text(&s.to_string());
                K_PROTECTION
            }
            Carried::Serialized { name: _, bytes } => {
                b.bytes(bytes);
                K_SERIALIZED
            }
        };
        w.u8(kind);
        w.bytes(&b.0);
    }
    w.0
}

// ---- decoding ---------------------------------------------------------------

pub(crate) struct R<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) what: &'static str,
}

impl<'a> R<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!(
                "{} record ends {} bytes early",
                self.what,
                n - self.b.len()
            ));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// UTF-8 without NUL (GStreamer takes C strings).
    pub(crate) fn text(&mut self) -> Result<&'a str, String> {
        let what = self.what;
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|e| format!("{what} text: {e}"))?;
        if s.contains('\0') {
            return Err(format!("{what} text has a NUL byte"));
        }
        Ok(s)
    }
    pub(crate) fn structure(&mut self) -> Result<gst::Structure, String> {
        let what = self.what;
        let s = self.text()?;
        let st =
            gst::Structure::from_str(s).map_err(|_| format!("{what}: unparsable structure"))?;
        Ok(st)
    }
    pub(crate) fn done(&self) -> Result<(), String> {
        match self.b.len() {
            0 => Ok(()),
            n => Err(format!("{} record has {n} bytes too many", self.what)),
        }
    }
}

fn check_rect(what: &str, rect: [u32; 4], frame: Frame) -> Result<(), String> {
    let [x, y, w, h] = rect;
    let fits = |a: u32, b: u32, max: u32| a.checked_add(b).is_some_and(|e| e <= max);
    if let Some((fw, fh)) = frame.size {
        if !fits(x, w, fw) || !fits(y, h, fh) {
            return Err(format!(
                "{what} {w}x{h} at {x},{y} is outside the {fw}x{fh} frame"
            ));
        }
    } else if x.checked_add(w).is_none() || y.checked_add(h).is_none() {
        return Err(format!("{what} {w}x{h} at {x},{y} overflows"));
    }
    Ok(())
}

/// Decodes a record list a producer sent, for a buffer of `frame`. Each record is
/// checked as GStreamer will use it.
pub fn decode(b: &[u8], frame: Frame) -> Result<Vec<Carried>, String> {
    let mut list = R {
        b,
        what: "meta list",
    };
    let mut out = Vec::new();
    while !list.b.is_empty() {
        if out.len() == MAX_RECORDS {
            return Err(format!("more than {MAX_RECORDS} metas on one buffer"));
        }
        let kind = list.u8()?;
        let body = list.bytes()?;
        out.push(decode_one(kind, body, frame)?);
    }
    Ok(out)
}

fn decode_one(kind: u8, body: &[u8], frame: Frame) -> Result<Carried, String> {
    let what = match kind {
        K_REFERENCE_TIMESTAMP => "reference timestamp meta",
        K_TIME_CODE => "time code meta",
        K_CAPTION => "caption meta",
        K_ROI => "region of interest meta",
        K_CROP => "crop meta",
        K_AUDIO_LEVEL => "audio level meta",
        K_CUSTOM => "custom meta",
        K_SEI_UNREGISTERED => "SEI user data meta",
        K_PROTECTION => "protection meta",
        K_SERIALIZED => "serialized meta",
        k => return Err(format!("unknown meta record kind {k}")),
    };
    let mut r = R { b: body, what };
    let c = match kind {
        K_REFERENCE_TIMESTAMP => {
            let timestamp = r.u64()?;
            let duration = r.u64()?;
            let s = r.text()?;
            let reference = gst::Caps::from_str(s)
                .ok()
                .filter(|c| !c.is_any() && !c.is_empty() && c.is_fixed())
                .ok_or_else(|| format!("{what}: reference {s:?} is not fixed caps"))?;
            if timestamp == crate::meta::NONE {
                return Err(format!("{what} has no timestamp"));
            }
            Carried::ReferenceTimestamp {
                reference,
                timestamp,
                duration,
            }
        }
        K_TIME_CODE => {
            let fps = (r.i32()?, r.i32()?);
            let flags = r.u32()?;
            let hmsf = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            let field_count = r.u32()?;
            let jam = r.text()?;
            if gst_video::VideoTimeCodeFlags::from_bits(flags).is_none() {
                return Err(format!("{what}: flags {flags:#x} are not GStreamer's"));
            }
            if fps.0 <= 0 || fps.1 <= 0 {
                return Err(format!("{what}: frame rate {}/{}", fps.0, fps.1));
            }
            if field_count > 2 {
                return Err(format!("{what}: field count {field_count}"));
            }
            if !jam.is_empty() && glib::DateTime::from_iso8601(jam, None).is_err() {
                return Err(format!("{what}: daily jam {jam:?} is not a date"));
            }
            let c = Carried::TimeCode {
                fps,
                flags,
                hmsf,
                field_count,
                daily_jam: (!jam.is_empty()).then(|| jam.to_owned()),
            };
            // GStreamer's own validity rules (ranges, drop-frame numbers).
            time_code(&c).ok_or_else(|| {
                format!(
                    "{what}: {:02}:{:02}:{:02}:{:02} at {}/{} is not a valid time code",
                    hmsf[0], hmsf[1], hmsf[2], hmsf[3], fps.0, fps.1
                )
            })?;
            c
        }
        K_CAPTION => {
            let kind = r.i32()?;
            let data = r.bytes()?;
            if !(1..=4).contains(&kind) {
                return Err(format!("{what}: caption type {kind}"));
            }
            if data.is_empty() {
                return Err(format!("{what} is empty"));
            }
            Carried::Caption {
                kind,
                data: data.to_vec(),
            }
        }
        K_ROI => {
            let id = r.i32()?;
            let parent_id = r.i32()?;
            let rect = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            let roi_type = r.text()?;
            if roi_type.is_empty() || roi_type.len() > 256 {
                return Err(format!("{what}: type of {} bytes", roi_type.len()));
            }
            check_rect("region of interest", rect, frame)?;
            let n = r.u16()? as usize;
            if n > MAX_ROI_PARAMS {
                return Err(format!("{what}: {n} params (at most {MAX_ROI_PARAMS})"));
            }
            let params = (0..n)
                .map(|_| r.structure())
                .collect::<Result<Vec<_>, _>>()?;
            Carried::Roi {
                roi_type: roi_type.to_owned(),
                id,
                parent_id,
                rect,
                params,
            }
        }
        K_CROP => {
            let rect = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            check_rect("crop", rect, frame)?;
            if rect[2] == 0 || rect[3] == 0 {
                return Err(format!("{what}: an empty crop"));
            }
            Carried::Crop(rect)
        }
        K_AUDIO_LEVEL => {
            let level = r.u8()?;
            let va = r.u8()?;
            if level > 127 || va > 1 {
                return Err(format!("{what}: level {level}, voice activity {va}"));
            }
            Carried::AudioLevel {
                level,
                voice_activity: va == 1,
            }
        }
        K_CUSTOM => {
            let name = r.text()?;
            if !valid_name(name) {
                return Err(format!("{what}: name {name:?}"));
            }
            let fields = r.structure()?;
            Carried::Custom {
                name: name.to_owned(),
                fields,
            }
        }
        K_SEI_UNREGISTERED => {
            let uuid: [u8; 16] = r.take(16)?.try_into().expect("16");
            let data = r.bytes()?;
            if data.is_empty() {
                return Err(format!("{what} is empty"));
            }
            Carried::SeiUnregistered {
                uuid,
                data: data.to_vec(),
            }
        }
        K_PROTECTION => Carried::Protection(r.structure()?),
        K_SERIALIZED => {
            let bytes = r.bytes()?;
            let name = serialized_name(bytes).map_err(|e| format!("{what}: {e}"))?;
            Carried::Serialized {
                name: name.to_owned(),
                bytes: bytes.to_vec(),
            }
        }
        _ => unreachable!("kind checked above"),
    };
    r.done()?;
    Ok(c)
}

/// A meta name GStreamer could have registered: a GType name.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    (3..=256).contains(&n.len())
        && c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c))
}

fn time_code(c: &Carried) -> Option<gst_video::ValidVideoTimeCode> {
    let Carried::TimeCode {
        fps,
        flags,
        hmsf,
        field_count,
        daily_jam,
    } = c
    else {
        return None;
    };
    let jam = daily_jam
        .as_deref()
        .and_then(|j| glib::DateTime::from_iso8601(j, None).ok());
    gst_video::ValidVideoTimeCode::new(
        gst::Fraction::new(fps.0, fps.1),
        jam.as_ref(),
        gst_video::VideoTimeCodeFlags::from_bits_truncate(*flags),
        hmsf[0],
        hmsf[1],
        hmsf[2],
        hmsf[3],
        *field_count,
    )
    .ok()
}

/// Which custom metas a consumer adds: those registered in its process, and those
/// the user allows (registered here on first sight).
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    /// Names the user listed.
    pub names: BTreeSet<String>,
    /// Any well-formed name (`custom-metas=*`, the default), up to
    /// [`MAX_AUTO_REGISTERED`] registered by this process.
    pub any: bool,
}

impl Allowed {
    /// From the `custom-metas` property: `*` for any name, else a comma-separated
    /// list (empty: none but those registered in the process).
    pub fn parse(s: &str) -> Allowed {
        let mut a = Allowed::default();
        for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n == "*" {
                a.any = true;
            } else {
                a.names.insert(n.to_owned());
            }
        }
        a
    }
}

/// Most custom metas a process registers for producers (`custom-metas=*`): a
/// registration lasts as long as the process, so a producer inventing names
/// cannot grow it past this.
pub const MAX_AUTO_REGISTERED: usize = 32;

static AUTO_REGISTERED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// Registers custom meta `name` for a producer, if allowed and safe: no GType of
/// that name (or of its API type's) exists yet, so registering cannot clash with
/// another type, and the process has not registered too many already.
fn register_custom(name: &str, allowed: &Allowed) -> bool {
    let listed = allowed.names.contains(name);
    if !listed && !allowed.any {
        return false;
    }
    let mut auto = AUTO_REGISTERED.lock().unwrap();
    if !listed && auto.len() >= MAX_AUTO_REGISTERED && !auto.contains(name) {
        return false;
    }
    let taken = |n: &str| glib::Type::from_name(n).is_some();
    if taken(name) || taken(&format!("{name}-api")) {
        return false;
    }
    gst::meta::CustomMeta::register(name, &[]);
    if !listed {
        auto.insert(name.to_owned());
    }
    custom_registered(name)
}

/// Why a decoded meta was not added to a buffer (the name, for the log).
pub type Refused = String;

/// Adds decoded metas to `b`. Returns the names of those not added: custom metas
/// neither registered nor allowed, serialized metas this GStreamer does not know or
/// cannot rebuild.
pub fn apply(b: &mut gst::BufferRef, metas: Vec<Carried>, allowed: &Allowed) -> Vec<Refused> {
    let mut refused = Vec::new();
    for m in metas {
        match m {
            Carried::ReferenceTimestamp {
                reference,
                timestamp,
                duration,
            } => {
                gst::ReferenceTimestampMeta::add(
                    b,
                    &reference,
                    gst::ClockTime::from_nseconds(timestamp),
                    crate::meta::to_ct(duration),
                );
            }
            ref tc @ Carried::TimeCode { .. } => {
                if let Some(tc) = time_code(tc) {
                    gst_video::VideoTimeCodeMeta::add(b, &tc);
                }
            }
            Carried::Caption { kind, data } => {
                // SAFETY: `kind` was checked to be one of GStreamer's caption types.
                let kind: gst_video::VideoCaptionType = unsafe { glib::translate::from_glib(kind) };
                gst_video::VideoCaptionMeta::add(b, kind, &data);
            }
            Carried::Roi {
                roi_type,
                id,
                parent_id,
                rect,
                params,
            } => {
                let mut r = gst_video::VideoRegionOfInterestMeta::add(
                    b,
                    &roi_type,
                    (rect[0], rect[1], rect[2], rect[3]),
                );
                r.set_id(id);
                r.set_parent_id(parent_id);
                for p in params {
                    r.add_param(p);
                }
            }
            Carried::Crop(rect) => {
                gst_video::VideoCropMeta::add(b, (rect[0], rect[1], rect[2], rect[3]));
            }
            Carried::AudioLevel {
                level,
                voice_activity,
            } => {
                gst_audio::AudioLevelMeta::add(b, level, voice_activity);
            }
            Carried::Custom { name, fields } => {
                if !custom_registered(&name) && !register_custom(&name, allowed) {
                    refused.push(name);
                    continue;
                }
                match gst::meta::CustomMeta::add(b, &name) {
                    Ok(mut c) => {
                        let s = c.mut_structure();
                        for (f, v) in fields.iter() {
                            s.set_value(f, v.clone());
                        }
                    }
                    Err(_) => refused.push(name),
                }
            }
            Carried::SeiUnregistered { uuid, data } => {
                gst_video::video_meta::VideoSeiUserDataUnregisteredMeta::add(b, &uuid, &data);
            }
            Carried::Protection(s) => {
                gst::ProtectionMeta::add(b, s);
            }
            Carried::Serialized { name, bytes } => {
                if !deserialize(b, &name, &bytes) {
                    refused.push(name);
                }
            }
        }
    }
    refused
}

/// Whether `name` is a custom meta registered in this process.
fn custom_registered(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string; gst_meta_get_info returns a static
    // registration or NULL; gst_meta_info_is_custom reads it.
    unsafe {
        let info = gst::ffi::gst_meta_get_info(c.as_ptr());
        !info.is_null() && gst::ffi::gst_meta_info_is_custom(info) != 0
    }
}

/// Rebuilds a serialized meta with this process's GStreamer, if it has the meta
/// registered and can deserialize (the header was checked at decoding).
fn deserialize(b: &mut gst::BufferRef, name: &str, bytes: &[u8]) -> bool {
    let Some(s) = serialization() else {
        return false;
    };
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: gst_meta_get_info takes a NUL-terminated name. gst_meta_deserialize
    // reads `bytes.len()` bytes of `bytes` after checking its total size against it;
    // the header it trusts (name length, NUL) was checked by `serialized_name`, so
    // its name read stays inside the bytes. What the meta's own deserialize
    // function does with the payload is GStreamer's code for peer data (unixfdsrc
    // hands it bytes from another process the same way).
    unsafe {
        if gst::ffi::gst_meta_get_info(c.as_ptr()).is_null() {
            return false;
        }
        let mut consumed = 0u32;
        let m = (s.deserialize)(b.as_mut_ptr(), bytes.as_ptr(), bytes.len(), &mut consumed);
        !m.is_null()
    }
}

/// The name of a meta for the "cannot cross" log.
pub fn name_of(m: &Carried) -> &str {
    match m {
        Carried::ReferenceTimestamp { .. } => "GstReferenceTimestampMeta",
        Carried::TimeCode { .. } => "GstVideoTimeCodeMeta",
        Carried::Caption { .. } => "GstVideoCaptionMeta",
        Carried::Roi { .. } => "GstVideoRegionOfInterestMeta",
        Carried::Crop(_) => "GstVideoCropMeta",
        Carried::AudioLevel { .. } => "GstAudioLevelMeta",
        Carried::Custom { name, .. } | Carried::Serialized { name, .. } => name,
        Carried::SeiUnregistered { .. } => "GstVideoSEIUserDataUnregisteredMeta",
        Carried::Protection(_) => "GstProtectionMeta",
    }
}

/// Names already logged as not crossing (each is logged once; at most 64 names
/// are remembered, so a producer inventing names cannot grow it).
#[derive(Debug, Default)]
pub struct LoggedOnce(BTreeSet<String>);

impl LoggedOnce {
    /// Whether `name` is new here (and so should be logged).
    pub fn first(&mut self, name: &str) -> bool {
        if self.0.len() >= 64 || self.0.contains(name) {
            return false;
        }
        self.0.insert(name.to_owned());
        true
    }
}

// ---- pieces -----------------------------------------------------------------

/// A record list being put back together from side-message pieces.
#[derive(Debug, Default)]
pub struct Assembly {
    /// The tag of the list being assembled (0: none).
    pub tag: u16,
    total: usize,
    bytes: Vec<u8>,
    /// Bytes of a list too large to keep, counted instead.
    skipped: usize,
    /// The list is larger than the consumer takes: its pieces are counted, not kept.
    pub too_large: bool,
}

/// What a piece did.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// More pieces to come.
    More,
    /// The list of this tag is whole.
    Whole,
    /// The list is over the consumer's limit (reported once per list).
    TooLarge {
        /// Its size.
        total: usize,
    },
}

impl Assembly {
    /// Takes one piece (the side message's body after its type byte), checking it
    /// against the pieces before it; `max` is the consumer's limit.
    pub fn piece(&mut self, body: &[u8], max: usize) -> Result<Piece, String> {
        if body.len() < PIECE_HEADER - 1 {
            return Err("meta piece without its header".into());
        }
        let tag = u16::from_le_bytes(body[0..2].try_into().expect("2"));
        let total = u32::from_le_bytes(body[2..6].try_into().expect("4")) as usize;
        let chunk = &body[6..];
        if tag == 0 || total == 0 || chunk.is_empty() {
            return Err(format!(
                "meta piece with tag {tag}, total {total}, {} bytes",
                chunk.len()
            ));
        }
        let continuing = self.tag == tag && self.have() < self.total;
        if !continuing {
            // A new list (an unfinished one before it belonged to a buffer this
            // consumer did not get).
            *self = Assembly {
                tag,
                total,
                bytes: Vec::new(),
                skipped: 0,
                too_large: total > max,
            };
        } else if total != self.total {
            return Err(format!(
                "meta piece says its list is {total} bytes, earlier pieces said {}",
                self.total
            ));
        }
        if self.have() + chunk.len() > total {
            return Err(format!(
                "meta pieces add up to more than their list's {total} bytes"
            ));
        }
        if self.too_large {
            self.skipped += chunk.len();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
        Ok(match (self.have() == total, self.too_large, continuing) {
            (_, true, false) => Piece::TooLarge { total },
            (true, false, _) => Piece::Whole,
            _ => Piece::More,
        })
    }

    fn have(&self) -> usize {
        self.bytes.len() + self.skipped
    }

    /// The whole list of `tag`, if that is what was assembled.
    pub fn take(&mut self, tag: u16) -> Option<Vec<u8>> {
        if self.tag == tag && !self.too_large && self.have() == self.total && self.total > 0 {
            self.tag = 0;
            return Some(std::mem::take(&mut self.bytes));
        }
        None
    }
}

/// The side messages (each a type byte, then the piece) carrying `list` under `tag`.
pub fn pieces(list: &[u8], tag: u16, type_byte: u8) -> impl Iterator<Item = Vec<u8>> + '_ {
    list.chunks(CHUNK).map(move |c| {
        let mut m = Vec::with_capacity(PIECE_HEADER + c.len());
        m.push(type_byte);
        m.extend_from_slice(&tag.to_le_bytes());
        m.extend_from_slice(&(list.len() as u32).to_le_bytes());
        m.extend_from_slice(c);
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            size: Some((320, 240)),
        }
    }

    fn all() -> Vec<Carried> {
        gst::init().unwrap();
        vec![
            Carried::ReferenceTimestamp {
                reference: gst::Caps::from_str("timestamp/x-ntp").unwrap(),
                timestamp: 5,
                duration: crate::meta::NONE,
            },
            Carried::TimeCode {
                fps: (30000, 1001),
                flags: 1,
                hmsf: [1, 2, 3, 4],
                field_count: 0,
                daily_jam: Some("2026-12-02T10:00:00+00:00".into()),
            },
            Carried::Caption {
                kind: 4,
                data: vec![1, 2, 3],
            },
            Carried::Roi {
                roi_type: "face".into(),
                id: 3,
                parent_id: -1,
                rect: [10, 20, 30, 40],
                params: vec![gst::Structure::from_str("p, score=(double)0.5").unwrap()],
            },
            Carried::Crop([0, 0, 320, 240]),
            Carried::AudioLevel {
                level: 127,
                voice_activity: true,
            },
            Carried::Custom {
                name: "MyMeta".into(),
                fields: gst::Structure::from_str("MyMeta, n=(int)3").unwrap(),
            },
            Carried::SeiUnregistered {
                uuid: [9; 16],
                data: vec![1],
            },
            Carried::Protection(gst::Structure::from_str("application/x-cenc, a=(int)1").unwrap()),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let metas = all();
        assert_eq!(decode(&encode(&metas), frame()).unwrap(), metas);
        assert_eq!(decode(&[], frame()).unwrap(), vec![]);
    }

    #[test]
    fn every_kind_of_record_is_applied_to_a_buffer_and_read_back() {
        let metas = all();
        let mut b = gst::Buffer::with_size(16).unwrap();
        let allowed = Allowed::parse("MyMeta");
        let refused = apply(b.get_mut().unwrap(), metas.clone(), &allowed);
        assert!(refused.is_empty(), "{refused:?}");
        let (back, cannot) = collect(&b);
        assert!(cannot.is_empty(), "{cannot:?}");
        assert_eq!(back, metas);
    }

    #[test]
    fn a_custom_meta_neither_registered_nor_allowed_is_refused_by_name() {
        gst::init().unwrap();
        let mut b = gst::Buffer::with_size(16).unwrap();
        let m = vec![Carried::Custom {
            name: "NobodyRegisteredThis".into(),
            fields: gst::Structure::new_empty("NobodyRegisteredThis"),
        }];
        let refused = apply(b.get_mut().unwrap(), m, &Allowed::default());
        assert_eq!(refused, vec!["NobodyRegisteredThis".to_owned()]);
        assert!(
            !custom_registered("NobodyRegisteredThis"),
            "nothing was registered"
        );
    }

    /// One record of `kind` with `body`.
    fn rec(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    fn err(list: &[u8]) -> String {
        gst::init().unwrap();
        decode(list, frame()).unwrap_err()
    }

    #[test]
    fn lying_records_are_refused_by_name() {
        let metas = all();
        let good = encode(&metas);
        // Cut anywhere: never a panic; an error, or (cut between records) the
        // records before the cut.
        for n in 1..good.len() {
            if let Ok(some) = decode(&good[..n], frame()) {
                assert_eq!(some[..], metas[..some.len()], "cut at {n}");
                assert_eq!(encode(&some).len(), n, "cut at {n}");
            }
        }
        assert_eq!(err(&rec(99, &[])), "unknown meta record kind 99");
        // A record that says it is longer than the list.
        let mut long = rec(K_CROP, &[0; 16]);
        long[1] = 200;
        assert!(err(&long).contains("ends"), "{}", err(&long));
        // Bytes left over inside a record.
        let mut crop_and_more = W(Vec::new());
        for v in [0, 0, 10, 10, 0] {
            crop_and_more.u32(v);
        }
        assert_eq!(
            err(&rec(K_CROP, &crop_and_more.0)),
            "crop meta record has 4 bytes too many"
        );
        let crop = |x: u32, w: u32| {
            let mut b = W(Vec::new());
            for v in [x, 0, w, 10] {
                b.u32(v);
            }
            encode_raw(K_CROP, b.0)
        };
        assert_eq!(
            err(&crop(300, 100)),
            "crop 100x10 at 300,0 is outside the 320x240 frame"
        );
        assert!(err(&crop(u32::MAX, 2)).contains("outside"));
        assert_eq!(err(&crop(0, 0)), "crop meta: an empty crop");
        let caption = |kind: i32, data: &[u8]| {
            let mut b = W(Vec::new());
            b.i32(kind);
            b.bytes(data);
            encode_raw(K_CAPTION, b.0)
        };
        assert_eq!(err(&caption(9, &[1])), "caption meta: caption type 9");
        assert_eq!(err(&caption(1, &[])), "caption meta is empty");
        assert_eq!(
            err(&rec(K_AUDIO_LEVEL, &[200, 0])),
            "audio level meta: level 200, voice activity 0"
        );
        let tc = |fps: (i32, i32), h: u32| {
            let mut b = W(Vec::new());
            b.i32(fps.0);
            b.i32(fps.1);
            b.u32(0);
            for v in [h, 0, 0, 0] {
                b.u32(v);
            }
            b.u32(0);
            b.text("");
            encode_raw(K_TIME_CODE, b.0)
        };
        assert_eq!(err(&tc((0, 1), 1)), "time code meta: frame rate 0/1");
        assert!(err(&tc((30, 1), 25)).contains("is not a valid time code"));
        let custom = |name: &str, s: &str| {
            let mut b = W(Vec::new());
            b.text(name);
            b.text(s);
            encode_raw(K_CUSTOM, b.0)
        };
        assert_eq!(
            err(&custom("bad name!", "x")),
            "custom meta: name \"bad name!\""
        );
        assert_eq!(
            err(&custom("MyMeta", "x, a=(int)")),
            "custom meta: unparsable structure"
        );
        assert_eq!(
            err(&custom("MyMeta", "x\0y")),
            "custom meta text has a NUL byte"
        );
        let many: Vec<u8> = (0..=MAX_RECORDS)
            .flat_map(|_| rec(K_AUDIO_LEVEL, &[1, 0]))
            .collect();
        assert_eq!(
            err(&many),
            format!("more than {MAX_RECORDS} metas on one buffer")
        );
    }

    fn encode_raw(kind: u8, body: Vec<u8>) -> Vec<u8> {
        rec(kind, &body)
    }

    #[test]
    fn on_gstreamer_1_24_a_meta_travels_in_its_own_serialization() {
        gst::init().unwrap();
        if !gstreamer_serializes() {
            // 1.22: nothing to look up, and nothing is sent in that form.
            assert!(gst::version() < (1, 24, 0, 0), "{:?}", gst::version());
            return;
        }
        // A custom meta, which GStreamer >= 1.24 serializes (ours would be used
        // in practice; the serialized path is the one for metas we have no
        // encoding for, and goes the same way).
        gst::meta::CustomMeta::register("SerializedTestMeta", &[]);
        let mut b = gst::Buffer::with_size(4).unwrap();
        {
            let mut c =
                gst::meta::CustomMeta::add(b.get_mut().unwrap(), "SerializedTestMeta").unwrap();
            c.mut_structure().set("n", 42i32);
        }
        let m = b.iter_meta::<gst::Meta>().next().unwrap();
        let c = serialized(&m).expect("serializes on >= 1.24");
        let Carried::Serialized { name, .. } = &c else {
            panic!("{c:?}")
        };
        assert_eq!(name, "SerializedTestMeta");
        // Across the wire and back into a buffer through gst_meta_deserialize.
        let back = decode(&encode(std::slice::from_ref(&c)), frame()).unwrap();
        assert_eq!(back, vec![c]);
        let mut other = gst::Buffer::with_size(4).unwrap();
        let refused = apply(other.get_mut().unwrap(), back, &Allowed::default());
        assert!(refused.is_empty(), "{refused:?}");
        let r = gst::meta::CustomMeta::from_buffer(&other, "SerializedTestMeta").expect("rebuilt");
        assert_eq!(r.structure().get::<i32>("n").unwrap(), 42);
    }

    #[test]
    fn a_serialized_meta_header_is_checked_before_gstreamer_reads_it() {
        let header = |total: u32, name_len: u32, name: &[u8]| {
            let mut b = total.to_le_bytes().to_vec();
            b.extend_from_slice(&name_len.to_le_bytes());
            b.extend_from_slice(name);
            b
        };
        let good = header(16, 5, b"MyMet\0\x00x");
        assert_eq!(serialized_name(&good).unwrap(), "MyMet");
        // GStreamer computes 8 + name_len + 2 in 32 bits and reads name[name_len].
        assert!(serialized_name(&header(16, u32::MAX - 5, b"MyMet\0\0x")).is_err());
        assert!(
            serialized_name(&header(17, 5, b"MyMet\0\0x")).is_err(),
            "total"
        );
        assert!(
            serialized_name(&header(16, 5, b"MyMetX\0x")).is_err(),
            "no NUL"
        );
        assert!(
            serialized_name(&header(16, 5, b"My\nMe\0x")).is_err(),
            "text"
        );
        assert!(serialized_name(&[1, 2]).is_err());
    }

    #[test]
    fn pieces_assemble_in_order_and_lies_about_them_are_refused() {
        let list: Vec<u8> = (0..3 * CHUNK as u32 / 2).map(|i| i as u8).collect();
        let pieces: Vec<Vec<u8>> = pieces(&list, 7, 11).collect();
        assert_eq!(pieces.len(), 2);
        let mut a = Assembly::default();
        assert_eq!(a.piece(&pieces[0][1..], 1 << 20).unwrap(), Piece::More);
        assert_eq!(a.take(7), None, "not whole yet");
        assert_eq!(a.piece(&pieces[1][1..], 1 << 20).unwrap(), Piece::Whole);
        assert_eq!(a.take(6), None, "another buffer's tag");
        assert_eq!(a.take(7).unwrap(), list);
        assert_eq!(a.take(7), None, "taken once");

        // A list over the limit is counted once, never kept.
        let mut a = Assembly::default();
        assert_eq!(
            a.piece(&pieces[0][1..], 1000).unwrap(),
            Piece::TooLarge { total: list.len() }
        );
        assert_eq!(a.piece(&pieces[1][1..], 1000).unwrap(), Piece::More);
        assert_eq!(a.take(7), None);
        assert!(a.bytes.is_empty());

        // A second piece that changes the list's size, or overflows it.
        let mut a = Assembly::default();
        a.piece(&pieces[0][1..], 1 << 20).unwrap();
        let mut lie = pieces[1][1..].to_vec();
        lie[2..6].copy_from_slice(&((list.len() + 1) as u32).to_le_bytes());
        assert!(
            a.piece(&lie, 1 << 20)
                .unwrap_err()
                .contains("earlier pieces said")
        );
        let mut a = Assembly::default();
        let mut over = pieces[0][1..].to_vec();
        over[2..6].copy_from_slice(&10u32.to_le_bytes());
        assert!(
            a.piece(&over, 1 << 20)
                .unwrap_err()
                .contains("add up to more")
        );
        assert!(a.piece(&[1, 0, 0], 1 << 20).is_err(), "no header");
        assert!(a.piece(&[0, 0, 1, 0, 0, 0, 5], 1 << 20).is_err(), "tag 0");
        // An unfinished list followed by another buffer's: the new one wins.
        let mut a = Assembly::default();
        a.piece(&pieces[0][1..], 1 << 20).unwrap();
        let small: Vec<Vec<u8>> = super::pieces(&[1, 2, 3], 8, 11).collect();
        assert_eq!(a.piece(&small[0][1..], 1 << 20).unwrap(), Piece::Whole);
        assert_eq!(a.take(8).unwrap(), vec![1, 2, 3]);
    }
}
