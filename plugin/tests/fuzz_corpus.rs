//! Replays the committed `meta_decode` fuzz corpus (`fuzz/corpus/meta_decode`) on
//! stable Rust: no input may panic or break a round trip.

#[test]
fn committed_meta_corpus_decodes_without_panic_and_round_trips() {
    let dir = format!("{}/../fuzz/corpus/meta_decode", env!("CARGO_MANIFEST_DIR"));
    let (mut seen, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        accepted += gstshmring::fuzzing::meta_decode(&data) as usize;
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
        accepted += gstshmring::fuzzing::video_frame(&data) as usize;
    }
    assert!(seen >= 100, "corpus has only {seen} inputs");
    assert!(accepted >= 10, "only {accepted} of {seen} inputs accepted");
    assert!(accepted < seen, "no refused input in the corpus");
}
