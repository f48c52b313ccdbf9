//! What `shmringsrc` makes of what the producer says: connecting, buffers (checked
//! by `trust`, then wrapped or copied), caps and events.

//! process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::{Backoff, Consumer, ConsumerConfig, Event, Frame};

use super::trust;
use crate::meta::{self, BufferMeta, Side, to_ct};

use super::imp::*;

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
        let path = s.socket_path.clone().unwrap_or_default();
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
    }

    pub(super) fn buffer_of(&self, f: Frame) -> Result<gst::Buffer, String> {
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
    pub(super) fn handle(&self, ev: Event) -> Result<Next, gst::FlowError> {
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

    pub(super) fn side(&self, side: Side) -> Result<Next, gst::FlowError> {
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

    pub(super) fn stats(&self) -> gst::Structure {
        let c = *self.counters.lock().unwrap();
        gst::Structure::builder("shmringsrc-stats")
            .field("frames", c.frames)
            .field("bytes", c.bytes)
            .field("copies", c.copies)
            .field("dropped", c.dropped)
            .field("reconnects", c.reconnects)
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
