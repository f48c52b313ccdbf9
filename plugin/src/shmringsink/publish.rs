//! What `shmringsink` sends: buffer metadata, side messages, the slot a buffer is in,
//! planar audio packing, the upstream latency.

use std::sync::Arc;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::Producer;

use crate::codec::metas;
use crate::codec::{self, Side, ct};

use super::imp::{Counters, LateConsumerCaps, Sink, SlowConsumer, State};
use super::negotiation::{self, Asked, Late, RENEGOTIATE_EVERY, RENEGOTIATION_WAIT, Wish};
use super::{CAT, session};

impl Sink {
    /// The running producer, if started.
    pub(super) fn producer(&self) -> Option<Arc<Producer>> {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .map(|st| st.producer.clone())
    }

    pub(super) fn side(&self, side: &Side, key: u32) -> bool {
        let Some(producer) = self.producer() else {
            return true;
        };
        match producer.send_side(&side.encode(), key) {
            Ok(()) => true,
            Err(e) => {
                gst::warning!(CAT, imp = self, "side message not sent: {e}");
                false
            }
        }
    }

    /// Sends the metas of `buffer` that travel (as side messages just before it)
    /// and returns the tag its descriptor names them by (0: none). Metas that
    /// cannot go are counted and logged once by name.
    pub(super) fn send_metas(&self, st: &mut State, buffer: &gst::BufferRef) -> u16 {
        let (metas, cannot) = metas::collect(buffer);
        let c = &self.counters;
        if !cannot.is_empty() {
            Counters::add(&c.metas_not_sent, cannot.len() as u64);
            for name in &cannot {
                if st.logged.first(name) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "{name} cannot cross to consumers (no encoding for it{}); counted in stats as metas-not-sent",
                        if metas::gstreamer_serializes() {
                            ", and it does not serialize"
                        } else {
                            " on GStreamer 1.22"
                        }
                    );
                }
            }
        }
        if metas.is_empty() {
            return 0;
        }
        let list = metas::encode(&metas);
        let max = st.max_meta;
        if list.len() > max {
            Counters::add(&c.metas_not_sent, metas.len() as u64);
            if st.logged.first("(over max-meta-bytes)") {
                gst::warning!(
                    CAT,
                    imp = self,
                    "the metas of a buffer take {} bytes, over max-meta-bytes ({max}): not sent; counted in stats as metas-not-sent",
                    list.len()
                );
            }
            return 0;
        }
        st.metas_tag = session::next_metas_tag(st.metas_tag);
        let tag = st.metas_tag;
        for piece in metas::pieces(&list, tag, codec::side::T_META_PIECE) {
            if let Err(e) = st.producer.send_side(&piece, 0) {
                gst::warning!(CAT, imp = self, "metas not sent: {e}");
                Counters::add(&c.metas_not_sent, metas.len() as u64);
                return 0;
            }
        }
        Counters::add(&c.metas, metas.len() as u64);
        tag
    }

    /// With `wait-for-connection`, upstream's first negotiation waits for the first
    /// consumer and (at most 500 ms) for what its downstream accepts, so the
    /// stream starts in caps it takes instead of being negotiated again after its
    /// first buffers. Ends at once when the sink is shut down (unlock).
    pub(super) fn await_first_consumer(&self) {
        if !self.settings.lock().unwrap().wait_for_connection {
            return;
        }
        let waited = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|st| st.waited);
        let Some(producer) = self.producer() else {
            return;
        };
        if waited || producer.consumer_count() > 0 && !producer.notes().is_empty() {
            return;
        }
        gst::info!(CAT, imp = self, "negotiation waits for a consumer");
        if producer.wait_for_consumers(1, None).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while producer.notes().len() < producer.consumer_count()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The wish of every consumer that sent a note, in join order, how many sent
    /// none, and the last renegotiation asked.
    fn wishes(&self, producer: &Producer) -> (Vec<Wish>, usize, Asked) {
        let notes = producer.notes();
        let silent = producer.consumer_count().saturating_sub(notes.len());
        let mut guard = self.state.lock().unwrap();
        let Some(st) = guard.as_mut() else {
            return (Vec::new(), silent, Asked::default());
        };
        let n = &mut st.negotiation;
        let wishes = n.wishes(notes, |id| {
            gst::info!(
                CAT,
                imp = self,
                "consumer {id} sent a note that says no caps: it is taken to accept any"
            );
        });
        (wishes, silent, n.asked.clone())
    }

    /// What upstream's caps queries are narrowed to: what every consumer that
    /// takes the current caps accepts (before the first caps: what all accept,
    /// earlier consumers first), and, while upstream negotiates again at the
    /// sink's request, the wishes it was asked for. `None`: not narrowed.
    pub(super) fn narrowed(&self, upstream: &gst::Caps) -> Option<gst::Caps> {
        let producer = self.producer()?;
        let (wishes, silent, asked) = self.wishes(&producer);
        let current = self.obj().sink_pad().current_caps();
        let late = self.late();
        let v = negotiation::decide(
            current.as_ref(),
            &wishes,
            silent,
            |c| upstream.can_intersect(c),
            false,
            &asked,
            Instant::now(),
            late,
        );
        v.narrow
    }

    fn late(&self) -> Late {
        match self.settings.lock().unwrap().late_caps {
            LateConsumerCaps::Renegotiate => Late::Renegotiate,
            LateConsumerCaps::Refuse => Late::Refuse,
        }
    }

    /// Looks at the consumers (`render` found that one came, went or changed its
    /// mind, at most every `DECIDE_EVERY`), and acts on [`negotiation::decide`]:
    /// disconnects the consumers nothing can serve, asks upstream to negotiate
    /// again for the others (at most every `RENEGOTIATE_EVERY`). Whether buffers
    /// then flow, the negotiation's state says (held back while upstream
    /// negotiates again and no consumer takes the current caps).
    pub(super) fn decide_caps(&self, producer: &Producer) {
        let now = Instant::now();
        let generation = producer.notes_generation();
        let obj = self.obj();
        let pad = obj.sink_pad();
        let Some(current) = pad.current_caps() else {
            return;
        };
        let (wishes, silent, asked) = self.wishes(producer);
        let may_ask = asked.may_ask(now);
        let v = negotiation::decide(
            Some(&current),
            &wishes,
            silent,
            |c| !pad.peer_query_caps(Some(c)).is_empty(),
            may_ask,
            &asked,
            now,
            self.late(),
        );
        for (id, reason) in &v.refused {
            gst::info!(CAT, imp = self, "refusing consumer {id}: {reason}");
            producer.disconnect(*id, reason);
        }
        let ask = may_ask && !v.waiting.is_empty();
        let mut guard = self.state.lock().unwrap();
        let Some(st) = guard.as_mut() else {
            return;
        };
        let n = &mut st.negotiation;
        n.seen = generation;
        n.looked = Some(now);
        n.served = v.served;
        if ask {
            let ids: Vec<u32> = v.waiting.iter().map(|w| w.id).collect();
            n.asked = Asked {
                at: Some(now),
                wishes: v.waiting,
                answered: false,
            };
            gst::info!(
                CAT,
                imp = self,
                "consumers {ids:?} wait for caps in {:?}, which every consumer streaming takes: renegotiating upstream",
                v.narrow.as_ref().map(|c| c.to_string())
            );
        }
        // Look again when upstream's time to answer runs out, or when a waiting
        // wish may be asked for.
        let at = n.asked.at;
        n.recheck = if n.asked.in_flight(now) {
            at.map(|t| t + RENEGOTIATION_WAIT)
        } else if v.deferred {
            at.map(|t| t + RENEGOTIATE_EVERY)
        } else {
            None
        };
        drop(guard);
        if ask {
            pad.push_event(gst::event::Reconfigure::new());
        }
    }

    pub(super) fn stats(&self) -> gst::Structure {
        let c = &self.counters;
        let (copies, zero_copy, sent, not_sent, held_back) = (
            Counters::get(&c.copies),
            Counters::get(&c.zero_copy),
            Counters::get(&c.metas),
            Counters::get(&c.metas_not_sent),
            Counters::get(&c.held_back),
        );
        let mut s = gst::Structure::builder("shmringsink-stats")
            .field("copies", copies)
            .field("zero-copy", zero_copy)
            .field("held-back", held_back)
            .field("metas", sent)
            .field("metas-not-sent", not_sent)
            .build();
        if let Some(producer) = self.producer() {
            let p = producer.stats();
            s.set("frames", p.frames);
            s.set("bytes", p.bytes);
            s.set("consumers", p.consumers.len() as u32);
            s.set("drops", p.consumers.iter().map(|c| c.drops).sum::<u64>());
            s.set("cut-off", p.cut_off);
            s.set("probes", p.probes);
            s.set("free-slots", p.free_slots as u32);
            let per: Vec<glib::SendValue> = p
                .consumers
                .iter()
                .map(|c| {
                    gst::Structure::builder("consumer")
                        .field("id", c.id)
                        .field("pid", c.pid)
                        .field("uid", c.uid)
                        .field("frames", c.frames)
                        .field("bytes", c.bytes)
                        .field("drops", c.drops)
                        .field("held", c.held as u32)
                        .build()
                        .to_send_value()
                })
                .collect();
            s.set("consumer-stats", gst::Array::new(per));
        }
        s
    }

    /// The slot `buffer` was rendered into, writable, if it comes from our pool
    /// (of this sink's producer) and still covers the slot from its start.
    pub(super) fn slot_of(
        &self,
        buffer: &gst::Buffer,
        producer: &Producer,
    ) -> Option<Arc<super::pool::Holder>> {
        if buffer.n_memory() != 1 {
            return None;
        }
        let mem = buffer.peek_memory(0);
        // Upstream may have resized the memory; publish from the slot's start only.
        if mem.offset() != 0 {
            return None;
        }
        let holder = super::pool::holder_of(mem)?;
        let ok = {
            let slot = holder.lock().unwrap();
            // Published already (the same buffer rendered twice), resized, or a slot
            // of another sink's producer: copy it.
            slot.is_writable() && buffer.size() <= slot.capacity() && slot.is_of(producer)
        };
        ok.then_some(holder)
    }

    pub(super) fn log_events(&self, p: &Producer) {
        // Per buffer: only take the producer's lock when someone reads the log (the
        // producer keeps a bounded backlog otherwise).
        if !CAT.above_threshold(gst::DebugLevel::Info) {
            return;
        }
        for e in p.take_events() {
            gst::info!(CAT, imp = self, "{e:?}");
        }
    }
}

