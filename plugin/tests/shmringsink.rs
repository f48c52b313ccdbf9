//! `shmringsink` in-process with `gst_check::Harness` and real pipelines, its
//! consumers played with `shmring::Consumer`: events and buffers in order, flushes,
//! planar audio, stats while blocked, fd hand-over, the pool of shared slots.

mod common;

use std::str::FromStr;
use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;
use gstshmring::codec::{self, BufferMeta, Side};
use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig};

use common::*;

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
    h.push_event(gst::event::CustomDownstreamSticky::new(
        gst::Structure::from_str("app-sticky, n=(int)6").unwrap(),
    ));
    h.push_event(gst::event::Eos::new());

    assert_eq!(
        side(&mut c),
        Side::StreamStart {
            stream_id: "the-stream".into()
        }
    );
    assert_eq!(side(&mut c), Side::Caps(caps));
    assert_eq!(side(&mut c), Side::Segment(seg));
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
                gst::ClockTime::from_seconds(11).nseconds(),
                "the timestamp as it is (the segment travelled before it)"
            );
            assert_eq!(m.dts, codec::NONE);
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
    match side(&mut c) {
        Side::CustomSticky(s) => assert_eq!(s.name(), "app-sticky"),
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
fn sink_flush_sends_the_new_segment_and_keeps_serving() {
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
    let fresh = gst::FormattedSegment::<gst::ClockTime>::new();
    h.push_event(gst::event::Segment::new(&fresh));
    let mut b = gst::Buffer::from_slice(vec![2u8]);
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(5));
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    // Each segment before the buffers it describes (the harness sent a default
    // one with its caps), timestamps as they are.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match next(&mut c) {
            Event::Frame(f) => seen.push(format!(
                "buffer {}",
                BufferMeta::decode(f.meta()).unwrap().pts / 1_000_000_000
            )),
            Event::Side { payload, .. } => {
                if let Side::Segment(s) = Side::decode(&payload).unwrap() {
                    seen.push(format!("segment {}", s.start().unwrap().seconds()));
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "segment 0",
            "segment 100",
            "buffer 101",
            "segment 0",
            "buffer 5"
        ]
    );
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
fn sink_stats_answer_while_render_waits_for_a_slow_consumer() {
    init();
    let path = sock("stats-while-blocked");
    // Polling for a whole second before each sleep: stats answer through that too.
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", &path)
        .property("block-timeout", 60_000u32)
        .property("spin-time", 1_000_000u32)
        // The harness is live: auto would drop for the consumer instead of waiting.
        .property_from_str("on-slow-consumer", "block")
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

#[test]
fn time_properties_default_to_the_frame_channel_and_read_back_in_their_units() {
    init();
    let sink = gst::ElementFactory::make("shmringsink").build().unwrap();
    let src = gst::ElementFactory::make("shmringsrc").build().unwrap();
    let ms = |d: Duration| d.as_millis() as u32;
    let us = |d: Duration| d.as_micros() as u32;
    assert_eq!(
        sink.property::<u32>("block-timeout"),
        ms(ProducerConfig::DEFAULT_BLOCK_TIMEOUT)
    );
    assert_eq!(
        sink.property::<u32>("spin-time"),
        us(ProducerConfig::DEFAULT_SPIN)
    );
    assert_eq!(
        src.property::<u32>("spin-time"),
        us(ConsumerConfig::DEFAULT_SPIN)
    );
    for (e, name, v) in [
        (&sink, "block-timeout", 1234u32),
        (&sink, "spin-time", 7),
        (&src, "spin-time", 0),
        (&src, "wake-ahead", 4_000_000_000),
        (&src, "reconnect-interval", 1),
    ] {
        e.set_property(name, v);
        assert_eq!(e.property::<u32>(name), v, "{name}");
    }
}

#[test]
fn automatic_slots_give_small_buffers_a_bigger_arena() {
    init();
    let e = gst::ElementFactory::make("shmringsink").build().unwrap();
    assert_eq!(e.property::<u32>("slots"), 0, "automatic by default");
    let max_for = |caps: &str| {
        let (_, _, _, _, size, max) = sink_pool_of("auto-slots", caps, 0);
        (size, max)
    };
    // 100 ms of stereo audio: 20 KiB slots, 64 of them fit in 4 MiB; all but two.
    assert_eq!(
        max_for("audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved"),
        (19200, 62)
    );
    // A 1080p frame: the channel's 8.
    assert_eq!(
        max_for("video/x-raw,format=I420,width=1920,height=1080,framerate=30/1"),
        (1920 * 1080 * 3 / 2, 6)
    );
}

#[test]
fn sink_sends_metas_before_their_buffer_and_counts_those_that_cannot_cross() {
    use gstshmring::codec::metas::{self, Assembly, Carried, Piece};
    init();
    let path = sock("metas");
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", &path)
        .property("max-meta-bytes", 1024u32)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    let mut c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    h.push_event(gst::event::StreamStart::new("m"));
    let caps = gst::Caps::from_str("video/x-raw,format=GRAY8,width=4,height=2").unwrap();
    h.push_event(gst::event::Caps::new(&caps));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    // A crop (crosses) and an affine transformation (no encoding: counted).
    let mut b = gst::Buffer::from_slice(vec![0u8; 8]);
    {
        let b = b.get_mut().unwrap();
        gst_video::VideoCropMeta::add(b, (1, 0, 2, 2));
        gst_video::VideoAffineTransformationMeta::add(b, None);
    }
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    // A custom meta over max-meta-bytes: not sent, the buffer still is.
    gst::meta::CustomMeta::register("SinkTestMeta", &[]);
    let mut b = gst::Buffer::from_slice(vec![0u8; 8]);
    {
        let mut m = gst::meta::CustomMeta::add(b.get_mut().unwrap(), "SinkTestMeta").unwrap();
        m.mut_structure().set("big", "x".repeat(2000));
    }
    assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));

    let mut a = Assembly::default();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        match next(&mut c) {
            Event::Side { payload, .. } => {
                if let Side::MetaPiece(body) = Side::decode(&payload).unwrap() {
                    assert!(frames.is_empty(), "only the first buffer's metas go");
                    assert_eq!(a.piece(&body, 1 << 20).unwrap(), Piece::Whole);
                }
            }
            Event::Frame(f) => frames.push(BufferMeta::decode(f.meta()).unwrap()),
            Event::End { reason } => panic!("{reason}"),
        }
    }
    assert_ne!(frames[0].metas_tag, 0);
    assert_eq!(frames[1].metas_tag, 0, "its metas were not sent");
    let list = a
        .take(frames[0].metas_tag)
        .expect("the list of the first buffer");
    let got = metas::decode(&list, metas::Frame::of(Some(&caps))).unwrap();
    assert_eq!(got[0], Carried::Crop([1, 0, 2, 2]));
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    let sent = stats.get::<u64>("metas").unwrap();
    let not_sent = stats.get::<u64>("metas-not-sent").unwrap();
    assert_eq!(sent as usize, got.len());
    assert_eq!(sent + not_sent, 3, "{stats}");
    if !metas::gstreamer_serializes() {
        // GStreamer 1.22: the affine transformation has no form to travel in.
        assert_eq!(got.len(), 1, "{got:?}");
    }
}

