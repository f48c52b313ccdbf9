//! Fuzzes frame descriptor validation: it must never panic, and whatever it accepts
//! must lie inside the arena it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shmring::fuzzing::desc_validate(data);
});
