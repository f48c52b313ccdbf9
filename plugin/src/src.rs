//! `shmringsrc`: receives the buffers, caps and events of a `shmringsink` in another
//! process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::{Backoff, Consumer, ConsumerConfig, Event, Frame};

use crate::meta::{self, BufferMeta, Side, to_ct};
use crate::trust;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsrc",
        gst::DebugColorFlags::empty(),
        Some("shmring source: receives buffers over sealed shared memory"),
    )
});

/// Default `wake-ahead`, µs.
const DEFAULT_WAKE_AHEAD_US: u32 = 200;

#[derive(Clone, Debug)]
struct Settings {
    socket_path: Option<String>,
    socket_fd: i32,
    copy: bool,
    reconnect: bool,
    reconnect_interval_ms: u32,
    spin_time_us: u32,
    wake_ahead_us: u32,
    is_live: bool,
    /// -1: automatic (one less than the producer's slot share).
    zero_copy_limit: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket_path: None,
            socket_fd: -1,
            copy: false,
            reconnect: false,
            reconnect_interval_ms: 100,
            spin_time_us: 20,
            wake_ahead_us: DEFAULT_WAKE_AHEAD_US,
            is_live: true,
            zero_copy_limit: -1,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    frames: u64,
    bytes: u64,
    copies: u64,
    dropped: u64,
    reconnects: u64,
}

struct State {
    consumer: Option<Consumer>,
    caps: Option<gst::Caps>,
    /// What the caps let a buffer be (decided once per caps, not per buffer); every
    /// buffer is checked against it before it is built.
    format: Option<trust::Format>,
    /// Whether the current connection's stream-start was seen.
    stream_started: bool,
    /// A new stream began after a reconnect: send a segment before its first buffer.
    new_segment: bool,
    /// Slots the producer lets this consumer hold (from its welcome).
    max_held: u32,
    /// The producer's upstream latency (live, min, max), as it last told us.
    latency: Option<(bool, gst::ClockTime, Option<gst::ClockTime>)>,
}

/// The element's private state.
#[derive(Default)]
pub struct Src {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    counters: Mutex<Counters>,
    /// Interrupts a blocked `create` (unlock): the element's own, and the current
    /// consumer's.
    wakers: Mutex<Vec<shmring::Waker>>,
    /// Shared slots downstream holds right now (wrapped, not yet freed).
    outstanding: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

enum Next {
    Buffer(gst::Buffer),
    Again,
    /// The producer sent something invalid: an error, or a reconnect when asked.
    Fault(String),
}

impl Src {
    fn consumer_config(s: &Settings) -> ConsumerConfig {
        ConsumerConfig {
            copy: s.copy,
            spin: Duration::from_micros(s.spin_time_us as u64),
            // Waking ahead buys latency with CPU: worth it for a live stream, not
            // for one consumed as fast as it comes (a 4K stream unpaced at 400
            // frames/s would spin ~8 % of a CPU for nothing).
            wake_ahead: if s.is_live {
                Duration::from_micros(s.wake_ahead_us as u64)
            } else {
                Duration::ZERO
            },
            ..Default::default()
        }
    }

    fn connect(&self, s: &Settings) -> Result<Consumer, shmring::Error> {
        let cfg = Self::consumer_config(s);
        if s.socket_fd >= 0 {
            // The application keeps its fd (as the blurb says): work on a duplicate.
            let fd = crate::dup_app_fd(s.socket_fd).map_err(|source| shmring::Error::Os {
                op: "dup(socket-fd)",
                source,
            })?;
            return Consumer::from_fd(fd, cfg);
        }
        let path = s.socket_path.clone().unwrap_or_default();
        if s.reconnect {
            let waker = self.wakers.lock().unwrap()[0].clone();
            Consumer::connect_with_backoff(
                &path,
                cfg,
                Backoff {
                    initial: Duration::from_millis(s.reconnect_interval_ms as u64),
                    max: Duration::from_millis(s.reconnect_interval_ms as u64),
                },
                None,
                Some(&waker),
            )
        } else {
            Consumer::connect(&path, cfg)
        }
    }

