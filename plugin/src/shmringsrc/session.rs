//! What `shmringsrc` decides, with no element: what each event of the producer
//! makes (a buffer, events to push now or with the next buffer, caps to offer, a
//! segment to configure, an error), and everything that decision remembers.
//!
//! The element holds one `Session` behind one lock, taken once per event `create`
//! receives; the session never calls into GStreamer's pads or the element, so the
//! element acts on what it says (the [`Act`]s, in order) after letting the lock go.
//! A push downstream may come back into the element (a reconfigure event, a
//! query) and find it free.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use shmring::{Event, Frame};

use crate::codec::metas;
use crate::codec::trust;
use crate::codec::{self, BufferMeta, Refusal, Side, to_ct};

use super::{CAPS_GRACE, CAT};

/// What of the element's settings the session reads per buffer (a copy, updated
/// when a property changes).
#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) is_live: bool,
    /// `is-live` was set: map timestamps through the clock (or not) whatever the
    /// producer's pipeline is.
    pub(super) is_live_set: bool,
    /// -1: automatic (one less than the producer's slot share).
    pub(super) zero_copy_limit: i32,
    pub(super) max_meta_bytes: u32,
    /// `custom-metas`, parsed.
    pub(super) allowed: metas::Allowed,
    pub(super) reconnect: bool,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) copies: u64,
    pub(super) dropped: u64,
    pub(super) reconnects: u64,
    /// What the consumer's wake-ahead did, as of a recent buffer.
    pub(super) anticipation: shmring::frame::Anticipation,
    /// Metas added to buffers.
    pub(super) metas: u64,
    /// Metas the producer sent that were not added (see `stats`).
    pub(super) metas_refused: u64,
    /// Buffers dropped in caps downstream refused, while the producer negotiated.
    pub(super) refused_caps: u64,
}

/// What an event made, for `create`.
pub(super) enum Next {
    /// A buffer, and whether more of its buffer list follow.
    Buffer(gst::Buffer, bool),
    Again,
    /// Events wait with no buffer coming to carry them now.
    Events,
    /// The producer ended the stream: at once, or after the events waiting.
    Eos,
    /// The producer sent something invalid: an error, or a reconnect when asked.
    Fault(Refusal),
    /// The producer said goodbye while this source reconnects (its reason).
    Gone(String),
}

/// What the element does for the session, in order, with no lock held.
#[derive(Debug)]
pub(super) enum Act {
    /// Push this event on the src pad now.
    Push(gst::Event),
    /// This event waits for the next buffer (or a marker) to carry it.
    Late(gst::Event),
    /// Flush downstream as the producer's pipeline did: what waits goes first;
    /// `reset_time` as `FlushStop` says.
    Flush { reset_time: bool },
    /// Configure this segment before the buffer goes.
    Segment(gst::FormattedSegment<gst::ClockTime>),
    /// The producer's latency changed: the pipeline should ask again.
    LatencyChanged,
    /// Offer these caps downstream (then [`Session::caps_taken`] or
    /// [`Session::caps_refused`]).
    OfferCaps(gst::Caps),
}

/// Why the stream stops.
#[derive(Debug)]
pub(super) enum Stop {
    /// Downstream refuses what the producer sends, and the producer did not
    /// negotiate in time (the message says what).
    Negotiation(String),
}

/// What the session needs of the world besides the event.
pub(super) struct Ctx<'a> {
    /// The element's base time (for live timestamps).
    pub(super) base_time: Option<gst::ClockTime>,
    /// Slots downstream holds right now.
    pub(super) outstanding: &'a Arc<AtomicUsize>,
    /// The consumer's wake-ahead figures, when `create` looked at them.
    pub(super) anticipation: Option<shmring::frame::Anticipation>,
}

