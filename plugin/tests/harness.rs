//! The elements in-process with `gst_check::Harness`, each against the other end of
//! the frame channel played directly with `shmring` (real sockets and memfds).

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;
use gstshmring::meta::{self, BufferMeta, Side, VideoLayout};
use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig};

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstshmring::plugin_register_static().unwrap();
    });
}

fn sock(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("shmring-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(tag).to_str().unwrap().to_owned()
}

/// A playing `shmringsink` harness on `path`, and a consumer connected to it.
fn sink_harness(path: &str) -> (Harness, Consumer) {
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", path)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    let c = Consumer::connect(path, ConsumerConfig::default()).unwrap();
    (h, c)
}

/// The first error `pipeline` posts (message and debug text), within 60 s.
fn first_error(pipeline: &gst::Element) -> String {
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    format!("{} {:?}", err.error(), err.debug())
}

fn next(c: &mut Consumer) -> Event {
    c.recv_timeout(Duration::from_secs(60)).unwrap()
}

fn side(c: &mut Consumer) -> Side {
    match next(c) {
        Event::Side { payload, .. } => Side::decode(&payload).unwrap(),
        other => panic!("expected a side message, got {other:?}"),
    }
}

#[test]
fn sink_sends_events_in_order_and_buffers_with_their_metadata() {
    init();
    let path = sock("sink");
    let (mut h, mut c) = sink_harness(&path);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(5));
    h.push_event(gst::event::StreamStart::new("the-stream"));
    let caps =
        gst::Caps::from_str("video/x-raw,format=GRAY8,width=4,height=2,framerate=30/1").unwrap();
    h.push_event(gst::event::Caps::new(&caps));
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(10));
    h.push_event(gst::event::Segment::new(&seg));
    let mut b = gst::Buffer::from_slice(vec![1u8, 2, 3, 4, 5, 6, 7, 8]);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_seconds(11));
        b.set_duration(gst::ClockTime::from_mseconds(33));
        b.set_offset(7);
        b.set_offset_end(8);
        b.set_flags(gst::BufferFlags::DELTA_UNIT);
    }
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let tags = gst::TagList::new();
    h.push_event(gst::event::Tag::new(tags));
    h.push_event(gst::event::CustomDownstream::new(
        gst::Structure::from_str("app-event, n=(int)5").unwrap(),
    ));
    h.push_event(gst::event::Eos::new());

    assert_eq!(
        side(&mut c),
        Side::StreamStart {
            stream_id: "the-stream".into()
        }
    );
    assert_eq!(side(&mut c), Side::Caps(caps));
    // What upstream of the sink answers to a latency query, before the first buffer.
    match side(&mut c) {
        Side::Latency { live, min, .. } => assert_eq!((live, min), (true, 5_000_000)),
        other => panic!("expected the latency, got {other:?}"),
    }
    match next(&mut c) {
        Event::Frame(f) => {
            assert_eq!(f.to_vec(), [1, 2, 3, 4, 5, 6, 7, 8]);
            let m = BufferMeta::decode(f.meta()).unwrap();
            assert_eq!(
                m.pts,
                gst::ClockTime::from_seconds(1).nseconds(),
                "running time"
            );
            assert_eq!(m.dts, meta::NONE);
            assert_eq!(m.duration, 33_000_000);
            assert_eq!((m.offset, m.offset_end), (7, 8));
            assert_eq!(m.flags, gst::BufferFlags::DELTA_UNIT.bits());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(side(&mut c), Side::Tags(_)));
    match side(&mut c) {
        Side::Custom(s) => assert_eq!(s.name(), "app-event"),
        other => panic!("{other:?}"),
    }
    assert_eq!(side(&mut c), Side::Eos);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 1);
    assert_eq!(stats.get::<u32>("consumers").unwrap(), 1);
}

