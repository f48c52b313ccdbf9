//! GStreamer's own tests of its IPC elements, re-created against ours: every test
//! of `unixfd.c` and `shm.c` (gst-plugins-bad's `tests/check/elements/`), their
//! scenarios and assertions with `shmringsink`/`shmringsrc` in place of
//! `unixfdsink`/`unixfdsrc` and `shmsink`/`shmsrc`. Where a test asserts the other
//! element's own implementation, it is adapted, and a comment says where and why.
//! Both pipelines run in this process, over a real socket and real memfds.

mod common;

use std::time::Duration;

use common::{init, sock};
use gst::prelude::*;
use gst_check::Harness;

fn launch(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Plays `p` and waits until it has prerolled (unixfd.c's `wait_preroll`).
fn wait_preroll(p: &gst::Pipeline) {
    assert_ne!(p.set_state(gst::State::Playing), Err(gst::StateChangeError));
    let (r, _, _) = p.state(gst::ClockTime::from_seconds(60));
    assert_eq!(r, Ok(gst::StateChangeSuccess::Success), "no preroll");
}

fn by_name(p: &gst::Pipeline, name: &str) -> gst::Element {
    p.by_name(name).unwrap()
}

/// Pushes `buffer` with `caps` and `segment` through an `appsrc` (its
/// `push-sample` action).
fn push_sample(
    appsrc: &gst::Element,
    buffer: gst::Buffer,
    caps: Option<&gst::Caps>,
    segment: &gst::FormattedSegment<gst::ClockTime>,
) {
    let mut sample = gst::Sample::builder().buffer(&buffer).segment(segment);
    if let Some(c) = caps {
        sample = sample.caps(c);
    }
    let r = appsrc.emit_by_name::<gst::FlowReturn>("push-sample", &[&sample.build()]);
    assert_eq!(r, gst::FlowReturn::Ok);
}

/// The next sample of an `appsink` (its `try-pull-sample` action, 60 s at most).
fn pull_sample(appsink: &gst::Element) -> gst::Sample {
    appsink
        .emit_by_name::<Option<gst::Sample>>("try-pull-sample", &[&60_000_000_000u64])
        .expect("a sample within 60 s")
}

fn stop(p: &gst::Pipeline) {
    assert_eq!(
        p.set_state(gst::State::Null),
        Ok(gst::StateChangeSuccess::Success)
    );
}

// unixfd.c

/// unixfd.c's service (`appsrc` with `props` into the sink, not waiting on the
/// clock) and client (the source into an `appsink`), both playing: the
/// pipelines, the `appsrc` and the `appsink`.
fn appsrc_to_appsink(
    path: &str,
    props: &str,
) -> (gst::Pipeline, gst::Element, gst::Pipeline, gst::Element) {
    let service = launch(&format!(
        "appsrc name=src format=time {props} ! shmringsink socket-path={path} sync=false async=false wait-for-connection=true"
    ));
    assert_eq!(
        service.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Success)
    );
    let client = launch(&format!(
        "shmringsrc socket-path={path} ! appsink name=sink sync=false async=false"
    ));
    assert_eq!(
        client.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Success)
    );
    let (appsrc, appsink) = (by_name(&service, "src"), by_name(&client, "sink"));
    (service, appsrc, client, appsink)
}

#[test]
fn unixfd_videotestsrc() {
    init();
    gst::meta::CustomMeta::register("unix-fd-custom-meta", &[]);
    let path = sock("own-unixfd-videotestsrc");
    let service = launch(&format!(
        "videotestsrc name=src ! shmringsink socket-path={path}"
    ));
    // A custom meta on each buffer.
    let pad = by_name(&service, "src").static_pad("src").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
            let mut m = gst::meta::CustomMeta::add(b.make_mut(), "unix-fd-custom-meta").unwrap();
            m.mut_structure().set("field", 42i32);
        }
        gst::PadProbeReturn::Ok
    });
    wait_preroll(&service);
    let client = format!("shmringsrc socket-path={path} ! fakesink name=sink");
    let client_1 = launch(&client);
    wait_preroll(&client_1);
    // Disconnect, reconnect.
    assert_eq!(
        client_1.set_state(gst::State::Ready),
        Ok(gst::StateChangeSuccess::Success)
    );
    wait_preroll(&client_1);
    // A second client.
    let client_2 = launch(&client);
    wait_preroll(&client_2);
    // It received the custom meta.
    let sample = by_name(&client_2, "sink")
        .property::<Option<gst::Sample>>("last-sample")
        .expect("a last sample");
    let buffer = sample.buffer().unwrap();
    let meta = gst::meta::CustomMeta::from_buffer(buffer, "unix-fd-custom-meta")
        .expect("the custom meta crossed");
    assert_eq!(meta.structure().get::<i32>("field").unwrap(), 42);
    stop(&client_1);
    stop(&client_2);
    stop(&service);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket is gone once the service stops"
    );
}

