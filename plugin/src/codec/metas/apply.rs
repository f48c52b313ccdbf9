//! Metas between a `GstBuffer` and [`Carried`] values: which of a buffer's metas
//! travel (and in which form), and adding decoded ones to a consumer's buffer — only
//! custom metas registered in the consumer's process or allowed by its user, and
//! serialized ones its GStreamer knows.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::sync::OnceLock;

use gst::glib;
use gst::prelude::*;

use super::Carried;
use super::records::serialized_name;
use crate::codec::text::{ct, to_ct};

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
            duration: ct(r.duration()),
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

pub(super) fn serialized(m: &gst::MetaRef<'_, gst::Meta>) -> Option<Carried> {
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
                    to_ct(duration),
                );
            }
            ref tc @ Carried::TimeCode { .. } => {
                if let Some(tc) = tc.time_code() {
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
pub(super) fn custom_registered(name: &str) -> bool {
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
