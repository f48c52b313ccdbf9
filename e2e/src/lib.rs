//! Helpers shared by the cross-process tests and their peer programs: what every
//! test package shares comes from [`testkit`] (re-exported here); what is the
//! cross-process tests' own (the ring peer's test element, the systematic liar's
//! fields) is below.

pub use testkit::*;

/// The test element: a sequence number and a check word derived from it.
pub type Element = [u64; 2];

/// The element with sequence number `seq`.
pub fn element(seq: u64) -> Element {
    [
        seq,
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_0F0F_F0F0,
    ]
}

/// Checks that `e` is the element with sequence number `seq`.
pub fn check(e: &Element, seq: u64) -> Result<(), String> {
    if *e == element(seq) {
        Ok(())
    } else {
        Err(format!("element {seq} corrupt or out of order: got {e:x?}"))
    }
}

/// Every numeric field a producer sends a consumer, for the systematic liar
/// (`frame-peer field-liar FIELD`): its name, width in bits and honest value. The
/// liar sends a 320x240 I420 stream of one frame and a goodbye with exactly one
/// field replaced by each of [`extremes`].
pub const LIE_FIELDS: &[(&str, u32, u64)] = &[
    ("welcome.version", 32, 1),
    ("welcome.consumer_id", 32, 1),
    ("welcome.frame_ring", 32, 64),
    ("welcome.release_ring", 32, 64),
    ("welcome.max_held", 32, 4),
    ("arena.arena_id", 32, 0),
    ("arena.slot_size", 32, 118_784),
    ("arena.slots", 32, 4),
    ("drop_arena.arena_id", 32, 0),
    ("side.before_frame", 64, 0),
    ("side.sticky_key", 32, 1),
    ("goodbye.code", 32, 0),
    ("desc.arena", 32, 0),
    ("desc.slot", 32, 0),
    ("desc.offset", 32, 0),
    ("desc.len", 32, 115_200),
    ("desc.seq", 64, 0),
    ("desc.msgs", 64, 3),
    ("desc.meta_len", 16, 88),
    ("desc.dropped", 32, 0),
    ("meta.pts", 64, 0),
    ("meta.dts", 64, u64::MAX),
    ("meta.duration", 64, 33_333_333),
    ("meta.offset", 64, u64::MAX),
    ("meta.offset_end", 64, u64::MAX),
    ("meta.base_time", 64, u64::MAX),
    ("meta.flags", 32, 0),
    ("meta.n_planes", 8, 3),
    ("meta.offset0", 32, 0),
    ("meta.offset1", 32, 76_800),
    ("meta.offset2", 32, 96_000),
    ("meta.offset3", 32, 0),
    ("meta.stride0", 32, 320),
    ("meta.stride1", 32, 160),
    ("meta.stride2", 32, 160),
    ("meta.stride3", 32, 0),
];

/// Byte offset of a `meta.*` field in the per-buffer metadata record, and its width
/// in bytes.
pub fn meta_field(name: &str) -> Option<(usize, usize)> {
    let plane = |base: usize, s: &str| s.parse::<usize>().ok().map(|p| (base + p * 8, 4));
    match name.strip_prefix("meta.")? {
        "pts" => Some((0, 8)),
        "dts" => Some((8, 8)),
        "duration" => Some((16, 8)),
        "offset" => Some((24, 8)),
        "offset_end" => Some((32, 8)),
        "base_time" => Some((40, 8)),
        "flags" => Some((48, 4)),
        "n_planes" => Some((52, 1)),
        f => f
            .strip_prefix("offset")
            .and_then(|p| plane(56, p))
            .or_else(|| f.strip_prefix("stride").and_then(|p| plane(60, p))),
    }
}

/// The values a liar tries for a field of `bits` bits whose honest value is
/// `honest`: 0, 1, the maximum, the top bit alone (the most negative, read as
/// signed) and one past the honest value.
pub fn extremes(bits: u32, honest: u64) -> Vec<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut v = Vec::new();
    for x in [0, 1, max, 1u64 << (bits - 1), honest.wrapping_add(1) & max] {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}
