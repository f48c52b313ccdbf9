//! The side messages of the sink: caps and serialized events, ordered with the
//! buffers (each is a frame-channel side message, sent before the buffer it
//! precedes, and replayed by key to consumers that join later).
//!
//! | type | message        | body                                                |
//! |------|----------------|-----------------------------------------------------|
//! | 1    | caps           | caps text: one fixed structure                      |
//! | 2    | stream-start   | stream id text                                      |
//! | 3    | tags (stream)  | tag list text                                       |
//! | 13   | tags (global)  | tag list text                                       |
//! | 4    | gap            | PTS (`u64`), duration (`u64`, [`NONE`]: unknown)      |
//! | 5    | EOS            | nothing                                             |
//! | 6    | custom event   | structure text                                      |
//! | 7    | latency        | live (0/1), min (`u64`), max (`u64`, [`NONE`]: none)  |
//! | 8    | segment        | flags (`u32`), rate, applied rate (`f64`), start, stop, time, base, offset, position, duration, reserved (`u64`) |
//! | 9    | custom sticky  | structure text                                      |
//! | 10   | flush          | nothing                                             |
//! | 11   | meta piece     | see [`super::metas`]                                |
//! | 12   | TOC            | see [`super::toc`]                                  |
//!
//! Integers are little-endian; text is UTF-8 with no NUL byte. A consumer decodes
//! whatever a hostile producer wrote into a valid value or a [`Fault`] naming it.

use super::bytes::{self, Reader, Writer};
use super::fault::Fault;
use super::text::{NONE, caps_from_text, ct, structure, tags, to_ct};

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

/// A side message of the sink: caps or a serialized event.
#[derive(Clone, Debug)]
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
    /// [`super::metas::Assembly`]).
    MetaPiece(Vec<u8>),
    /// A table of contents and the TOC event's `updated` flag (checked by
    /// [`super::toc::decode`] when this message is decoded: a consumer decodes it
    /// once).
    Toc {
        /// The table.
        toc: gst::Toc,
        /// The event's `updated` flag.
        updated: bool,
    },
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

fn segment_encode(seg: &gst::FormattedSegment<gst::ClockTime>, w: &mut Writer) {
    w.u32(seg.flags().bits());
    w.f64(seg.rate());
    w.f64(seg.applied_rate());
    for t in [
        seg.start(),
        seg.stop(),
        seg.time(),
        seg.base(),
        seg.offset(),
        seg.position(),
        seg.duration(),
    ] {
        w.u64(ct(t));
    }
    // Reserved.
    w.u64(0);
}