/// Everything the source decides with.
pub(super) struct Session {
    pub(super) cfg: Config,
    pub(super) counters: Counters,
    caps: Option<gst::Caps>,
    /// What the caps let a buffer be (decided once per caps, not per buffer); every
    /// buffer is checked against it before it is built.
    format: Option<trust::Format>,
    /// Caps offered downstream and not yet answered, with their format.
    offered: Option<(gst::Caps, trust::Format)>,
    /// Whether the current connection's stream-start was seen.
    stream_started: bool,
    /// The producer's segment, as it last sent it (`None`: none yet, the default
    /// time segment).
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// The segment configured last (`None`: configure one before the next buffer).
    sent_segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Live: this stream's first buffer proposed its lag (see `segment_for`).
    lag_proposed: bool,
    /// Slots the producer lets this consumer hold (from its welcome).
    max_held: u32,
    /// The producer's upstream latency (live, min, max), as it last told us.
    latency: Option<(bool, gst::ClockTime, Option<gst::ClockTime>)>,
    /// Since when downstream refuses the producer's caps (it was told what it
    /// accepts, and has a grace period to negotiate again).
    caps_refused: Option<Instant>,
    /// The caps downstream refused.
    refused: Option<gst::Caps>,
    /// The metas arriving for the next buffer, and what was logged of them.
    assembly: metas::Assembly,
    logged: metas::LoggedOnce,
    /// The producer was told what downstream accepts (a refused caps then waits
    /// for new ones).
    accepts_sent: bool,
    /// The next buffer follows a reconnection: DISCONT.
    discont_next: bool,
}

impl Session {
    pub(super) fn new(cfg: Config) -> Session {
        Session {
            cfg,
            counters: Counters::default(),
            caps: None,
            format: None,
            offered: None,
            stream_started: false,
            segment: None,
            sent_segment: None,
            lag_proposed: false,
            max_held: 1,
            latency: None,
            caps_refused: None,
            refused: None,
            assembly: Default::default(),
            logged: Default::default(),
            accepts_sent: false,
            discont_next: false,
        }
    }

    /// A producer's welcome: a new stream, whose first buffer is a discontinuity if
    /// it follows another.
    pub(super) fn connected(&mut self, max_held: u32) {
        self.max_held = max_held;
        self.stream_started = false;
        self.assembly = Default::default();
        self.accepts_sent = false;
        self.discont_next = self.counters.reconnects > 0;
    }

    /// The producer is lost (this source reconnects).
    pub(super) fn lost(&mut self) {
        self.counters.reconnects += 1;
        self.stream_started = false;
    }

    /// The producer was told what downstream accepts.
    pub(super) fn accepts_sent(&mut self) {
        self.accepts_sent = true;
    }

    /// Since when downstream refuses the producer's caps (see [`CAPS_GRACE`]).
    pub(super) fn caps_refused_since(&self) -> Option<Instant> {
        self.caps_refused
    }

    /// The caps downstream refused last.
    pub(super) fn refused(&self) -> Option<&gst::Caps> {
        self.refused.as_ref()
    }

    /// The producer's latency, as it last told.
    pub(super) fn latency(&self) -> Option<(bool, gst::ClockTime, Option<gst::ClockTime>)> {
        self.latency
    }

    /// What one event of the consumer makes; the [`Act`]s go to `acts`.
    pub(super) fn handle(
        &mut self,
        ev: Event,
        ctx: &Ctx<'_>,
        acts: &mut Vec<Act>,
    ) -> Result<Next, Stop> {
        if let Some(a) = ctx.anticipation {
            self.counters.anticipation = a;
        }
        match ev {
            Event::Frame(f) => self.frame(f, ctx, acts),
            Event::Side { payload, .. } => match Side::decode(&payload) {
                Ok(side) => Ok(self.side(side, acts)),
                Err(e) => Ok(Next::Fault(Refusal::fault("bad side message", e))),
            },
            Event::End { reason } => {
                // The producer stopped without sending EOS: the stream is over, unless
                // we wait for it to come back.
                gst::info!(CAT, "producer stopped: {reason}");
                Ok(if self.cfg.reconnect {
                    Next::Gone(reason)
                } else {
                    Next::Eos
                })
            }
        }
    }

