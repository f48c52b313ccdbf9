//! `shmring list`, `top` and `inspect` against real producers and consumers: an
//! in-process `shmringsink` whose `stats` the answers are held to, `gst-launch-1.0`
//! consumers killed for real, and `top` drawn in a terminal (tmux).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;
use serde_json::Value;

/// A live 30 fps producer in this process serving `path`.
fn producer(path: &str) -> gst::Element {
    testkit::init_gst();
    let p = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! shmringsink name=snk socket-path={path}"
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    p
}

fn sink_stats(p: &gst::Element) -> gst::Structure {
    let snk = p
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("snk")
        .unwrap();
    snk.property::<gst::Structure>("stats")
}

/// Frames of each consumer in the sink's `stats`, by pid.
fn consumer_frames(s: &gst::Structure) -> Vec<(i32, u64)> {
    let list = s.get::<gst::Array>("consumer-stats").unwrap();
    let mut v: Vec<(i32, u64)> = list
        .iter()
        .map(|c| {
            let c = c.get::<gst::Structure>().unwrap();
            (
                c.get::<i32>("pid").unwrap(),
                c.get::<u64>("frames").unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn top_json_agrees_with_the_sinks_stats_and_a_killed_consumer_is_gone_within_a_second() {
    let rt = Runtime::new("json");
    let path = testkit::socket_path("cli-json").display().to_string();
    let p = producer(&path);
    let mut a = gst_consumer(&rt.0, &path);
    let b = gst_consumer(&rt.0, &path);
    testkit::eventually("two consumers with frames", || {
        let s = sink_stats(&p);
        let c = consumer_frames(&s);
        c.len() == 2 && c.iter().all(|(_, f)| *f > 0)
    });
    let before = sink_stats(&p);
    let v = json(&rt.0, &["top", "--once", "--interval", "300", &path]);
    let after = sink_stats(&p);
    let prods = producers(&v);
    assert_eq!(prods.len(), 1, "{v}");
    let me = &prods[0];
    assert_eq!(me["state"], "serving", "{me}");
    assert!(
        me["caps"].as_str().unwrap().starts_with("video/x-raw"),
        "{me}"
    );
    let frames = me["stats"]["frames"].as_u64().unwrap();
    let (lo, hi) = (
        before.get::<u64>("frames").unwrap(),
        after.get::<u64>("frames").unwrap(),
    );
    assert!((lo..=hi).contains(&frames), "{lo} ≤ {frames} ≤ {hi}");
    assert!(me["frames_per_s"].as_f64().unwrap() > 0.0, "{me}");
    // Each consumer: the same pid, and frames between the two `stats`.
    let mut got: Vec<(i32, u64, Value)> = me["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["pid"].as_i64().unwrap() as i32,
                c["frames"].as_u64().unwrap(),
                c.clone(),
            )
        })
        .collect();
    got.sort_by_key(|c| c.0);
    let (cb, ca) = (consumer_frames(&before), consumer_frames(&after));
    let pids: Vec<i32> = got.iter().map(|c| c.0).collect();
    let mut want = vec![a.0.id() as i32, b.0.id() as i32];
    want.sort();
    assert_eq!(pids, want);
    for (i, (pid, f, c)) in got.iter().enumerate() {
        assert_eq!((cb[i].0, ca[i].0), (*pid, *pid));
        assert!((cb[i].1..=ca[i].1).contains(f), "{c}");
        // SAFETY: getuid has no preconditions.
        assert_eq!(c["uid"].as_u64().unwrap(), unsafe { libc::getuid() } as u64);
        assert!(c["frames_per_s"].as_f64().unwrap() > 0.0, "{c}");
    }
    // Killed: gone from the next look within a second.
    let killed = a.0.id() as i64;
    testkit::kill9(&mut a.0);
    testkit::eventually_within("the killed consumer gone", Duration::from_secs(1), || {
        let v = json(&rt.0, &["list", &path]);
        let cs = producers(&v)[0]["consumers"].as_array().unwrap().clone();
        match cs.iter().any(|c| c["pid"].as_i64() == Some(killed)) {
            false if cs.len() == 1 => Ok(()),
            _ => Err(format!("{v}")),
        }
    });
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn named_producers_are_listed_and_inspected_and_a_missing_one_is_said() {
    let rt = Runtime::new("named");
    let mut child = testkit::gst_command("gst-launch-1.0")
        .env("XDG_RUNTIME_DIR", &rt.0)
        .args([
            "-q",
            "audiotestsrc",
            "is-live=true",
            "!",
            "audio/x-raw,rate=48000,channels=2",
            "!",
        ])
        .args(["shmringsink", "producer-name=mic", "on-slow-consumer=drop"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = rt.0.join("shmring").join("mic");
    testkit::wait_for_path(&socket);
    let _c = gst_consumer(&rt.0, "mic");
    testkit::eventually("the consumer listed", || {
        let v = json(&rt.0, &["list"]);
        producers(&v).len() == 1 && producers(&v)[0]["consumers"].as_array().unwrap().len() == 1
    });
    let v = json(&rt.0, &["list"]);
    let mic = &producers(&v)[0];
    assert_eq!(
        (mic["name"].as_str(), mic["ok"].as_bool()),
        (Some("mic"), Some(true))
    );
    assert_eq!(mic["stats"]["policy"], "drop");
    assert!(
        mic["caps"].as_str().unwrap().starts_with("audio/x-raw"),
        "{mic}"
    );
    let (code, page) = shmring(&rt.0, &["inspect", "shmring://mic"]);
    assert_eq!(code, 0, "{page}");
    for line in [
        "producer   shmring://mic",
        "state      serving",
        "policy     drop, block timeout",
    ] {
        assert!(page.contains(line), "{line:?} in {page}");
    }
    assert!(
        page.contains(&format!("consumer 1: pid {}", _c.0.id())),
        "{page}"
    );
    let (code, page) = shmring(&rt.0, &["inspect", "nobody"]);
    assert_eq!(code, 1, "{page}");
    assert!(page.contains("state      nobody listening"), "{page}");
    testkit::kill9(&mut child);
}

/// A tmux server of this test's own, removed with its sessions when dropped.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_in_a_terminal_shows_a_producer_appear_its_rows_a_consumer_go_and_quits_on_q() {
    let rt = Runtime::new("tmux");
    let tmux = Tmux(format!("shmring-test-{}", std::process::id()));
    let top = format!(
        "XDG_RUNTIME_DIR={} {} top --interval 200",
        rt.0.display(),
        env!("CARGO_BIN_EXE_shmring")
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "140",
        "-y",
        "30",
        &top,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    testkit::eventually_within("top with no producer yet", Duration::from_secs(20), || {
        let s = tmux.screen();
        s.contains("0 producer(s)").then_some(()).ok_or(s)
    });
    // A producer appears, then its consumers.
    let mut producer = testkit::gst_command("gst-launch-1.0")
        .env("XDG_RUNTIME_DIR", &rt.0)
        .args([
            "-q",
            "videotestsrc",
            "is-live=true",
            "!",
            "video/x-raw,width=64,height=48,framerate=30/1",
            "!",
        ])
        .args(["shmringsink", "producer-name=cam"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    testkit::eventually_within("the producer in top", Duration::from_secs(20), || {
        let s = tmux.screen();
        (s.contains("1 producer(s)") && s.contains("cam"))
            .then_some(())
            .ok_or(s)
    });
    let mut a = gst_consumer(&rt.0, "cam");
    let _b = gst_consumer(&rt.0, "cam");
    let pid_a = a.0.id().to_string();
    testkit::eventually_within(
        "top shows cam, two consumers and their rates",
        Duration::from_secs(20),
        || {
            let s = tmux.screen();
            let lines: Vec<&str> = s.lines().filter(|l| l.contains("consumer ")).collect();
            let rated = lines
                .iter()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(4)
                        .is_some_and(|r| r.parse::<f64>().is_ok_and(|r| r > 0.0))
                })
                .count();
            (s.contains("cam") && s.contains("2 consumer(s)") && rated == 2 && s.contains(&pid_a))
                .then_some(())
                .ok_or(s)
        },
    );
    testkit::kill9(&mut a.0);
    testkit::eventually_within(
        "the killed consumer gone from top",
        Duration::from_secs(5),
        || {
            let s = tmux.screen();
            (s.contains("1 consumer(s)") && !s.contains(&pid_a))
                .then_some(())
                .ok_or(s)
        },
    );
    // Sorting by frames/s, then quitting.
    tmux.cmd(&["send-keys", "-t", "top", "f"]);
    testkit::eventually_within("sorted by frames/s", Duration::from_secs(5), || {
        let s = tmux.screen();
        s.contains("sorted by frames/s").then_some(()).ok_or(s)
    });
    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    testkit::eventually_within("top quit on q", Duration::from_secs(5), || {
        let alive = tmux.cmd(&["has-session", "-t", "top"]).status.success();
        (!alive).then_some(()).ok_or_else(|| tmux.screen())
    });
    testkit::kill9(&mut producer);
}
