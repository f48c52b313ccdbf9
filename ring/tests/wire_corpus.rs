//! Replays the committed fuzz corpus (`fuzz/corpus/wire_decode`) through the decoder on
//! stable Rust, in every `make test`: no input may panic, and every accepted input
//! must re-encode to the same bytes. The fuzzer itself runs with `make fuzz`.

use shmring::wire::Msg;

#[test]
fn committed_wire_corpus_decodes_without_panic_and_round_trips() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/wire_decode");
    let mut seen = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        let Some((&fds, msg)) = data.split_first() else {
            continue;
        };
        if let Ok(m) = Msg::decode(msg, (fds % 5) as usize) {
            accepted += 1;
            assert_eq!(m.encode(), msg);
        }
    }
    assert!(seen >= 8, "corpus has only {seen} inputs");
    assert!(
        accepted >= 7,
        "only {accepted} of {seen} corpus inputs decode"
    );
}
