//! What the sink decides per buffer and per event, apart from the element: which
//! sticky keys tag events take, what travels with a buffer, the tags of meta
//! lists. Pure, and unit-tested with no pipeline (`negotiation` decides the caps).

use crate::codec::{self, BufferMeta, VideoLayout, ct, key};

/// The sticky keys of tag events: the tags since the last buffer are kept for
/// consumers that join later, in order, at most [`key::TAGS_KEPT`] of them (the
/// last key takes the latest beyond that); a buffer after them starts a new run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TagKeys {
    /// Keys in use since the run started.
    used: u32,
    /// A buffer went out since the last tags.
    then_data: bool,
}

impl TagKeys {
    /// The key of the next tag event, and the keys of the last run to forget first
    /// (a buffer went out since it).
    pub(super) fn next(&mut self) -> (u32, std::ops::Range<u32>) {
        let mut forget = 0..0;
        if std::mem::take(&mut self.then_data) {
            // Key TAGS itself is overwritten by the new run's first.
            if self.used > 1 {
                forget = key::TAGS + 1..key::TAGS + self.used;
            }
            self.used = 0;
        }
        let k = self.used.min(key::TAGS_KEPT - 1);
        self.used = (self.used + 1).min(key::TAGS_KEPT);
        (key::TAGS + k, forget)
    }

    /// A buffer went out.
    pub(super) fn data(&mut self) {
        self.then_data |= self.used > 0;
    }
}

/// The tag of the next meta list after `last` (1 to 65535: 0 means none).
pub(super) fn next_metas_tag(last: u16) -> u16 {
    last.checked_add(1).unwrap_or(1)
}

/// The metadata that travels with `buffer`: its timestamps as they are (the
/// segment, sent as a side message, says what they mean), `base_time` (the
/// producer's running time 0, [`codec::NONE`] with no clock), the flags that
/// describe the data and its video layout.
pub(super) fn buffer_meta(buffer: &gst::BufferRef, base_time: u64) -> BufferMeta {
    let video = buffer.meta::<gst_video::VideoMeta>().map(|vm| {
        let mut v = VideoLayout {
            n_planes: vm.n_planes().min(codec::MAX_PLANES as u32) as u8,
            ..Default::default()
        };
        for p in 0..v.n_planes as usize {
            v.offsets[p] = vm.offset()[p] as u32;
            v.strides[p] = vm.stride()[p];
        }
        v
    });
    BufferMeta {
        pts: ct(buffer.pts()),
        dts: ct(buffer.dts()),
        duration: ct(buffer.duration()),
        offset: buffer.offset(),
        offset_end: buffer.offset_end(),
        base_time,
        // Only what describes the data travels (the consumer refuses the rest).
        flags: (buffer.flags() & codec::TRAVELLING_FLAGS).bits(),
        video,
        list_continues: false,
        metas_tag: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_events_keep_their_run_and_a_buffer_starts_a_new_one() {
        let mut t = TagKeys::default();
        assert_eq!(t.next(), (key::TAGS, 0..0));
        assert_eq!(t.next(), (key::TAGS + 1, 0..0));
        // More than kept: the last key takes the latest.
        for _ in 2..key::TAGS_KEPT + 3 {
            t.next();
        }
        assert_eq!(t.next().0, key::TAGS + key::TAGS_KEPT - 1);
        // A buffer, then tags: the old run's other keys go.
        t.data();
        assert_eq!(
            t.next(),
            (key::TAGS, key::TAGS + 1..key::TAGS + key::TAGS_KEPT)
        );
        t.data();
        assert_eq!(t.next(), (key::TAGS, 0..0), "a run of one forgets nothing");
        // Buffers with no tags before them start nothing.
        let mut quiet = TagKeys::default();
        quiet.data();
        assert_eq!(quiet.next(), (key::TAGS, 0..0));
    }

    #[test]
    fn meta_list_tags_are_never_0() {
        assert_eq!(next_metas_tag(0), 1);
        assert_eq!(next_metas_tag(41), 42);
        assert_eq!(next_metas_tag(u16::MAX), 1);
    }

    #[test]
    fn what_travels_with_a_buffer() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 8, 4)
            .build()
            .unwrap();
        let mut b = gst::Buffer::with_size(info.size()).unwrap();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(40));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            b.set_offset(7);
            b.set_flags(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::TAG_MEMORY);
            gst_video::VideoMeta::add_full(
                b,
                gst_video::VideoFrameFlags::empty(),
                info.format(),
                8,
                4,
                &[0, 48, 56],
                &[12, 4, 4],
            )
            .unwrap();
        }
        let m = buffer_meta(&b, 1_000);
        assert_eq!(
            (m.pts, m.dts, m.duration),
            (40_000_000, codec::NONE, 20_000_000)
        );
        assert_eq!((m.offset, m.base_time), (7, 1_000));
        // The memory's tag is the producer's own business.
        assert_eq!(m.flags, gst::BufferFlags::DELTA_UNIT.bits());
        let v = m.video.unwrap();
        assert_eq!(v.n_planes, 3);
        assert_eq!((v.offsets, v.strides), ([0, 48, 56, 0], [12, 4, 4, 0]));
        // No layout meta: no layout.
        let plain = gst::Buffer::with_size(10).unwrap();
        assert_eq!(buffer_meta(&plain, codec::NONE).video, None);
    }
}