    fn install(&self, c: Consumer) {
        let mut w = self.wakers.lock().unwrap();
        w.truncate(1);
        w.push(c.waker());
        drop(w);
        let mut st = self.state.lock().unwrap();
        if let Some(st) = st.as_mut() {
            st.max_held = c.max_held();
            st.consumer = Some(c);
            st.stream_started = false;
        }
    }

    fn buffer_of(&self, f: Frame) -> Result<gst::Buffer, String> {
        let m = BufferMeta::decode(f.meta())?;
        let len = f.len();
        // Everything the producer says about this buffer, checked against the caps
        // before a buffer exists.
        let (checked, format) = {
            let st = self.state.lock().unwrap();
            let format = st
                .as_ref()
                .and_then(|s| s.format.clone())
                .ok_or("a buffer before any caps")?;
            (format.check(len, &m)?, format)
        };
        let (live, limit) = {
            let s = self.settings.lock().unwrap();
            (s.is_live, s.zero_copy_limit)
        };
        let limit = match usize::try_from(limit) {
            Ok(l) => l,
            // Automatic: leave the producer at least one slot of our share to queue
            // the next buffer in, whatever downstream keeps.
            Err(_) => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .map_or(1, |s| s.max_held.saturating_sub(1).max(1) as usize),
        };
        let held = self.outstanding.load(Ordering::Acquire);
        let mut buffer = if f.is_copy() || held >= limit {
            // Downstream already holds its share of slots (a queue, filesink's
            // write buffer, an encoder's lookahead): copy, so the producer never waits
            // for it, and let the slot go at once.
            self.counters.lock().unwrap().copies += 1;
            let v = f.to_vec();
            drop(f);
            gst::Buffer::from_mut_slice(v)
        } else {
            wrap_frame(f, self.outstanding.clone())
        };
        let obj = self.obj();
        let my_base = obj.base_time();
        // Running time of the producer -> absolute monotonic time -> our running time.
        let map = |t: u64| -> Option<gst::ClockTime> {
            let t = to_ct(t)?;
            if live && m.base_time != meta::NONE {
                let abs = t.nseconds().checked_add(m.base_time)?;
                let mine = my_base?.nseconds();
                Some(gst::ClockTime::from_nseconds(abs.saturating_sub(mine)))
            } else {
                Some(t)
            }
        };
        gst::trace!(
            CAT,
            imp = self,
            "frame pts {} (producer running time) base {} -> {:?} (my base {:?})",
            m.pts,
            m.base_time,
            map(m.pts),
            my_base
        );
        {
            let b = buffer.get_mut().expect("fresh buffer");
            b.set_pts(map(m.pts));
            b.set_dts(map(m.dts));
            b.set_duration(to_ct(m.duration));
            b.set_offset(m.offset);
            b.set_offset_end(m.offset_end);
            b.set_flags(checked.flags);
            trust::add_layout_metas(b, &format, &checked)?;
        }
        let mut c = self.counters.lock().unwrap();
        c.frames += 1;
        c.bytes += len as u64;
        Ok(buffer)
    }

    /// Handles one event of the consumer; `Next::Again` when nothing goes downstream
    /// as a buffer yet.
    fn handle(&self, ev: Event) -> Result<Next, gst::FlowError> {
        match ev {
            Event::Frame(f) => {
                self.counters.lock().unwrap().dropped += f.dropped_before() as u64;
                let discont = f.dropped_before() > 0;
                let mut b = match self.buffer_of(f) {
                    Ok(b) => b,
                    Err(e) => return Ok(Next::Fault(format!("bad buffer metadata: {e}"))),
                };
                if discont {
                    b.make_mut().set_flags(gst::BufferFlags::DISCONT);
                }
                Ok(Next::Buffer(b))
            }
            Event::Side { payload, .. } => match Side::decode(&payload) {
                Ok(side) => self.side(side),
                Err(e) => Ok(Next::Fault(format!("bad side message: {e}"))),
            },
            Event::End { reason } => {
                // The producer stopped without sending EOS: the stream is over, unless
                // we wait for it to come back.
                gst::info!(CAT, imp = self, "producer stopped: {reason}");
                if self.settings.lock().unwrap().reconnect {
                    Ok(Next::Fault(format!("a goodbye ({reason})")))
                } else {
                    Err(gst::FlowError::Eos)
                }
            }
        }
    }

