//! The record list of one buffer's metas: encoded by the producer, decoded strictly
//! by the consumer.
//!
//! A list is records one after another, each a kind byte and a length-prefixed body
//! (`u32` length); at most [`MAX_RECORDS`] records. Bodies, little-endian:
//!
//! | kind | meta | body |
//! |------|------|------|
//! | 1  | reference timestamp | timestamp, duration (`u64`), reference caps (text) |
//! | 2  | time code | fps (`i32`, `i32`), flags, h, m, s, f, field count (`u32`), daily jam (text) |
//! | 3  | caption | type (`i32`), data (bytes) |
//! | 4  | region of interest | id, parent id (`i32`), x, y, w, h (`u32`), type (text), params (`u16` count, structure texts) |
//! | 5  | crop | x, y, w, h (`u32`) |
//! | 6  | audio level | level (`u8`), voice activity (`u8`) |
//! | 7  | custom | name (text), structure (text) |
//! | 8  | SEI user data | uuid (16 bytes), data (bytes) |
//! | 9  | protection | structure (text) |
//! | 10 | serialized | GStreamer's serialization (bytes) |

use gst::glib;

use super::{Carried, Frame, MAX_RECORDS, MAX_ROI_PARAMS};
use crate::codec::bytes::{Reader, Writer};
use crate::codec::fault::Fault;
use crate::codec::text::NONE;

pub(super) const K_REFERENCE_TIMESTAMP: u8 = 1;
pub(super) const K_TIME_CODE: u8 = 2;
pub(super) const K_CAPTION: u8 = 3;
pub(super) const K_ROI: u8 = 4;
pub(super) const K_CROP: u8 = 5;
pub(super) const K_AUDIO_LEVEL: u8 = 6;
pub(super) const K_CUSTOM: u8 = 7;
pub(super) const K_SEI_UNREGISTERED: u8 = 8;
pub(super) const K_PROTECTION: u8 = 9;
pub(super) const K_SERIALIZED: u8 = 10;

/// Encodes one buffer's metas as a record list.
pub fn encode(metas: &[Carried]) -> Vec<u8> {
    let mut w = Writer::new();
    for m in metas {
        let mut b = Writer::new();
        let kind = encode_one(m, &mut b);
        w.u8(kind);
        w.bytes(&b.into_bytes());
    }
    w.into_bytes()
}

fn encode_one(m: &Carried, b: &mut Writer) -> u8 {
    match m {
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
            hmsf.iter().for_each(|v| b.u32(*v));
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
            rect.iter().for_each(|v| b.u32(*v));
            b.text(roi_type);
            b.u16(params.len() as u16);
            params.iter().for_each(|p| b.text(&p.to_string()));
            K_ROI
        }
        Carried::Crop(rect) => {
            rect.iter().for_each(|v| b.u32(*v));
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
            b.raw(uuid);
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
    }
}

/// Decodes a record list a producer sent, for a buffer of `frame`. Each record is
/// checked as GStreamer will use it.
pub fn decode(b: &[u8], frame: Frame) -> Result<Vec<Carried>, Fault> {
    let mut list = Reader::new(b, "meta list");
    let mut out = Vec::new();
    while !list.is_empty() {
        if out.len() == MAX_RECORDS {
            return Err(Fault::Limit {
                what: "meta list",
                field: "records",
                value: MAX_RECORDS as u64 + 1,
                limit: MAX_RECORDS as u64,
            });
        }
        let kind = list.u8()?;
        let body = list.bytes()?;
        out.push(decode_one(kind, body, frame)?);
    }
    Ok(out)
}

