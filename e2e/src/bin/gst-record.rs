//! Runs one GStreamer pipeline (with the plugin registered from this build) to its
//! end and prints what crossed the sink pad of every element named `rec…`, one
//! line each, for the transparency tests to compare a pipeline joined in one
//! process with the same pipeline split across two:
//!
//! - `NAME event TYPE` for each serialized event (`segment` lines add the
//!   segment's start, stop, base, rate and time; `tag` lines the tag list);
//! - `NAME buffer pts=P dts=D dur=T rt=R flags=F size=S off=O bytes=H` for each buffer
//!   (`H` a hash of its bytes), with the
//!   running time `R` of its DTS (or PTS) in the segment in force (`-` when it has
//!   none, a leading `-` when negative);
//! - `NAME list N` before the `N` buffer lines of a buffer list.
//!
//! Each buffer line ends with `metas=M,...`: for each meta but the video layout,
//! its name, length and a hash of its content, read from GStreamer (`-` for
//! none). An `identity` named `addmetas…` adds a set of test metas to every buffer
//! it passes (see [`add_test_metas`]), a 1 MB custom meta to every tenth; one named
//! `addevents…` sends a TOC and a custom sticky event before the first buffer; one
//! named `addorder…`, before the third buffer after the start and after each
//! flush, a run of serialized events of every kind in one order: a global tag, a
//! TOC, a custom event, a custom sticky event, a stream tag, a gap.
//!
//! Usage: `gst-record PIPELINE...` (the words of a `gst-launch-1.0` description).
//! Exits 0 at end of stream; prints `error ...` and exits 1 on an error. With
//! `SHMRING_REC_STATS` set it prints `NAME stats STRUCTURE` last, for each element
//! with a `stats` property. With `SHMRING_REC_SEEK=MS:NS` in the environment it
//! seeks the pipeline (flushing) to `NS` nanoseconds `MS` milliseconds after it
//! started playing.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

fn main() {
    let desc = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let pipeline = match gst::parse::launch(&desc) {
        Ok(p) => p.downcast::<gst::Pipeline>().unwrap(),
        Err(e) => {
            println!("error cannot build pipeline: {e}");
            std::process::exit(1);
        }
    };
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        let name = e.name().to_string();
        if add_to(&e, &name) {
            continue;
        }
        if !name.starts_with("rec") {
            continue;
        }
        record(&e, name, lines.clone());
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    if let Ok(seek) = std::env::var("SHMRING_REC_SEEK") {
        let (after, to) = seek.split_once(':').expect("SHMRING_REC_SEEK=MS:NS");
        let (after, to): (u64, u64) = (after.parse().unwrap(), to.parse().unwrap());
        let p = pipeline.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(after));
            if p.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_nseconds(to))
                .is_err()
            {
                println!("error seek refused");
                std::process::exit(1);
            }
        });
    }
    let bus = pipeline.bus().unwrap();
    let mut ok = true;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                println!("error {} {:?}", err.error(), err.debug());
                ok = false;
                break;
            }
            _ => {}
        }
    }
    let stats = stats_lines(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let mut stdout = std::io::stdout().lock();
    for l in lines.lock().unwrap().iter().chain(&stats) {
        writeln!(stdout, "{l}").unwrap();
    }
    stdout.flush().unwrap();
    std::process::exit(if ok { 0 } else { 1 });
}

/// Adds what an `addmetas…`, `addevents…` or `addorder…` element adds; `false` for
/// any other element.
fn add_to(e: &gst::Element, name: &str) -> bool {
    if name.starts_with("addmetas") {
        gst::meta::CustomMeta::register(TEST_META, &[]);
        let n = std::sync::atomic::AtomicU64::new(0);
        let pad = e.static_pad("src").expect("an identity has a src pad");
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                add_test_metas(b.make_mut(), i);
            }
            gst::PadProbeReturn::Ok
        });
        return true;
    }
    if name.starts_with("addevents") {
        // A chapter list before the first buffer, as a demuxer sends it, and
        // an application's custom sticky event.
        let sent = std::sync::atomic::AtomicBool::new(false);
        let pad = e.static_pad("src").expect("an identity has a src pad");
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
            if !sent.swap(true, std::sync::atomic::Ordering::Relaxed) {
                pad.push_event(gst::event::Toc::new(&test_toc(), false));
                pad.push_event(gst::event::CustomDownstreamSticky::new(
                    gst::Structure::builder("app-sticky").field("n", 7).build(),
                ));
            }
            gst::PadProbeReturn::Ok
        });
        return true;
    }
    if name.starts_with("addorder") {
        add_ordered_events(e);
        return true;
    }
    false
}