impl Sink {
    /// Counts a publication and turns its error into a flow return.
    pub(super) fn published(
        &self,
        producer: &Producer,
        r: Result<usize, shmring::PublishError>,
        zero_copy: bool,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.log_events(producer);
        match r {
            Ok(n) => {
                let c = &self.counters;
                Counters::add(if zero_copy { &c.zero_copy } else { &c.copies }, 1);
                gst::trace!(CAT, imp = self, "buffer to {n} consumers");
                Ok(gst::FlowSuccess::Ok)
            }
            Err(shmring::PublishError::Interrupted) => Err(gst::FlowError::Flushing),
            Err(e) => {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["{}", e]);
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Tells consumers the latency upstream of this sink (once per caps or flush,
    /// and whenever it changed), so that their pipelines add it to their own.
    pub(super) fn tell_latency(&self) {
        if self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|st| st.latency.is_some())
        {
            return;
        }
        let mut q = gst::query::Latency::new();
        let pad = self.obj().static_pad("sink").expect("sink pad");
        if !pad.peer_query(&mut q) {
            return;
        }
        let (live, min, max) = q.result();
        self.follow_liveness(live);
        let l = (live, min.nseconds(), ct(max));
        let changed = match self.state.lock().unwrap().as_mut() {
            Some(st) => st.latency.replace(l) != Some(l),
            None => false,
        };
        if changed {
            gst::debug!(CAT, imp = self, "upstream latency {l:?}");
            let side = Side::Latency {
                live: l.0,
                min: l.1,
                max: l.2,
            };
            self.side(&side, codec::key::LATENCY);
        }
    }
}

impl Sink {
    /// With `on-slow-consumer=auto`: a live stream drops buffers for a consumer
    /// that cannot take them (no consumer holds the others up), one that is not
    /// live waits for it.
    fn follow_liveness(&self, live: bool) {
        if self.settings.lock().unwrap().on_slow != SlowConsumer::Auto {
            return;
        }
        let Some(producer) = self.producer() else {
            return;
        };
        let policy = if live {
            shmring::frame::Policy::Drop
        } else {
            shmring::frame::Policy::Block
        };
        if producer.default_policy() != policy {
            gst::debug!(CAT, imp = self, "live: {live}; slow consumers: {policy:?}");
            producer.set_default_policy(policy);
        }
    }
}