/// Decodes and checks a segment a peer sent: rates finite and not zero, start,
/// time, base and offset known, stop (when known) not before start, only known flags.
fn segment_decode(body: &[u8]) -> Result<gst::FormattedSegment<gst::ClockTime>, Fault> {
    let what = "segment";
    if body.len() != SEGMENT_LEN {
        return Err(Fault::Size {
            what,
            len: body.len(),
            expected: SEGMENT_LEN,
        });
    }
    let mut r = Reader::new(body, what);
    let flags = r.u32()?;
    let flags = gst::SegmentFlags::from_bits(flags).ok_or(Fault::Value {
        what,
        field: "flags",
        value: flags.into(),
    })?;
    let mut rates = [0f64; 2];
    for (field, rate) in ["rate", "applied rate"].into_iter().zip(&mut rates) {
        *rate = r.f64()?;
        if !rate.is_finite() || *rate == 0.0 {
            return Err(Fault::Invalid {
                what,
                field,
                value: rate.to_string(),
            });
        }
    }
    let mut t = [0u64; 7];
    for v in &mut t {
        *v = r.u64()?;
    }
    let [start, stop, time, base, offset, position, duration] = t;
    for (field, v) in [
        ("start", start),
        ("time", time),
        ("base", base),
        ("offset", offset),
    ] {
        if v == NONE {
            return Err(Fault::Missing { what, field });
        }
    }
    if stop != NONE && stop < start {
        return Err(Fault::Order {
            what,
            earlier: ("start", start),
            later: ("stop", stop),
        });
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_flags(flags);
    seg.set_rate(rates[0]);
    seg.set_applied_rate(rates[1]);
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
        let mut w = Writer::new();
        match self {
            Side::Caps(c) => {
                w.u8(T_CAPS);
                w.raw(c.to_string().as_bytes());
            }
            Side::StreamStart { stream_id } => {
                w.u8(T_STREAM_START);
                w.raw(stream_id.as_bytes());
            }
            Side::Tags(t) => {
                w.u8(match t.scope() {
                    gst::TagScope::Global => T_TAGS_GLOBAL,
                    _ => T_TAGS,
                });
                w.raw(t.to_string().as_bytes());
            }
            Side::Gap { pts, duration } => {
                w.u8(T_GAP);
                w.u64(*pts);
                w.u64(*duration);
            }
            Side::Eos => w.u8(T_EOS),
            Side::Flush => w.u8(T_FLUSH),
            Side::MetaPiece(b) => {
                w.u8(T_META_PIECE);
                w.raw(b);
            }
            Side::Toc { toc, updated } => {
                w.u8(T_TOC);
                w.raw(&super::toc::encode(toc, *updated));
            }
            Side::Custom(s) => {
                w.u8(T_CUSTOM);
                w.raw(s.to_string().as_bytes());
            }
            Side::CustomSticky(s) => {
                w.u8(T_CUSTOM_STICKY);
                w.raw(s.to_string().as_bytes());
            }
            Side::Segment(seg) => {
                w.u8(T_SEGMENT);
                segment_encode(seg, &mut w);
            }
            Side::Latency { live, min, max } => {
                w.u8(T_LATENCY);
                w.u8(*live as u8);
                w.u64(*min);
                w.u64(*max);
            }
        }
        w.into_bytes()
    }

    /// Decodes a side message; anything malformed is a fault naming it.
    pub fn decode(b: &[u8]) -> Result<Side, Fault> {
        let (&t, body) = b.split_first().ok_or(Fault::Short {
            what: "side message",
            missing: 1,
        })?;
        let text = |what| bytes::text(body, what);
        Ok(match t {
            T_CAPS => Side::Caps(caps_from_text(text("caps")?)?),
            T_STREAM_START => Side::StreamStart {
                stream_id: text("stream id")?.to_owned(),
            },
            T_TAGS | T_TAGS_GLOBAL => {
                let mut tags = tags(text("tags")?, "tags")?;
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
                let mut r = fixed(body, "gap", 16)?;
                Side::Gap {
                    pts: r.u64()?,
                    duration: r.u64()?,
                }
            }
            T_EOS => empty(body, "EOS", Side::Eos)?,
            T_FLUSH => empty(body, "flush", Side::Flush)?,
            T_META_PIECE => Side::MetaPiece(body.to_vec()),
            T_TOC => {
                let (toc, updated) = super::toc::decode(body)?;
                Side::Toc { toc, updated }
            }
            T_CUSTOM => Side::Custom(structure(text("custom event")?, "custom event")?),
            T_CUSTOM_STICKY => Side::CustomSticky(structure(
                text("custom sticky event")?,
                "custom sticky event",
            )?),
            T_SEGMENT => Side::Segment(segment_decode(body)?),
            T_LATENCY => latency_decode(body)?,
            t => {
                return Err(Fault::Unknown {
                    what: "side message type",
                    value: t.into(),
                });
            }
        })
    }
}

/// Two messages are equal when they say the same on the wire (a TOC has no
/// equality of its own).
impl PartialEq for Side {
    fn eq(&self, other: &Side) -> bool {
        self.encode() == other.encode()
    }
}

/// A reader of a message that must be `len` bytes.
fn fixed<'a>(body: &'a [u8], what: &'static str, len: usize) -> Result<Reader<'a>, Fault> {
    if body.len() != len {
        return Err(Fault::Size {
            what,
            len: body.len(),
            expected: len,
        });
    }
    Ok(Reader::new(body, what))
}