    fn frame(&mut self, f: Frame, ctx: &Ctx<'_>, acts: &mut Vec<Act>) -> Result<Next, Stop> {
        self.counters.dropped += f.dropped_before() as u64;
        // In caps downstream refuses, while the producer negotiates again.
        if let Some(since) = self.caps_refused {
            if since.elapsed() < CAPS_GRACE {
                self.counters.refused_caps += 1;
                return Ok(Next::Again);
            }
            return Err(Stop::Negotiation(format!(
                "The producer kept caps downstream refuses for {CAPS_GRACE:?}"
            )));
        }
        let discont = f.dropped_before() > 0 || std::mem::take(&mut self.discont_next);
        let (mut b, more) = match self.buffer_of(f, ctx, acts) {
            Ok(b) => b,
            Err(e) => return Ok(Next::Fault(e)),
        };
        if discont {
            b.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
        Ok(Next::Buffer(b, more))
    }

    /// The buffer for frame `f`, and whether more of its buffer list follow.
    fn buffer_of(
        &mut self,
        f: Frame,
        ctx: &Ctx<'_>,
        acts: &mut Vec<Act>,
    ) -> Result<(gst::Buffer, bool), Refusal> {
        const WHAT: &str = "bad buffer metadata";
        let m = BufferMeta::decode(f.meta()).map_err(|e| Refusal::fault(WHAT, e))?;
        let len = f.len();
        // Everything the producer says about this buffer, checked against the caps
        // before a buffer exists. No caps yet (none were ever sent, as from a
        // source that sets none): opaque bytes, as in one process.
        let other = trust::Format::Other;
        let format = self.format.as_ref().unwrap_or(&other);
        let checked = format.check(len, &m).map_err(|e| Refusal::lie(WHAT, e))?;
        let limit = match usize::try_from(self.cfg.zero_copy_limit) {
            Ok(l) => l,
            // Automatic: leave the producer at least one slot of our share to queue
            // the next buffer in, whatever downstream keeps.
            Err(_) => self.max_held.saturating_sub(1).max(1) as usize,
        };
        let held = ctx.outstanding.load(Ordering::Acquire);
        let mut buffer = if f.is_copy() || held >= limit {
            // Downstream already holds its share of slots (a queue, filesink's
            // write buffer, an encoder's lookahead): copy, so the producer never waits
            // for it, and let the slot go at once.
            self.counters.copies += 1;
            copy_frame(f)
        } else {
            wrap_frame(f, ctx.outstanding.clone())
        };
        let first = match (m.pts, m.dts) {
            (codec::NONE, d) | (d, codec::NONE) => d,
            (p, d) => p.min(d),
        };
        let live = self.maps_through_clock();
        if let Some(seg) = self.segment_for(live, m.base_time, first, ctx.base_time) {
            acts.push(Act::Segment(seg));
        }
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
            let format = self.format.as_ref().unwrap_or(&other);
            trust::add_layout_metas(b, format, &checked).map_err(|e| Refusal::lie(WHAT, e))?;
            if m.metas_tag != 0 {
                self.add_metas(b, m.metas_tag)?;
            }
        }
        self.counters.frames += 1;
        self.counters.bytes += len as u64;
        Ok((buffer, m.list_continues))
    }