#[test]
fn sink_refuses_to_start_without_a_path_or_fd_and_on_a_live_socket() {
    init();
    let e = gst::ElementFactory::make("shmringsink").build().unwrap();
    assert!(e.set_state(gst::State::Paused).is_err());
    let path = sock("taken");
    let _p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    e.set_property("socket-path", &path);
    assert!(e.set_state(gst::State::Paused).is_err());
    e.set_state(gst::State::Null).unwrap();
}

fn publish(p: &Producer, bytes: &[u8], m: &BufferMeta) {
    let mut s = p.acquire(bytes.len()).unwrap();
    s.write(0, bytes).unwrap();
    s.publish(bytes.len(), &m.encode()).unwrap();
}

fn meta(pts_ms: u64) -> BufferMeta {
    BufferMeta {
        pts: pts_ms * 1_000_000,
        dts: meta::NONE,
        duration: 10_000_000,
        offset: 3,
        offset_end: 4,
        base_time: meta::NONE,
        flags: 0,
        video: None,
    }
}

fn src_harness(path: &str, copy: bool) -> Harness {
    let e = gst::ElementFactory::make("shmringsrc")
        .property("socket-path", path)
        .property("is-live", false)
        .property("copy", copy)
        .build()
        .unwrap();
    // The element's messages (errors) land here.
    e.set_bus(Some(&gst::Bus::new()));
    let mut h = Harness::with_element(&e, None, Some("src"));
    h.play();
    h
}

#[test]
fn src_outputs_the_producers_caps_buffers_timestamps_and_video_layout() {
    init();
    let path = sock("src");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let caps =
        gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2,framerate=30/1").unwrap();
    p.send_side(&Side::Caps(caps.clone()).encode(), meta::key::CAPS)
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
    p.send_side(&Side::Caps(caps1.clone()).encode(), meta::key::CAPS)
        .unwrap();
    let mut h = src_harness(&path, false);
    p.wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&p, &[0u8; 1920], &meta(0));
    p.send_side(&Side::Caps(caps2.clone()).encode(), meta::key::CAPS)
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
    let path = sock("copy");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    p.send_side(
        &Side::Caps(gst::Caps::from_str("application/x-test").unwrap()).encode(),
        meta::key::CAPS,
    )
    .unwrap();
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
fn videotestsrc_renders_into_shared_slots_without_a_copy() {
    init();
    let path = sock("zerocopy");
    let caps = "video/x-raw,format=I420,width=320,height=240,framerate=30/1";
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=20 pattern=smpte ! {caps} ! shmringsink name=s socket-path={path} wait-for-connection=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    // The same frames straight from the source, for comparison.
    let direct = gst::parse::launch(&format!(
        "videotestsrc num-buffers=20 pattern=smpte ! {caps} ! appsink name=a sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = direct.by_name("a").unwrap();
    direct.set_state(gst::State::Playing).unwrap();
    let mut frames = 0;
    loop {
        match next(&mut c) {
            Event::Frame(f) => {
                let sample = appsink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]);
                let want = sample
                    .unwrap()
                    .buffer()
                    .unwrap()
                    .map_readable()
                    .unwrap()
                    .to_vec();
                assert!(f.to_vec() == want, "frame {frames} differs");
                frames += 1;
            }
            Event::Side { payload, .. } => {
                if Side::decode(&payload).unwrap() == Side::Eos {
                    break;
                }
            }
            Event::End { .. } => break,
        }
    }
    assert_eq!(frames, 20);
    let stats = pipeline
        .by_name("s")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("zero-copy").unwrap(), 20, "{stats}");
    assert_eq!(stats.get::<u64>("copies").unwrap(), 0, "{stats}");
    pipeline.set_state(gst::State::Null).unwrap();
    direct.set_state(gst::State::Null).unwrap();
}

