//! Transparency: a pipeline split across two processes by `shmringsink` and
//! `shmringsrc` (default properties) behaves like the same pipeline joined in one.
//! Each pipeline runs both ways under `gst-record`, which prints every serialized
//! event and buffer crossing the elements named `rec…`; the two records must
//! agree: the same events in the same order, the same buffers with the same
//! flags, timestamps off by one constant shift at most, running times where they
//! were.

use std::path::Path;
use std::time::{Duration, Instant};

use std::process::Child;

use e2e::{finish, socket_path, spawn};

const REC: &str = env!("CARGO_BIN_EXE_gst-record");

/// The lines `gst-record` printed for `desc`, which must run to its end.
fn record(desc: &str) -> Vec<String> {
    record_with(desc, &[])
}

/// [`record`] with `env` in the recorder's environment.
fn record_with(desc: &str, env: &[(&str, &str)]) -> Vec<String> {
    // Read as it comes (`output`): a record can be more than a pipe holds.
    let out = std::process::Command::new(REC)
        .args(desc.split_whitespace())
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("gst-record");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{desc}: {text}");
    text.lines().map(str::to_owned).collect()
}

/// Kills the child if the test fails before it is finished.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `gst-record {desc}` started as a producer serving on `sock`, once the socket is
/// there.
fn serve(desc: &str, sock: &Path, env: &[(&str, &str)]) -> Guard {
    let producer = Guard(Some(
        std::process::Command::new(REC)
            .args(desc.split_whitespace())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gst-record"),
    ));
    wait_for_socket(sock);
    producer
}