/// `side`, for a message that has no body.
fn empty(body: &[u8], what: &'static str, side: Side) -> Result<Side, Fault> {
    fixed(body, what, 0).map(|_| side)
}

fn latency_decode(body: &[u8]) -> Result<Side, Fault> {
    let what = "latency";
    let mut r = fixed(body, what, 17)?;
    let live = r.flag("live")?;
    let (min, max) = (r.u64()?, r.u64()?);
    if min == NONE {
        return Err(Fault::Missing { what, field: "min" });
    }
    if max != NONE && max < min {
        return Err(Fault::Order {
            what,
            earlier: ("min", min),
            later: ("max", max),
        });
    }
    Ok(Side::Latency { live, min, max })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

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
        assert_eq!(
            Side::decode(&[]),
            Err(Fault::Short {
                what: "side message",
                missing: 1
            })
        );
        let mut lat = Side::Latency {
            live: true,
            min: 5,
            max: 4,
        }
        .encode();
        assert_eq!(
            Side::decode(&lat),
            Err(Fault::Order {
                what: "latency",
                earlier: ("min", 5),
                later: ("max", 4)
            })
        );
        assert!(
            matches!(
                Side::decode(&lat[..5]),
                Err(Fault::Size {
                    what: "latency",
                    len: 4,
                    expected: 17
                })
            ),
            "short"
        );
        lat[1] = 2;
        assert!(
            matches!(
                Side::decode(&lat),
                Err(Fault::Value {
                    field: "live",
                    value: 2,
                    ..
                })
            ),
            "a flag that is neither 0 nor 1"
        );
        assert!(matches!(
            Side::decode(&[T_CAPS, 0xff]),
            Err(Fault::NotUtf8 {
                what: "caps",
                at: 0
            })
        ));
        // Found by the fuzzer: text with a NUL byte made GStreamer's bindings panic.
        for t in [T_CAPS, T_STREAM_START, T_TAGS, T_CUSTOM] {
            assert!(
                matches!(
                    Side::decode(&[t, b'a', 0, b'b']),
                    Err(Fault::Nul { at: 1, .. })
                ),
                "{t}"
            );
        }
        assert!(matches!(
            Side::decode(b"\x01video/x-raw,width=[1,5]"),
            Err(Fault::NotFixed { .. })
        ));
        assert!(matches!(
            Side::decode(&[T_EOS, 0]),
            Err(Fault::Size { what: "EOS", .. })
        ));
        assert_eq!(
            Side::decode(&[99]),
            Err(Fault::Unknown {
                what: "side message type",
                value: 99
            })
        );
    }

    #[test]
    fn segments_that_lie_are_refused_by_field() {
        gst::init().unwrap();
        let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
        seg.set_start(gst::ClockTime::from_seconds(10));
        let good = Side::Segment(seg.clone());
        assert_eq!(Side::decode(&good.encode()), Ok(good.clone()));
        let b = good.encode();
        let mut rate0 = b.clone();
        rate0[5..13].copy_from_slice(&0f64.to_le_bytes());
        assert!(matches!(
            Side::decode(&rate0),
            Err(Fault::Invalid {
                what: "segment",
                field: "rate",
                ..
            })
        ));
        let mut stop = b.clone();
        stop[29..37].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(
            Side::decode(&stop),
            Err(Fault::Order {
                what: "segment",
                earlier: ("start", 10_000_000_000),
                later: ("stop", 1)
            })
        );
        let mut base = b.clone();
        base[45..53].copy_from_slice(&NONE.to_le_bytes());
        assert_eq!(
            Side::decode(&base),
            Err(Fault::Missing {
                what: "segment",
                field: "base"
            })
        );
        let mut flags = b;
        flags[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Side::decode(&flags),
            Err(Fault::Value {
                what: "segment",
                field: "flags",
                ..
            })
        ));
    }
}