    fn side(&self, side: Side) -> Result<Next, gst::FlowError> {
        let obj = self.obj();
        let pad = obj.static_pad("src").expect("src pad");
        match side {
            Side::Caps(caps) => {
                let same = self
                    .state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .and_then(|s| s.caps.clone())
                    .is_some_and(|c| c == caps);
                if !same {
                    gst::debug!(CAT, imp = self, "caps {caps}");
                    let format = match trust::accept_caps(&caps) {
                        Ok(f) => f,
                        Err(e) => return Ok(Next::Fault(format!("caps that cannot cross: {e}"))),
                    };
                    // After a new stream-start the caps go again even if unchanged
                    // (set_caps would skip them).
                    let again = pad.current_caps().is_some_and(|c| c == caps);
                    if again {
                        pad.push_event(gst::event::Caps::new(&caps));
                    } else if !pad.peer_query_accept_caps(&caps) || obj.set_caps(&caps).is_err() {
                        let theirs = pad.peer_query_caps(None);
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            [
                                "Downstream refuses the producer's caps {} (it accepts {})",
                                caps,
                                theirs
                            ]
                        );
                        return Err(gst::FlowError::NotNegotiated);
                    }
                    if let Some(st) = self.state.lock().unwrap().as_mut() {
                        st.format = Some(format);
                        st.caps = Some(caps);
                    }
                }
            }
            Side::StreamStart { stream_id } => {
                let first = self
                    .state
                    .lock()
                    .unwrap()
                    .as_mut()
                    .map(|s| !std::mem::replace(&mut s.stream_started, true))
                    .unwrap_or(false);
                // BaseSrc sends one stream-start itself; after a reconnect the new
                // stream gets its own, in a new group, then caps (even if the same)
                // and a segment before its first buffer, as for any new stream.
                if first && self.counters.lock().unwrap().reconnects > 0 {
                    if let Some(st) = self.state.lock().unwrap().as_mut() {
                        st.caps = None;
                        st.new_segment = true;
                    }
                    pad.push_event(
                        gst::event::StreamStart::builder(&stream_id)
                            .group_id(gst::GroupId::next())
                            .build(),
                    );
                }
            }
            Side::Tags(t) => {
                pad.push_event(gst::event::Tag::new(t));
            }
            Side::Gap { pts, duration } => {
                if let Some(p) = to_ct(pts) {
                    pad.push_event(
                        gst::event::Gap::builder(p)
                            .duration(to_ct(duration))
                            .build(),
                    );
                }
            }
            Side::Eos => return Err(gst::FlowError::Eos),
            Side::Custom(s) => {
                pad.push_event(gst::event::CustomDownstream::new(s));
            }
            Side::Latency { live, min, max } => {
                if let Err(e) = trust::accept_latency(min, max) {
                    return Ok(Next::Fault(e));
                }
                let l = (live, gst::ClockTime::from_nseconds(min), meta::to_ct(max));
                let changed = self
                    .state
                    .lock()
                    .unwrap()
                    .as_mut()
                    .is_some_and(|s| s.latency.replace(l) != Some(l));
                if changed {
                    gst::debug!(CAT, imp = self, "producer latency {l:?}");
                    // The pipeline asks everyone again and redistributes.
                    let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
                }
            }
        }
        Ok(Next::Again)
    }

    fn stats(&self) -> gst::Structure {
        let c = *self.counters.lock().unwrap();
        gst::Structure::builder("shmringsrc-stats")
            .field("frames", c.frames)
            .field("bytes", c.bytes)
            .field("copies", c.copies)
            .field("dropped", c.dropped)
            .field("reconnects", c.reconnects)
            .build()
    }
}