#[test]
fn consumers_caps_answer_the_sinks_caps_query_and_cannot_make_negotiation_fail() {
    init();
    let path = sock("notes");
    let (h, a) = sink_harness(&path);
    let pad = h.element().unwrap().static_pad("sink").unwrap();
    // As videotestsrc asks: what of all it can make may it send?
    let video = gst::Caps::from_str("video/x-raw").unwrap();
    let q = || pad.query_caps(Some(&video));
    let settle = |want: &dyn Fn(&gst::Caps) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let caps = q();
            if want(&caps) {
                return caps;
            }
            assert!(std::time::Instant::now() < deadline, "caps stay {caps}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(q(), video, "no consumer said anything");
    a.send_note(b"caps:video/x-raw, format=(string)RGBA")
        .unwrap();
    let rgba = gst::Caps::from_str("video/x-raw,format=RGBA").unwrap();
    settle(&|c| *c == rgba);
    // An upstream that can make only I420 (a decoder) may still send it: no
    // consumer can make the producer's negotiation fail.
    let i420 = gst::Caps::from_str("video/x-raw,format=I420").unwrap();
    assert_eq!(pad.query_caps(Some(&i420)), i420);
    // Garbage, ANY and a note that is no caps say nothing.
    let b = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    for junk in [
        &b"\xff\xfe"[..],
        b"caps:ANY",
        b"caps:video/x-raw,width=[",
        b"hello",
    ] {
        b.send_note(junk).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q(), rgba, "junk notes are ignored");
    // A consumer that takes nothing the first does: its word is set aside (the
    // earlier consumer's stands), never turned into caps nobody can negotiate.
    b.send_note(b"caps:video/x-raw, format=(string)I420")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q(), rgba, "the later consumer cannot override the earlier");
    drop(b);
    // Alone, the later consumer decides: the earlier one leaves, it stays.
    let c = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    c.send_note(b"caps:video/x-raw, format=(string)I420")
        .unwrap();
    drop(a);
    settle(&|caps| *caps == i420);
    drop(c);
    settle(&|caps| *caps == video);
}

