//! `shmringsink`: serves buffers to any number of `shmringsrc`s over the frame channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use shmring::frame::Policy;
use shmring::{Producer, ProducerConfig};

use super::pool::SlotPool;
use super::session::{self, TagKeys};
use super::{CAT, ShmringSink};
use crate::codec::{self, Side, ct};
use crate::element::{Place, Role, one_pad_element, place_uri_handler};
use crate::units::{from_ms, from_us, ms, us};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, glib::Enum)]
#[repr(i32)]
#[enum_type(name = "GstShmringSlowConsumer")]
pub(super) enum SlowConsumer {
    #[enum_value(
        name = "Block up to block-timeout, then disconnect the consumer",
        nick = "block"
    )]
    Block = 0,
    #[enum_value(name = "Drop frames for that consumer only", nick = "drop")]
    Drop = 1,
    /// A live stream goes on at its own pace: no consumer may hold it up for the
    /// others. A stream that is not live waits for its slowest consumer, as a
    /// `tee` does in one process.
    #[default]
    #[enum_value(
        name = "Drop for live streams (no consumer holds up the others), block for others",
        nick = "auto"
    )]
    Auto = 2,
}

// Defaults: the frame channel's own.
const DEFAULT_SOCKET_MODE: u32 = ProducerConfig::DEFAULT_SOCKET_MODE;
const DEFAULT_MAX_CONSUMERS: u32 = ProducerConfig::DEFAULT_MAX_CONSUMERS as u32;
/// `slots` 0: automatic, the frame channel's default for large frames and more for
/// small ones, as many as fit in `SMALL_FRAMES_ARENA` (at most 64).
const DEFAULT_SLOTS: u32 = 0;
const SMALL_FRAMES_ARENA: usize = 4 << 20;
const DEFAULT_BLOCK_TIMEOUT: Duration = ProducerConfig::DEFAULT_BLOCK_TIMEOUT;
const DEFAULT_SPIN_TIME: Duration = ProducerConfig::DEFAULT_SPIN;

/// What the sink does when a consumer joins whose downstream cannot take the
/// stream's current caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, glib::Enum)]
#[enum_type(name = "GstShmringLateConsumerCaps")]
pub enum LateConsumerCaps {
    /// Ask upstream to negotiate again (a reconfigure event), with what every
    /// consumer accepts; buffers in the old caps are not sent meanwhile.
    #[default]
    #[enum_value(name = "Renegotiate upstream", nick = "renegotiate")]
    Renegotiate,
    /// Disconnect that consumer, telling it why; the stream goes on unchanged.
    #[enum_value(name = "Refuse the consumer", nick = "refuse")]
    Refuse,
}

#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// `socket-path` or `producer-name`.
    pub(super) place: Place,
    pub(super) consumer_fd: i32,
    pub(super) socket_mode: u32,
    pub(super) allowed_uids: String,
    pub(super) max_consumers: u32,
    pub(super) slots: u32,
    pub(super) on_slow: SlowConsumer,
    /// `block-timeout` (ms).
    pub(super) block_timeout: Duration,
    /// `spin-time` (µs).
    pub(super) spin_time: Duration,
    pub(super) wait_for_connection: bool,
    /// `max-meta-bytes`.
    pub(super) max_meta_bytes: u32,
    /// `late-consumer-caps`.
    pub(super) late_caps: LateConsumerCaps,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            place: Place::default(),
            consumer_fd: -1,
            socket_mode: DEFAULT_SOCKET_MODE,
            allowed_uids: String::new(),
            max_consumers: DEFAULT_MAX_CONSUMERS,
            slots: DEFAULT_SLOTS,
            on_slow: SlowConsumer::Auto,
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
            spin_time: DEFAULT_SPIN_TIME,
            wait_for_connection: false,
            max_meta_bytes: crate::codec::metas::DEFAULT_MAX_BYTES,
            late_caps: LateConsumerCaps::Renegotiate,
        }
    }
}

