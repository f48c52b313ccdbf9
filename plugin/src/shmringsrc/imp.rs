//! `shmringsrc`: receives the buffers, caps and events of a `shmringsink` in another
//! process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::{Consumer, ConsumerConfig};

use super::session::{Config, Next, Session};
use super::{CAPS_GRACE, CAT, ShmringSrc};
use crate::element::{Place, PlaceError, Role, one_pad_element, place_uri_handler};
use crate::units::{from_ms, from_us, ms, us};

/// Default `wake-ahead`: the cap; what the consumer polls within it, it measures
/// (docs/plugin.md).
pub(super) const DEFAULT_WAKE_AHEAD: Duration = Duration::from_micros(1000);
/// Default `reconnect-interval`.
const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(100);
/// Default `spin-time`: the frame channel's own.
const DEFAULT_SPIN_TIME: Duration = ConsumerConfig::DEFAULT_SPIN;

#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// `socket-path` or `producer-name`.
    pub(super) place: Place,
    pub(super) socket_fd: i32,
    pub(super) copy: bool,
    pub(super) reconnect: bool,
    /// `reconnect-interval` (ms).
    pub(super) reconnect_interval: Duration,
    /// `spin-time` (µs).
    pub(super) spin_time: Duration,
    /// `wake-ahead` (µs).
    pub(super) wake_ahead: Duration,
    pub(super) is_live: bool,
    /// `is-live` was set: map timestamps through the clock (or not) whatever the
    /// producer's pipeline is.
    pub(super) is_live_set: bool,
    /// -1: automatic (one less than the producer's slot share).
    pub(super) zero_copy_limit: i32,
    /// `max-meta-bytes`.
    pub(super) max_meta_bytes: u32,
    /// `custom-metas`, as the user wrote it.
    pub(super) custom_metas: String,
}

impl Settings {
    /// The socket path to connect to: `socket-path`, or where `producer-name` is
    /// served. `Ok(None)`: neither is set.
    pub(super) fn target(&self) -> Result<Option<String>, PlaceError> {
        self.place.path(Role::Connects)
    }

    /// What this source receives from, for messages.
    pub(super) fn describe(&self) -> String {
        match (&self.place.producer_name, &self.place.socket_path) {
            (Some(n), _) => format!("producer {n:?}"),
            (None, Some(p)) => p.clone(),
            (None, None) => format!("socket-fd {}", self.socket_fd),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            place: Place::default(),
            socket_fd: -1,
            copy: false,
            reconnect: false,
            reconnect_interval: DEFAULT_RECONNECT_INTERVAL,
            spin_time: DEFAULT_SPIN_TIME,
            wake_ahead: DEFAULT_WAKE_AHEAD,
            is_live: true,
            is_live_set: false,
            zero_copy_limit: -1,
            max_meta_bytes: crate::codec::metas::DEFAULT_MAX_BYTES,
            custom_metas: "*".into(),
        }
    }
}

impl Settings {
    /// What of the settings the session reads per buffer.
    pub(super) fn config(&self) -> Config {
        Config {
            is_live: self.is_live,
            is_live_set: self.is_live_set,
            zero_copy_limit: self.zero_copy_limit,
            max_meta_bytes: self.max_meta_bytes,
            allowed: crate::codec::metas::Allowed::parse(&self.custom_metas),
            reconnect: self.reconnect,
        }
    }
}

/// What only the streaming thread touches (and `start`, `stop`, which run when it
/// does not): the connection, and what `create` owes.
#[derive(Default)]
pub(super) struct Streaming {
    pub(super) consumer: Option<Consumer>,
    /// `create` owes a marker (a list went first) or the end of the stream (after
    /// a marker carried the events before it).
    marker_due: bool,
    eos_due: bool,
    /// Since when downstream refuses the producer's caps, as the session said
    /// last (a receive waits at most until the grace ends).
    pub(super) refused_since: Option<Instant>,
}

