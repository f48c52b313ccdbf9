//! What the element tests share: GStreamer set up with the plugin, socket paths,
//! harnesses of each element, and the frame channel's other end played directly with
//! `shmring` (real sockets and memfds).
#![allow(dead_code)] // each test binary uses its own share of these

use std::str::FromStr;
use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;
use gstshmring::codec::{self, BufferMeta, Side};
use shmring::{Consumer, ConsumerConfig, Event, Producer, ProducerConfig};

#[allow(unused_imports)] // each test binary uses its own share
pub use testkit::{first_error, init_gst as init};

/// A fresh socket path (see [`testkit::socket_path`]), as the elements' properties
/// take it.
pub fn sock(tag: &str) -> String {
    testkit::socket_path(tag).to_string_lossy().into_owned()
}

/// A producer on a fresh socket path (tagged `tag`) that sent caps `caps`: the
/// other end of a source under test.
pub fn producer_with_caps(tag: &str, caps: &str) -> (String, Producer) {
    let path = sock(tag);
    let p = Producer::bind(&path, ProducerConfig::default()).unwrap();
    p.send_side(
        &Side::Caps(gst::Caps::from_str(caps).unwrap()).encode(),
        codec::key::CAPS,
    )
    .unwrap();
    (path, p)
}

/// A playing `shmringsink` harness on `path`, and a consumer connected to it.
pub fn sink_harness(path: &str) -> (Harness, Consumer) {
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", path)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), None);
    h.play();
    let c = Consumer::connect(path, ConsumerConfig::default()).unwrap();
    (h, c)
}

pub fn next(c: &mut Consumer) -> Event {
    c.recv_timeout(Duration::from_secs(60)).unwrap()
}

pub fn side(c: &mut Consumer) -> Side {
    match next(c) {
        Event::Side { payload, .. } => Side::decode(&payload).unwrap(),
        other => panic!("expected a side message, got {other:?}"),
    }
}

pub fn publish(p: &Producer, bytes: &[u8], m: &BufferMeta) {
    let mut s = p.acquire(bytes.len()).unwrap();
    s.write(0, bytes).unwrap();
    s.publish(bytes.len(), &m.encode()).unwrap();
}

pub fn meta(pts_ms: u64) -> BufferMeta {
    BufferMeta {
        pts: pts_ms * 1_000_000,
        dts: codec::NONE,
        duration: 10_000_000,
        offset: 3,
        offset_end: 4,
        base_time: codec::NONE,
        flags: 0,
        video: None,
        list_continues: false,
        metas_tag: 0,
    }
}

pub fn src_harness(path: &str, copy: bool) -> Harness {
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

/// An honest producer comes up on `path`: the reconnecting source of `pipeline`
/// streams from it (its buffer reaches `appsink`), and no error reached the bus.
pub fn takes_the_honest_producer(
    path: &str,
    pipeline: &gst::Pipeline,
    appsink: &gst::Element,
    payload: &[u8],
) {
    let honest = Producer::bind(path, ProducerConfig::default()).unwrap();
    honest
        .send_side(
            &Side::Caps(gst::Caps::from_str("application/x-test").unwrap()).encode(),
            codec::key::CAPS,
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

pub fn planar_caps() -> gst::Caps {
    gst::Caps::from_str(
        "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=non-interleaved,channel-mask=(bitmask)0x3",
    )
    .unwrap()
}

/// A playing `shmringsink` on `tag`'s socket (no last sample, a patient block
/// timeout) fed `caps`, and the pool it proposes upstream, active: the element, the
/// harness, the socket path, the pool, its buffer size and its most buffers.
pub fn sink_pool(
    tag: &str,
    caps: &str,
) -> (gst::Element, Harness, String, gst::BufferPool, u32, u32) {
    // The pool's own arithmetic, on a fixed arena.
    sink_pool_of(tag, caps, 8)
}

/// [`sink_pool`] with `slots` slots per arena (0: automatic).
pub fn sink_pool_of(
    tag: &str,
    caps: &str,
    slots: u32,
) -> (gst::Element, Harness, String, gst::BufferPool, u32, u32) {
    init();
    let path = sock(tag);
    let e = gst::ElementFactory::make("shmringsink")
        .property("socket-path", &path)
        .property("enable-last-sample", false)
        .property("block-timeout", 60_000u32)
        .property("slots", slots)
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
pub fn fill_pool_buffer(
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
pub fn next_frame(c: &mut Consumer) -> shmring::Frame {
    loop {
        if let Event::Frame(f) = next(c) {
            return f;
        }
    }
}
