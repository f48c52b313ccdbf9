//! A GStreamer pipeline process for the chaos test: a live `shmringsink` producer or
//! a reconnecting `shmringsrc` consumer, with the plugin registered from this build.
//!
//! Usage: `gst-peer produce|consume SOCKET`. Prints `ready` once playing; then, for
//! each `stats` line on stdin, one line with the element's `stats` structure. At the
//! end of stdin (the test closed it, or died) it stops cleanly and exits 0. An error
//! on the bus prints `error ...` and exits 1.
//!
//! `gst-peer lie ACT SOCKET` is a hostile producer for a `shmringsrc`: it speaks the
//! protocol through the crate's `Producer` with the plugin's own encoding, and lies
//! about one thing (ACT, see [`lie`]) in every frame, 100 a second, until killed.

use std::io::{BufRead, Write};

use gst::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 && args.len() != 4 {
        eprintln!("usage: gst-peer produce|consume SOCKET, or gst-peer lie ACT SOCKET");
        std::process::exit(2);
    }
    gst::init().unwrap();
    if args[1] == "lie" && args.len() == 4 {
        if let Err(e) = lie(&args[2], &args[3]) {
            eprintln!("lie: {e}");
            std::process::exit(1);
        }
        return;
    }
    gstshmring::plugin_register_static().unwrap();
    let path = &args[2];
    let desc = match args[1].as_str() {
        "produce" => format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=60/1 ! shmringsink name=e socket-path={path}"
        ),
        "consume" => format!(
            "shmringsrc name=e socket-path={path} reconnect=true reconnect-interval=20 ! fakesink sync=false"
        ),
        other => {
            eprintln!("unknown role {other}");
            std::process::exit(2);
        }
    };
    let pipeline = gst::parse::launch(&desc).unwrap();
    let e = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("e")
        .unwrap();
    let bus = pipeline.bus().unwrap();
    // Any error ends the process with status 1: the test calls that a crash.
    std::thread::spawn(move || {
        for msg in bus.iter_timed(gst::ClockTime::NONE) {
            if let gst::MessageView::Error(err) = msg.view() {
                println!("error {} {:?}", err.error(), err.debug());
                std::process::exit(1);
            }
        }
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "stats" {
            println!("{}", e.property::<gst::Structure>("stats"));
            std::io::stdout().flush().unwrap();
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

/// A producer of 320x240 I420 (or, for `audio-*`, S16LE stereo) whose every frame
/// lies as `act` says:
///
/// - `stride-huge`, `stride-negative`, `stride-double`: the Y plane's stride is 2^30,
///   -2^26, or twice the width (the planes then reach past the frame);
/// - `plane-past-end`: the Y plane starts one row before the frame's end;
/// - `short-frame`: no layout, and a frame of 1000 bytes;
/// - `planes-count`: the layout has 2 planes (I420 has 3);
/// - `dmabuf-caps`, `glmemory-caps`: the caps claim `memory:DMABuf` / `memory:GLMemory`;
/// - `lock-flags`: the buffer flags set the mini object's LOCKABLE and LOCK_READONLY bits;
/// - `audio-partial`: audio buffers of 401 bytes (4-byte frames);
/// - `latency-huge`: the producer's latency is a day;
/// - `segment-rate-zero`, `segment-stop-before-start`: the segment's rate is 0, or
///   its stop is before its start;
/// - `meta-crop-outside`, `meta-unknown-kind`, `meta-caption-empty`,
///   `meta-time-code-invalid`: each frame's meta list has a crop outside the
///   frame, a record of an unknown kind, an empty caption, or 25:00:00:00;
/// - `toc-too-deep`: a TOC whose entries nest 9 deep;
/// - `meta-piece-overflow`: a meta piece carries more bytes than its list's size;
/// - `meta-too-large`: each frame's meta list claims 64 MiB (only its first piece
///   is sent): not a lie a consumer must end on, one it must not hold memory for;
/// - `meta-custom-clash`: each frame has a custom meta named `GstBuffer` (a type
///   that exists): left out, never registered over the type;
/// - `honest`: no lie (the control case).
fn lie(act: &str, path: &str) -> Result<(), String> {
    use std::time::Duration;

    let (caps, video, flags, len) = lying_stream(act)?;
    // The lie is in the frames, not in waiting: a consumer slow to take its first
    // frames (under valgrind, seconds) is waited for, not cut off after the
    // default second.
    let cfg = shmring::ProducerConfig {
        block_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let p = shmring::Producer::bind(path, cfg).map_err(|e| e.to_string())?;
    announce(&p, act, caps)?;
    println!("ready");
    lying_frames(&p, act, video, flags, len)
}

/// The caps, video layout, buffer flags and frame length of act `act`'s stream.
fn lying_stream(
    act: &str,
) -> Result<
    (
        gst::Caps,
        Option<gstshmring::codec::VideoLayout>,
        u32,
        usize,
    ),
    String,
> {
    use std::str::FromStr;

    use gst_video::VideoFormat;
    use gstshmring::codec::VideoLayout;
    // RGBx: a stride that holds the components but not the whole last pixel.
    // UYVP one pixel wide: 4096-byte frames that fill their slots, the last slot's
    // ending where the arena ends, which GStreamer's unpacker reads 5 bytes a row
    // of from 4-byte strides (an honest stream, received in full).
    let (format, w, h) = match act {
        "stride-partial-pixel" => (VideoFormat::Rgbx, 320u32, 240u32),
        "uyvp-narrow" => (VideoFormat::Uyvp, 1, 1024),
        _ => (VideoFormat::I420, 320, 240),
    };
    let audio = act.starts_with("audio-");
    let caps = match act {
        _ if audio => {
            "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved".to_owned()
        }
        "dmabuf-caps" => format!("video/x-raw(memory:DMABuf),format=I420,width={w},height={h}"),
        "glmemory-caps" => format!("video/x-raw(memory:GLMemory),format=I420,width={w},height={h}"),
        _ => format!(
            "video/x-raw,format={},width={w},height={h},framerate=100/1",
            format.to_str()
        ),
    };
    let caps = gst::Caps::from_str(&caps).map_err(|e| e.to_string())?;
    let info = gst_video::VideoInfo::builder(format, w, h)
        .build()
        .map_err(|e| e.to_string())?;
    let size = if audio { 401 } else { info.size() };
    let mut layout = VideoLayout::of(&info);
    let mut flags = 0u32;
    let mut len = size;
    let mut video = (!audio).then_some(layout);
    match act {
        "stride-huge" => layout.strides[0] = 1 << 30,
        "stride-negative" => layout.strides[0] = -(1 << 26),
        "stride-double" => layout.strides[0] = 2 * w as i32,
        "stride-partial-pixel" => layout.strides[0] = 4 * w as i32 - 1,
        "plane-past-end" => layout.offsets[0] = (size - w as usize) as u32,
        "planes-count" => layout.n_planes = 2,
        "short-frame" => {
            video = None;
            len = 1000;
        }
        "lock-flags" => flags = 0x1 | 0x2,
        "honest"
        | "uyvp-narrow"
        | "dmabuf-caps"
        | "glmemory-caps"
        | "audio-partial"
        | "latency-huge"
        | "segment-rate-zero"
        | "segment-stop-before-start" => {}
        _ if act.starts_with("meta-") || act.starts_with("toc-") => {}
        other => return Err(format!("unknown act {other}")),
    }
    if video.is_some() {
        video = Some(layout);
    }
    Ok((caps, video, flags, len))
}

/// The stream-start and caps, and what act `act` says before the first frame
/// (latency, segment, TOC).
fn announce(p: &shmring::Producer, act: &str, caps: gst::Caps) -> Result<(), String> {
    use gstshmring::codec::{NONE, Side, key};

    p.send_side(
        &Side::StreamStart {
            stream_id: "liar".into(),
        }
        .encode(),
        key::STREAM_START,
    )
    .map_err(|e| e.to_string())?;
    p.send_side(&Side::Caps(caps).encode(), key::CAPS)
        .map_err(|e| e.to_string())?;
    if act == "latency-huge" {
        let day = 86_400 * 1_000_000_000u64;
        let l = Side::Latency {
            live: true,
            min: day,
            max: NONE,
        };
        p.send_side(&l.encode(), key::LATENCY)
            .map_err(|e| e.to_string())?;
    }
    if act.starts_with("segment-") {
        let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
        seg.set_start(gst::ClockTime::from_seconds(10));
        let mut b = Side::Segment(seg).encode();
        // The body after the type byte: flags (4), rate (8), applied rate (8),
        // then start, stop, ... (8 each).
        match act {
            "segment-rate-zero" => b[5..13].copy_from_slice(&0f64.to_le_bytes()),
            _ => b[29..37].copy_from_slice(&1u64.to_le_bytes()),
        }
        p.send_side(&b, key::SEGMENT).map_err(|e| e.to_string())?;
    }
    if act == "toc-too-deep" {
        // Scope global, not updated, no tags, one entry; each entry a chapter
        // "x" with no times, loop or tags and one sub-entry.
        let mut b = vec![gstshmring::codec::side::T_TOC, 1, 0, 0, 0, 0, 0, 1, 0];
        for _ in 0..9 {
            b.extend_from_slice(&3i32.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.push(b'x');
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&1u16.to_le_bytes());
        }
        p.send_side(&b, key::TOC).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Frames every 10 ms, forever, with act `act`'s metas, flags and layout.
fn lying_frames(
    p: &shmring::Producer,
    act: &str,
    video: Option<gstshmring::codec::VideoLayout>,
    flags: u32,
    len: usize,
) -> Result<(), String> {
    use std::time::Duration;

    use gstshmring::codec::{BufferMeta, NONE};

    let bytes = vec![0x80u8; len.max(1)];
    let meta_list = lying_metas(act);
    for n in 0u64.. {
        let mut metas_tag = 0;
        if let Some(pieces) = &meta_list {
            metas_tag = (n % 60_000 + 1) as u16;
            for piece in pieces {
                let mut piece = piece.clone();
                piece[1..3].copy_from_slice(&metas_tag.to_le_bytes());
                p.send_side(&piece, 0).map_err(|e| e.to_string())?;
            }
        }
        let m = BufferMeta {
            pts: n * 10_000_000,
            dts: NONE,
            duration: 10_000_000,
            offset: NONE,
            offset_end: NONE,
            base_time: NONE,
            flags,
            video,
            list_continues: false,
            metas_tag,
        };
        if let Ok(mut slot) = p.acquire(len) {
            slot.write(0, &bytes[..len]).map_err(|e| e.to_string())?;
            let _ = slot.publish(len, &m.encode());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The side messages of each frame's meta list for a `meta-…` act (tag bytes
/// 1..3 filled in per frame).
fn lying_metas(act: &str) -> Option<Vec<Vec<u8>>> {
    use gstshmring::codec::metas::{self, Carried};
    use gstshmring::codec::side::T_META_PIECE;
    let one = |c: Carried| metas::encode(&[c]);
    let list = match act {
        "meta-crop-outside" => one(Carried::Crop([300, 200, 100, 100])),
        "meta-unknown-kind" => vec![99, 0, 0, 0, 0],
        "meta-caption-empty" => one(Carried::Caption {
            kind: 1,
            data: Vec::new(),
        }),
        "meta-time-code-invalid" => one(Carried::TimeCode {
            fps: (30, 1),
            flags: 0,
            hmsf: [25, 0, 0, 0],
            field_count: 0,
            daily_jam: None,
        }),
        // A custom meta named as an existing type: registering it would clash.
        "meta-custom-clash" => one(Carried::Custom {
            name: "GstBuffer".into(),
            fields: gst::Structure::new_empty("GstBuffer"),
        }),
        "meta-piece-overflow" => {
            // Says 10 bytes, carries 20.
            let mut m = vec![T_META_PIECE, 0, 0];
            m.extend_from_slice(&10u32.to_le_bytes());
            m.extend_from_slice(&[0; 20]);
            return Some(vec![m]);
        }
        "meta-too-large" => {
            let mut m = vec![T_META_PIECE, 0, 0];
            m.extend_from_slice(&(64u32 << 20).to_le_bytes());
            m.extend_from_slice(&[0; 1000]);
            return Some(vec![m]);
        }
        _ => return None,
    };
    Some(metas::pieces(&list, 1, T_META_PIECE).collect())
}