    /// What a side message does: caps and stream-start act at once, serialized
    /// events wait for the next buffer (or a marker), a gap or the end owes a
    /// marker.
    fn side(&mut self, side: Side, acts: &mut Vec<Act>) -> Next {
        match side {
            Side::Caps(caps) => return self.side_caps(caps, acts),
            Side::StreamStart { stream_id } => self.side_stream_start(&stream_id, acts),
            // In the order they came to the producer's sink. After its segment:
            // into the data flow through BaseSrc, which pushes what it was sent
            // after the segment it has pending and before the next buffer (pushed
            // at once, a tag before the stream's first buffer would overtake the
            // segment). Before it (as some elements send them): at once, ahead of
            // the segment, as there.
            Side::Tags(t) => acts.push(if self.segment.is_some() {
                Act::Late(gst::event::Tag::new(t))
            } else {
                Act::Push(gst::event::Tag::new(t))
            }),
            // Every serialized event after the segment waits in one queue, in the
            // order it came, for the next buffer (or a marker) to carry it.
            Side::CustomSticky(s) => {
                acts.push(Act::Late(gst::event::CustomDownstreamSticky::new(s)))
            }
            Side::Custom(s) => acts.push(Act::Late(gst::event::CustomDownstream::new(s))),
            Side::Toc { toc, updated } => acts.push(Act::Late(gst::event::Toc::new(&toc, updated))),
            Side::Segment(seg) => {
                self.segment = Some(seg);
                self.sent_segment = None;
            }
            // A gap stands for the buffers that do not come: a marker carries it
            // and what came before it out now.
            Side::Gap { pts, duration } => {
                if let Some(p) = to_ct(pts) {
                    acts.push(Act::Late(
                        gst::event::Gap::builder(p)
                            .duration(to_ct(duration))
                            .build(),
                    ));
                    return Next::Events;
                }
            }
            Side::Eos => return Next::Eos,
            Side::Flush => {
                // As the producer's pipeline did. Running time starts again with it
                // where timestamps pass as sent; where they are mapped through the
                // clock, the mapping already follows the producer's new base time
                // and this pipeline keeps its own.
                acts.push(Act::Flush {
                    reset_time: !self.maps_through_clock(),
                });
                // Flushing took the segment downstream: configure it again.
                self.sent_segment = None;
            }
            Side::MetaPiece(body) => return self.side_meta_piece(&body),
            Side::Latency { live, min, max } => return self.side_latency(live, min, max, acts),
        }
        Next::Again
    }

    fn side_caps(&mut self, caps: gst::Caps, acts: &mut Vec<Act>) -> Next {
        if self.caps.as_ref() == Some(&caps) {
            return Next::Again;
        }
        gst::debug!(CAT, "caps {caps}");
        let format = match trust::accept_caps(&caps) {
            Ok(f) => f,
            Err(e) => return Next::Fault(Refusal::lie("caps that cannot cross", e)),
        };
        self.offered = Some((caps.clone(), format));
        acts.push(Act::OfferCaps(caps));
        Next::Again
    }

    /// Downstream took the caps offered last.
    pub(super) fn caps_taken(&mut self) {
        if let Some((caps, format)) = self.offered.take() {
            self.format = Some(format);
            self.caps = Some(caps);
            self.caps_refused = None;
        }
    }

    /// Downstream refuses the caps offered last (it accepts `theirs`). If the
    /// producer was told what downstream accepts, it has [`CAPS_GRACE`] to
    /// negotiate again, and what comes meanwhile is dropped; else the stream stops.
    pub(super) fn caps_refused(&mut self, theirs: &gst::Caps) -> Result<(), Stop> {
        let Some((caps, _)) = self.offered.take() else {
            return Ok(());
        };
        if self.accepts_sent {
            let since = *self.caps_refused.get_or_insert_with(Instant::now);
            if since.elapsed() < CAPS_GRACE {
                gst::info!(
                    CAT,
                    "downstream refuses {caps}; waiting for the producer to negotiate what it accepts ({theirs})"
                );
                self.format = None;
                self.caps = None;
                self.refused = Some(caps);
                return Ok(());
            }
        }
        Err(Stop::Negotiation(format!(
            "Downstream refuses the producer's caps {caps} (it accepts {theirs})"
        )))
    }

    fn side_stream_start(&mut self, stream_id: &str, acts: &mut Vec<Act>) {
        let first = !std::mem::replace(&mut self.stream_started, true);
        // BaseSrc sends one stream-start itself; after a reconnect the new stream
        // gets its own, in a new group, then caps (even if the same) and a segment
        // before its first buffer, as for any new stream.
        if first && self.counters.reconnects > 0 {
            self.caps = None;
            self.segment = None;
            self.sent_segment = None;
            self.lag_proposed = false;
            acts.push(Act::Push(
                gst::event::StreamStart::builder(stream_id)
                    .group_id(gst::GroupId::next())
                    .build(),
            ));
        }
    }