#[test]
fn src_refusal_by_downstream_names_both_caps() {
    init();
    let path = sock("refused");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    let caps = gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2").unwrap();
    p.send_side(&Side::Caps(caps).encode(), meta::key::CAPS)
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

/// An honest producer comes up on `path`: the reconnecting source of `pipeline`
/// streams from it (its buffer reaches `appsink`), and no error reached the bus.
fn takes_the_honest_producer(
    path: &str,
    pipeline: &gst::Pipeline,
    appsink: &gst::Element,
    payload: &[u8],
) {
    let honest = Producer::bind(path, ProducerConfig::default()).unwrap();
    honest
        .send_side(
            &Side::Caps(gst::Caps::from_str("application/x-test").unwrap()).encode(),
            meta::key::CAPS,
        )
        .unwrap();
    honest
        .wait_for_consumers(1, Some(Duration::from_secs(60)))
        .unwrap();
    publish(&honest, payload, &meta(0));
    let sample = appsink
        .emit_by_name::<Option<gst::Sample>>(
            "try-pull-sample",
            &[&gst::ClockTime::from_seconds(60)],
        )
        .expect("a buffer from the honest producer");
    assert_eq!(
        sample.buffer().unwrap().map_readable().unwrap().as_slice(),
        payload
    );
    assert!(
        pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
            .is_none(),
        "waiting past a liar is not an error"
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
fn sink_flush_resets_the_segment_and_keeps_serving() {
    init();
    let path = sock("flush");
    let (mut h, mut c) = sink_harness(&path);
    h.set_src_caps_str("application/x-test");
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(100));
    h.push_event(gst::event::Segment::new(&seg));
    let mut b = gst::Buffer::from_slice(vec![1u8]);
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(101));
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    let mut b = gst::Buffer::from_slice(vec![2u8]);
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(5));
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let mut pts = Vec::new();
    while pts.len() < 2 {
        if let Event::Frame(f) = next(&mut c) {
            pts.push(BufferMeta::decode(f.meta()).unwrap().pts / 1_000_000_000);
        }
    }
    assert_eq!(pts, [1, 5], "running time in each segment");
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
        meta::key::CAPS,
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

fn planar_caps() -> gst::Caps {
    gst::Caps::from_str(
        "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=non-interleaved,channel-mask=(bitmask)0x3",
    )
    .unwrap()
}

#[test]
fn sink_packs_planar_audio_planes_back_to_back() {
    init();
    let path = sock("planar-sink");
    let (mut h, mut c) = sink_harness(&path);
    h.set_src_caps(planar_caps());
    let info = gst_audio::AudioInfo::from_caps(&planar_caps()).unwrap();
    // 10 samples a channel (20 bytes a plane), the right plane 100 bytes in, with
    // junk around and between.
    let mut bytes = vec![0xEEu8; 130];
    bytes[0..20].fill(1);
    bytes[100..120].fill(2);
    let mut b = gst::Buffer::from_slice(bytes);
    gst_audio::AudioMeta::add(b.get_mut().unwrap(), &info, 10, &[0, 100]).unwrap();
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    // A tightly packed one goes as it is.
    let mut tight = vec![3u8; 40];
    tight[20..].fill(4);
    let mut b = gst::Buffer::from_slice(tight.clone());
    gst_audio::AudioMeta::add(b.get_mut().unwrap(), &info, 10, &[]).unwrap();
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Event::Frame(f) = next(&mut c) {
            got.push(f.to_vec());
        }
    }
    let mut packed = vec![1u8; 20];
    packed.extend([2u8; 20]);
    assert_eq!(got, [packed, tight]);
    // A layout that points outside the buffer is refused with a clear error.
    let e = h.element().unwrap();
    e.set_bus(Some(&gst::Bus::new()));
    let mut b = gst::Buffer::from_slice(vec![0u8; 40]);
    {
        let b = b.get_mut().unwrap();
        // A layout whose right plane ends past the (shrunk) buffer.
        gst_audio::AudioMeta::add(b, &info, 10, &[0, 20]).unwrap();
        b.set_size(30);
    }
    assert_eq!(h.push(b), Err(gst::FlowError::Error));
    let msg = e
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    assert!(text.contains("exceeds the buffer's 30"), "{text}");
}

