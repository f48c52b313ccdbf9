//! `shmringsrc` in-process with `gst_check::Harness` and real pipelines, its
//! producer played with `shmring::Producer` (honest or lying): caps, buffers,
//! timestamps, layouts, copy mode, reconnects, latency, stopping promptly.

mod common;

use std::str::FromStr;
use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;
use gstshmring::codec::{self, Side, VideoLayout};
use shmring::{Producer, ProducerConfig};

use common::*;

#[test]
fn src_outputs_the_producers_caps_buffers_timestamps_and_video_layout() {
    init();
    let path = sock("src");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let caps =
        gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2,framerate=30/1").unwrap();
    p.send_side(&Side::Caps(caps.clone()).encode(), codec::key::CAPS)
        .unwrap();
    let mut h = src_harness(&path, false);
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    // A padded I420 frame: Y stride 8 (4 used), U and V stride 4 (2 used).
    let frame: Vec<u8> = (0..32u8).collect();
    let mut m = meta(20);
    m.video = Some(VideoLayout {
        n_planes: 3,
        offsets: [0, 16, 24, 0],
        strides: [8, 4, 4, 0],
    });
    publish(&p, &frame, &m);
    let b = h.pull().unwrap();
    assert_eq!(h.sinkpad().unwrap().current_caps().unwrap(), caps);
    assert_eq!(b.map_readable().unwrap().as_slice(), frame.as_slice());
    assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(20)));
    assert_eq!(b.duration(), Some(gst::ClockTime::from_mseconds(10)));
    assert_eq!((b.offset(), b.offset_end()), (3, 4));
    let vm = b.meta::<gst_video::VideoMeta>().expect("video meta");
    assert_eq!(vm.stride()[..3], [8, 4, 4]);
    assert_eq!(vm.offset()[..3], [0, 16, 24]);
    // Zero copy: the buffer's memory is the shared slot, read-only.
    assert!(
        b.peek_memory(0)
            .flags()
            .contains(gst::MemoryFlags::READONLY)
    );
    // The slot goes back when the buffer is dropped.
    assert_eq!(p.stats().consumers[0].held, 1);
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while p.stats().consumers[0].held != 0 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn src_changes_caps_mid_stream_and_ends_on_eos() {
    init();
    let path = sock("caps");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let caps1 =
        gst::Caps::from_str("audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved")
            .unwrap();
    let caps2 =
        gst::Caps::from_str("audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved")
            .unwrap();
    p.send_side(&Side::Caps(caps1.clone()).encode(), codec::key::CAPS)
        .unwrap();
    let mut h = src_harness(&path, false);
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&p, &[0u8; 1920], &meta(0));
    p.send_side(&Side::Caps(caps2.clone()).encode(), codec::key::CAPS)
        .unwrap();
    publish(&p, &[1u8; 882], &meta(10));
    p.send_side(&Side::Eos.encode(), 0).unwrap();
    assert_eq!(h.pull().unwrap().size(), 1920);
    assert_eq!(h.pull().unwrap().size(), 882);
    // The events, in order: two caps, then EOS.
    let mut caps = Vec::new();
    loop {
        let ev = h.pull_event().unwrap();
        match ev.view() {
            gst::EventView::Caps(c) => caps.push(c.caps_owned()),
            gst::EventView::Eos(_) => break,
            _ => {}
        }
    }
    assert_eq!(caps, [caps1, caps2]);
}

#[test]
fn src_copy_mode_gives_private_writable_buffers() {
    init();
    let (path, p) = producer_with_caps("copy", "application/x-test");
    let mut h = src_harness(&path, true);
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&p, b"hello", &meta(0));
    let b = h.pull().unwrap();
    assert!(
        !b.peek_memory(0)
            .flags()
            .contains(gst::MemoryFlags::READONLY)
    );
    assert_eq!(b.map_readable().unwrap().as_slice(), b"hello");
    // Released at receipt, before the buffer goes.
    assert_eq!(p.stats().consumers[0].held, 0);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("copies").unwrap(), 1);
}

