//! Fuzzes ring header validation: it must never panic, and whatever it accepts must
//! describe a ring that fits its file exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shmring::fuzzing::ring_header(data);
});
