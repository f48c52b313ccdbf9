//! Replays the committed fuzz corpora (`fuzz/corpus/*`) through the fuzz targets'
//! bodies on stable Rust, in every `make test`: no input may panic or break an
//! invariant. The fuzzer itself runs with `make fuzz`.

use shmring::fuzzing;

use gstshmring::fuzzing as gst_fuzzing;

fn replay(target: &str, run: fn(&[u8]) -> bool) -> (usize, usize) {
    let dir = format!("{}/../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        accepted += run(&data) as usize;
    }
    (seen, accepted)
}

#[test]
fn committed_wire_corpus_decodes_without_panic_and_round_trips() {
    let (seen, accepted) = replay("wire_decode", fuzzing::wire_decode);
    assert!(seen >= 8, "corpus has only {seen} inputs");
    assert!(
        accepted >= 7,
        "only {accepted} of {seen} corpus inputs decode"
    );
}

#[test]
fn committed_descriptor_corpus_validates_without_panic() {
    let (seen, accepted) = replay("desc_validate", fuzzing::desc_validate);
    assert!(seen >= 6, "corpus has only {seen} inputs");
    assert!(
        accepted >= 2,
        "only {accepted} of {seen} descriptors accepted"
    );
    assert!(accepted < seen, "no refused descriptor in the corpus");
}

#[test]
fn committed_ring_header_corpus_parses_without_panic() {
    let (seen, accepted) = replay("ring_header", fuzzing::ring_header);
    assert!(seen >= 6, "corpus has only {seen} inputs");
    assert!(accepted >= 3, "only {accepted} of {seen} headers accepted");
    assert!(accepted < seen, "no refused header in the corpus");
    for (cap, receiver) in [(1, false), (64, true), (1 << 20, false)] {
        assert!(fuzzing::ring_header(&fuzzing::ring_header_seed(
            cap, receiver
        )));
    }
}

#[test]
fn committed_meta_corpus_decodes_without_panic_and_round_trips() {
    let dir = format!("{}/../fuzz/corpus/meta_decode", env!("CARGO_MANIFEST_DIR"));
    let (mut seen, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        seen += 1;
        let ok = gst_fuzzing::meta_decode(&data);
        accepted += ok as usize;
        // The seeds of the meta-list branch: one of each kind, one crop outside.
        match path.file_name().unwrap().to_str().unwrap() {
            "meta-list-of-each-kind" => assert!(ok, "the meta list seed decodes"),
            "meta-list-crop-outside" => assert!(!ok, "a crop outside the frame"),
            _ => {}
        }
    }
    assert!(seen >= 10, "corpus has only {seen} inputs");
    assert!(accepted >= 7, "only {accepted} of {seen} inputs decode");
    assert!(accepted < seen, "no refused input in the corpus");
}

#[test]
fn committed_video_frame_corpus_maps_and_converts_only_what_fits() {
    let dir = format!("{}/../fuzz/corpus/video_frame", env!("CARGO_MANIFEST_DIR"));
    let (mut seen, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        accepted += gst_fuzzing::video_frame(&data) as usize;
    }
    assert!(seen >= 100, "corpus has only {seen} inputs");
    assert!(accepted >= 10, "only {accepted} of {seen} inputs accepted");
    assert!(accepted < seen, "no refused input in the corpus");
}