#[test]
fn src_gives_planar_audio_its_layout() {
    init();
    let path = sock("planar-src");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    p.send_side(&Side::Caps(planar_caps()).encode(), meta::key::CAPS)
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
fn sink_marks_the_first_buffer_after_a_flush_discont() {
    init();
    let path = sock("flush-discont");
    let (mut h, mut c) = sink_harness(&path);
    h.set_src_caps_str("application/x-test");
    for round in 0..2u8 {
        for i in 0..2u8 {
            assert_eq!(
                h.push(gst::Buffer::from_slice(vec![round, i])),
                Ok(gst::FlowSuccess::Ok)
            );
        }
        if round == 0 {
            assert!(h.push_event(gst::event::FlushStart::new()));
            assert!(h.push_event(gst::event::FlushStop::new(true)));
            h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()));
        }
    }
    let mut discont = Vec::new();
    while discont.len() < 4 {
        if let Event::Frame(f) = next(&mut c) {
            let m = BufferMeta::decode(f.meta()).unwrap();
            discont.push(m.flags & gst::BufferFlags::DISCONT.bits() != 0);
        }
    }
    assert_eq!(discont, [false, false, true, false]);
}

#[test]
fn src_reports_the_producers_latency_when_live() {
    init();
    let path = sock("latency");
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    p.send_side(
        &Side::Caps(gst::Caps::from_str("application/x-test").unwrap()).encode(),
        meta::key::CAPS,
    )
    .unwrap();
    p.send_side(
        &Side::Latency {
            live: true,
            min: 40_000_000,
            max: meta::NONE,
        }
        .encode(),
        meta::key::LATENCY,
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
            meta::key::STREAM_START,
        )
        .unwrap();
        p.send_side(&Side::Caps(caps.clone()).encode(), meta::key::CAPS)
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

#[test]
fn sink_stats_answer_while_render_waits_for_a_slow_consumer() {
    init();
    let path = sock("stats-while-blocked");
    // Polling for a whole second before each sleep: stats answer through that too.
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", &path)
        .property("block-timeout", 60_000u32)
        .property("spin-time", 1_000_000u32)
        .build()
        .unwrap();
    assert_eq!(e.property::<u32>("spin-time"), 1_000_000);
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    // Connected, but reads nothing until told: the sink soon waits for it.
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let caps = gst::Caps::from_str("video/x-raw,format=GRAY8,width=4,height=2").unwrap();
    h.set_src_caps(caps);
    const N: u64 = 40;
    let pusher = std::thread::spawn(move || {
        for i in 0..N {
            let mut b = gst::Buffer::from_slice(vec![i as u8; 8]);
            b.get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(i));
            assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
        }
        h
    });
    let stats = || e.property::<gst::Structure>("stats");
    let frames = |s: &gst::Structure| s.get::<u64>("frames").unwrap();
    // Until the count stands still, well short of N: render is waiting. Every
    // read answers at once (none waits out the 60 s block timeout).
    let mut last = (0, 0);
    while last.1 < 200 {
        let n = frames(&stats());
        last = if n == last.0 { (n, last.1 + 1) } else { (n, 0) };
        std::thread::sleep(Duration::from_millis(2));
    }
    let s = stats();
    assert!(frames(&s) < N, "{s}");
    assert!(!pusher.is_finished());
    assert_eq!(s.get::<u32>("consumers").unwrap(), 1, "{s}");
    assert_eq!(s.get::<u64>("cut-off").unwrap(), 0, "{s}");
    // The consumer reads: every buffer arrives.
    let mut got = 0;
    while got < N {
        if let Event::Frame(f) = next(&mut c) {
            assert_eq!(f.to_vec(), vec![got as u8; 8]);
            got += 1;
        }
    }
    let mut h = pusher.join().unwrap();
    h.push_event(gst::event::Eos::new());
    assert_eq!(stats().get::<u64>("cut-off").unwrap(), 0);
}