/// Records every buffer, list and serialized event reaching `e`'s sink pad into
/// `lines`, each prefixed by `name`.
fn record(e: &gst::Element, name: String, lines: Arc<Mutex<Vec<String>>>) {
    let out = lines;
    let pad = e.static_pad("sink").expect("a rec element has a sink pad");
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::BUFFER_LIST
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |pad, info| {
            let line = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(buffer_line(pad, b)),
                Some(gst::PadProbeData::BufferList(l)) => {
                    let mut out = out.lock().unwrap();
                    out.push(format!("{name} list {}", l.len()));
                    for b in l.iter_owned() {
                        out.push(format!("{name} {}", buffer_line(pad, &b)));
                    }
                    None
                }
                Some(gst::PadProbeData::Event(ev)) if ev.is_serialized() => Some(event_line(ev)),
                _ => None,
            };
            if let Some(l) = line {
                out.lock().unwrap().push(format!("{name} {l}"));
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// With `SHMRING_REC_STATS` set: the stats of every element that has them (read
/// before the state change that resets them).
fn stats_lines(pipeline: &gst::Pipeline) -> Vec<String> {
    if std::env::var_os("SHMRING_REC_STATS").is_some() {
        pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| {
                e.find_property("stats")
                    .is_some_and(|p| p.value_type() == gst::Structure::static_type())
            })
            .map(|e| {
                format!(
                    "{} stats {}",
                    e.name(),
                    e.property::<gst::Structure>("stats")
                )
            })
            .collect()
    } else {
        Vec::new()
    }
}

fn t(v: Option<gst::ClockTime>) -> String {
    v.map_or("-".into(), |v| v.nseconds().to_string())
}

fn buffer_line(pad: &gst::Pad, b: &gst::Buffer) -> String {
    let seg = pad
        .sticky_event::<gst::event::Segment>(0)
        .and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().cloned());
    let rt = match (seg, b.dts_or_pts()) {
        (Some(seg), Some(ts)) => match seg.to_running_time_full(ts) {
            Some(gst::Signed::Positive(v)) => v.nseconds().to_string(),
            Some(gst::Signed::Negative(v)) => format!("-{}", v.nseconds()),
            None => "-".into(),
        },
        _ => "-".into(),
    };
    format!(
        "buffer pts={} dts={} dur={} rt={rt} flags={:#x} size={} off={} bytes={:016x} metas={}",
        t(b.pts()),
        t(b.dts()),
        t(b.duration()),
        b.flags().bits(),
        b.size(),
        b.offset(),
        bytes_hash(b),
        metas_of(b)
    )
}