/// The element's private state.
///
/// Lock order (a lock is never taken while one after it is held): `stream` →
/// `settings` → `session` → `wakers`, `late_events`. `stream` is the streaming
/// thread's, held through a `create` (receiving included): nothing else waits on
/// it while the element streams. `session` is taken once per event received, and
/// briefly by properties, queries and events from other threads; nothing calls
/// into GStreamer while holding it (the session decides, the element acts after).
#[derive(Default)]
pub struct Src {
    pub(super) settings: Mutex<Settings>,
    pub(super) stream: Mutex<Streaming>,
    /// What the source decides with (`None` before the first start; kept after a
    /// stop, for its stats).
    pub(super) session: Mutex<Option<Session>>,
    /// Interrupts a blocked `create` (unlock): the element's own, and the current
    /// consumer's.
    pub(super) wakers: Mutex<Vec<shmring::Waker>>,
    /// Shared slots downstream holds right now (wrapped, not yet freed).
    pub(super) outstanding: Arc<AtomicUsize>,
    /// The producer's serialized events since the last buffer (tags, TOC, custom
    /// events, sticky or not, gaps), in the order they came: pushed on the src
    /// pad just before the next buffer leaves, after the segment BaseSrc pushes
    /// first. With no buffer to carry them (a gap, the end), `create` returns a
    /// marker buffer that the pad's probe drops once it pushed them.
    pub(super) late_events: Arc<Mutex<Vec<gst::Event>>>,
    /// Tell the producer what downstream accepts before the next receive (set by
    /// a reconfigure event, from any thread).
    pub(super) note_due: AtomicBool,
    /// Whether the buffer (or list) `create` returned last is DISCONT by the
    /// producer's word or ours: BaseSrc marks the first one after a start DISCONT
    /// whatever it was, and the src pad's probe takes that mark back off.
    pub(super) keep_discont: Arc<AtomicBool>,
}

/// The flag of a marker buffer (see `Src::marker`): the first of those GStreamer
/// leaves to elements. No producer's buffer carries it (only flags that travel
/// do, `trust`).
const CARRIER: gst::BufferFlags =
    gst::BufferFlags::from_bits_retain(gst::ffi::GST_BUFFER_FLAG_LAST);

/// The most buffers one buffer list from the producer gathers here.
const MAX_LIST: usize = 1024;

#[glib::object_subclass]
impl ObjectSubclass for Src {
    const NAME: &'static str = "GstShmringSrc";
    type Type = ShmringSrc;
    type ParentType = gst_base::PushSrc;
    type Interfaces = (gst::URIHandler,);
}

place_uri_handler!(Src, gst::URIType::Src);