#[test]
fn sink_skips_a_tag_event_too_big_for_a_side_message_and_streams_on() {
    init();
    let path = sock("huge-tags");
    let (mut h, mut c) = sink_harness(&path);
    h.set_src_caps(gst::Caps::from_str("video/x-raw,format=GRAY8,width=4,height=2").unwrap());
    // 200 KB of title: more than a side message carries (64 KiB).
    let mut tags = gst::TagList::new();
    tags.get_mut()
        .unwrap()
        .add::<gst::tags::Title>(&"x".repeat(200_000).as_str(), gst::TagMergeMode::Replace);
    h.push_event(gst::event::Tag::new(tags));
    let mut small = gst::TagList::new();
    small
        .get_mut()
        .unwrap()
        .add::<gst::tags::Title>(&"fits", gst::TagMergeMode::Replace);
    h.push_event(gst::event::Tag::new(small));
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![7u8; 8])),
        Ok(gst::FlowSuccess::Ok)
    );
    h.push_event(gst::event::Eos::new());
    // The consumer gets everything but the oversized tags.
    let mut titles = Vec::new();
    let mut frames = 0;
    loop {
        match next(&mut c) {
            Event::Frame(f) => {
                assert_eq!(f.to_vec(), [7u8; 8]);
                frames += 1;
            }
            Event::Side { payload, .. } => match Side::decode(&payload).unwrap() {
                Side::Tags(t) => titles.push(t.get::<gst::tags::Title>().unwrap().get().to_owned()),
                Side::Eos => break,
                _ => {}
            },
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((frames, titles), (1, vec!["fits".to_owned()]));
}

#[test]
fn sink_serves_a_consumer_handed_over_as_an_fd_without_any_path() {
    use std::os::fd::AsRawFd;
    init();
    let (mine, theirs) = shmring::fdpass::seqpacket_pair().unwrap();
    let e = gst::ElementFactory::make("shmringsink")
        .property("consumer-fd", mine.as_raw_fd())
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    let mut c = Consumer::from_fd(theirs, ConsumerConfig::default()).unwrap();
    let caps = gst::Caps::from_str("video/x-raw,format=GRAY8,width=4,height=2").unwrap();
    h.set_src_caps(caps.clone());
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![9u8; 8])),
        Ok(gst::FlowSuccess::Ok)
    );
    loop {
        match next(&mut c) {
            Event::Side { payload, .. } => {
                if let Side::Caps(got) = Side::decode(&payload).unwrap() {
                    assert_eq!(got, caps);
                }
            }
            Event::Frame(f) => {
                assert_eq!(f.to_vec(), [9u8; 8]);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    drop(h);
    // Our fd is still ours and open.
    // SAFETY: fcntl(F_GETFD) on an fd we own.
    assert!(unsafe { libc::fcntl(mine.as_raw_fd(), libc::F_GETFD) } >= 0);
}

/// A playing `shmringsink` on `tag`'s socket (no last sample, a patient block
/// timeout) fed `caps`, and the pool it proposes upstream, active: the element, the
/// harness, the socket path, the pool, its buffer size and its most buffers.
fn sink_pool(tag: &str, caps: &str) -> (gst::Element, Harness, String, gst::BufferPool, u32, u32) {
    init();
    let path = sock(tag);
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", &path)
        .property("enable-last-sample", false)
        .property("block-timeout", 60_000u32)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    let caps = gst::Caps::from_str(caps).unwrap();
    h.set_src_caps(caps.clone());
    let mut q = gst::query::Allocation::new(Some(&caps), true);
    assert!(e.static_pad("sink").unwrap().query(&mut q));
    let (pool, size, _, max) = q.allocation_pools().next().unwrap();
    let pool = pool.unwrap();
    pool.set_active(true).unwrap();
    (e, h, path, pool, size, max)
}

/// Acquires a buffer of `pool` (sized to `len` if given, as audio sources do) and
/// fills it with `byte`; returns it and its memory's address.
fn fill_pool_buffer(
    pool: &gst::BufferPool,
    byte: u8,
    len: Option<usize>,
    params: Option<&gst::BufferPoolAcquireParams>,
) -> Result<(gst::Buffer, usize), gst::FlowError> {
    let mut b = pool.acquire_buffer(params)?;
    let bm = b.get_mut().unwrap();
    if let Some(len) = len {
        bm.set_size(len);
    }
    let mut m = bm.map_writable().unwrap();
    m.fill(byte);
    let at = m.as_ptr() as usize;
    drop(m);
    Ok((b, at))
}

/// The next frame, skipping side messages.
fn next_frame(c: &mut Consumer) -> shmring::Frame {
    loop {
        if let Event::Frame(f) = next(c) {
            return f;
        }
    }
}

#[test]
fn sink_pool_reuses_its_buffers_but_never_one_a_consumer_still_holds() {
    let (e, mut h, path, pool, size, max) = sink_pool(
        "pool-reuse",
        "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved",
    );
    assert_eq!((size, max), (19200, 6), "100 ms slots, all but two of 8");
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let free_slots = || {
        e.property::<gst::Structure>("stats")
            .get::<u32>("free-slots")
            .unwrap()
    };
    // 10 ms of audio: shorter than the pool's size.
    let fill = |byte: u8, params: Option<&gst::BufferPoolAcquireParams>| {
        fill_pool_buffer(&pool, byte, Some(1920), params)
    };
    let mut frame = || next_frame(&mut c);
    // Published, released by the consumer, back in the pool: reused in place.
    let (b, first) = fill(1, None).unwrap();
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let f = frame();
    assert_eq!(f.to_vec(), vec![1; 1920]);
    drop(f);
    let (b, again) = fill(2, None).unwrap();
    assert_eq!(
        again, first,
        "the released buffer is reused, not a new one made"
    );
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    // Now the consumer keeps the frame: no buffer the pool hands out is that one,
    // however many are taken, and writing them all leaves the frame as it was.
    let held = frame();
    assert_eq!(held.to_vec(), vec![2; 1920]);
    let mut taken = Vec::new();
    for _ in 0..max {
        let (b, at) = fill(0xEE, None).unwrap();
        assert_ne!(
            at, first,
            "a buffer whose slot a consumer holds was handed out"
        );
        taken.push(b);
    }
    let dont_wait = gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
    assert_eq!(
        fill(0xEE, Some(&dont_wait)).err(),
        Some(gst::FlowError::Eos),
        "{max} buffers out: the pool is empty"
    );
    assert_eq!(held.to_vec(), vec![2; 1920], "the held frame was written");
    assert_eq!(free_slots(), 8 - max - 1, "the held slot stays out");
    drop(held);
    drop(taken);
    // A burst made six buffers; a steady stream needs one (the consumer takes each
    // before the next): the surplus goes, a buffer per 64 acquires.
    for i in 0..6 * 64 {
        let (b, _) = fill(i as u8, None).unwrap();
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
        assert_eq!(frame().to_vec(), vec![i as u8; 1920]);
    }
    assert_eq!(free_slots(), 8 - 1, "the pool shrank back to one buffer");
    // Windows with nothing to spare change nothing: all `max` buffers can still
    // be had (a miscount of the pool's buffers would make it empty sooner).
    for i in 0..3 * 64 {
        let (b, _) = fill(i as u8, None).unwrap();
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
        assert_eq!(frame().to_vec(), vec![i as u8; 1920]);
    }
    assert_eq!(free_slots(), 8 - 1);
    let all: Vec<_> = (0..max)
        .map(|_| fill(0, Some(&dont_wait)).expect("a buffer").0)
        .collect();
    assert_eq!(free_slots(), 8 - max);
    drop(all);
    assert_eq!(
        e.property::<gst::Structure>("stats")
            .get::<u64>("zero-copy")
            .unwrap(),
        2 + 9 * 64
    );
    // Buffers wait in the pool bound to their slots; stopping it gives them all back.
    pool.set_active(false).unwrap();
    assert_eq!(free_slots(), 8, "every slot is back");
    h.push_event(gst::event::Eos::new());
}

#[test]
fn sink_pool_acquire_waits_for_a_returned_buffer_and_stops_on_deactivation() {
    let (e, _h, _, pool, _, max) =
        sink_pool("pool-wait", "video/x-raw,format=GRAY8,width=64,height=64");
    let mut taken: Vec<gst::Buffer> = (0..max)
        .map(|_| pool.acquire_buffer(None).unwrap())
        .collect();
    // Every buffer is out: an acquire waits until one comes back.
    let p = pool.clone();
    let waiter = std::thread::spawn(move || p.acquire_buffer(None));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "acquired with every buffer out");
    taken.pop();
    let back = waiter.join().unwrap().expect("the returned buffer");
    assert_eq!(back.size(), 64 * 64);
    taken.push(back);
    // Out again: deactivating the pool ends the wait.
    let p = pool.clone();
    let waiter = std::thread::spawn(move || p.acquire_buffer(None).map(|b| b.size()));
    std::thread::sleep(Duration::from_millis(50));
    pool.set_active(false).unwrap();
    assert_eq!(waiter.join().unwrap(), Err(gst::FlowError::Flushing));
    drop(taken);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u32>("free-slots").unwrap(), 8, "{stats}");
}