/// The figures `stats` shows, written where they happen (relaxed: each is a
/// count on its own, read by other threads).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) copies: AtomicU64,
    pub(super) zero_copy: AtomicU64,
    /// Metas sent with buffers.
    pub(super) metas: AtomicU64,
    /// Metas that could not go (no encoding for them, or over `max-meta-bytes`).
    pub(super) metas_not_sent: AtomicU64,
    /// Buffers not sent while upstream renegotiated.
    pub(super) held_back: AtomicU64,
}

impl Counters {
    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        for c in [
            &self.copies,
            &self.zero_copy,
            &self.metas,
            &self.metas_not_sent,
            &self.held_back,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

pub(super) struct State {
    pub(super) producer: Arc<Producer>,
    pub(super) segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    pub(super) waited: bool,
    /// Non-interleaved audio caps: buffers are published with tightly packed planes.
    pub(super) planar: Option<gst_audio::AudioInfo>,
    /// The next buffer follows a flush: mark it DISCONT.
    pub(super) flushed: bool,
    /// Upstream latency told to consumers (sent again when it changes).
    pub(super) latency: Option<(bool, u64, u64)>,
    /// Tag events kept for consumers that join later (keys `TAGS..`), since the
    /// last buffer before them; `tags_then_data`: a buffer went out since.
    pub(super) tag_keys: TagKeys,
    /// The tag of the last meta list sent (1..=65535, wrapping).
    pub(super) metas_tag: u16,
    /// Meta names logged as not sent.
    pub(super) logged: crate::codec::metas::LoggedOnce,
    /// What the consumers want and what upstream was asked (see `negotiation`).
    pub(super) negotiation: super::negotiation::Negotiation,
    /// `wait-for-connection` and `max-meta-bytes`, as `render` reads them (kept
    /// up to date by `set_property`).
    pub(super) wait: bool,
    pub(super) max_meta: usize,
}

/// The element's private state.
///
/// Lock order (a lock is never taken while one after it is held): `settings` →
/// `state`; `waker` is taken alone. `render` takes `state` once for a buffer
/// (more only when it must ask upstream its latency, wait for the first consumer,
/// or look at what the consumers want, none of which happens per buffer), and
/// nothing calls into GStreamer while it is held. The counters are atomics.
#[derive(Default)]
pub struct Sink {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<Option<State>>,
    pub(super) counters: Counters,
    /// Interrupts a blocked render (unlock); cloned out of the producer at start.
    pub(super) waker: Mutex<Option<shmring::Waker>>,
    /// The buffer being rendered is one of a buffer list with more to follow.
    pub(super) list_continues: std::sync::atomic::AtomicBool,
}

/// An `allowed-uids` entry that is no uid.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad uid {0:?} in allowed-uids")]
pub(super) struct BadUid(String);

pub(super) fn parse_uids(s: &str) -> Result<Vec<u32>, BadUid> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().map_err(|_| BadUid(t.to_owned())))
        .collect()
}

#[glib::object_subclass]
impl ObjectSubclass for Sink {
    const NAME: &'static str = "GstShmringSink";
    type Type = ShmringSink;
    type ParentType = gst_base::BaseSink;
    type Interfaces = (gst::URIHandler,);
}

place_uri_handler!(Sink, gst::URIType::Sink);