impl ObjectImpl for Src {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let place = Place::properties(Role::Connects);
            place.into_iter().chain([
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
                    .default_value(ms(DEFAULT_RECONNECT_INTERVAL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("spin-time")
                    .nick("Spin time")
                    .blurb("Microseconds to poll shared memory before sleeping on the doorbell (0: sleep at once; more: lower latency, more CPU)")
                    .default_value(us(DEFAULT_SPIN_TIME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wake-ahead")
                    .nick("Wake ahead")
                    .blurb("Most microseconds to poll for each buffer of a live stream, waking shortly before it can come instead of waiting to be woken (a wake-up can cost up to a millisecond on a virtual machine). Within this cap the source measures when buffers come, how late, how late its own timed wake-ups are and whether polling catches them; it polls at most 1.5 % of the buffer interval and turns itself off for a while where it does not pay (0: off; only with is-live=true; stats says what it did)")
                    .default_value(us(DEFAULT_WAKE_AHEAD))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Live")
                    .blurb("Act as a live source. Unless set, timestamps follow the producer's pipeline: a live one's running time is mapped onto this pipeline's through the monotonic clock (A/V sync across processes), a non-live one's segment and timestamps pass as sent; set, they are mapped (true) or passed (false) whatever the producer")
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
                glib::ParamSpecUInt::builder("max-meta-bytes")
                    .nick("Maximum meta bytes")
                    .blurb("Most bytes the producer may send for the metas of one buffer (timecodes, captions, regions of interest, custom metas...); a buffer's metas over it are not added, and counted in stats as metas-refused")
                    .minimum(1024)
                    .maximum(64 << 20)
                    .default_value(crate::codec::metas::DEFAULT_MAX_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("custom-metas")
                    .nick("Custom metas")
                    .blurb("Custom metas (GstCustomMeta) to register and add when a producer sends them: * (the default) for any name that is no type's already, up to 32 registered by this process; or comma-separated names; empty: only those registered in this process. Others are counted in stats as metas-refused and logged once")
                    .default_value(Some("*"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, bytes, copies, dropped (by the producer for this consumer), reconnects, metas (added to buffers), metas-refused (custom metas not registered or allowed, metas this GStreamer cannot rebuild, lists over max-meta-bytes), wake-ahead figures")
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
            "socket-fd" => s.socket_fd = value.get().unwrap(),
            "copy" => s.copy = value.get().unwrap(),
            "reconnect" => s.reconnect = value.get().unwrap(),
            "reconnect-interval" => s.reconnect_interval = from_ms(value),
            "spin-time" => s.spin_time = from_us(value),
            "wake-ahead" => s.wake_ahead = from_us(value),
            "zero-copy-limit" => s.zero_copy_limit = value.get().unwrap(),
            "max-meta-bytes" => s.max_meta_bytes = value.get().unwrap(),
            "custom-metas" => {
                s.custom_metas = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "is-live" => {
                s.is_live = value.get().unwrap();
                s.is_live_set = true;
                // BaseSrc reads this before `start`, when it decides on preroll.
                self.obj().set_live(s.is_live);
            }
            other => unreachable!("no property {other}"),
        }
        let cfg = s.config();
        drop(s);
        if let Some(session) = self.session.lock().unwrap().as_mut() {
            session.cfg = cfg;
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap().clone();
        if let Some(v) = s.place.property(pspec.name()) {
            return v;
        }
        match pspec.name() {
            "socket-fd" => s.socket_fd.to_value(),
            "copy" => s.copy.to_value(),
            "reconnect" => s.reconnect.to_value(),
            "reconnect-interval" => ms(s.reconnect_interval).to_value(),
            "spin-time" => us(s.spin_time).to_value(),
            "wake-ahead" => us(s.wake_ahead).to_value(),
            "is-live" => s.is_live.to_value(),
            "zero-copy-limit" => s.zero_copy_limit.to_value(),
            "max-meta-bytes" => s.max_meta_bytes.to_value(),
            "custom-metas" => s.custom_metas.to_value(),
            "stats" => self.stats().to_value(),
            other => unreachable!("no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(Settings::default().is_live);
        let late = self.late_events.clone();
        let keep = self.keep_discont.clone();
        obj.static_pad("src").expect("src pad").add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |pad, info| {
                let events = std::mem::take(&mut *late.lock().unwrap());
                for e in events {
                    pad.push_event(e);
                }
                // A marker only carried the events: it goes no further.
                if matches!(&info.data, Some(gst::PadProbeData::Buffer(b)) if b.flags().contains(CARRIER))
                {
                    return gst::PadProbeReturn::Drop;
                }
                // The producer's flags, not BaseSrc's first-buffer DISCONT.
                if !keep.load(std::sync::atomic::Ordering::Relaxed) {
                    let discont = gst::BufferFlags::DISCONT;
                    match &mut info.data {
                        Some(gst::PadProbeData::Buffer(b)) if b.flags().contains(discont) => {
                            b.make_mut().unset_flags(discont);
                        }
                        Some(gst::PadProbeData::BufferList(l))
                            if l.get(0).is_some_and(|b| b.flags().contains(discont)) =>
                        {
                            if let Some(b) = l.make_mut().get_mut(0) {
                                b.unset_flags(discont);
                            }
                        }
                        _ => {}
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
}

one_pad_element!(
    Src,
    "shmring source",
    "Source/Video/Audio",
    "Receives raw buffers, caps and events from a shmringsink in another process through sealed shared memory, without copying; a lying producer gets an error, never a crash",
    "src",
    gst::PadDirection::Src
);

impl BaseSrcImpl for Src {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let target = s
            .target()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
        if target.is_none() && s.socket_fd < 0 {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["none of socket-path, producer-name and socket-fd is set"]
            ));
        }
        let own = shmring::Waker::new()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Failed, ["{}", e]))?;
        *self.wakers.lock().unwrap() = vec![own];
        *self.stream.lock().unwrap() = Streaming::default();
        *self.session.lock().unwrap() = Some(Session::new(s.config()));
        if !s.reconnect {
            // Fail at start, where the user sees why, rather than at the first buffer.
            let c = self.connect(&s).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ["Cannot receive from {}: {}", s.describe(), e]
                )
            })?;
            self.install(&c);
            self.stream.lock().unwrap().consumer = Some(c);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // The session stays, for its stats; the next start makes a new one.
        *self.stream.lock().unwrap() = Streaming::default();
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

    fn event(&self, event: &gst::Event) -> bool {
        // Downstream can take other caps now: tell the producer.
        if event.type_() == gst::EventType::Reconfigure {
            self.note_due.store(true, Ordering::Relaxed);
        }
        self.parent_event(event)
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // Live: a buffer stamped t (our running time) leaves here at t plus the
            // producer pipeline's latency (plus transport, microseconds).
            let live = self.settings.lock().unwrap().is_live;
            let producer = self
                .session
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|s| s.latency());
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
        let mut st = self.stream.lock().unwrap();
        // What a marker owes: itself (a list went before it), or the end of the
        // stream after the events it carried.
        if std::mem::take(&mut st.marker_due) {
            return Ok(self.marker());
        }
        if std::mem::take(&mut st.eos_due) {
            return Err(gst::FlowError::Eos);
        }
        // The buffers of a buffer list received so far.
        let mut list: Option<gst::BufferList> = None;
        loop {
            let Some(consumer) = st.consumer.as_ref() else {
                self.connect_now(&mut st)?;
                continue;
            };
            if self.note_due.swap(false, Ordering::Relaxed) {
                self.send_accepts(consumer);
            }
            let lost = match self.receive(&mut st)? {
                Ok(ev) => {
                    let anticipation = match &ev {
                        shmring::Event::Frame(f) if f.seq() % 16 == 0 => {
                            st.consumer.as_mut().map(|c| c.anticipation())
                        }
                        _ => None,
                    };
                    let next = self.handle(ev, anticipation, &mut st)?;
                    match self.gather(next, &mut list, &mut st)? {
                        Gathered::Done(done) => return Ok(done),
                        Gathered::More => continue,
                        Gathered::Lost(lost) => lost,
                    }
                }
                Err(shmring::RecvError::Interrupted) => return Err(gst::FlowError::Flushing),
                Err(e) if self.reconnects() => format!("producer lost ({e})"),
                Err(e) => return Err(self.receive_failed(e)),
            };
            gst::warning!(CAT, imp = self, "{lost}; reconnecting");
            self.drop_consumer(&mut st);
            self.pause(self.settings.lock().unwrap().reconnect_interval)?;
        }
    }
}

/// What one event made of the buffers `create` gathers.
enum Gathered {
    /// Return this.
    Done(CreateSuccess),
    /// Receive more.
    More,
    /// The producer is lost (its words, for the log): reconnect.
    Lost(String),
}

impl Src {
    /// Connects (`create` found no consumer): the consumer goes into `st`, or after
    /// a failed attempt that is to be retried, nothing does.
    fn connect_now(&self, st: &mut Streaming) -> Result<(), gst::FlowError> {
        let s = self.settings();
        match self.connect(&s) {
            Ok(c) => {
                gst::info!(CAT, imp = self, "connected to the producer");
                self.install(&c);
                st.consumer = Some(c);
                st.marker_due = false;
                st.eos_due = false;
                Ok(())
            }
            Err(shmring::ConnectError::Interrupted) => Err(gst::FlowError::Flushing),
            Err(e) if s.reconnect && s.socket_fd < 0 => {
                // Something answers at the path but is no producer we can trust:
                // keep waiting for a real one.
                gst::warning!(CAT, imp = self, "cannot connect ({e}); trying again");
                self.pause(s.reconnect_interval)?;
                Ok(())
            }
            Err(e) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::OpenRead,
                    ["Cannot connect to the producer: {}", e]
                );
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Whether a lost producer is waited for (an inherited socket cannot be
    /// connected again). Read only when one is lost.
    fn reconnects(&self) -> bool {
        let s = self.settings.lock().unwrap();
        s.reconnect && s.socket_fd < 0
    }

    /// The next event; while downstream refuses the producer's caps, at most until
    /// the grace ends (then a negotiation error).
    fn receive(
        &self,
        st: &mut Streaming,
    ) -> Result<Result<shmring::Event, shmring::RecvError>, gst::FlowError> {
        let consumer = st.consumer.as_mut().expect("connected");
        let Some(since) = st.refused_since else {
            return Ok(consumer.recv());
        };
        let r = consumer.recv_deadline(Some(since + CAPS_GRACE));
        if !matches!(r, Err(shmring::RecvError::Timeout)) {
            return Ok(r);
        }
        let theirs = self
            .session
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.refused().cloned());
        let caps = self
            .obj()
            .static_pad("src")
            .expect("src pad")
            .peer_query_caps(None);
        gst::element_imp_error!(
            self,
            gst::CoreError::Negotiation,
            [
                "Downstream refuses the producer's caps {} (it accepts {}), and the producer sent none it accepts within {:?}",
                theirs.map_or("?".into(), |c| c.to_string()),
                caps,
                CAPS_GRACE
            ]
        );
        Err(gst::FlowError::NotNegotiated)
    }

    /// Adds what an event made to the buffer list being gathered, or says what
    /// `create` returns.
    fn gather(
        &self,
        next: Next,
        list: &mut Option<gst::BufferList>,
        st: &mut Streaming,
    ) -> Result<Gathered, gst::FlowError> {
        Ok(match next {
            Next::Buffer(b, more) => {
                if list.is_none() {
                    self.keep_discont_of(&b);
                    if !more {
                        return Ok(Gathered::Done(CreateSuccess::NewBuffer(b)));
                    }
                }
                let l = list.get_or_insert_with(gst::BufferList::new);
                l.get_mut().expect("ours alone").add(b);
                // A list the producer never ends is cut into lists of MAX_LIST
                // (they hold its slots meanwhile).
                if !more || l.len() >= MAX_LIST {
                    let l = list.take().expect("just added to");
                    return Ok(Gathered::Done(CreateSuccess::NewBufferList(l)));
                }
                Gathered::More
            }
            // The end, at once, or after the events that wait (a marker carries
            // them first).
            Next::Eos => {
                if self.late_events.lock().unwrap().is_empty() {
                    return Err(gst::FlowError::Eos);
                }
                st.eos_due = true;
                self.events_out(list, st)
            }
            // Events and no buffer to carry them: a marker does (after what there
            // is of a list).
            Next::Events => self.events_out(list, st),
            // Only a lying producer sends anything between the buffers of a list:
            // what it has of the list goes first.
            Next::Again => match list.take() {
                Some(l) => Gathered::Done(CreateSuccess::NewBufferList(l)),
                None => Gathered::More,
            },
            Next::Fault(what) if self.reconnects() => {
                Gathered::Lost(format!("producer sent {what}"))
            }
            Next::Gone(reason) => Gathered::Lost(format!("producer sent a goodbye ({reason})")),
            Next::Fault(what) => {
                gst::element_imp_error!(self, gst::StreamError::Decode, ["Producer sent {}", what]);
                return Err(gst::FlowError::Error);
            }
        })
    }

    /// What carries the waiting events out: the list gathered so far (a marker
    /// follows it), or a marker.
    fn events_out(&self, list: &mut Option<gst::BufferList>, st: &mut Streaming) -> Gathered {
        Gathered::Done(match list.take() {
            Some(l) => {
                st.marker_due = true;
                CreateSuccess::NewBufferList(l)
            }
            None => self.marker(),
        })
    }

    /// The error for a receive that failed with no reconnecting.
    fn receive_failed(&self, e: shmring::RecvError) -> gst::FlowError {
        match e {
            shmring::RecvError::PeerGone => gst::element_imp_error!(
                self,
                gst::ResourceError::Read,
                ["The producer went away without ending the stream"]
            ),
            e => {
                gst::element_imp_error!(self, gst::ResourceError::Read, ["Producer failed: {}", e])
            }
        }
        gst::FlowError::Error
    }
}

impl Src {
    /// An empty buffer that carries the waiting events out of BaseSrc (after the
    /// segment it has pending) and is dropped by the src pad's probe: so that a
    /// gap or the end of the stream leaves after the events that came before it.
    fn marker(&self) -> CreateSuccess {
        let mut b = gst::Buffer::new();
        b.get_mut()
            .expect("fresh buffer")
            .set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE | CARRIER);
        // BaseSrc counted it against num-buffers before asking for it.
        let base = self.obj();
        let base: &gst_base::BaseSrc = base.upcast_ref();
        // SAFETY: `num_buffers_left` is a public field of this element's own
        // GstBaseSrc, which BaseSrc reads and writes only on the streaming thread
        // (in get_range, before calling create), the thread this runs on; no
        // peer's value is involved.
        unsafe {
            let raw = base.as_ptr();
            if (*raw).num_buffers_left >= 0 {
                (*raw).num_buffers_left += 1;
            }
        }
        CreateSuccess::NewBuffer(b)
    }

    /// A copy of the settings (the lock is not held while using them).
    pub(super) fn settings(&self) -> Settings {
        self.settings.lock().unwrap().clone()
    }

    /// Remembers whether `b` (the next to leave) is DISCONT by our word.
    fn keep_discont_of(&self, b: &gst::BufferRef) {
        self.keep_discont.store(
            b.flags().contains(gst::BufferFlags::DISCONT),
            Ordering::Relaxed,
        );
    }

    /// Waits `reconnect-interval` before the next connection attempt (so that a
    /// producer that keeps failing or lying is not hammered); `Flushing` if unlocked.
    pub(super) fn pause(&self, interval: Duration) -> Result<(), gst::FlowError> {
        let w = self.wakers.lock().unwrap().first().cloned();
        let Some(w) = w else {
            return Err(gst::FlowError::Flushing);
        };
        match w.sleep(interval) {
            Err(shmring::LinkError::Interrupted) => {
                // Leave the wake-up for unlock_stop to clear, as for any other wait.
                w.wake();
                Err(gst::FlowError::Flushing)
            }
            _ => Ok(()),
        }
    }

    /// The producer is lost: its consumer goes, the session counts a reconnect.
    fn drop_consumer(&self, st: &mut Streaming) {
        self.wakers.lock().unwrap().truncate(1);
        st.consumer = None;
        if let Some(s) = self.session.lock().unwrap().as_mut() {
            s.lost();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waking_ahead_is_for_live_streams_only() {
        let live = Settings::default();
        assert!(live.is_live);
        assert_eq!(Src::consumer_config(&live).wake_ahead, DEFAULT_WAKE_AHEAD);
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
