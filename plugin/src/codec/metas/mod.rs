//! The `GstMeta`s of a buffer, across the transport.
//!
//! The frame descriptor's 88 bytes hold timestamps, flags and the video layout
//! ([`crate::codec::BufferMeta`]); every other meta of a buffer travels as a record
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

mod apply;
mod pieces;
mod records;

pub use apply::{
    Allowed, LoggedOnce, MAX_AUTO_REGISTERED, Refused, apply, collect, gstreamer_serializes,
    name_of,
};
pub use pieces::{Assembly, Piece, pieces};
pub use records::{decode, encode};

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

/// One meta, as it travels.
#[derive(Clone, Debug, PartialEq)]
pub enum Carried {
    /// `GstReferenceTimestampMeta`.
    ReferenceTimestamp {
        /// What the timestamp refers to (e.g. `timestamp/x-ntp`).
        reference: gst::Caps,
        /// Nanoseconds.
        timestamp: u64,
        /// Nanoseconds, or [`crate::codec::NONE`].
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

impl Carried {
    /// A time code record as GStreamer's time code, if GStreamer finds it valid.
    pub fn time_code(&self) -> Option<gst_video::ValidVideoTimeCode> {
        let Carried::TimeCode {
            fps,
            flags,
            hmsf,
            field_count,
            daily_jam,
        } = self
        else {
            return None;
        };
        let jam = daily_jam
            .as_deref()
            .and_then(|j| gst::glib::DateTime::from_iso8601(j, None).ok());
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::apply::{custom_registered, serialized};
    use super::records::*;
    use super::*;
    use crate::codec::Fault;
    use crate::codec::bytes::Writer;

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
                duration: crate::codec::NONE,
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

    fn err(list: &[u8]) -> Fault {
        gst::init().unwrap();
        decode(list, frame()).unwrap_err()
    }

    /// A record of `kind` whose body `fill` writes.
    fn with(kind: u8, fill: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut b = Writer::new();
        fill(&mut b);
        rec(kind, &b.into_bytes())
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
        assert_eq!(
            err(&rec(99, &[])),
            Fault::Unknown {
                what: "meta record kind",
                value: 99
            }
        );
        // A record that says it is longer than the list.
        let mut long = rec(K_CROP, &[0; 16]);
        long[1] = 200;
        assert!(
            matches!(
                err(&long),
                Fault::Short {
                    what: "meta list",
                    ..
                }
            ),
            "{}",
            err(&long)
        );
        // Bytes left over inside a record.
        let crop_and_more = with(K_CROP, |b| [0, 0, 10, 10, 0].iter().for_each(|v| b.u32(*v)));
        assert_eq!(
            err(&crop_and_more),
            Fault::Trailing {
                what: "crop meta",
                extra: 4
            }
        );
        let crop = |x: u32, w: u32| with(K_CROP, |b| [x, 0, w, 10].iter().for_each(|v| b.u32(*v)));
        assert_eq!(
            err(&crop(300, 100)),
            Fault::Outside {
                what: "crop",
                rect: [300, 0, 100, 10],
                frame: Some((320, 240))
            }
        );
        assert_eq!(
            err(&crop(300, 100)).to_string(),
            "crop 100x10 at 300,0 is outside the 320x240 frame"
        );
        assert!(matches!(err(&crop(u32::MAX, 2)), Fault::Outside { .. }));
        assert_eq!(
            err(&crop(0, 0)),
            Fault::Missing {
                what: "crop meta",
                field: "area"
            }
        );
        let caption = |kind: i32, data: &'static [u8]| {
            with(K_CAPTION, move |b| {
                b.i32(kind);
                b.bytes(data);
            })
        };
        assert_eq!(
            err(&caption(9, &[1])),
            Fault::Value {
                what: "caption meta",
                field: "caption type",
                value: 9
            }
        );
        assert_eq!(
            err(&caption(1, &[])),
            Fault::Missing {
                what: "caption meta",
                field: "data"
            }
        );
        assert_eq!(
            err(&rec(K_AUDIO_LEVEL, &[200, 0])),
            Fault::Value {
                what: "audio level meta",
                field: "level",
                value: 200
            }
        );
        assert_eq!(
            err(&rec(K_AUDIO_LEVEL, &[1, 2])),
            Fault::Value {
                what: "audio level meta",
                field: "voice activity",
                value: 2
            }
        );
        let tc = |fps: (i32, i32), h: u32| {
            with(K_TIME_CODE, |b| {
                b.i32(fps.0);
                b.i32(fps.1);
                b.u32(0);
                [h, 0, 0, 0].iter().for_each(|v| b.u32(*v));
                b.u32(0);
                b.text("");
            })
        };
        assert_eq!(
            err(&tc((0, 1), 1)),
            Fault::Invalid {
                what: "time code meta",
                field: "frame rate",
                value: "0/1".into()
            }
        );
        assert_eq!(
            err(&tc((30, 1), 25)),
            Fault::Invalid {
                what: "time code meta",
                field: "time",
                value: "25:00:00:00 at 30/1".into()
            }
        );
        let custom = |name: &'static str, s: &'static str| {
            with(K_CUSTOM, move |b| {
                b.text(name);
                b.text(s);
            })
        };
        assert_eq!(
            err(&custom("bad name!", "x")),
            Fault::Unparsable {
                what: "meta name",
                text: "bad name!".into()
            }
        );
        assert_eq!(
            err(&custom("MyMeta", "x, a=(int)")),
            Fault::Unparsable {
                what: "custom meta",
                text: "x, a=(int)".into()
            }
        );
        assert_eq!(
            err(&custom("MyMeta", "x\0y")),
            Fault::Nul {
                what: "custom meta",
                at: 1
            }
        );
        let many: Vec<u8> = (0..=MAX_RECORDS)
            .flat_map(|_| rec(K_AUDIO_LEVEL, &[1, 0]))
            .collect();
        assert_eq!(
            err(&many),
            Fault::Limit {
                what: "meta list",
                field: "records",
                value: MAX_RECORDS as u64 + 1,
                limit: MAX_RECORDS as u64
            }
        );
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
}
