//! What `shmringsrc` makes of what the producer says: connecting, buffers (checked
//! by `trust`, then wrapped or copied), caps and events.

//! process.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::{Backoff, Consumer, ConsumerConfig, Event, Frame};

use crate::codec::metas;
use crate::codec::trust;
use crate::codec::{self, BufferMeta, Refusal, Side, to_ct};

use super::imp::{CAPS_GRACE, CAT, Next, Settings, Src};

impl Src {
    pub(super) fn consumer_config(s: &Settings) -> ConsumerConfig {
        ConsumerConfig {
            copy: s.copy,
            spin: s.spin_time,
            // Waking ahead buys latency with CPU: worth it for a live stream, not
            // for one consumed as fast as it comes (a 4K stream unpaced at 400
            // frames/s would spin ~8 % of a CPU for nothing).
            wake_ahead: if s.is_live {
                s.wake_ahead
            } else {
                Duration::ZERO
            },
            ..Default::default()
        }
    }

    pub(super) fn connect(&self, s: &Settings) -> Result<Consumer, shmring::ConnectError> {
        let cfg = Self::consumer_config(s);
        if s.socket_fd >= 0 {
            // The application keeps its fd (as the blurb says): work on a duplicate.
            let fd =
                crate::dup_app_fd(s.socket_fd).map_err(|source| shmring::ConnectError::Os {
                    op: "dup(socket-fd)",
                    source,
                })?;
            return Consumer::from_fd(fd, cfg);
        }
        let path = s
            .target()
            .map_err(|e| shmring::ConnectError::Invalid(e.to_string()))?
            .unwrap_or_default();
        if s.reconnect {
            let waker = self.wakers.lock().unwrap()[0].clone();
            Consumer::connect_with_backoff(
                &path,
                cfg,
                Backoff {
                    initial: s.reconnect_interval,
                    max: s.reconnect_interval,
                },
                None,
                Some(&waker),
            )
        } else {
            Consumer::connect(&path, cfg)
        }
    }

    pub(super) fn install(&self, c: Consumer) {
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
        self.metas.lock().unwrap().assembly = Default::default();
        self.late_events.lock().unwrap().clear();
        self.marker_due.store(false, Ordering::Relaxed);
        self.eos_due.store(false, Ordering::Relaxed);
        self.note_due.store(true, Ordering::Relaxed);
        self.accepts_sent.store(false, Ordering::Relaxed);
        // A new producer's stream: its first buffer is a discontinuity.
        let again = self.counters.lock().unwrap().reconnects > 0;
        self.discont_next.store(again, Ordering::Relaxed);
    }