/// Wraps a frame's shared payload as a read-only `GstMemory` without copying; the
/// frame (and with it the slot) is released when GStreamer frees the memory.
fn wrap_frame(f: Frame, outstanding: Arc<AtomicUsize>) -> gst::Buffer {
    unsafe extern "C" fn free_frame(p: glib::ffi::gpointer) {
        // SAFETY: `p` is the Box leaked below, handed to GStreamer exactly once as the
        // memory's user data; GStreamer calls this notify exactly once.
        let b = unsafe { Box::from_raw(p as *mut (Frame, Arc<AtomicUsize>)) };
        b.1.fetch_sub(1, Ordering::AcqRel);
    }
    let len = f.len();
    let ptr = f.as_ptr();
    outstanding.fetch_add(1, Ordering::AcqRel);
    let boxed = Box::into_raw(Box::new((f, outstanding)));
    // SAFETY: `ptr` points at `len` bytes mapped read-only for as long as the Frame
    // lives; the Frame is owned by the memory and freed by `free_frame` only when
    // GStreamer drops the memory. The memory is flagged READONLY, so GStreamer never
    // writes through it (and the mapping is PROT_READ anyway: a write would fault,
    // never corrupt). A hostile producer may still change the bytes: downstream sees
    // possibly torn pixels, which the trust model accepts for zero-copy.
    unsafe {
        let mem = gst::ffi::gst_memory_new_wrapped(
            gst::ffi::GST_MEMORY_FLAG_READONLY,
            ptr as glib::ffi::gpointer,
            len,
            0,
            len,
            boxed as glib::ffi::gpointer,
            Some(free_frame),
        );
        let mut buffer = gst::Buffer::new();
        buffer
            .get_mut()
            .expect("fresh buffer")
            .append_memory(glib::translate::from_glib_full(mem));
        buffer
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Src {
    const NAME: &'static str = "GstShmringSrc";
    type Type = ShmringSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for Src {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("socket-path")
                    .nick("Socket path")
                    .blurb("Unix socket path of the shmringsink to receive from")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("socket-fd")
                    .nick("Socket fd")
                    .blurb("An inherited, already connected socket to the producer (used instead of socket-path; -1: none). The element uses a duplicate; the application keeps its fd")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("copy")
                    .nick("Copy")
                    .blurb("Copy each buffer out of shared memory (a private snapshot the producer cannot change) instead of wrapping the shared slot read-only")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("reconnect")
                    .nick("Reconnect")
                    .blurb("Wait for a producer to (re)appear instead of failing: survives producer restarts (new stream-start, caps and segment downstream) and keeps trying past a producer that lies. socket-path only: an inherited socket-fd cannot be reconnected")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-interval")
                    .nick("Reconnect interval")
                    .blurb("Milliseconds between connection attempts when reconnect=true")
                    .minimum(1)
                    .default_value(100)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("spin-time")
                    .nick("Spin time")
                    .blurb("Microseconds to poll shared memory before sleeping on the doorbell (0: sleep at once; more: lower latency, more CPU)")
                    .default_value(20)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wake-ahead")
                    .nick("Wake ahead")
                    .blurb("Microseconds before the next buffer is due (judged from the spacing of the last ones) to wake and poll for it instead of waiting to be woken: lower, steadier latency for live streams for about this much CPU per buffer interval (0: off; only with is-live=true)")
                    .default_value(DEFAULT_WAKE_AHEAD_US)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Live")
                    .blurb("Act as a live source, mapping the producer's running time onto this pipeline's through the monotonic clock (A/V sync across processes)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("zero-copy-limit")
                    .nick("Zero-copy limit")
                    .blurb("Most shared slots downstream may hold at once; further buffers are copied so that an element holding buffers (queue, filesink, encoder lookahead) never stalls the producer. -1: one less than the slots the producer lets this consumer hold (half the sink's slots by default)")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, bytes, copies, dropped (by the producer for this consumer), reconnects")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "socket-path" => s.socket_path = value.get().unwrap(),
            "socket-fd" => s.socket_fd = value.get().unwrap(),
            "copy" => s.copy = value.get().unwrap(),
            "reconnect" => s.reconnect = value.get().unwrap(),
            "reconnect-interval" => s.reconnect_interval_ms = value.get().unwrap(),
            "spin-time" => s.spin_time_us = value.get().unwrap(),
            "wake-ahead" => s.wake_ahead_us = value.get().unwrap(),
            "zero-copy-limit" => s.zero_copy_limit = value.get().unwrap(),
            "is-live" => {
                s.is_live = value.get().unwrap();
                // BaseSrc reads this before `start`, when it decides on preroll.
                self.obj().set_live(s.is_live);
            }
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap().clone();
        match pspec.name() {
            "socket-path" => s.socket_path.to_value(),
            "socket-fd" => s.socket_fd.to_value(),
            "copy" => s.copy.to_value(),
            "reconnect" => s.reconnect.to_value(),
            "reconnect-interval" => s.reconnect_interval_ms.to_value(),
            "spin-time" => s.spin_time_us.to_value(),
            "wake-ahead" => s.wake_ahead_us.to_value(),
            "is-live" => s.is_live.to_value(),
            "zero-copy-limit" => s.zero_copy_limit.to_value(),
            "stats" => self.stats().to_value(),
            other => unreachable!("no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(Settings::default().is_live);
    }
}

impl GstObjectImpl for Src {}

impl ElementImpl for Src {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "shmring source",
                "Source/Video/Audio",
                "Receives raw buffers, caps and events from a shmringsink in another process through sealed shared memory, without copying; a lying producer gets an error, never a crash",
                "shmring developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        T.as_ref()
    }
}

impl BaseSrcImpl for Src {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        if s.socket_path.is_none() && s.socket_fd < 0 {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["neither socket-path nor socket-fd is set"]
            ));
        }
        let own = shmring::Waker::new()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Failed, ["{}", e]))?;
        *self.wakers.lock().unwrap() = vec![own];
        *self.counters.lock().unwrap() = Counters::default();
        *self.state.lock().unwrap() = Some(State {
            consumer: None,
            caps: None,
            format: None,
            stream_started: false,
            new_segment: false,
            max_held: 1,
            latency: None,
        });
        if !s.reconnect {
            // Fail at start, where the user sees why, rather than at the first buffer.
            let c = self.connect(&s).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    [
                        "Cannot receive from {}: {}",
                        s.socket_path.as_deref().unwrap_or("socket-fd"),
                        e
                    ]
                )
            })?;
            self.install(c);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        self.wakers.lock().unwrap().clear();
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        for w in self.wakers.lock().unwrap().iter() {
            w.wake();
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        for w in self.wakers.lock().unwrap().iter() {
            w.take();
        }
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // Live: a buffer stamped t (our running time) leaves here at t plus the
            // producer pipeline's latency (plus transport, microseconds).
            let live = self.settings.lock().unwrap().is_live;
            let producer = self.state.lock().unwrap().as_ref().and_then(|s| s.latency);
            match producer {
                Some((_, min, max)) if live => q.set(true, min, max),
                _ => q.set(live, gst::ClockTime::ZERO, gst::ClockTime::NONE),
            }
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }
}

