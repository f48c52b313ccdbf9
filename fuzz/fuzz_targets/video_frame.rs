//! Fuzzes the consumer's path from what a producer says (raw video caps, a frame
//! length, per-buffer metadata) through `shmringsrc`'s checks to a mapped
//! `GstVideoFrame` and a conversion, in memory laid out as a frame at the end of its
//! arena with guard pages around: nothing may read past the arena's read pad.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gstshmring::fuzzing::video_frame(data);
});