/// An edition of three chapters with titles, as a Matroska demuxer would send.
/// See the module's help: `addorder…`.
fn add_ordered_events(e: &gst::Element) {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let seen = std::sync::Arc::new(AtomicU32::new(0));
    let pad = e.static_pad("src").expect("an identity has a src pad");
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::EVENT_FLUSH, move |_, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data {
            if ev.type_() == gst::EventType::FlushStop {
                s.store(0, Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        if seen.fetch_add(1, Relaxed) != 2 {
            return gst::PadProbeReturn::Ok;
        }
        let tag = |title: &str, scope: gst::TagScope| {
            let mut t = gst::TagList::new();
            let tm = t.get_mut().unwrap();
            tm.add::<gst::tags::Title>(&title, gst::TagMergeMode::Replace);
            tm.set_scope(scope);
            gst::event::Tag::new(t)
        };
        pad.push_event(tag("global", gst::TagScope::Global));
        pad.push_event(gst::event::Toc::new(&test_toc(), true));
        pad.push_event(gst::event::CustomDownstream::new(
            gst::Structure::builder("app-custom").field("n", 1).build(),
        ));
        pad.push_event(gst::event::CustomDownstreamSticky::new(
            gst::Structure::builder("app-sticky-ordered")
                .field("n", 2)
                .build(),
        ));
        pad.push_event(tag("stream", gst::TagScope::Stream));
        if let Some(pts) = b.pts() {
            pad.push_event(gst::event::Gap::builder(pts).build());
        }
        gst::PadProbeReturn::Ok
    });
}

fn test_toc() -> gst::Toc {
    let mut toc = gst::Toc::new(gst::TocScope::Global);
    let mut edition = gst::TocEntry::new(gst::TocEntryType::Edition, "edition");
    for i in 0..3i64 {
        let mut c = gst::TocEntry::new(gst::TocEntryType::Chapter, &format!("chapter-{i}"));
        let mut tags = gst::TagList::new();
        tags.get_mut()
            .unwrap()
            .add::<gst::tags::Title>(&format!("Chapter {i}").as_str(), gst::TagMergeMode::Append);
        let m = c.get_mut().unwrap();
        m.set_start_stop_times(i * 100_000_000, (i + 1) * 100_000_000);
        m.set_tags(tags);
        edition.get_mut().unwrap().append_sub_entry(c);
    }
    toc.get_mut().unwrap().append_entry(edition);
    toc
}

/// A hash (FNV-1a) of the buffer's bytes.
fn bytes_hash(b: &gst::BufferRef) -> u64 {
    let map = b.map_readable().expect("readable buffer");
    map.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The name of the custom meta [`add_test_metas`] adds.
const TEST_META: &str = "ShmringTestMeta";

/// Name, length and content hash of each meta of `b` but its video layout.
fn metas_of(b: &gst::BufferRef) -> String {
    use gstshmring::codec::metas;
    let (carried, cannot) = metas::collect(b);
    let mut out: Vec<String> = carried
        .iter()
        .map(|m| {
            let bytes = metas::encode(std::slice::from_ref(m));
            // FNV-1a.
            let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
                (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
            });
            format!("{}:{}:{h:016x}", metas::name_of(m), bytes.len())
        })
        .collect();
    out.extend(cannot.iter().map(|n| format!("!{n}")));
    if out.is_empty() {
        "-".into()
    } else {
        out.join(",")
    }
}

/// Adds to buffer number `n` one of each meta GStreamer 1.22 describes that a
/// source or filter commonly adds, with values that change from buffer to buffer;
/// every tenth buffer also gets a custom meta holding a 1 MB buffer.
fn add_test_metas(b: &mut gst::BufferRef, n: u64) {
    use std::str::FromStr;
    let caps = gst::Caps::from_str("timestamp/x-shmring-test").unwrap();
    gst::ReferenceTimestampMeta::add(
        b,
        &caps,
        gst::ClockTime::from_nseconds(1_000_000_000 + n),
        Some(gst::ClockTime::from_nseconds(10)),
    );
    let jam = gst::glib::DateTime::from_utc(2026, 12, 2, 9, 30, 15.0).unwrap();
    let tc = gst_video::ValidVideoTimeCode::new(
        gst::Fraction::new(30, 1),
        Some(&jam),
        gst_video::VideoTimeCodeFlags::empty(),
        1,
        2,
        (n / 30) as u32 % 60,
        (n % 30) as u32,
        0,
    )
    .unwrap();
    gst_video::VideoTimeCodeMeta::add(b, &tc);
    gst_video::VideoCaptionMeta::add(
        b,
        gst_video::VideoCaptionType::Cea708Cdp,
        &[0x96, 0x69, n as u8, 0x4f],
    );
    let mut roi =
        gst_video::VideoRegionOfInterestMeta::add(b, "face", (n as u32 % 100, 10, 20, 30));
    roi.set_id(n as i32);
    roi.set_parent_id(-1);
    roi.add_param(
        gst::Structure::builder("detection")
            .field("score", 0.5 + n as f64 / 1000.0)
            .field("label", "person")
            .build(),
    );
    gst_video::VideoCropMeta::add(b, (2, 4, 100, 50));
    gst_audio::AudioLevelMeta::add(b, (n % 128) as u8, n % 2 == 0);
    gst_video::video_meta::VideoSeiUserDataUnregisteredMeta::add(
        b,
        &[7u8; 16],
        format!("sei {n}").as_bytes(),
    );
    gst::ProtectionMeta::add(
        b,
        gst::Structure::builder("application/x-cenc")
            .field("iv_size", 16u32)
            .field("encrypted", n % 3 == 0)
            .build(),
    );
    let mut c = gst::meta::CustomMeta::add(b, TEST_META).unwrap();
    let s = c.mut_structure();
    s.set("frame", n);
    s.set("note", format!("custom {n}"));
    if n % 10 == 0 {
        let blob: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i * 7 + n as u32) as u8)
            .collect();
        s.set("blob", gst::Buffer::from_mut_slice(blob));
    }
}

fn event_line(ev: &gst::Event) -> String {
    match ev.view() {
        gst::EventView::Segment(s) => {
            let seg = s.segment();
            match seg.downcast_ref::<gst::ClockTime>() {
                Some(seg) => format!(
                    "event segment start={} stop={} base={} rate={} time={}",
                    t(seg.start()),
                    t(seg.stop()),
                    t(seg.base()),
                    seg.rate(),
                    t(seg.time())
                ),
                None => format!("event segment format={:?}", seg.format()),
            }
        }
        gst::EventView::Toc(toc) => {
            let (toc, updated) = toc.toc();
            let mut out = format!(
                "event toc {:?} updated={updated} tags={:?}",
                toc.scope(),
                toc.tags().map(|t| t.to_string())
            );
            fn walk(out: &mut String, e: &gst::TocEntryRef, depth: usize) {
                out.push_str(&format!(
                    " [{depth} {:?} {} {:?} {:?} {:?}]",
                    e.entry_type(),
                    e.uid(),
                    e.start_stop_times(),
                    e.loop_(),
                    e.tags().map(|t| t.to_string())
                ));
                for s in e.sub_entries() {
                    walk(out, &s, depth + 1);
                }
            }
            for e in toc.entries() {
                walk(&mut out, &e, 0);
            }
            out
        }
        gst::EventView::Tag(tag) => format!("event tag {:?} {}", tag.tag().scope(), tag.tag()),
        gst::EventView::CustomDownstreamSticky(e) => format!(
            "event custom-downstream-sticky {}",
            e.structure().map(|s| s.to_string()).unwrap_or_default()
        ),
        _ => format!("event {}", ev.type_().name()),
    }
}