#[test]
fn src_posts_an_error_naming_a_lying_producers_fault() {
    init();
    let path = sock("liar");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false ! fakesink"
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    p.send_side(b"\x63garbage", 0).unwrap();
    let text = first_error(&pipeline);
    assert!(text.contains("unknown side message type 99"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
    // The process (this test) is still here, and the producer still serves.
    assert!(p.stats().joined == 1);
}

#[test]
fn src_refusal_by_downstream_names_both_caps() {
    init();
    let path = sock("refused");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let caps = gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2").unwrap();
    p.send_side(&Side::Caps(caps).encode(), codec::key::CAPS)
        .unwrap();
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false ! audio/x-raw ! fakesink"
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let text = first_error(&pipeline);
    assert!(text.contains("negotiation"), "{text}");
    assert!(
        text.contains("video/x-raw") && text.contains("audio/x-raw"),
        "{text}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn src_with_reconnect_outlives_a_lying_producer_and_takes_the_next_one() {
    init();
    let path = sock("liar-reconnect");
    let liar = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false reconnect=true reconnect-interval=10 ! appsink name=a sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = pipeline.by_name("a").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    liar.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    liar.send_side(b"\x63garbage", 0).unwrap();
    // The source drops that connection and comes back: to the liar, which is still
    // there. Replace it with an honest producer.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while liar.stats().joined < 2 {
        assert!(std::time::Instant::now() < deadline, "no reconnect");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(liar);
    takes_the_honest_producer(&path, &pipeline, &appsink, b"after");
}

#[test]
fn src_timestamps_are_the_producers_running_time_when_not_live() {
    init();
    let path = sock("pts");
    let producer = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=GRAY8,width=16,height=16,framerate=25/1 ! shmringsink socket-path={path} wait-for-connection=true"
    ))
    .unwrap();
    producer.set_state(gst::State::Playing).unwrap();
    let consumer = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false ! appsink name=a sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = consumer.by_name("a").unwrap();
    consumer.set_state(gst::State::Playing).unwrap();
    for i in 0..5u64 {
        let s = appsink
            .emit_by_name::<Option<gst::Sample>>(
                "try-pull-sample",
                &[&gst::ClockTime::from_seconds(60)],
            )
            .unwrap();
        let b = s.buffer().unwrap();
        assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(40 * i)));
        assert_eq!(b.duration(), Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!((b.offset(), b.offset_end()), (i, i + 1));
    }
    consumer.set_state(gst::State::Null).unwrap();
    producer.set_state(gst::State::Null).unwrap();
}

#[test]
fn src_blocked_waiting_for_data_stops_promptly() {
    init();
    let path = sock("unlock");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let pipeline =
        gst::parse::launch(&format!("shmringsrc socket-path={path} ! fakesink")).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50)); // create is now waiting
    // Unlock interrupts the wait: the state change completes (it would hang forever
    // otherwise) and posts no error.
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
            .is_none()
    );
}

#[test]
fn src_on_an_inherited_socket_needs_no_path_and_leaves_the_fd_to_its_owner() {
    use std::os::fd::AsRawFd;
    init();
    let p = Producer::new(ProducerConfig::default()).unwrap();
    let (mine, theirs) = shmring::fdpass::seqpacket_pair().unwrap();
    p.add_connection(mine).unwrap();
    p.send_side(
        &Side::Caps(gst::Caps::from_str("application/x-test").unwrap()).encode(),
        codec::key::CAPS,
    )
    .unwrap();
    let e = gst::ElementFactory::make("shmringsrc")
        .property("socket-fd", theirs.as_raw_fd())
        .property("is-live", false)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, None, Some("src"));
    h.play();
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&p, b"via fd", &meta(0));
    assert_eq!(
        h.pull().unwrap().map_readable().unwrap().as_slice(),
        b"via fd"
    );
    drop(h);
    // Our fd is still ours and open.
    // SAFETY: fcntl(F_GETFD) on an fd we own.
    assert!(unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_GETFD) } >= 0);
}

#[test]
fn src_with_reconnect_keeps_waiting_past_a_liar_at_the_handshake() {
    use std::os::fd::AsFd;
    init();
    let path = sock("liar-handshake");
    let liar = shmring::internals::listen::SeqpacketListener::bind(path.as_ref(), 0o600).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc socket-path={path} is-live=false reconnect=true reconnect-interval=10 ! appsink name=a sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = pipeline.by_name("a").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Three hellos answered with garbage instead of a welcome.
    for _ in 0..3 {
        let s = liar.accept().unwrap();
        shmring::fdpass::send(s.as_fd(), b"this is no welcome", &[]).unwrap();
    }
    drop(liar);
    takes_the_honest_producer(&path, &pipeline, &appsink, b"honest");
}