#[test]
fn unixfd_segment() {
    init();
    let path = sock("own-unixfd-segment");
    let caps = gst::Caps::new_empty_simple("video/x-raw");
    let (service, appsrc, client, appsink) = appsrc_to_appsink(&path, "handle-segment-change=true");
    // A buffer with PTS 30 s.
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    let mut b = gst::Buffer::new();
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(30));
    push_sample(&appsrc, b, Some(&caps), &segment);
    let first = pull_sample(&appsink);
    // A buffer with PTS 1 s, in a segment whose base is 30 s.
    segment.set_base(gst::ClockTime::from_seconds(30));
    let mut b = gst::Buffer::new();
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(1));
    push_sample(&appsrc, b, Some(&caps), &segment);
    let second = pull_sample(&appsink);
    // They are 1 s apart. Adapted: unixfdsrc turns every timestamp into the
    // producer's running time, so unixfd.c compares PTS; shmringsrc keeps PTS and
    // segment as they were (as one process would: the second PTS is 1 s), so the
    // running times, which is what "1 s apart" means, are compared.
    let running = |s: &gst::Sample| {
        let seg = s
            .segment()
            .unwrap()
            .downcast_ref::<gst::ClockTime>()
            .unwrap()
            .clone();
        seg.to_running_time(s.buffer().unwrap().pts().unwrap())
            .unwrap()
    };
    assert_eq!(
        running(&second) - running(&first),
        gst::ClockTime::from_seconds(1)
    );
    assert_eq!(
        second.buffer().unwrap().pts(),
        Some(gst::ClockTime::from_seconds(1))
    );
    stop(&client);
    stop(&service);
}

#[test]
fn unixfd_big_payload() {
    init();
    let path = sock("own-unixfd-big-payload");
    let caps = gst::Caps::new_empty_simple("video/x-raw");
    let (service, appsrc, client, appsink) = appsrc_to_appsink(&path, "");
    // A buffer whose custom meta holds 1 MB.
    let data = gst::Buffer::from_slice(vec![0x42u8; 1_000_000]);
    gst::meta::CustomMeta::register_simple("test_unixfd_big_payload");
    let mut b = gst::Buffer::new();
    {
        let mut m =
            gst::meta::CustomMeta::add(b.get_mut().unwrap(), "test_unixfd_big_payload").unwrap();
        m.mut_structure().set("data", &data);
    }
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    push_sample(&appsrc, b, Some(&caps), &segment);
    let sample = pull_sample(&appsink);
    let meta =
        gst::meta::CustomMeta::from_buffer(sample.buffer().unwrap(), "test_unixfd_big_payload")
            .expect("the custom meta crossed");
    let out = meta.structure().get::<gst::Buffer>("data").unwrap();
    assert_eq!(
        *out.map_readable().unwrap(),
        *data.map_readable().unwrap(),
        "the same megabyte"
    );
    stop(&client);
    stop(&service);
}

// shm.c: its fixture puts each element between test pads (a harness here).

/// shm.c's `setup_shm`: a sink and a source on one socket, both playing.
fn setup_shm(tag: &str) -> (Harness, Harness) {
    init();
    let path = sock(tag);
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .property("socket-path", &path)
            .build()
            .unwrap()
    };
    let mut sink = Harness::with_element(&make("shmringsink"), Some("sink"), None);
    sink.play();
    let mut src = Harness::with_element(&make("shmringsrc"), None, Some("src"));
    src.play();
    (sink, src)
}