    /// The buffer for frame `f`, and whether more of its buffer list follow.
    pub(super) fn buffer_of(&self, f: Frame) -> Result<(gst::Buffer, bool), Refusal> {
        const WHAT: &str = "bad buffer metadata";
        let m = BufferMeta::decode(f.meta()).map_err(|e| Refusal::fault(WHAT, e))?;
        let len = f.len();
        // Everything the producer says about this buffer, checked against the caps
        // before a buffer exists.
        let (checked, format) = {
            let st = self.state.lock().unwrap();
            // No caps yet (none were ever sent, as from a source that sets
            // none): opaque bytes, as in one process.
            let format = st
                .as_ref()
                .and_then(|s| s.format.clone())
                .unwrap_or(trust::Format::Other);
            let checked = format.check(len, &m).map_err(|e| Refusal::lie(WHAT, e))?;
            (checked, format)
        };
        let live = self.maps_through_clock();
        let limit = self.settings.lock().unwrap().zero_copy_limit;
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
            // Followed by zeros, as the shared frame is by its arena's pad: what
            // downstream reads past the end (whole pixel groups) stays in memory.
            let mut v = vec![0u8; len + shmring::frame::READ_PAD];
            f.copy_to(&mut v[..len]);
            drop(f);
            let mut b = gst::Buffer::from_mut_slice(v);
            b.get_mut().expect("fresh buffer").set_size(len);
            b
        } else {
            wrap_frame(f, self.outstanding.clone())
        };
        let first = match (m.pts, m.dts) {
            (codec::NONE, d) | (d, codec::NONE) => d,
            (p, d) => p.min(d),
        };
        self.configure_segment(live, m.base_time, first);
        {
            let b = buffer.get_mut().expect("fresh buffer");
            // The producer's timestamps as they are: the segment says what they mean.
            b.set_pts(to_ct(m.pts));
            b.set_dts(to_ct(m.dts));
            b.set_duration(to_ct(m.duration));
            b.set_offset(m.offset);
            b.set_offset_end(m.offset_end);
            b.set_flags(checked.flags);
            // Set by GStreamer when the memory went in: says nothing of the data.
            b.unset_flags(gst::BufferFlags::TAG_MEMORY);
            trust::add_layout_metas(b, &format, &checked).map_err(|e| Refusal::lie(WHAT, e))?;
            if m.metas_tag != 0 {
                self.add_metas(b, m.metas_tag)?;
            }
        }
        let mut c = self.counters.lock().unwrap();
        c.frames += 1;
        c.bytes += len as u64;
        Ok((buffer, m.list_continues))
    }

    /// Handles one event of the consumer; `Next::Again` when nothing goes downstream
    /// as a buffer yet.
    pub(super) fn handle(&self, ev: Event) -> Result<Next, gst::FlowError> {
        match ev {
            Event::Frame(f) => {
                self.counters.lock().unwrap().dropped += f.dropped_before() as u64;
                // In caps downstream refuses, while the producer negotiates again.
                if let Some(since) = self.caps_refused_since() {
                    if since.elapsed() < CAPS_GRACE {
                        self.counters.lock().unwrap().refused_caps += 1;
                        return Ok(Next::Again);
                    }
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        [
                            "The producer kept caps downstream refuses for {:?}",
                            CAPS_GRACE
                        ]
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
                let discont =
                    f.dropped_before() > 0 || self.discont_next.swap(false, Ordering::Relaxed);
                let (mut b, more) = match self.buffer_of(f) {
                    Ok(b) => b,
                    Err(e) => return Ok(Next::Fault(e)),
                };
                if discont {
                    b.make_mut().set_flags(gst::BufferFlags::DISCONT);
                }
                Ok(Next::Buffer(b, more))
            }
            Event::Side { payload, .. } => match Side::decode(&payload) {
                Ok(side) => self.side(side),
                Err(e) => Ok(Next::Fault(Refusal::fault("bad side message", e))),
            },
            Event::End { reason } => {
                // The producer stopped without sending EOS: the stream is over, unless
                // we wait for it to come back.
                gst::info!(CAT, imp = self, "producer stopped: {reason}");
                if self.settings.lock().unwrap().reconnect {
                    Ok(Next::Gone(reason))
                } else {
                    Err(gst::FlowError::Eos)
                }
            }
        }
    }

    /// What a side message does: caps and stream-start act at once, serialized
    /// events wait for the next buffer (or a marker), a gap or the end owes a
    /// marker.
    pub(super) fn side(&self, side: Side) -> Result<Next, gst::FlowError> {
        match side {
            Side::Caps(caps) => return self.side_caps(caps),
            Side::StreamStart { stream_id } => self.side_stream_start(&stream_id),
            // In the order they came to the producer's sink. After its segment:
            // into the data flow through BaseSrc, which pushes what it was sent
            // after the segment it has pending and before the next buffer (pushed
            // from here, a tag before the stream's first buffer would overtake
            // the segment). Before it (as some elements send them): at once,
            // ahead of the segment, as there.
            Side::Tags(t) => {
                let after_segment = self
                    .state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|st| st.segment.is_some());
                if after_segment {
                    self.late(gst::event::Tag::new(t));
                } else {
                    self.src_pad().push_event(gst::event::Tag::new(t));
                }
            }
            // Every serialized event after the segment waits in one queue, in the
            // order it came, for the next buffer (or a marker) to carry it.
            Side::CustomSticky(s) => self.late(gst::event::CustomDownstreamSticky::new(s)),
            Side::Custom(s) => self.late(gst::event::CustomDownstream::new(s)),
            Side::Toc { toc, updated } => self.late(gst::event::Toc::new(&toc, updated)),
            Side::Segment(seg) => {
                if let Some(st) = self.state.lock().unwrap().as_mut() {
                    st.segment = Some(seg);
                    st.sent_segment = None;
                }
            }
            // A gap stands for the buffers that do not come: a marker carries it
            // and what came before it out now.
            Side::Gap { pts, duration } => {
                if let Some(p) = to_ct(pts) {
                    self.late(
                        gst::event::Gap::builder(p)
                            .duration(to_ct(duration))
                            .build(),
                    );
                    return Ok(Next::Events);
                }
            }
            Side::Eos => {
                if self.late_events.lock().unwrap().is_empty() {
                    return Err(gst::FlowError::Eos);
                }
                self.eos_due.store(true, Ordering::Relaxed);
                return Ok(Next::Events);
            }
            Side::Flush => self.side_flush(),
            Side::MetaPiece(body) => return Ok(self.side_meta_piece(&body)),
            Side::Latency { live, min, max } => return Ok(self.side_latency(live, min, max)),
        }
        Ok(Next::Again)
    }

    fn src_pad(&self) -> gst::Pad {
        self.obj().static_pad("src").expect("src pad")
    }

    /// `e` waits for the next buffer (or a marker) to carry it.
    fn late(&self, e: gst::Event) {
        self.late_events.lock().unwrap().push(e);
    }

    fn side_caps(&self, caps: gst::Caps) -> Result<Next, gst::FlowError> {
        let same = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.caps.clone())
            .is_some_and(|c| c == caps);
        if same {
            return Ok(Next::Again);
        }
        gst::debug!(CAT, imp = self, "caps {caps}");
        let format = match trust::accept_caps(&caps) {
            Ok(f) => f,
            Err(e) => return Ok(Next::Fault(Refusal::lie("caps that cannot cross", e))),
        };
        let pad = self.src_pad();
        // After a new stream-start the caps go again even if unchanged (set_caps
        // would skip them).
        let again = pad.current_caps().is_some_and(|c| c == caps);
        if again {
            pad.push_event(gst::event::Caps::new(&caps));
        } else if !pad.peer_query_accept_caps(&caps) || self.obj().set_caps(&caps).is_err() {
            return self.caps_refused(caps, pad.peer_query_caps(None));
        }
        if let Some(st) = self.state.lock().unwrap().as_mut() {
            st.format = Some(format);
            st.caps = Some(caps);
            st.caps_refused = None;
        }
        Ok(Next::Again)
    }

    /// Downstream refuses the producer's `caps` (it accepts `theirs`). If the
    /// producer was told what downstream accepts, it has [`CAPS_GRACE`] to
    /// negotiate again, and what comes meanwhile is dropped; else a negotiation
    /// error.
    fn caps_refused(&self, caps: gst::Caps, theirs: gst::Caps) -> Result<Next, gst::FlowError> {
        if self.accepts_sent.load(Ordering::Relaxed) {
            let mut guard = self.state.lock().unwrap();
            if let Some(st) = guard.as_mut() {
                let since = st.caps_refused.get_or_insert_with(Instant::now);
                if since.elapsed() < CAPS_GRACE {
                    gst::info!(
                        CAT,
                        imp = self,
                        "downstream refuses {caps}; waiting for the producer to negotiate what it accepts ({theirs})"
                    );
                    st.format = None;
                    st.caps = None;
                    st.refused = Some(caps);
                    return Ok(Next::Again);
                }
            }
        }
        gst::element_imp_error!(
            self,
            gst::CoreError::Negotiation,
            [
                "Downstream refuses the producer's caps {} (it accepts {})",
                caps,
                theirs
            ]
        );
        Err(gst::FlowError::NotNegotiated)
    }

    fn side_stream_start(&self, stream_id: &str) {
        let first = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .map(|s| !std::mem::replace(&mut s.stream_started, true))
            .unwrap_or(false);
        // BaseSrc sends one stream-start itself; after a reconnect the new stream
        // gets its own, in a new group, then caps (even if the same) and a segment
        // before its first buffer, as for any new stream.
        if first && self.counters.lock().unwrap().reconnects > 0 {
            if let Some(st) = self.state.lock().unwrap().as_mut() {
                st.caps = None;
                st.segment = None;
                st.sent_segment = None;
                st.lag_proposed = false;
            }
            self.src_pad().push_event(
                gst::event::StreamStart::builder(stream_id)
                    .group_id(gst::GroupId::next())
                    .build(),
            );
        }
    }

    fn side_flush(&self) {
        // As the producer's pipeline did. Running time starts again with it where
        // timestamps pass as sent; where they are mapped through the clock, the
        // mapping already follows the producer's new base time and this pipeline
        // keeps its own.
        let mapped = self.maps_through_clock();
        let pad = self.src_pad();
        // What came before the flush goes before it.
        for e in std::mem::take(&mut *self.late_events.lock().unwrap()) {
            pad.push_event(e);
        }
        pad.push_event(gst::event::FlushStart::new());
        pad.push_event(gst::event::FlushStop::new(!mapped));
        // Flushing took the segment downstream: configure it again.
        if let Some(st) = self.state.lock().unwrap().as_mut() {
            st.sent_segment = None;
        }
    }

    fn side_meta_piece(&self, body: &[u8]) -> Next {
        let max = self.settings.lock().unwrap().max_meta_bytes as usize;
        let mut ms = self.metas.lock().unwrap();
        match ms.assembly.piece(body, max) {
            Ok(metas::Piece::TooLarge { total }) => {
                self.counters.lock().unwrap().metas_refused += 1;
                if ms.logged.first("(over max-meta-bytes)") {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "the producer sends {total} bytes of metas for a buffer, over max-meta-bytes ({max}): not added; counted in stats as metas-refused"
                    );
                }
                Next::Again
            }
            Ok(_) => Next::Again,
            Err(e) => Next::Fault(Refusal::fault("bad meta piece", e)),
        }
    }

    fn side_latency(&self, live: bool, min: u64, max: u64) -> Next {
        if let Err(e) = trust::accept_latency(min, max) {
            return Next::Fault(Refusal::lie("bad latency", e));
        }
        let l = (live, gst::ClockTime::from_nseconds(min), codec::to_ct(max));
        let changed = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|s| s.latency.replace(l) != Some(l));
        if changed {
            gst::debug!(CAT, imp = self, "producer latency {l:?}");
            // The pipeline asks everyone again and redistributes.
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
        Next::Again
    }

    /// Whether timestamps are mapped through the clock: `is-live` when set, else
    /// whether the producer's pipeline is live (as its latency says; live until
    /// it said).
    pub(super) fn maps_through_clock(&self) -> bool {
        let (live, set) = {
            let s = self.settings.lock().unwrap();
            (s.is_live, s.is_live_set)
        };
        let producer_live = || {
            self.state
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|st| st.latency)
                .is_none_or(|l| l.0)
        };
        live && (set || producer_live())
    }

    /// Makes sure the segment downstream describes the producer's timestamps, before
    /// the buffer about to go (whose earliest timestamp is `first`): the producer's
    /// segment as it is (`is-live=false`), or (live) moved so that running time here
    /// is the producer's running time mapped through the clock both share.
    ///
    /// Buffers made before this pipeline started (a producer that waited for a
    /// consumer, then sent what its live source made meanwhile) would have
    /// negative running time here, and a muxer or sink would drop them. So the
    /// stream's first buffer sets a lag: how far before this pipeline's start it
    /// was made. The stream runs that much later than the clock says, for its
    /// whole length, with every timestamp and spacing as sent. A consumer that
    /// joins a running stream gets a current first buffer and no lag. Every
    /// source of this process that receives from one producer pipeline (the same
    /// base time) into one pipeline here takes the same lag, the largest their
    /// first buffers asked for ([`shared_lag`]), so audio and video from one
    /// producer stay in sync.
    pub(super) fn configure_segment(&self, live: bool, producer_base: u64, first: u64) {
        let obj = self.obj();
        let mine = obj.base_time();
        let mut guard = self.state.lock().unwrap();
        let Some(st) = guard.as_mut() else { return };
        let mut seg = st.segment.clone().unwrap_or_default();
        if live && producer_base != codec::NONE {
            if let Some(mine) = mine {
                let by = producer_base as i128 - mine.nseconds() as i128;
                let proposal = (!std::mem::replace(&mut st.lag_proposed, true)).then(|| {
                    let rt = codec::to_ct(first)
                        .and_then(|t| seg.to_running_time_full(t))
                        .map_or(0, |rt| match rt {
                            gst::Signed::Positive(t) => t.nseconds() as i128,
                            gst::Signed::Negative(t) => -(t.nseconds() as i128),
                        });
                    (-(rt + by)).max(0)
                });
                let lag = shared_lag(mine.nseconds(), producer_base, proposal);
                shift_running_time(&mut seg, by + lag);
            }
        }
        if st.sent_segment.as_ref() == Some(&seg) {
            return;
        }
        st.sent_segment = Some(seg.clone());
        drop(guard);
        gst::debug!(
            CAT,
            imp = self,
            "segment {seg:?} (producer base {producer_base})"
        );
        if let Err(e) = obj.new_segment(seg.upcast_ref()) {
            gst::warning!(CAT, imp = self, "segment not configured: {e}");
        }
    }

    /// Since when downstream refuses the producer's caps (see `CAPS_GRACE`).
    pub(super) fn caps_refused_since(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.caps_refused)
    }

    /// Tells the producer which caps downstream accepts (once connected, and when
    /// downstream asks to reconfigure).
    pub(super) fn send_accepts(&self, c: &Consumer) {
        let pad = self.obj().static_pad("src").expect("src pad");
        // ANY too: the producer learns this consumer takes anything.
        let caps = pad.peer_query_caps(None);
        if caps.is_empty() {
            return;
        }
        let Some(note) = codec::note::encode(&caps) else {
            gst::debug!(
                CAT,
                imp = self,
                "downstream's caps are too long to tell the producer"
            );
            return;
        };
        match c.send_note(&note) {
            Ok(()) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "told the producer downstream accepts {caps}"
                );
                self.accepts_sent.store(true, Ordering::Relaxed);
            }
            Err(e) => gst::info!(
                CAT,
                imp = self,
                "cannot tell the producer what downstream accepts: {e}"
            ),
        }
    }

    /// Adds to `b` the metas the producer sent for it (under `tag`), each checked
    /// first; a malformed list is the producer's lie, a meta this process cannot
    /// add is counted and logged once by name.
    fn add_metas(&self, b: &mut gst::BufferRef, tag: u16) -> Result<(), Refusal> {
        let Some(list) = self.metas.lock().unwrap().assembly.take(tag) else {
            // Over max-meta-bytes (counted when it came), or never sent whole.
            return Ok(());
        };
        let frame = {
            let st = self.state.lock().unwrap();
            metas::Frame::of(st.as_ref().and_then(|s| s.caps.as_ref()))
        };
        let decoded = metas::decode(&list, frame).map_err(|e| Refusal::fault("bad metas", e))?;
        let n = decoded.len() as u64;
        let allowed = metas::Allowed::parse(&self.settings.lock().unwrap().custom_metas);
        let refused = metas::apply(b, decoded, &allowed);
        {
            let mut c = self.counters.lock().unwrap();
            c.metas += n - refused.len() as u64;
            c.metas_refused += refused.len() as u64;
        }
        if !refused.is_empty() {
            let mut ms = self.metas.lock().unwrap();
            for name in refused {
                if ms.logged.first(&name) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "the producer sends {name} metas, which this process cannot add (a custom meta must be registered here or allowed by custom-metas, and not clash with a type of that name; a serialized one needs GStreamer ≥ 1.24 and the meta registered); counted in stats as metas-refused"
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> gst::Structure {
        let c = *self.counters.lock().unwrap();
        gst::Structure::builder("shmringsrc-stats")
            .field("frames", c.frames)
            .field("bytes", c.bytes)
            .field("copies", c.copies)
            .field("dropped", c.dropped)
            .field("reconnects", c.reconnects)
            .field("metas", c.metas)
            .field("metas-refused", c.metas_refused)
            .field("refused-caps", c.refused_caps)
            .field("wake-ahead-hits", c.anticipation.hits)
            .field("wake-ahead-misses", c.anticipation.misses)
            .field("wake-ahead-turned-off", c.anticipation.turned_off)
            .field("wake-oversleep-p90-us", c.anticipation.oversleep_p90_us)
            .field("frame-lateness-p90-us", c.anticipation.lateness_p90_us)
            .build()
    }
}

/// Wraps a frame's shared payload as a read-only `GstMemory` without copying; the
/// frame (and with it the slot) is released when GStreamer frees the memory.
pub(super) fn wrap_frame(f: Frame, outstanding: Arc<AtomicUsize>) -> gst::Buffer {
    /// Counts the slot as held downstream for as long as it lives.
    struct Held {
        _frame: Frame,
        count: Arc<AtomicUsize>,
    }
    impl Drop for Held {
        fn drop(&mut self) {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let (ptr, len) = (f.as_ptr(), f.len());
    outstanding.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `ptr` points at `len` bytes mapped read-only for as long as the Frame
    // lives, and the Frame lives in the memory's owner until GStreamer frees it. The
    // memory is flagged READONLY, so GStreamer never writes through it (and the
    // mapping is PROT_READ anyway: a write would fault, never corrupt). A hostile
    // producer may still change the bytes: downstream sees possibly torn pixels,
    // which the trust model accepts for zero-copy.
    let (mem, _) = unsafe {
        crate::memory::wrap(
            ptr,
            len,
            len,
            true,
            Held {
                _frame: f,
                count: outstanding,
            },
        )
    };
    let mut buffer = gst::Buffer::new();
    buffer.get_mut().expect("fresh buffer").append_memory(mem);
    buffer
}

/// Moves `seg` so that every position's running time changes by `by` ns (positive:
/// later). Later raises the base; earlier lowers it, and past zero moves the
/// segment's start (stop, for reverse playback) and its time along, so stream
/// time stays what it was.
pub(super) fn shift_running_time(seg: &mut gst::FormattedSegment<gst::ClockTime>, by: i128) {
    let base = seg.base().map_or(0, |b| b.nseconds()) as i128;
    let to = base + by;
    if to >= 0 {
        seg.set_base(gst::ClockTime::from_nseconds(
            to.min(u64::MAX as i128 - 1) as u64
        ));
        return;
    }
    seg.set_base(gst::ClockTime::ZERO);
    // What is left, in stream units (running time runs |rate| times slower).
    let rest = ((-to) as f64 * seg.rate().abs()).min(u64::MAX as f64 / 2.0) as u64;
    let add = |t: Option<gst::ClockTime>, by: u64| {
        t.map(|t| gst::ClockTime::from_nseconds(t.nseconds().saturating_add(by)))
    };
    if seg.rate() > 0.0 {
        let start = seg.start().map_or(0, |s| s.nseconds());
        let stop = seg.stop().map_or(u64::MAX, |s| s.nseconds());
        let moved = rest.min(stop.saturating_sub(start));
        seg.set_start(add(seg.start(), moved));
        let dt = (moved as f64 * seg.applied_rate().abs()) as u64;
        seg.set_time(add(seg.time(), dt));
        if seg.position().is_some_and(|p| Some(p) < seg.start()) {
            seg.set_position(seg.start());
        }
    } else if let Some(stop) = seg.stop() {
        let start = seg.start().map_or(0, |s| s.nseconds());
        let moved = rest.min(stop.nseconds().saturating_sub(start));
        seg.set_stop(gst::ClockTime::from_nseconds(stop.nseconds() - moved));
    }
}

/// The lag of streams from the producer pipeline with base time `theirs` into the
/// pipeline here with base time `mine`: the largest that a stream's first buffer
/// proposed, so that no stream's first buffer runs before this pipeline's start.
/// A stream whose first buffer comes after another's and is older raises it for
/// all (each source looks again before every buffer): a jump of a few
/// milliseconds at the start, then one lag for all. A few recent pairs are kept
/// (a new pair comes with each start of either pipeline).
fn shared_lag(mine: u64, theirs: u64, proposed: Option<i128>) -> i128 {
    static LAGS: std::sync::Mutex<VecDeque<((u64, u64), i128)>> =
        std::sync::Mutex::new(VecDeque::new());
    let mut lags = LAGS.lock().unwrap();
    if let Some((_, lag)) = lags.iter_mut().find(|(k, _)| *k == (mine, theirs)) {
        if let Some(p) = proposed {
            *lag = (*lag).max(p);
        }
        return *lag;
    }
    let Some(p) = proposed else { return 0 };
    if lags.len() >= 64 {
        lags.pop_front();
    }
    lags.push_back(((mine, theirs), p));
    p
}

#[cfg(test)]
mod tests {
    use super::shift_running_time;

    fn seg(start: u64, base: u64) -> gst::FormattedSegment<gst::ClockTime> {
        let mut s = gst::FormattedSegment::<gst::ClockTime>::new();
        s.set_start(gst::ClockTime::from_nseconds(start));
        s.set_time(gst::ClockTime::from_nseconds(start));
        s.set_base(gst::ClockTime::from_nseconds(base));
        s
    }

    fn rt(s: &gst::FormattedSegment<gst::ClockTime>, pts: u64) -> i128 {
        match s
            .to_running_time_full(gst::ClockTime::from_nseconds(pts))
            .unwrap()
        {
            gst::Signed::Positive(t) => t.nseconds() as i128,
            gst::Signed::Negative(t) => -(t.nseconds() as i128),
        }
    }

    #[test]
    fn shifting_moves_every_running_time_by_the_amount_and_keeps_stream_time() {
        gst::init().unwrap();
        for (start, base, by) in [
            (1000, 0, 500i128),
            (1000, 800, -500),
            (1000, 300, -500),
            (3_600_000_000_000, 0, -250_000_000),
        ] {
            let before = seg(start, base);
            let mut after = before.clone();
            shift_running_time(&mut after, by);
            for pts in [start, start + 10, start + 1_000_000_000] {
                assert_eq!(
                    rt(&after, pts),
                    rt(&before, pts) + by,
                    "{start} {base} {by} at {pts}"
                );
                let at = gst::ClockTime::from_nseconds(pts);
                assert_eq!(
                    after.to_stream_time_full(at),
                    before.to_stream_time_full(at),
                    "stream time at {pts}"
                );
            }
        }
    }
}