#[test]
fn src_gives_planar_audio_its_layout() {
    init();
    let path = sock("planar-src");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    p.send_side(&Side::Caps(planar_caps()).encode(), codec::key::CAPS)
        .unwrap();
    let mut h = src_harness(&path, false);
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    let mut planes = vec![1u8; 960];
    planes.extend([2u8; 960]);
    publish(&p, &planes, &meta(0));
    let b = h.pull().unwrap();
    let am = b.meta::<gst_audio::AudioMeta>().expect("audio meta");
    assert_eq!(am.samples(), 480);
    assert_eq!(am.offsets(), [0, 960]);
    // Downstream reads each channel where the layout says.
    let info = gst_audio::AudioInfo::from_caps(&planar_caps()).unwrap();
    let ab = gst_audio::AudioBufferRef::from_buffer_ref_readable(&b, &info).unwrap();
    assert!(ab.plane_data(0).unwrap().iter().all(|&x| x == 1));
    assert!(ab.plane_data(1).unwrap().iter().all(|&x| x == 2));
    // A buffer that is not whole frames is named as the fault.
    let e = h.element().unwrap();
    publish(&p, &[0u8; 7], &meta(10));
    let msg = e
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
        .expect("an error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{:?}", err.debug());
    assert!(
        text.contains("not a whole number of 4-byte frames"),
        "{text}"
    );
    assert!(
        h.try_pull().is_none(),
        "nothing goes downstream after the fault"
    );
}

#[test]
fn src_reports_the_producers_latency_when_live() {
    init();
    let (path, p) = producer_with_caps("latency", "application/x-test");
    p.send_side(
        &Side::Latency {
            live: true,
            min: 40_000_000,
            max: codec::NONE,
        }
        .encode(),
        codec::key::LATENCY,
    )
    .unwrap();
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc name=s socket-path={path} ! appsink name=a sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = pipeline.by_name("a").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&p, b"x", &meta(0));
    appsink
        .emit_by_name::<Option<gst::Sample>>(
            "try-pull-sample",
            &[&gst::ClockTime::from_seconds(60)],
        )
        .expect("a buffer");
    let src = pipeline.by_name("s").unwrap();
    let mut q = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut q));
    assert_eq!(
        q.result(),
        (
            true,
            gst::ClockTime::from_mseconds(40),
            gst::ClockTime::NONE
        )
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn src_starts_a_new_stream_downstream_after_reconnecting() {
    init();
    let path = sock("restart");
    let caps = gst::Caps::from_str("application/x-test").unwrap();
    let serve = |id: &str| {
        let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
        p.send_side(
            &Side::StreamStart {
                stream_id: id.into(),
            }
            .encode(),
            codec::key::STREAM_START,
        )
        .unwrap();
        p.send_side(&Side::Caps(caps.clone()).encode(), codec::key::CAPS)
            .unwrap();
        p
    };
    let first = serve("first");
    let e = gst::ElementFactory::make("shmringsrc")
        .property("socket-path", &path)
        .property("is-live", false)
        .property("reconnect", true)
        .property("reconnect-interval", 10u32)
        .build()
        .unwrap();
    e.set_bus(Some(&gst::Bus::new()));
    let mut h = Harness::with_element(&e, None, Some("src"));
    h.play();
    first
        .wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&first, b"one", &meta(0));
    assert_eq!(h.pull().unwrap().map_readable().unwrap().as_slice(), b"one");
    drop(first); // a producer restart
    let second = serve("second");
    second
        .wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&second, b"two", &meta(0));
    assert_eq!(h.pull().unwrap().map_readable().unwrap().as_slice(), b"two");
    let mut seen = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        match ev.view() {
            gst::EventView::StreamStart(_) => seen.push("stream-start"),
            gst::EventView::Caps(_) => seen.push("caps"),
            gst::EventView::Segment(_) => seen.push("segment"),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "stream-start",
            "caps",
            "segment",
            "stream-start",
            "caps",
            "segment"
        ]
    );
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("reconnects").unwrap(), 1);
    assert!(
        e.bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
            .is_none()
    );
}