impl PushSrcImpl for Src {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        // An inherited socket cannot be connected again. (No settings clone per
        // buffer: the path is only needed to connect.)
        let (reconnect, interval) = {
            let s = self.settings.lock().unwrap();
            (s.reconnect && s.socket_fd < 0, s.reconnect_interval_ms)
        };
        loop {
            // Take the consumer out so that unlock and property reads do not wait
            // for a blocked receive.
            let consumer = self
                .state
                .lock()
                .unwrap()
                .as_mut()
                .ok_or(gst::FlowError::Flushing)?
                .consumer
                .take();
            let mut consumer = match consumer {
                Some(c) => c,
                None => match self.connect(&self.settings()) {
                    Ok(c) => {
                        gst::info!(CAT, imp = self, "connected to the producer");
                        self.install(c);
                        continue;
                    }
                    Err(shmring::Error::Interrupted) => return Err(gst::FlowError::Flushing),
                    Err(e) if reconnect => {
                        // Something answers at the path but is no producer we can
                        // trust: keep waiting for a real one.
                        gst::warning!(CAT, imp = self, "cannot connect ({e}); trying again");
                        self.pause(interval)?;
                        continue;
                    }
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::OpenRead,
                            ["Cannot connect to the producer: {}", e]
                        );
                        return Err(gst::FlowError::Error);
                    }
                },
            };
            let r = consumer.recv();
            let put_back = |c: Consumer| {
                if let Some(st) = self.state.lock().unwrap().as_mut() {
                    st.consumer = Some(c);
                }
            };
            let lost = match r {
                Ok(ev) => {
                    put_back(consumer);
                    match self.handle(ev) {
                        Ok(Next::Buffer(b)) => {
                            self.segment_if_new();
                            return Ok(CreateSuccess::NewBuffer(b));
                        }
                        Ok(Next::Again) => continue,
                        Ok(Next::Fault(what)) if reconnect => {
                            format!("producer sent {what}")
                        }
                        Ok(Next::Fault(what)) => {
                            gst::element_imp_error!(
                                self,
                                gst::StreamError::Decode,
                                ["Producer sent {}", what]
                            );
                            return Err(gst::FlowError::Error);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(shmring::Error::Interrupted) => {
                    put_back(consumer);
                    return Err(gst::FlowError::Flushing);
                }
                Err(e) if reconnect => format!("producer lost ({e})"),
                Err(shmring::Error::PeerGone) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ["The producer went away without ending the stream"]
                    );
                    return Err(gst::FlowError::Error);
                }
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ["Producer failed: {}", e]
                    );
                    return Err(gst::FlowError::Error);
                }
            };
            gst::warning!(CAT, imp = self, "{lost}; reconnecting");
            self.counters.lock().unwrap().reconnects += 1;
            self.drop_consumer();
            self.pause(interval)?;
        }
    }
}