impl ObjectImpl for Sink {
    fn constructed(&self) {
        self.parent_constructed();
        // A kept last sample would pin a shared slot (consumers' memory) for a
        // snapshot nobody asked for, and one more slot in rotation costs cache.
        self.obj().set_enable_last_sample(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let place = Place::properties(Role::Serves);
            place.into_iter().chain([
                glib::ParamSpecInt::builder("consumer-fd")
                    .nick("Consumer fd")
                    .blurb("A connected socket to a consumer (the other end of a socketpair, e.g. inherited by a sandboxed shmringsrc socket-fd=N), served from start in addition to socket-path, or instead of it (-1: none). The element uses a duplicate; the application keeps its fd")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("socket-mode")
                    .nick("Socket mode")
                    .blurb("File mode of the socket (0600 by default: only this user may connect)")
                    .maximum(0o777)
                    .default_value(DEFAULT_SOCKET_MODE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("allowed-uids")
                    .nick("Allowed uids")
                    .blurb("Comma-separated user ids allowed to connect (checked with SO_PEERCRED); empty: anyone the socket mode lets in")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-consumers")
                    .nick("Maximum consumers")
                    .blurb("Consumers served at once; more are refused")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(DEFAULT_MAX_CONSUMERS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Slots")
                    .blurb("Shared-memory slots per arena (buffers in flight across all consumers). 0: automatic, 8 for large buffers and more for small ones, as many as fit in 4 MiB up to 64 (a producer of small buffers then runs further ahead of its consumers: fewer sleeps and wake-ups on a busy machine)")
                    .minimum(0)
                    .maximum(4096)
                    .default_value(DEFAULT_SLOTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder::<SlowConsumer>("on-slow-consumer")
                    .nick("On slow consumer")
                    .blurb("What to do when a consumer cannot take the next buffer: block (wait up to block-timeout, then disconnect it), drop (skip buffers for that consumer alone), or auto (drop when upstream is live, so that no consumer holds up the others; block otherwise, as a tee does)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("block-timeout")
                    .nick("Block timeout")
                    .blurb("Milliseconds to wait for a slow consumer (block policy), a free slot or a consumer's socket before disconnecting that consumer")
                    .minimum(1)
                    .default_value(ms(DEFAULT_BLOCK_TIMEOUT))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("spin-time")
                    .nick("Spin time")
                    .blurb("Microseconds to poll, when a consumer has to take a buffer or release a slot before this one can go on, before sleeping on its doorbell (0: sleep at once)")
                    .maximum(1_000_000)
                    .default_value(us(DEFAULT_SPIN_TIME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("wait-for-connection")
                    .nick("Wait for connection")
                    .blurb("Hold the first buffer until a consumer is connected (otherwise buffers with no consumer are dropped)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-meta-bytes")
                    .nick("Maximum meta bytes")
                    .blurb("Most bytes the metas of one buffer may take across the transport (timecodes, captions, regions of interest, custom metas...); a buffer's metas over it are not sent, and counted in stats. Each consumer may queue this much on its socket on top of the usual 1 MiB")
                    .minimum(1024)
                    .maximum(64 << 20)
                    .default_value(crate::codec::metas::DEFAULT_MAX_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder::<LateConsumerCaps>("late-consumer-caps")
                    .nick("Late consumer caps")
                    .blurb("When a consumer joins whose downstream cannot take the current caps: renegotiate upstream (caps queries answer what every consumer accepts) or refuse that consumer")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, bytes, copies, zero-copy, held-back (buffers not sent while upstream renegotiated for a consumer), metas (sent), metas-not-sent (no way to cross, or over max-meta-bytes), consumers, drops, cut-off, probes (device monitors asking what it serves: never consumers), free-slots, and per consumer id, pid, uid, frames, bytes, drops, held")
                    .read_only()
                    .build(),
            ]).collect()
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        if s.place.set_property(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "consumer-fd" => s.consumer_fd = value.get().unwrap(),
            "socket-mode" => s.socket_mode = value.get().unwrap(),
            "allowed-uids" => {
                s.allowed_uids = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "max-consumers" => s.max_consumers = value.get().unwrap(),
            "slots" => s.slots = value.get().unwrap(),
            "on-slow-consumer" => s.on_slow = value.get().unwrap(),
            "block-timeout" => s.block_timeout = from_ms(value),
            "spin-time" => s.spin_time = from_us(value),
            "wait-for-connection" => s.wait_for_connection = value.get().unwrap(),
            "max-meta-bytes" => s.max_meta_bytes = value.get().unwrap(),
            "late-consumer-caps" => s.late_caps = value.get().unwrap(),
            other => unreachable!("no property {other}"),
        }
        let (wait, max_meta) = (s.wait_for_connection, s.max_meta_bytes as usize);
        if let Some(st) = self.state.lock().unwrap().as_mut() {
            st.wait = wait;
            st.max_meta = max_meta;
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap().clone();
        if let Some(v) = s.place.property(pspec.name()) {
            return v;
        }
        match pspec.name() {
            "consumer-fd" => s.consumer_fd.to_value(),
            "socket-mode" => s.socket_mode.to_value(),
            "allowed-uids" => s.allowed_uids.to_value(),
            "max-consumers" => s.max_consumers.to_value(),
            "slots" => s.slots.to_value(),
            "on-slow-consumer" => s.on_slow.to_value(),
            "block-timeout" => ms(s.block_timeout).to_value(),
            "spin-time" => us(s.spin_time).to_value(),
            "wait-for-connection" => s.wait_for_connection.to_value(),
            "max-meta-bytes" => s.max_meta_bytes.to_value(),
            "late-consumer-caps" => s.late_caps.to_value(),
            "stats" => self.stats().to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

one_pad_element!(
    Sink,
    "shmring sink",
    "Sink/Video/Audio",
    "Serves raw buffers, caps and events to shmringsrc consumers in other processes through sealed shared memory; consumers cannot crash, stall or write to it",
    "sink",
    gst::PadDirection::Sink
);

impl BaseSinkImpl for Sink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let path = s
            .place
            .path(Role::Serves)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
        if path.is_none() && s.consumer_fd < 0 {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["none of socket-path, producer-name and consumer-fd is set"]
            ));
        }
        let uids = parse_uids(&s.allowed_uids)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
        let cfg = ProducerConfig {
            slots: if s.slots == 0 {
                ProducerConfig::DEFAULT_SLOTS
            } else {
                s.slots.max(2)
            },
            small_frames_arena: if s.slots == 0 { SMALL_FRAMES_ARENA } else { 0 },
            max_consumers: s.max_consumers as usize,
            // auto: blocking until upstream says it is live (see tell_latency).
            policy: match s.on_slow {
                SlowConsumer::Block | SlowConsumer::Auto => Policy::Block,
                SlowConsumer::Drop => Policy::Drop,
            },
            block_timeout: s.block_timeout,
            socket_mode: s.socket_mode,
            allowed_uids: uids,
            spin: s.spin_time,
            // Room for a buffer's whole meta list on top of the usual queue: a list
            // is sent before its buffer, all at once.
            max_queued: ProducerConfig::DEFAULT_MAX_QUEUED + s.max_meta_bytes as usize,
            ..Default::default()
        };
        let producer = match &path {
            Some(path) => {
                let p = Producer::bind(path, cfg).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenWrite,
                        ["Cannot serve on {}: {}", path, e]
                    )
                })?;
                gst::info!(CAT, imp = self, "serving on {path}");
                p
            }
            None => Producer::new(cfg).map_err(|e| {
                gst::error_msg!(gst::ResourceError::OpenWrite, ["Cannot serve: {}", e])
            })?,
        };
        if s.consumer_fd >= 0 {
            let fd = s.consumer_fd;
            crate::dup_app_fd(fd)
                .map_err(|e| e.to_string())
                .and_then(|dup| producer.add_connection(dup).map_err(|e| e.to_string()))
                .map_err(|e| {
                    gst::error_msg!(gst::ResourceError::Settings, ["consumer-fd {}: {}", fd, e])
                })?;
            gst::info!(CAT, imp = self, "serving the consumer on fd {fd}");
        }
        *self.waker.lock().unwrap() = Some(producer.waker());
        self.counters.reset();
        *self.state.lock().unwrap() = Some(State {
            producer: Arc::new(producer),
            segment: None,
            waited: false,
            planar: None,
            flushed: false,
            latency: None,
            tag_keys: TagKeys::default(),
            metas_tag: 0,
            logged: Default::default(),
            negotiation: Default::default(),
            wait: s.wait_for_connection,
            max_meta: s.max_meta_bytes as usize,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(st) = self.state.lock().unwrap().take() {
            self.log_events(&st.producer);
            gst::info!(
                CAT,
                imp = self,
                "stopped: {} buffers zero-copy, {} copied; {:?}",
                Counters::get(&self.counters.zero_copy),
                Counters::get(&self.counters.copies),
                st.producer.stats()
            );
        }
        *self.waker.lock().unwrap() = None;
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(w) = self.waker.lock().unwrap().as_ref() {
            w.wake();
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(w) = self.waker.lock().unwrap().as_ref() {
            w.take();
        }
        Ok(())
    }

    /// What upstream may send: of what it can make (the query's filter), what the
    /// consumers accept as `negotiation` rules it, if that is anything; otherwise
    /// all it can make (a consumer steers the choice, it never makes the
    /// producer's negotiation fail, e.g. for a decoder whose only format no
    /// consumer takes).
    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let template = self.obj().sink_pad().pad_template_caps();
        let Some(filter) = filter else {
            return Some(template);
        };
        self.await_first_consumer();
        let all = filter.intersect_with_mode(&template, gst::CapsIntersectMode::First);
        if let Some(theirs) = self.narrowed(&all) {
            let wanted = all.intersect_with_mode(&theirs, gst::CapsIntersectMode::First);
            if !wanted.is_empty() {
                return Some(wanted);
            }
            gst::info!(
                CAT,
                imp = self,
                "upstream can make none of what consumers accept ({theirs})"
            );
        }
        Some(all)
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "caps {caps}");
        // Upstream negotiated (again): what it chose goes (consumers it does not
        // suit are refused, never asked for again).
        if let Some(st) = self.state.lock().unwrap().as_mut() {
            st.negotiation.caps_set(std::time::Instant::now());
            st.planar = gst_audio::AudioInfo::from_caps(caps)
                .ok()
                .filter(|i| i.layout() == gst_audio::AudioLayout::NonInterleaved);
            st.latency = None;
            // What a probe (the device provider) is told: these caps, or nothing
            // where they do not fit a description.
            if !codec::description::announce(&st.producer, caps) {
                gst::info!(CAT, imp = self, "caps too long to describe this producer");
            }
        }
        if self.side(&Side::Caps(caps.clone()), codec::key::CAPS) {
            Ok(())
        } else {
            Err(gst::loggable_error!(CAT, "cannot send caps"))
        }
    }

    fn propose_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_propose_allocation(query)?;
        let (caps, need_pool) = query.get_owned();
        // Raw video and audio: a pool of shared slots, so upstream renders in place.
        // Video slots hold a frame; audio slots 100 ms (upstream fills what it
        // needs and sets the size). Other buffers are copied once into a slot.
        let Some(caps) = caps else {
            return Ok(());
        };
        let size = if let Ok(info) = gst_video::VideoInfo::from_caps(&caps) {
            query.add_allocation_meta::<gst_video::VideoMeta>(None);
            info.size() as u32
        } else if let Ok(info) = gst_audio::AudioInfo::from_caps(&caps) {
            (info.rate() / 10).max(1) * info.bpf()
        } else {
            return Ok(());
        };
        if !need_pool || size == 0 {
            return Ok(());
        }
        let Some(producer) = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.producer.clone())
        else {
            return Ok(());
        };
        // Pool buffers stay bound to their slots and are reused once every consumer
        // released them: enough of them that, with one being written, one kept as
        // the last sample and a consumer holding its share (half the slots), the
        // oldest is free again; two slots stay for copies and a new arena.
        let slots = producer.config().slots_for(size as usize);
        let max = slots.saturating_sub(2).max(2);
        let pool = SlotPool::new(&producer);
        let mut config = pool.config();
        config.set_params(Some(&caps), size, 2, max);
        config.add_option("GstBufferPoolOptionVideoMeta");
        pool.set_config(config)
            .map_err(|e| gst::loggable_error!(CAT, "pool config: {e}"))?;
        query.add_allocation_pool(Some(&pool), size, 2, max);
        gst::debug!(
            CAT,
            imp = self,
            "proposed a pool of {max} slots of {size} bytes"
        );
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::StreamStart(e) => {
                let side = Side::StreamStart {
                    stream_id: e.stream_id().to_owned(),
                };
                self.side(&side, codec::key::STREAM_START);
            }
            EventView::Segment(e) => {
                let seg = e.segment().downcast_ref::<gst::ClockTime>().cloned();
                if let Some(st) = self.state.lock().unwrap().as_mut() {
                    st.segment = seg.clone();
                }
                // Timestamps travel as they are: consumers need what they mean.
                // (Other formats than time are not sent: their buffers' times,
                // if any, count from 0.)
                if let Some(seg) = seg {
                    self.side(&Side::Segment(seg), codec::key::SEGMENT);
                }
            }
            EventView::Tag(e) => {
                // A consumer that joins before the stream's first buffer (as with
                // wait-for-connection) gets every tag event sent so far, as an
                // element linked from the start would; one that joins later gets
                // those of the last run of tags.
                let key = self.state.lock().unwrap().as_mut().map(|st| {
                    let (key, forget) = st.tag_keys.next();
                    for k in forget {
                        st.producer.forget_sticky(k);
                    }
                    key
                });
                self.side(&Side::Tags(e.tag_owned()), key.unwrap_or(0));
            }
            EventView::Toc(e) => {
                let (toc, updated) = e.toc();
                self.side(
                    &Side::Toc {
                        toc: toc.to_owned(),
                        updated,
                    },
                    codec::key::TOC,
                );
            }
            EventView::Gap(e) => {
                let (pts, duration) = e.get();
                self.side(
                    &Side::Gap {
                        pts: pts.nseconds(),
                        duration: ct(duration),
                    },
                    0,
                );
            }
            EventView::Eos(_) => {
                self.side(&Side::Eos, 0);
            }
            EventView::CustomDownstream(e) => {
                if let Some(s) = e.structure() {
                    self.side(&Side::Custom(s.to_owned()), 0);
                }
            }
            EventView::CustomDownstreamSticky(e) => {
                // Sticky: replayed to consumers that join later, the latest of
                // each name (as a pad keeps them).
                if let Some(s) = e.structure() {
                    let key = codec::key::custom_sticky(s.name());
                    self.side(&Side::CustomSticky(s.to_owned()), key);
                }
            }
            EventView::FlushStop(_) => {
                // Consumers flush too (what they hold stays theirs) and go on from
                // the segment that follows; the next buffer also says DISCONT.
                if let Some(st) = self.state.lock().unwrap().as_mut() {
                    st.segment = None;
                    st.flushed = true;
                    st.latency = None;
                }
                self.side(&Side::Flush, 0);
            }
            _ => {}
        }
        self.parent_event(event)
    }

    /// A buffer list stays a list: each buffer goes as usual, marked as followed by
    /// more of the list but the last, and the consumer pushes them as one list.
    fn render_list(&self, list: &gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = list.len();
        let mut r = Ok(gst::FlowSuccess::Ok);
        for (i, buffer) in list.iter_owned().enumerate() {
            self.list_continues.store(i + 1 < n, Relaxed);
            r = self.render(&buffer);
            if r.is_err() {
                break;
            }
        }
        self.list_continues.store(false, Relaxed);
        r
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        // What GStreamer says, asked before the state lock is taken.
        let base_time = self.base_time_ns();
        let list_continues = self.list_continues.load(Ordering::Relaxed);
        let mut done = Prepared::default();
        let (producer, m, planes) = loop {
            let mut guard = self.state.lock().unwrap();
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let now = Instant::now();
            // What does not happen per buffer: once per caps or flush, before the
            // first consumer, when the consumers changed.
            let step = if st.latency.is_none() && !done.latency {
                Some(Prepare::Latency)
            } else if st.wait && !st.waited && !done.wait {
                Some(Prepare::Wait)
            } else if !done.decide && st.negotiation.due(st.producer.notes_generation(), now) {
                Some(Prepare::Decide)
            } else {
                None
            };
            if let Some(step) = step {
                let producer = st.producer.clone();
                drop(guard);
                self.prepare(step, &producer, &mut done)?;
                continue;
            }
            if !st.negotiation.flows(now) {
                Counters::add(&self.counters.held_back, 1);
                return Ok(gst::FlowSuccess::Ok);
            }
            st.waited |= st.wait;
            st.tag_keys.data();
            let mut m = session::buffer_meta(buffer, base_time);
            m.list_continues = list_continues;
            if std::mem::take(&mut st.flushed) {
                m.flags |= gst::BufferFlags::DISCONT.bits();
            }
            m.metas_tag = self.send_metas(st, buffer);
            let planes = match &st.planar {
                Some(info) => audio_planes(buffer, info).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["{}", e]);
                    gst::FlowError::Error
                })?,
                None => None,
            };
            break (st.producer.clone(), m, planes);
        };
        // Rendered into one of our slots (our pool upstream), laid out as consumers
        // expect: publish it as it is.
        if planes.is_none() {
            if let Some(holder) = self.slot_of(buffer, &producer) {
                let r = holder
                    .lock()
                    .unwrap()
                    .publish(0, buffer.size(), &m.encode());
                return self.published(&producer, r, true);
            }
        }
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ["Cannot map buffer"]);
            gst::FlowError::Error
        })?;
        // The whole buffer, or its audio planes packed back to back.
        let whole = std::iter::once(0..map.len());
        let parts: Vec<std::ops::Range<usize>> = planes.unwrap_or_else(|| whole.collect());
        let len = parts.iter().map(|r| r.len()).sum();
        let r = producer.acquire(len).and_then(|mut slot| {
            let mut at = 0;
            for r in parts {
                slot.write(at, &map[r.clone()])?;
                at += r.len();
            }
            slot.publish(len, &m.encode())
        });
        drop(map);
        self.published(&producer, r, false)
    }
}