/// Whether `gst-record {desc}` succeeded, and what it printed.
fn attempt(desc: &str) -> (bool, String) {
    let out = std::process::Command::new(REC)
        .args(desc.split_whitespace())
        .output()
        .expect("gst-record");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn wait_for_socket(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `{source} ! identity name=rec0 ! {downstream}` in one process.
fn joined(source: &str, downstream: &str) -> Vec<String> {
    record(&format!("{source} ! identity name=rec0 ! {downstream}"))
}

/// `{source} ! shmringsink` in one process, `shmringsrc ! identity name=rec0 !
/// {downstream}` in another (started `delay` later), both with default properties
/// but for the socket path (and `wait-for-connection`, so that no buffer is lost
/// to a consumer not there yet).
fn split(source: &str, downstream: &str, delay: Duration) -> Vec<String> {
    split_with(source, downstream, delay, &[])
}

/// [`split`], the producer with `env` in its environment.
fn split_with(
    source: &str,
    downstream: &str,
    delay: Duration,
    env: &[(&str, &str)],
) -> Vec<String> {
    split_full(source, "", downstream, delay, env)
}

/// [`split_with`], the `shmringsrc` with properties `src_props` too.
fn split_full(
    source: &str,
    src_props: &str,
    downstream: &str,
    delay: Duration,
    env: &[(&str, &str)],
) -> Vec<String> {
    let sock = socket_path("transparent");
    let desc = format!(
        "{source} ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    );
    let mut producer = serve(&desc, &sock, env);
    std::thread::sleep(delay);
    let got = record(&format!(
        "shmringsrc socket-path={} {src_props} ! identity name=rec0 ! {downstream}",
        sock.display()
    ));
    let (status, out) = finish(producer.0.take().unwrap());
    assert!(status.success(), "producer: {out}");
    got
}

fn events(rec: &[String]) -> Vec<String> {
    rec.iter()
        .filter(|l| l.starts_with("rec0 event "))
        // A segment's values differ when timestamps are shifted; its place does not.
        .map(|l| l.split(" start=").next().unwrap().to_owned())
        .collect()
}

/// The segment lines at `rec0`, values included.
fn segments(rec: &[String]) -> Vec<String> {
    rec.iter()
        .filter(|l| l.starts_with("rec0 event segment"))
        .cloned()
        .collect()
}

/// (pts, dts, duration, flags, size) of each buffer at `rec`.
fn buffers(rec: &[String], name: &str) -> Vec<[Option<i128>; 5]> {
    rec.iter()
        .filter(|l| l.starts_with(&format!("{name} buffer ")))
        .map(|l| {
            let field = |k: &str| {
                let v = l
                    .split(&format!(" {k}="))
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap();
                if v == "-" {
                    None
                } else if let Some(hex) = v.strip_prefix("0x") {
                    Some(i128::from_str_radix(hex, 16).unwrap())
                } else {
                    Some(v.parse::<i128>().unwrap())
                }
            };
            [
                field("pts"),
                field("dts"),
                field("dur"),
                field("flags"),
                field("size"),
            ]
        })
        .collect()
}

/// The running times (of DTS, or PTS) at `rec0`.
fn running_times(rec: &[String]) -> Vec<i128> {
    running_times_at(rec, "rec0")
}

/// The running times (of DTS, or PTS) at `name`.
fn running_times_at(rec: &[String], name: &str) -> Vec<i128> {
    rec.iter()
        .filter(|l| l.starts_with(&format!("{name} buffer ")))
        .map(|l| {
            l.split(" rt=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// `offset -> running time` of each buffer at `name`.
fn running_time_by_offset(rec: &[String], name: &str) -> std::collections::BTreeMap<u64, i128> {
    let offsets = rec
        .iter()
        .filter(|l| l.starts_with(&format!("{name} buffer ")))
        .map(|l| {
            l.split(" off=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        });
    offsets.zip(running_times_at(rec, name)).collect()
}

/// Same buffers, same flags and sizes, timestamps off by one shift (or none).
fn assert_same_buffers(a: &[[Option<i128>; 5]], b: &[[Option<i128>; 5]]) {
    assert_eq!(a.len(), b.len(), "buffer count");
    let shift = match (a[0][0], b[0][0]) {
        (Some(x), Some(y)) => y - x,
        _ => 0,
    };
    // TAG_MEMORY says that a buffer object's memory was changed since it was
    // made: a fact of each process's own objects, not of the data.
    let flags = |f: Option<i128>| f.map(|f| f & !(gst::BufferFlags::TAG_MEMORY.bits() as i128));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            (x[2], flags(x[3]), x[4]),
            (y[2], flags(y[3]), y[4]),
            "buffer {i}: duration, flags, size"
        );
        for k in 0..2 {
            assert_eq!(
                x[k].map(|t| t + shift),
                y[k],
                "buffer {i}: timestamp {k} shifted by {shift}"
            );
        }
    }
}

#[test]
fn live_h264_muxes_into_an_mp4_with_every_frame_and_the_same_timestamps() {
    // B-frames (x264enc's defaults): DTS before PTS, the first ones before the
    // segment's start; the consumer joins half a second after the producer
    // started, so the first frames were made before its pipeline did.
    let source = "videotestsrc is-live=true num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc ! h264parse";
    let dir = std::env::temp_dir();
    let files = [
        dir.join(format!(
            "shmring-transparent-{}-joined.mp4",
            std::process::id()
        )),
        dir.join(format!(
            "shmring-transparent-{}-split.mp4",
            std::process::id()
        )),
    ];
    let down = |f: &Path| format!("h264parse ! mp4mux ! filesink location={}", f.display());
    let one = joined(source, &down(&files[0]));
    let two = split(source, &down(&files[1]), Duration::from_millis(500));
    assert_eq!(events(&one), events(&two));
    assert_same_buffers(&buffers(&one, "rec0"), &buffers(&two, "rec0"));
    // Every DTS is there and runs forward, none before the pipeline's start.
    let rt = running_times(&two);
    assert!(rt.windows(2).all(|w| w[0] < w[1]), "{rt:?}");
    assert!(rt[0] >= 0, "{rt:?}");
    for f in &files {
        let demuxed = record(&format!(
            "filesrc location={} ! qtdemux ! identity name=rec1 ! fakesink",
            f.display()
        ));
        assert_eq!(
            buffers(&demuxed, "rec1").len(),
            60,
            "frames in {}",
            f.display()
        );
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_non_live_stream_keeps_its_segment_and_timestamps() {
    // A segment that does not start at 0 (as after a seek): the same segment and
    // the same timestamps downstream, not running times.
    let source = "videotestsrc num-buffers=10 timestamp-offset=3000000000 ! video/x-raw,format=GRAY8,width=16,height=16,framerate=25/1";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    assert_eq!(events(&one), events(&two));
    assert_eq!(segments(&one), segments(&two));
    let (a, b) = (buffers(&one, "rec0"), buffers(&two, "rec0"));
    assert_same_buffers(&a, &b);
    assert_eq!(a[0][0], b[0][0], "no shift at all");
}

#[test]
fn tags_follow_the_segment_and_every_one_arrives_as_in_one_process() {
    let source = "audiotestsrc num-buffers=20 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! taginject tags=title=transparent";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    let ev = events(&two);
    assert_eq!(events(&one), ev);
    let at = |what: &str| {
        ev.iter()
            .position(|l| l.starts_with(&format!("rec0 event {what}")))
    };
    assert!(at("segment") < at("tag"), "{ev:?}");
    assert!(
        two.iter()
            .any(|l| l.contains("event tag") && l.contains("transparent"))
    );
}

#[test]
fn audio_and_video_from_one_producer_stay_in_sync_across_processes() {
    // One live producer pipeline, audio and video through two sinks; one consumer
    // pipeline with a source for each. Every buffer of both streams must run at
    // the same running time here, less one and the same amount, as it ran
    // there: audio and video stay in sync. (Both producer sinks wait for their
    // consumer, so the first buffers were made before the consumer's pipeline
    // started: the sources here share the lag that keeps them all.)
    let a = socket_path("av-a");
    let v = socket_path("av-v");
    let producer_desc = format!(
        "audiotestsrc is-live=true samplesperbuffer=480 num-buffers=150 ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! identity name=reca ! shmringsink socket-path={} wait-for-connection=true \
         videotestsrc is-live=true num-buffers=75 ! video/x-raw,format=I420,width=64,height=48,framerate=50/1 ! identity name=recv ! shmringsink socket-path={} wait-for-connection=true",
        a.display(),
        v.display()
    );
    let producer = Guard(Some(spawn(
        REC,
        &producer_desc.split_whitespace().collect::<Vec<_>>(),
    )));
    wait_for_socket(&a);
    wait_for_socket(&v);
    let consumer = record(&format!(
        "shmringsrc socket-path={} ! identity name=reca ! fakesink \
         shmringsrc socket-path={} ! identity name=recv ! fakesink",
        a.display(),
        v.display()
    ));
    let mut producer = producer;
    let (status, pout) = finish(producer.0.take().unwrap());
    assert!(status.success(), "producer: {pout}");
    let pout: Vec<String> = pout.lines().map(str::to_owned).collect();
    let mut shifts = Vec::new();
    for name in ["reca", "recv"] {
        let sent = running_time_by_offset(&pout, name);
        let got = running_time_by_offset(&consumer, name);
        assert!(got.len() > 50, "{name}: {} buffers", got.len());
        // The first buffers of a stream may run before the sources agreed on
        // one lag (the later one's first buffer can be older): a few ms at the
        // start, then one shift for all.
        shifts.extend(
            got.iter()
                .skip(5)
                .filter_map(|(n, rt)| sent.get(n).map(|s| rt - s)),
        );
    }
    assert!(
        shifts.iter().all(|&d| d == shifts[0]),
        "audio and video shifted differently: {shifts:?}"
    );
    // None was made before the pipeline here started: none is late by the start.
    for name in ["reca", "recv"] {
        let rt = running_times_at(&consumer, name);
        assert!(rt.iter().all(|&rt| rt >= 0), "{name}: {rt:?}");
    }
}

#[test]
fn a_flushing_seek_on_the_producer_side_reaches_the_consumer_as_flush_and_segment() {
    // A non-live source paced by its sinks' clock, sought to 3 s half a second in.
    let source =
        "videotestsrc num-buffers=100 ! video/x-raw,format=GRAY8,width=16,height=16,framerate=25/1";
    let seek = [("SHMRING_REC_SEEK", "500:3000000000")];
    let one = record_with(
        &format!("{source} ! identity name=rec0 ! fakesink sync=true"),
        &seek,
    );
    let two = split_with(source, "fakesink sync=true", Duration::ZERO, &seek);
    // The same events around the seek (how many buffers went before it differs
    // from run to run, the events do not).
    assert_eq!(events(&one), events(&two));
    let ev = events(&two);
    assert!(ev.iter().any(|e| e == "rec0 event flush-stop"), "{ev:?}");
    assert_eq!(segments(&one), segments(&two));
    assert!(segments(&two).last().unwrap().contains("start=3000000000"));
    // After the seek the buffers are those of 3 s on, at the same running times:
    // the first buffer after flush-stop, and the spacing of all after it. (Not the
    // last buffer: num-buffers counts those before the seek too, and how many went
    // before it depends on when each pipeline started.)
    let after = |r: &[String]| -> Vec<String> {
        let at = r.iter().position(|l| l == "rec0 event flush-stop").unwrap();
        r[at..]
            .iter()
            .filter(|l| l.starts_with("rec0 buffer "))
            .cloned()
            .collect()
    };
    let (a, b) = (after(&one), after(&two));
    assert!(a.len() >= 20 && b.len() >= 20, "{a:?} {b:?}");
    let first = |v: &[String]| buffers(v, "rec0")[0][0];
    assert_eq!(first(&a), Some(3_000_000_000));
    assert_eq!(first(&a), first(&b));
    assert_eq!(running_times(&a)[..20], running_times(&b)[..20]);
}

#[test]
fn serialized_events_leave_in_the_order_they_came_and_tags_in_their_scope() {
    // A global tag, a TOC, a custom event, a custom sticky event, a stream tag and
    // a gap, in that order, before the third buffer (before: the TOC and the
    // custom sticky event came after the later tag and custom event, and the
    // global tag arrived as a stream tag).
    let source = "videotestsrc num-buffers=10 ! video/x-raw,format=GRAY8,width=16,height=16 ! identity name=addorder";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    assert_eq!(events(&one), events(&two));
    let ev = events(&two);
    let at = |what: &str| {
        ev.iter()
            .position(|l| l.starts_with(&format!("rec0 event {what}")))
            .unwrap_or_else(|| panic!("no {what} in {ev:?}"))
    };
    assert!(
        at("tag Global") < at("toc") && at("toc") < at("gap"),
        "{ev:?}"
    );
}

#[test]
fn tags_keep_their_scope_and_events_their_order_through_a_flushing_seek() {
    // The same run of events before the third buffer of the stream and again
    // after a flushing seek on the producer's side, sought to 2 s.
    let source = "videotestsrc num-buffers=100 ! video/x-raw,format=GRAY8,width=16,height=16,framerate=25/1 ! identity name=addorder";
    let seek = [("SHMRING_REC_SEEK", "500:2000000000")];
    let one = record_with(
        &format!("{source} ! identity name=rec0 ! fakesink sync=true"),
        &seek,
    );
    let two = split_with(source, "fakesink sync=true", Duration::ZERO, &seek);
    assert_eq!(events(&one), events(&two));
    let ev = events(&two);
    let after = ev
        .iter()
        .position(|l| l == "rec0 event flush-stop")
        .unwrap();
    assert!(
        ev[after..]
            .iter()
            .any(|l| l.starts_with("rec0 event tag Global")),
        "{ev:?}"
    );
}

#[test]
fn buffer_lists_stay_lists() {
    // rtph264pay pushes each frame's packets as one list.
    let source = "videotestsrc num-buffers=20 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc ! rtph264pay mtu=400 ssrc=1 seqnum-offset=0 timestamp-offset=0";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    let lists = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with("rec0 list "))
            .cloned()
            .collect()
    };
    assert!(lists(&one).len() >= 20, "{:?}", lists(&one));
    assert_eq!(lists(&one), lists(&two));
    assert_eq!(contents(&one), contents(&two), "the same bytes");
    assert_eq!(events(&one), events(&two));
    assert_same_buffers(&buffers(&one, "rec0"), &buffers(&two, "rec0"));
}

/// The hash of each buffer's bytes at `rec0`.
fn contents(rec: &[String]) -> Vec<String> {
    rec.iter()
        .filter(|l| l.starts_with("rec0 buffer "))
        .map(|l| {
            l.split(" bytes=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The `metas=` field of each buffer at `rec0`.
fn metas(rec: &[String]) -> Vec<String> {
    rec.iter()
        .filter(|l| l.starts_with("rec0 buffer "))
        .map(|l| l.split(" metas=").nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn every_meta_crosses_as_in_one_process_a_1_mb_custom_meta_included() {
    // One of each meta 1.22 describes on every buffer, a 1 MB custom meta on every
    // tenth; default properties (the consumer registers the custom meta).
    let source =
        "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240 ! identity name=addmetas";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    let (a, b) = (metas(&one), metas(&two));
    assert_eq!(a.len(), 30);
    for m in [
        "GstReferenceTimestampMeta",
        "GstVideoTimeCodeMeta",
        "GstVideoCaptionMeta",
        "GstVideoRegionOfInterestMeta",
        "GstVideoCropMeta",
        "GstAudioLevelMeta",
        "GstVideoSEIUserDataUnregisteredMeta",
        "GstProtectionMeta",
        "ShmringTestMeta",
    ] {
        assert!(
            a.iter().all(|l| l.contains(&format!("{m}:"))),
            "{m} on {a:?}"
        );
    }
    // The 1 MB buffer travels as 2 MB of text in the custom meta's structure.
    assert!(
        a[0].split(',').any(|m| m.starts_with("ShmringTestMeta:")
            && m.split(':').nth(1).unwrap().parse::<usize>().unwrap() > 2_000_000),
        "{}",
        a[0]
    );
    assert_eq!(a, b, "the same metas with the same content on every buffer");
    assert_eq!(contents(&one), contents(&two), "the same bytes");
    assert_same_buffers(&buffers(&one, "rec0"), &buffers(&two, "rec0"));
}

#[test]
fn a_custom_meta_the_consumer_does_not_allow_is_left_out_and_the_rest_cross() {
    let source =
        "videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! identity name=addmetas";
    let one = joined(source, "fakesink");
    let two = split_full(
        source,
        "custom-metas=SomeOtherMeta",
        "fakesink",
        Duration::ZERO,
        &[],
    );
    let drop_custom = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|l| {
                l.split(',')
                    .filter(|m| !m.starts_with("ShmringTestMeta:"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    let b = metas(&two);
    assert!(b.iter().all(|l| !l.contains("ShmringTestMeta")), "{b:?}");
    assert_eq!(drop_custom(metas(&one)), b);
}

#[test]
fn metas_of_real_elements_cross_time_codes_and_h264_sei() {
    // timecodestamper adds a time code to each frame (counted from zero: its
    // default daily jam is the wall clock at start, which differs between the two
    // runs); h264parse an SEI user data meta for x264enc's unregistered SEI.
    let source = "videotestsrc num-buffers=15 ! video/x-raw,width=320,height=240,framerate=30/1 ! timecodestamper source=zero ! x264enc ! h264parse";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    let a = metas(&one);
    assert_eq!(a.len(), 15);
    assert!(
        a.iter().all(|l| l.contains("GstVideoTimeCodeMeta:")),
        "{a:?}"
    );
    assert!(
        a[0].contains("GstVideoSEIUserDataUnregisteredMeta:"),
        "{a:?}"
    );
    assert_eq!(a, metas(&two));
}

#[test]
fn a_toc_and_custom_sticky_events_cross_in_their_place() {
    let source =
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48 ! identity name=addevents";
    let one = joined(source, "fakesink");
    let two = split(source, "fakesink", Duration::ZERO);
    let all_events = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with("rec0 event ") || l.starts_with("rec0 buffer "))
            .map(|l| l.split(" pts=").next().unwrap().to_owned())
            .collect()
    };
    let a = all_events(&one);
    assert!(
        a.iter()
            .any(|l| l.contains("event toc Global") && l.contains("chapter-2")),
        "{a:?}"
    );
    assert!(
        a.iter()
            .any(|l| l.contains("event custom-downstream-sticky app-sticky")),
        "{a:?}"
    );
    assert_eq!(a, all_events(&two), "the same events, in the same place");
}

#[test]
fn a_late_joiner_gets_the_toc_and_custom_sticky_event_before_its_first_buffer() {
    // Live, the consumer joins ~1 s in: the sticky events are replayed to it.
    let sock = socket_path("late-toc");
    let desc = format!(
        "videotestsrc is-live=true num-buffers=100 ! video/x-raw,width=64,height=48,framerate=50/1 ! identity name=addevents ! shmringsink socket-path={}",
        sock.display()
    );
    let mut producer = serve(&desc, &sock, &[]);
    std::thread::sleep(Duration::from_millis(1000));
    let got = record(&format!(
        "shmringsrc socket-path={} ! identity name=rec0 ! fakesink",
        sock.display()
    ));
    let (status, out) = finish(producer.0.take().unwrap());
    assert!(status.success(), "producer: {out}");
    let first_buffer = got
        .iter()
        .position(|l| l.starts_with("rec0 buffer "))
        .unwrap();
    let toc = got
        .iter()
        .position(|l| l.contains("event toc Global"))
        .expect("a TOC");
    let sticky = got
        .iter()
        .position(|l| l.contains("app-sticky"))
        .expect("the custom sticky event");
    let segment = got
        .iter()
        .position(|l| l.contains("event segment"))
        .unwrap();
    assert!(segment < toc && toc < first_buffer, "{got:?}");
    assert!(segment < sticky && sticky < first_buffer, "{got:?}");
}

#[test]
fn the_producer_negotiates_a_format_its_consumer_takes() {
    // videotestsrc left alone picks ABGR64_LE (8 bytes a pixel); the consumer's
    // downstream takes RGBA only: told at connection, the sink has upstream
    // negotiate again, and RGBA frames (4 bytes a pixel) arrive.
    let source = "videotestsrc num-buffers=40 ! video/x-raw,width=320,height=240";
    let two = split(source, "video/x-raw,format=RGBA ! fakesink", Duration::ZERO);
    let sizes: Vec<&str> = two
        .iter()
        .filter(|l| l.starts_with("rec0 buffer "))
        .map(|l| l.split(" size=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    // With wait-for-connection the first negotiation waits for the consumer's
    // word: every buffer arrives, none in the old caps held back.
    assert_eq!(sizes.len(), 40, "{two:?}");
    assert!(sizes.iter().all(|s| *s == "307200"), "{sizes:?}");
}

#[test]
fn a_consumer_that_takes_no_current_format_is_refused_by_name_when_told_to() {
    let sock = socket_path("refuse-caps");
    let desc = format!(
        "videotestsrc is-live=true num-buffers=200 ! video/x-raw,format=I420,width=64,height=48,framerate=50/1 ! shmringsink late-consumer-caps=refuse socket-path={}",
        sock.display()
    );
    let mut producer = serve(&desc, &sock, &[]);
    let (ok, text) = attempt(&format!(
        "shmringsrc socket-path={} ! video/x-raw,format=RGBA ! identity name=rec0 ! fakesink",
        sock.display()
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("late-consumer-caps=refuse") && text.contains("format=(string)RGBA"),
        "{text}"
    );
    // The producer goes on, and a consumer that takes I420 is served.
    let got = record(&format!(
        "shmringsrc socket-path={} num-buffers=10 ! identity name=rec0 ! fakesink",
        sock.display()
    ));
    assert!(got.iter().filter(|l| l.starts_with("rec0 buffer ")).count() >= 10);
    let (status, out) = finish(producer.0.take().unwrap());
    assert!(status.success(), "producer: {out}");
}

#[test]
fn a_consumer_cannot_make_a_producer_with_one_format_fail() {
    // Upstream makes I420 only (as a decoder would); the consumer takes RGBA only.
    // The producer streams to its end; the consumer ends with a negotiation error.
    let sock = socket_path("fixed-format");
    let desc = format!(
        "videotestsrc is-live=true num-buffers=400 ! video/x-raw,format=I420,width=64,height=48,framerate=50/1 ! shmringsink socket-path={} wait-for-connection=true",
        sock.display()
    );
    let mut producer = serve(&desc, &sock, &[]);
    let (ok, text) = attempt(&format!(
        "shmringsrc socket-path={} ! video/x-raw,format=RGBA ! identity name=rec0 ! fakesink",
        sock.display()
    ));
    assert!(!ok, "{text}");
    assert!(text.contains("error"), "{text}");
    let (status, out) = finish(producer.0.take().unwrap());
    assert!(status.success(), "the producer streamed to its end: {out}");
}

#[test]
fn audio_of_every_layout_and_text_cross_byte_for_byte() {
    for source in [
        "audiotestsrc num-buffers=20 wave=sine ! audio/x-raw,format=S16LE,rate=48000,channels=2",
        "audiotestsrc num-buffers=20 wave=ticks ! audio/x-raw,format=F32LE,rate=44100,channels=3,layout=non-interleaved",
        "audiotestsrc num-buffers=20 wave=saw ! audio/x-raw,format=U8,rate=8000,channels=1",
        "audiotestsrc num-buffers=20 ! audio/x-raw,format=S24_32BE,rate=96000,channels=6",
    ] {
        let one = joined(source, "fakesink");
        let two = split(source, "fakesink", Duration::ZERO);
        assert_eq!(contents(&one).len(), 20, "{source}");
        assert_eq!(contents(&one), contents(&two), "{source}");
        assert_eq!(events(&one), events(&two), "{source}");
        assert_same_buffers(&buffers(&one, "rec0"), &buffers(&two, "rec0"));
    }
    // Subtitles: text/x-raw buffers with their own timestamps and durations.
    let dir = std::env::temp_dir().join(format!("shmring-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let srt = dir.join("subs.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,500 --> 00:00:01,000\nfirst line\n\n2\n00:00:01,200 --> 00:00:02,000\nsecond <i>line</i>\n\n3\n00:00:03,000 --> 00:00:03,500\nthird\n\n",
    )
    .unwrap();
    let source = format!("filesrc location={} ! subparse", srt.display());
    let one = joined(&source, "fakesink");
    let two = split(&source, "fakesink", Duration::ZERO);
    assert_eq!(contents(&one).len(), 3, "{one:?}");
    assert_eq!(contents(&one), contents(&two));
    assert_eq!(events(&one), events(&two));
    // subparse's first buffer is not DISCONT (BaseSrc would mark it so: the
    // consumer keeps the producer's flags).
    assert_same_buffers(&buffers(&one, "rec0"), &buffers(&two, "rec0"));
}