impl Src {
    /// A copy of the settings (the lock is not held while using them).
    fn settings(&self) -> Settings {
        self.settings.lock().unwrap().clone()
    }

    /// Waits `reconnect-interval` before the next connection attempt (so that a
    /// producer that keeps failing or lying is not hammered); `Flushing` if unlocked.
    fn pause(&self, interval_ms: u32) -> Result<(), gst::FlowError> {
        let w = self.wakers.lock().unwrap().first().cloned();
        let Some(w) = w else {
            return Err(gst::FlowError::Flushing);
        };
        match w.sleep(Duration::from_millis(interval_ms as u64)) {
            Err(shmring::Error::Interrupted) => {
                // Leave the wake-up for unlock_stop to clear, as for any other wait.
                w.wake();
                Err(gst::FlowError::Flushing)
            }
            _ => Ok(()),
        }
    }

    /// Sends the segment again before the first buffer of a stream that began
    /// after a reconnect.
    fn segment_if_new(&self) {
        let new = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|s| std::mem::take(&mut s.new_segment));
        if new {
            let obj = self.obj();
            let segment = obj.segment();
            let pad = obj.static_pad("src").expect("src pad");
            pad.push_event(gst::event::Segment::new(&segment));
        }
    }

    fn drop_consumer(&self) {
        let mut w = self.wakers.lock().unwrap();
        w.truncate(1);
        drop(w);
        if let Some(st) = self.state.lock().unwrap().as_mut() {
            st.consumer = None;
            st.stream_started = false;
        }
    }
}

glib::wrapper! {
    /// `shmringsrc`.
    pub struct ShmringSrc(ObjectSubclass<Src>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub(crate) fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "shmringsrc",
        gst::Rank::NONE,
        ShmringSrc::static_type(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waking_ahead_is_for_live_streams_only() {
        let live = Settings::default();
        assert!(live.is_live);
        assert_eq!(
            Src::consumer_config(&live).wake_ahead,
            Duration::from_micros(DEFAULT_WAKE_AHEAD_US as u64)
        );
        let unpaced = Settings {
            is_live: false,
            ..Settings::default()
        };
        assert_eq!(Src::consumer_config(&unpaced).wake_ahead, Duration::ZERO);
        assert_eq!(
            Src::consumer_config(&unpaced).spin,
            Duration::from_micros(20),
            "spinning stays"
        );
    }
}