fn decode_one(kind: u8, body: &[u8], frame: Frame) -> Result<Carried, Fault> {
    type Decoder = fn(&mut Reader<'_>, Frame) -> Result<Carried, Fault>;
    let (what, decoder): (&'static str, Decoder) = match kind {
        K_REFERENCE_TIMESTAMP => ("reference timestamp meta", reference_timestamp),
        K_TIME_CODE => ("time code meta", time_code),
        K_CAPTION => ("caption meta", caption),
        K_ROI => ("region of interest meta", roi),
        K_CROP => ("crop meta", crop),
        K_AUDIO_LEVEL => ("audio level meta", audio_level),
        K_CUSTOM => ("custom meta", custom),
        K_SEI_UNREGISTERED => ("SEI user data meta", sei_unregistered),
        K_PROTECTION => ("protection meta", |r, _| {
            Ok(Carried::Protection(r.structure()?))
        }),
        K_SERIALIZED => ("serialized meta", serialized),
        k => {
            return Err(Fault::Unknown {
                what: "meta record kind",
                value: k.into(),
            });
        }
    };
    let mut r = Reader::new(body, what);
    let c = decoder(&mut r, frame)?;
    r.done()?;
    Ok(c)
}

fn reference_timestamp(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let what = r.what();
    let timestamp = r.u64()?;
    let duration = r.u64()?;
    let s = r.text()?;
    let reference = s
        .parse::<gst::Caps>()
        .ok()
        .filter(|c| !c.is_any() && !c.is_empty() && c.is_fixed())
        .ok_or_else(|| Fault::NotFixed {
            what: "reference",
            text: s.to_owned(),
        })?;
    if timestamp == NONE {
        return Err(Fault::Missing {
            what,
            field: "timestamp",
        });
    }
    Ok(Carried::ReferenceTimestamp {
        reference,
        timestamp,
        duration,
    })
}

fn time_code(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let what = r.what();
    let fps = (r.i32()?, r.i32()?);
    let flags = r.u32()?;
    let hmsf = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
    let field_count = r.u32()?;
    let jam = r.text()?;
    if gst_video::VideoTimeCodeFlags::from_bits(flags).is_none() {
        return Err(Fault::Value {
            what,
            field: "flags",
            value: flags.into(),
        });
    }
    if fps.0 <= 0 || fps.1 <= 0 {
        return Err(Fault::Invalid {
            what,
            field: "frame rate",
            value: format!("{}/{}", fps.0, fps.1),
        });
    }
    if field_count > 2 {
        return Err(Fault::Value {
            what,
            field: "field count",
            value: field_count.into(),
        });
    }
    if !jam.is_empty() && glib::DateTime::from_iso8601(jam, None).is_err() {
        return Err(Fault::Unparsable {
            what: "daily jam date",
            text: jam.to_owned(),
        });
    }
    let c = Carried::TimeCode {
        fps,
        flags,
        hmsf,
        field_count,
        daily_jam: (!jam.is_empty()).then(|| jam.to_owned()),
    };
    // GStreamer's own validity rules (ranges, drop-frame numbers).
    match c.time_code() {
        Some(_) => Ok(c),
        None => Err(Fault::Invalid {
            what,
            field: "time",
            value: format!(
                "{:02}:{:02}:{:02}:{:02} at {}/{}",
                hmsf[0], hmsf[1], hmsf[2], hmsf[3], fps.0, fps.1
            ),
        }),
    }
}

fn caption(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let what = r.what();
    let kind = r.i32()?;
    let data = r.bytes()?;
    if !(1..=4).contains(&kind) {
        return Err(Fault::Value {
            what,
            field: "caption type",
            value: kind.into(),
        });
    }
    if data.is_empty() {
        return Err(Fault::Missing {
            what,
            field: "data",
        });
    }
    Ok(Carried::Caption {
        kind,
        data: data.to_vec(),
    })
}

fn rect(r: &mut Reader<'_>) -> Result<[u32; 4], Fault> {
    Ok([r.u32()?, r.u32()?, r.u32()?, r.u32()?])
}

/// Checks a rectangle against the frame the caps describe (or, with no size,
/// against overflowing `u32`).
fn check_rect(what: &'static str, rect: [u32; 4], frame: Frame) -> Result<(), Fault> {
    let [x, y, w, h] = rect;
    let fits = |a: u32, b: u32, max: u32| a.checked_add(b).is_some_and(|e| e <= max);
    let inside = match frame.size {
        Some((fw, fh)) => fits(x, w, fw) && fits(y, h, fh),
        None => x.checked_add(w).is_some() && y.checked_add(h).is_some(),
    };
    match inside {
        true => Ok(()),
        false => Err(Fault::Outside {
            what,
            rect,
            frame: frame.size,
        }),
    }
}

fn roi(r: &mut Reader<'_>, frame: Frame) -> Result<Carried, Fault> {
    let what = r.what();
    let id = r.i32()?;
    let parent_id = r.i32()?;
    let rect = rect(r)?;
    let roi_type = r.text()?;
    if roi_type.is_empty() || roi_type.len() > 256 {
        return Err(Fault::Value {
            what,
            field: "type length",
            value: roi_type.len() as i64,
        });
    }
    check_rect("region of interest", rect, frame)?;
    let n = r.u16()? as usize;
    if n > MAX_ROI_PARAMS {
        return Err(Fault::Limit {
            what,
            field: "params",
            value: n as u64,
            limit: MAX_ROI_PARAMS as u64,
        });
    }
    let params = (0..n)
        .map(|_| r.structure())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Carried::Roi {
        roi_type: roi_type.to_owned(),
        id,
        parent_id,
        rect,
        params,
    })
}