    fn side_meta_piece(&mut self, body: &[u8]) -> Next {
        let max = self.cfg.max_meta_bytes as usize;
        match self.assembly.piece(body, max) {
            Ok(metas::Piece::TooLarge { total }) => {
                self.counters.metas_refused += 1;
                if self.logged.first("(over max-meta-bytes)") {
                    gst::warning!(
                        CAT,
                        "the producer sends {total} bytes of metas for a buffer, over max-meta-bytes ({max}): not added; counted in stats as metas-refused"
                    );
                }
                Next::Again
            }
            Ok(_) => Next::Again,
            Err(e) => Next::Fault(Refusal::fault("bad meta piece", e)),
        }
    }

    fn side_latency(&mut self, live: bool, min: u64, max: u64, acts: &mut Vec<Act>) -> Next {
        if let Err(e) = trust::accept_latency(min, max) {
            return Next::Fault(Refusal::lie("bad latency", e));
        }
        let l = (live, gst::ClockTime::from_nseconds(min), codec::to_ct(max));
        if self.latency.replace(l) != Some(l) {
            gst::debug!(CAT, "producer latency {l:?}");
            acts.push(Act::LatencyChanged);
        }
        Next::Again
    }

    /// Whether timestamps are mapped through the clock: `is-live` when set, else
    /// whether the producer's pipeline is live (as its latency says; live until
    /// it said).
    pub(super) fn maps_through_clock(&self) -> bool {
        let producer_live = self.latency.is_none_or(|l| l.0);
        self.cfg.is_live && (self.cfg.is_live_set || producer_live)
    }