#[test]
fn shm_sysmem_alloc() {
    let (mut sink, mut src) = setup_shm("own-shm-sysmem-alloc");
    // No caps: a stream-start, a BYTES segment and 1000 bytes.
    assert!(sink.push_event(gst::event::StreamStart::new("test")));
    let segment = gst::FormattedSegment::<gst::format::Bytes>::new();
    assert!(sink.push_event(gst::event::Segment::new(&segment)));
    let buffer = gst::Buffer::with_size(1000).unwrap();
    assert_eq!(sink.push(buffer), Ok(gst::FlowSuccess::Ok));
    let (r, state, pending) = sink
        .element()
        .unwrap()
        .state(gst::ClockTime::from_seconds(60));
    assert_eq!(r, Ok(gst::StateChangeSuccess::Success));
    assert_eq!(state, gst::State::Playing);
    assert_eq!(pending, gst::State::VoidPending);
    let got = src.pull().expect("the buffer arrives");
    assert_eq!(got.size(), 1000);
}

#[test]
fn shm_alloc() {
    let (mut sink, mut src) = setup_shm("own-shm-alloc");
    let caps = gst::Caps::new_empty_simple("application/x-test");
    assert!(sink.push_event(gst::event::StreamStart::new("test")));
    assert!(sink.push_event(gst::event::Caps::new(&caps)));
    let segment = gst::FormattedSegment::<gst::format::Bytes>::new();
    assert!(sink.push_event(gst::event::Segment::new(&segment)));
    let mut query = gst::query::Allocation::new(Some(&caps), false);
    assert!(sink.srcpad().unwrap().peer_query(&mut query));
    // Adapted: shmsink offers its shared-memory allocator here and shm.c allocates
    // a buffer of its whole area from it, which would block if shmsink copied it.
    // shmringsink offers its slots as a pool for raw video and audio, whose sizes
    // it knows; for other caps it offers nothing, copies each buffer once into a
    // slot, and must never block doing it. So: the query is answered, and a
    // buffer of the largest size a slot takes crosses whole.
    assert_eq!(query.allocation_params().len(), 0);
    let size = 16 << 20;
    let buffer = gst::Buffer::with_size(size).unwrap();
    assert_eq!(sink.push(buffer), Ok(gst::FlowSuccess::Ok));
    let got = src.pull().expect("the buffer arrives");
    assert_eq!(got.size(), size);
}

#[test]
fn shm_live() {
    init();
    let path = sock("own-shm-live");
    let producer = launch(&format!(
        "fakesrc sizetype=2 ! shmringsink socket-path={path} wait-for-connection=false"
    ));
    assert_ne!(
        producer.set_state(gst::State::Playing),
        Err(gst::StateChangeError)
    );
    // Adapted: shmsrc has `is-live`; shmringsrc is live when its producer is, so
    // the consumer here is as shm.c makes it otherwise.
    let consumer = launch(&format!(
        "shmringsrc socket-path={path} ! appsink name=sink async=false enable-last-sample=false"
    ));
    assert_ne!(
        consumer.set_state(gst::State::Playing),
        Err(gst::StateChangeError)
    );
    let (r, _, _) = consumer.state(gst::ClockTime::from_seconds(60));
    assert_eq!(r, Ok(gst::StateChangeSuccess::Success));
    let sample = pull_sample(&by_name(&consumer, "sink"));
    assert!(sample.buffer().is_some());
    assert_ne!(
        producer.set_state(gst::State::Null),
        Err(gst::StateChangeError)
    );
    assert_ne!(
        consumer.set_state(gst::State::Null),
        Err(gst::StateChangeError)
    );
}

#[test]
fn shm_stop_no_error() {
    init();
    let path = sock("own-shm-stop");
    let pipeline = launch(&format!(
        "fakesrc num-buffers=5 sizetype=2 ! shmringsink socket-path={path} wait-for-connection=false"
    ));
    let bus = pipeline.bus().unwrap();
    assert_ne!(
        pipeline.set_state(gst::State::Playing),
        Err(gst::StateChangeError)
    );
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within 5 s");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let _ = pipeline.set_state(gst::State::Null);
    // No error posted while shutting down.
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "an error on the bus during a clean shutdown"
    );
    std::thread::sleep(Duration::from_millis(10));
}
