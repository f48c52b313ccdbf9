//! Fuzzes the frame channel's socket-message decoder: it must never panic, and
//! whatever it accepts must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::wire::Msg;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how many fds "arrived" with the datagram.
    let Some((&fds, msg)) = data.split_first() else {
        return;
    };
    if let Ok(m) = Msg::decode(msg, (fds % 5) as usize) {
        assert_eq!(
            m.encode(),
            msg,
            "decode accepted bytes that encode differently"
        );
    }
});