fn crop(r: &mut Reader<'_>, frame: Frame) -> Result<Carried, Fault> {
    let rect = rect(r)?;
    check_rect("crop", rect, frame)?;
    if rect[2] == 0 || rect[3] == 0 {
        return Err(Fault::Missing {
            what: r.what(),
            field: "area",
        });
    }
    Ok(Carried::Crop(rect))
}

fn audio_level(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let level = r.u8()?;
    if level > 127 {
        return Err(Fault::Value {
            what: r.what(),
            field: "level",
            value: level.into(),
        });
    }
    let voice_activity = r.flag("voice activity")?;
    Ok(Carried::AudioLevel {
        level,
        voice_activity,
    })
}

/// A meta name GStreamer could have registered: a GType name.
pub(super) fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    (3..=256).contains(&n.len())
        && c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c))
}

fn custom(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let name = r.text()?;
    if !valid_name(name) {
        return Err(Fault::Unparsable {
            what: "meta name",
            text: name.to_owned(),
        });
    }
    let fields = r.structure()?;
    Ok(Carried::Custom {
        name: name.to_owned(),
        fields,
    })
}

fn sei_unregistered(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let uuid = r.array::<16>()?;
    let data = r.bytes()?;
    if data.is_empty() {
        return Err(Fault::Missing {
            what: r.what(),
            field: "data",
        });
    }
    Ok(Carried::SeiUnregistered {
        uuid,
        data: data.to_vec(),
    })
}

fn serialized(r: &mut Reader<'_>, _: Frame) -> Result<Carried, Fault> {
    let bytes = r.bytes()?;
    let name = serialized_name(bytes)?;
    Ok(Carried::Serialized {
        name: name.to_owned(),
        bytes: bytes.to_vec(),
    })
}

/// The name in a serialization's header, after checking the header as
/// `gst_meta_deserialize` reads it: `[total u32][name_len u32][name][NUL][version]`,
/// total equal to the bytes, the name inside them, printable and NUL-terminated.
pub(super) fn serialized_name(b: &[u8]) -> Result<&str, Fault> {
    let what = "serialized meta";
    let mut r = Reader::new(b, what);
    let total = r.u32()? as usize;
    let name_len = r.u32()? as usize;
    if total != b.len() {
        return Err(Fault::Size {
            what,
            len: b.len(),
            expected: total,
        });
    }
    if name_len == 0 || name_len > 256 || 8 + name_len + 2 > total {
        return Err(Fault::Value {
            what,
            field: "name length",
            value: name_len as i64,
        });
    }
    let name = r.take(name_len)?;
    if r.u8()? != 0 || !name.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Fault::Unparsable {
            what: "meta name",
            text: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(std::str::from_utf8(name).expect("ascii"))
}