/// What `render` does before a buffer when it must (each at most once per buffer).
#[derive(Clone, Copy)]
enum Prepare {
    /// Ask upstream its latency and tell the consumers.
    Latency,
    /// Wait for the first consumer (`wait-for-connection`).
    Wait,
    /// Look at what the consumers want.
    Decide,
}

/// Which [`Prepare`] steps `render` did for this buffer.
#[derive(Default)]
struct Prepared {
    latency: bool,
    wait: bool,
    decide: bool,
}

impl Sink {
    /// Does `step` with no lock held.
    fn prepare(
        &self,
        step: Prepare,
        producer: &Producer,
        done: &mut Prepared,
    ) -> Result<(), gst::FlowError> {
        match step {
            Prepare::Latency => {
                done.latency = true;
                self.tell_latency();
            }
            Prepare::Wait => {
                done.wait = true;
                // Blocking runs without the state lock, so that `stats` and events
                // on other threads never wait for a consumer.
                gst::info!(CAT, imp = self, "waiting for a consumer");
                match producer.wait_for_consumers(1, None) {
                    Ok(()) => {}
                    Err(shmring::WaitError::Interrupted) => return Err(gst::FlowError::Flushing),
                    Err(e) => {
                        gst::element_imp_error!(self, gst::ResourceError::Write, ["{}", e]);
                        return Err(gst::FlowError::Error);
                    }
                }
            }
            Prepare::Decide => {
                done.decide = true;
                self.decide_caps(producer);
            }
        }
        Ok(())
    }