#[test]
fn sink_pool_hands_out_the_newest_free_big_buffer_and_never_a_held_one() {
    // 1 MiB frames: big enough that the pool waits a moment for the newest buffer.
    let (_e, mut h, path, pool, size, _) = sink_pool(
        "pool-hot",
        "video/x-raw,format=GRAY8,width=1024,height=1024",
    );
    assert_eq!(size, 1 << 20);
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let fill = |byte: u8| fill_pool_buffer(&pool, byte, None, None).unwrap();
    let mut frame = || next_frame(&mut c);
    let (b, first) = fill(1);
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let f1 = frame();
    // The consumer holds it: the pool waits for it a moment, then gives another.
    let (b, second) = fill(2);
    assert_ne!(second, first, "a held buffer was handed out");
    assert!(
        f1.to_vec().iter().all(|&x| x == 1),
        "the held frame was written"
    );
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    let f2 = frame();
    assert!(f2.to_vec().iter().all(|&x| x == 2));
    drop(f1);
    drop(f2);
    // Both released: the newest returned buffer is the one written again.
    let (b, third) = fill(3);
    assert_eq!(third, second, "not the newest free buffer");
    drop(b);
    pool.set_active(false).unwrap();
    h.push_event(gst::event::Eos::new());
}

#[test]
fn a_pool_kept_upstream_after_the_sink_stopped_serves_no_one() {
    let (e, mut h, path, pool, _, _) = sink_pool(
        "pool-after-stop",
        "video/x-raw,format=GRAY8,width=64,height=64,framerate=30/1",
    );
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let (b, _) = fill_pool_buffer(&pool, 7, None, None).unwrap();
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    // Upstream keeps the pool (as a source keeps its own) while the sink stops.
    e.set_state(gst::State::Null).unwrap();
    drop(h);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket outlived the sink's stop"
    );
    assert!(matches!(
        fill_pool_buffer(&pool, 8, None, None),
        Err(gst::FlowError::Flushing)
    ));
    // The consumer hears that the stream ended, not silence.
    let end = loop {
        match c.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::End { reason }) => break reason,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(end, "producer stopped");
    let _ = pool.set_active(false);
}