#[test]
fn a_consumer_that_sent_no_note_gets_every_buffer_while_upstream_negotiates_for_another() {
    // A consumer of the frame channel alone (no note: it takes any caps) and one
    // whose downstream takes GRAY8 only, which upstream says it could make (an
    // appsrc with no caps of its own answers ANY) but does not: the sink asks
    // upstream to negotiate again and holds nothing back from the first one
    // meanwhile (before: 1 s of buffers held back from both).
    init();
    let path = sock("silent-beside-a-wish");
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! shmringsink name=sink socket-path={path}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (appsrc, sink) = (
        pipeline.by_name("src").unwrap(),
        pipeline.by_name("sink").unwrap(),
    );
    // Upstream answers caps queries as a decoder with a broad template does: any
    // raw video (it then keeps its own caps when asked to negotiate again).
    appsrc
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::QUERY_UPSTREAM, |_, info| {
            let Some(gst::PadProbeData::Query(q)) = &mut info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::QueryViewMut::Caps(q) = q.view_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let any = gst::Caps::new_empty_simple("video/x-raw");
            let result = match q.filter() {
                Some(f) => f.intersect(&any),
                None => any,
            };
            q.set_result(&result);
            gst::PadProbeReturn::Handled
        });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::path::Path::new(&path).exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut silent = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    let wanting = Consumer::connect(&path, ConsumerConfig::default()).unwrap();
    wanting
        .send_note(b"caps:video/x-raw, format=(string)GRAY8")
        .unwrap();
    // The note is read on the producer's service thread.
    std::thread::sleep(Duration::from_millis(200));
    let caps = gst::Caps::from_str("video/x-raw,format=I420,width=4,height=2").unwrap();
    for i in 0..20u8 {
        let sample = gst::Sample::builder()
            .buffer(&gst::Buffer::from_slice(vec![i; 12]))
            .caps(&caps)
            .build();
        let r = appsrc.emit_by_name::<gst::FlowReturn>("push-sample", &[&sample]);
        assert_eq!(r, gst::FlowReturn::Ok);
        let f = next_frame(&mut silent);
        assert_eq!(f.to_vec()[0], i);
    }
    let stats = sink.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("held-back").unwrap(), 0, "{stats}");
    drop(wanting);
    pipeline.set_state(gst::State::Null).unwrap();
}
