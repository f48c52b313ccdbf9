//! Producers that lie to a probe (garbage, the largest numbers, silence, a flood),
//! each a real process (`frame-peer probe-liar`), beside an honest one: every row
//! says what happened, the honest row is whole, and `shmring` ends within its
//! deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn lying_producers_get_a_row_saying_so_within_the_deadline() {
    let rt = Runtime::new("liars");
    let peer = testkit::workspace_bin("frame-peer");
    let acts = [
        "silent",
        "welcome",
        "huge",
        "stats-garbage",
        "stats-huge",
        "stats-silent",
        "stats-flood",
    ];
    let mut liars = Vec::new();
    let mut paths = Vec::new();
    for act in acts {
        let path = testkit::socket_path(act).display().to_string();
        let mut c = testkit::KillOnDrop(testkit::spawn(
            peer.to_str().unwrap(),
            &["probe-liar", &path, act],
        ));
        assert_eq!(testkit::read_line(&mut c.0), "ready");
        liars.push(c);
        paths.push(path);
    }
    // An honest producer among them.
    let honest =
        shmring::Producer::bind(testkit::socket_path("honest"), testkit::patient()).unwrap();
    honest.set_description(b"audio/x-raw").unwrap();
    let honest_path = honest.path().unwrap().display().to_string();
    let mut args = vec!["list", "--timeout", "500"];
    args.extend(paths.iter().map(String::as_str));
    args.push(&honest_path);
    let started = Instant::now();
    let v = json(&rt.0, &args);
    let took = started.elapsed();
    // The looks run side by side: the whole list within a few deadlines, whatever
    // the liars do.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let rows = producers(&v);
    assert_eq!(rows.len(), acts.len() + 1, "{v}");
    let row = |act: &str| &rows[acts.iter().position(|a| *a == act).unwrap()];
    let state = |act: &str| row(act)["state"].as_str().unwrap().to_string();
    for silent in ["silent", "stats-silent"] {
        assert_eq!(state(silent), "no answer within the deadline", "{silent}");
    }
    assert!(
        state("welcome").contains("Welcome carries 4 fds, 0 arrived"),
        "{}",
        state("welcome")
    );
    assert!(
        state("huge").contains("Description of 1048576 bytes exceeds"),
        "{}",
        state("huge")
    );
    assert!(
        state("stats-garbage").contains("Stats of version 7"),
        "{}",
        state("stats-garbage")
    );
    assert!(
        state("stats-flood").contains("protocol violation"),
        "{}",
        state("stats-flood")
    );
    for act in [
        "silent",
        "welcome",
        "huge",
        "stats-garbage",
        "stats-silent",
        "stats-flood",
    ] {
        assert_eq!(row(act)["ok"], false, "{act}");
        assert_eq!(row(act)["stats"], serde_json::Value::Null, "{act}");
    }
    // The largest numbers are shown as said, a thousand consumers listed.
    let huge = row("stats-huge");
    assert_eq!(huge["ok"], true, "{huge}");
    assert_eq!(huge["stats"]["frames"].as_u64(), Some(u64::MAX));
    let cs = huge["consumers"].as_array().unwrap();
    assert_eq!(cs.len(), shmring::frame::MAX_STATS_CONSUMERS);
    assert_eq!(cs[0]["drops"].as_u64(), Some(u64::MAX));
    // The honest one is whole.
    let h = rows.last().unwrap();
    assert_eq!(
        (h["state"].as_str(), h["caps"].as_str()),
        (Some("serving"), Some("audio/x-raw"))
    );
    // And the table draws them all without a control character of theirs.
    let mut args = vec!["list", "--timeout", "500"];
    args.extend(paths.iter().map(String::as_str));
    let (code, table) = shmring(&rt.0, &args);
    assert_eq!(code, 0);
    assert!(table.contains("no answer within the deadline"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table}");
}

#[test]
fn top_once_over_a_producer_that_lies_in_its_counters_shows_no_rate_not_a_crash() {
    // Two looks at a producer whose counters say the largest numbers: the rates
    // are none (nothing moved), the counters are shown as said.
    let rt = Runtime::new("huge-rates");
    let peer = testkit::workspace_bin("frame-peer");
    let path = testkit::socket_path("huge-rates").display().to_string();
    let mut c = testkit::KillOnDrop(testkit::spawn(
        peer.to_str().unwrap(),
        &["probe-liar", &path, "stats-huge"],
    ));
    assert_eq!(testkit::read_line(&mut c.0), "ready");
    let v = json(&rt.0, &["top", "--once", "--interval", "100", &path]);
    let p = &producers(&v)[0];
    assert_eq!(p["frames_per_s"].as_f64(), Some(0.0), "{p}");
    let (code, table) = shmring(&rt.0, &["top", "--once", "--interval", "100", &path]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("1000 consumer(s)"), "{table}");
}
