//! Fuzzes what a producer sends a `shmringsrc`: per-buffer metadata and side messages
//! (caps, stream-start, tags, gap, EOS, custom events, latency). Nothing may panic;
//! what decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gstshmring::fuzzing::meta_decode(data);
});