    /// The segment downstream needs before the buffer about to go (whose earliest
    /// timestamp is `first`), if not the one it has: the producer's segment as it
    /// is (`is-live=false`), or (live) moved so that running time here is the
    /// producer's running time mapped through the clock both share (`mine`: this
    /// pipeline's base time).
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
    fn segment_for(
        &mut self,
        live: bool,
        producer_base: u64,
        first: u64,
        mine: Option<gst::ClockTime>,
    ) -> Option<gst::FormattedSegment<gst::ClockTime>> {
        let mut seg = self.segment.clone().unwrap_or_default();
        if live && producer_base != codec::NONE {
            if let Some(mine) = mine {
                let by = producer_base as i128 - mine.nseconds() as i128;
                let proposal = (!std::mem::replace(&mut self.lag_proposed, true)).then(|| {
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
        if self.sent_segment.as_ref() == Some(&seg) {
            return None;
        }
        self.sent_segment = Some(seg.clone());
        gst::debug!(CAT, "segment {seg:?} (producer base {producer_base})");
        Some(seg)
    }

    /// Adds to `b` the metas the producer sent for it (under `tag`), each checked
    /// first; a malformed list is the producer's lie, a meta this process cannot
    /// add is counted and logged once by name.
    fn add_metas(&mut self, b: &mut gst::BufferRef, tag: u16) -> Result<(), Refusal> {
        let Some(list) = self.assembly.take(tag) else {
            // Over max-meta-bytes (counted when it came), or never sent whole.
            return Ok(());
        };
        let frame = metas::Frame::of(self.caps.as_ref());
        let decoded = metas::decode(&list, frame).map_err(|e| Refusal::fault("bad metas", e))?;
        let n = decoded.len() as u64;
        let refused = metas::apply(b, decoded, &self.cfg.allowed);
        self.counters.metas += n - refused.len() as u64;
        self.counters.metas_refused += refused.len() as u64;
        for name in refused {
            if self.logged.first(&name) {
                gst::warning!(
                    CAT,
                    "the producer sends {name} metas, which this process cannot add (a custom meta must be registered here or allowed by custom-metas, and not clash with a type of that name; a serialized one needs GStreamer ≥ 1.24 and the meta registered); counted in stats as metas-refused"
                );
            }
        }
        Ok(())
    }
}

/// The counters as the `stats` property shows them.
pub(super) fn stats(c: &Counters) -> gst::Structure {
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

/// A copy of a frame's bytes in a buffer of its own (the slot goes back at once),
/// followed by zeros as the shared frame is by its arena's pad: what downstream
/// reads past the end (whole pixel groups) stays in memory.
fn copy_frame(f: Frame) -> gst::Buffer {
    let len = f.len();
    let mut v = vec![0u8; len + shmring::frame::READ_PAD];
    f.copy_to(&mut v[..len]);
    drop(f);
    let mut b = gst::Buffer::from_mut_slice(v);
    b.get_mut().expect("fresh buffer").set_size(len);
    b
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
fn shift_running_time(seg: &mut gst::FormattedSegment<gst::ClockTime>, by: i128) {
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
    use super::*;

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

    fn session() -> Session {
        gst::init().unwrap();
        Session::new(Config {
            is_live: true,
            is_live_set: false,
            zero_copy_limit: -1,
            max_meta_bytes: 1 << 20,
            allowed: metas::Allowed::parse("*"),
            reconnect: false,
        })
    }

    fn caps(s: &str) -> gst::Caps {
        s.parse().unwrap()
    }

    fn side(s: &mut Session, side: Side) -> (Next, Vec<Act>) {
        let mut acts = Vec::new();
        let next = s.side(side, &mut acts);
        (next, acts)
    }

    const VIDEO: &str = "video/x-raw,format=RGBA,width=4,height=2,framerate=30/1";

    #[test]
    fn caps_are_offered_once_and_a_buffer_is_checked_against_them_once_taken() {
        let mut s = session();
        let (next, acts) = side(&mut s, Side::Caps(caps(VIDEO)));
        assert!(matches!(next, Next::Again));
        assert!(
            matches!(&acts[..], [Act::OfferCaps(c)] if *c == caps(VIDEO)),
            "{acts:?}"
        );
        // Not taken yet: no format, and the same caps are offered again.
        assert!(s.format.is_none());
        s.caps_taken();
        assert!(
            matches!(s.format, Some(trust::Format::Video(_))),
            "video caps"
        );
        let (_, acts) = side(&mut s, Side::Caps(caps(VIDEO)));
        assert!(acts.is_empty(), "the same caps again: {acts:?}");
    }

    #[test]
    fn caps_that_cannot_cross_are_the_producers_lie_and_offered_to_no_one() {
        let mut s = session();
        let (next, acts) = side(
            &mut s,
            Side::Caps(caps(
                "video/x-raw(memory:DMABuf),format=RGBA,width=4,height=2",
            )),
        );
        assert!(matches!(next, Next::Fault(_)));
        assert!(acts.is_empty(), "{acts:?}");
    }

    #[test]
    fn refused_caps_stop_the_stream_unless_the_producer_was_told_what_downstream_accepts() {
        let theirs = caps("video/x-raw,format=I420");
        let mut s = session();
        side(&mut s, Side::Caps(caps(VIDEO)));
        match s.caps_refused(&theirs) {
            Err(Stop::Negotiation(m)) => {
                assert!(m.contains("RGBA") && m.contains("I420"), "{m}")
            }
            Ok(()) => panic!("refused caps with nobody told must stop the stream"),
        }
        let mut s = session();
        s.accepts_sent();
        side(&mut s, Side::Caps(caps(VIDEO)));
        s.caps_refused(&theirs).unwrap();
        assert!(s.caps_refused_since().is_some());
        assert_eq!(s.refused(), Some(&caps(VIDEO)));
        assert!(s.caps.is_none() && s.format.is_none());
        // New caps downstream takes end the wait.
        side(
            &mut s,
            Side::Caps(caps("video/x-raw,format=I420,width=4,height=2")),
        );
        s.caps_taken();
        assert!(s.caps_refused_since().is_none());
    }

    #[test]
    fn tags_before_the_segment_go_at_once_and_after_it_with_the_next_buffer() {
        let mut s = session();
        let (_, acts) = side(&mut s, Side::Tags(gst::TagList::new()));
        assert!(matches!(&acts[..], [Act::Push(_)]), "{acts:?}");
        side(&mut s, Side::Segment(gst::FormattedSegment::new()));
        let (_, acts) = side(&mut s, Side::Tags(gst::TagList::new()));
        assert!(matches!(&acts[..], [Act::Late(_)]), "{acts:?}");
        let (next, acts) = side(
            &mut s,
            Side::Gap {
                pts: 5,
                duration: 1,
            },
        );
        assert!(matches!(next, Next::Events));
        assert!(matches!(&acts[..], [Act::Late(e)] if e.type_() == gst::EventType::Gap));
        let (next, _) = side(&mut s, Side::Eos);
        assert!(matches!(next, Next::Eos));
    }

    #[test]
    fn a_latency_is_acted_on_when_it_changes_and_a_lying_one_refused() {
        let mut s = session();
        let l = || Side::Latency {
            live: true,
            min: 1_000_000,
            max: 2_000_000,
        };
        assert_eq!(side(&mut s, l()).1.len(), 1);
        assert!(side(&mut s, l()).1.is_empty(), "unchanged");
        assert!(s.maps_through_clock());
        let (next, acts) = side(
            &mut s,
            Side::Latency {
                live: true,
                min: u64::MAX / 2,
                max: codec::NONE,
            },
        );
        assert!(matches!(next, Next::Fault(_)) && acts.is_empty());
        // A producer that is not live is not mapped through the clock, unless
        // is-live says so.
        side(
            &mut s,
            Side::Latency {
                live: false,
                min: 0,
                max: codec::NONE,
            },
        );
        assert!(!s.maps_through_clock());
        s.cfg.is_live_set = true;
        assert!(s.maps_through_clock());
    }

    #[test]
    fn after_a_reconnect_the_new_stream_starts_in_a_new_group_with_caps_again() {
        let mut s = session();
        s.connected(4);
        let (_, acts) = side(
            &mut s,
            Side::StreamStart {
                stream_id: "a".into(),
            },
        );
        assert!(acts.is_empty(), "BaseSrc sends the first one: {acts:?}");
        side(&mut s, Side::Caps(caps(VIDEO)));
        s.caps_taken();
        s.lost();
        s.connected(4);
        assert!(
            s.discont_next,
            "the first buffer after a reconnect is DISCONT"
        );
        let (_, acts) = side(
            &mut s,
            Side::StreamStart {
                stream_id: "b".into(),
            },
        );
        assert!(
            matches!(&acts[..], [Act::Push(e)] if e.type_() == gst::EventType::StreamStart),
            "{acts:?}"
        );
        let (_, acts) = side(&mut s, Side::Caps(caps(VIDEO)));
        assert!(
            matches!(&acts[..], [Act::OfferCaps(_)]),
            "the same caps go again"
        );
        assert_eq!(s.counters.reconnects, 1);
    }

    #[test]
    fn a_flush_goes_downstream_and_the_segment_is_configured_again() {
        let mut s = session();
        s.sent_segment = Some(gst::FormattedSegment::new());
        let (_, acts) = side(&mut s, Side::Flush);
        // Live (mapped through the clock): running time is not reset downstream.
        assert!(
            matches!(&acts[..], [Act::Flush { reset_time: false }]),
            "{acts:?}"
        );
        assert!(s.sent_segment.is_none());
    }

    #[test]
    fn a_producer_that_ends_without_eos_ends_the_stream_or_is_waited_for() {
        let mut s = session();
        let out = Arc::new(AtomicUsize::new(0));
        let ctx = Ctx {
            base_time: None,
            outstanding: &out,
            anticipation: None,
        };
        let end = || Event::End {
            reason: "bye".into(),
        };
        assert!(matches!(
            s.handle(end(), &ctx, &mut Vec::new()),
            Ok(Next::Eos)
        ));
        s.cfg.reconnect = true;
        assert!(matches!(s.handle(end(), &ctx, &mut Vec::new()), Ok(Next::Gone(r)) if r == "bye"));
    }
}