    /// This pipeline's base time in nanoseconds, when it has a clock (else none).
    fn base_time_ns(&self) -> u64 {
        let obj = self.obj();
        match obj.clock() {
            Some(_) => codec::ct(obj.base_time()),
            None => codec::NONE,
        }
    }
}

/// A planar audio buffer whose planes are not where its caps and meta say.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(super) enum PlanesError {
    #[error("planar audio buffer of {size} bytes is not a whole number of {bpf}-byte frames")]
    NotWholeFrames { size: usize, bpf: usize },
    #[error("audio plane at {offset} of {plane} bytes exceeds the buffer's {size}")]
    Outside {
        offset: usize,
        plane: usize,
        size: usize,
    },
}

/// Where the channel planes of a non-interleaved audio buffer are, when they are not
/// already packed back to back from the buffer's start (`None`: publish as it is).
/// Consumers read planar audio as packed planes of `size / bpf` samples each.
fn audio_planes(
    buffer: &gst::BufferRef,
    info: &gst_audio::AudioInfo,
) -> Result<Option<Vec<std::ops::Range<usize>>>, PlanesError> {
    let size = buffer.size();
    let bpf = info.bpf() as usize;
    let bps = bpf / info.channels() as usize;
    let Some(am) = buffer.meta::<gst_audio::AudioMeta>() else {
        if size % bpf != 0 {
            return Err(PlanesError::NotWholeFrames { size, bpf });
        }
        return Ok(None);
    };
    let samples = am.samples();
    let plane = samples * bps;
    let offsets = am.offsets();
    if samples * bpf == size && offsets.iter().enumerate().all(|(c, &o)| o == c * plane) {
        return Ok(None);
    }
    offsets
        .iter()
        .map(|&o| {
            (o.checked_add(plane).is_some_and(|end| end <= size))
                .then_some(o..o + plane)
                .ok_or(PlanesError::Outside {
                    offset: o,
                    plane,
                    size,
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_uids_are_a_comma_list_and_a_bad_one_is_named() {
        assert_eq!(parse_uids(" 1000, 0 ,,"), Ok(vec![1000, 0]));
        assert_eq!(parse_uids(""), Ok(vec![]));
        let e = parse_uids("1000,me").unwrap_err();
        assert_eq!(e, BadUid("me".into()));
        assert_eq!(e.to_string(), "bad uid \"me\" in allowed-uids");
    }

    #[test]
    fn planar_audio_planes_are_found_or_the_buffer_refused() {
        gst::init().unwrap();
        let info = gst_audio::AudioInfo::builder(gst_audio::AUDIO_FORMAT_S16, 48000, 2)
            .layout(gst_audio::AudioLayout::NonInterleaved)
            .build()
            .unwrap();
        // No meta: packed already, if whole frames.
        let b = gst::Buffer::with_size(40).unwrap();
        assert_eq!(audio_planes(&b, &info), Ok(None));
        let b = gst::Buffer::with_size(42).unwrap();
        assert_eq!(
            audio_planes(&b, &info),
            Err(PlanesError::NotWholeFrames { size: 42, bpf: 4 })
        );
        // Planes apart: where the meta says (GStreamer itself refuses a meta whose
        // planes overlap or lie past the end).
        let mut b = gst::Buffer::with_size(60).unwrap();
        gst_audio::AudioMeta::add(b.get_mut().unwrap(), &info, 10, &[0, 40]).unwrap();
        assert_eq!(audio_planes(&b, &info), Ok(Some(vec![0..20, 40..60])));
    }
}
