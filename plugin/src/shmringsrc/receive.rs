//! How `shmringsrc` reaches the producer (connecting, telling it what downstream
//! accepts) and acts on what its session decided (pushing events, offering caps,
//! configuring segments, posting errors).

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::{Backoff, Consumer, ConsumerConfig, Event};

use crate::codec;

use super::CAT;
use super::imp::{Settings, Src, Streaming};
use super::session::{Act, Ctx, Next, Stop};

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
                std::time::Duration::ZERO
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

    /// A new connection: its waker interrupts `create`, its stream starts afresh.
    pub(super) fn install(&self, c: &Consumer) {
        let mut w = self.wakers.lock().unwrap();
        w.truncate(1);
        w.push(c.waker());
        drop(w);
        if let Some(s) = self.session.lock().unwrap().as_mut() {
            s.connected(c.max_held());
        }
        self.late_events.lock().unwrap().clear();
        self.note_due
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What one event of the consumer makes: the session decides under its lock,
    /// taken once; then what it said is done, with no lock held.
    pub(super) fn handle(
        &self,
        ev: Event,
        anticipation: Option<shmring::frame::Anticipation>,
        st: &mut Streaming,
    ) -> Result<Next, gst::FlowError> {
        let base_time = match &ev {
            Event::Frame(_) => self.obj().base_time(),
            _ => None,
        };
        let ctx = Ctx {
            base_time,
            outstanding: &self.outstanding,
            anticipation,
        };
        let mut acts = Vec::new();
        let decided = match self.session.lock().unwrap().as_mut() {
            Some(s) => {
                let d = s.handle(ev, &ctx, &mut acts);
                st.refused_since = s.caps_refused_since();
                d
            }
            None => return Err(gst::FlowError::Flushing),
        };
        for a in acts {
            self.act(a, st)?;
        }
        match decided {
            Ok(next) => Ok(next),
            Err(stop) => Err(self.stop_with(stop)),
        }
    }

    /// Posts the error a [`Stop`] names; the flow return that ends the stream.
    pub(super) fn stop_with(&self, stop: Stop) -> gst::FlowError {
        match stop {
            Stop::Negotiation(what) => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ["{}", what]);
                gst::FlowError::NotNegotiated
            }
        }
    }

    fn act(&self, a: Act, st: &mut Streaming) -> Result<(), gst::FlowError> {
        let pad = || self.obj().static_pad("src").expect("src pad");
        match a {
            Act::Push(e) => {
                pad().push_event(e);
            }
            Act::Late(e) => self.late_events.lock().unwrap().push(e),
            Act::Flush { reset_time } => {
                let pad = pad();
                // What came before the flush goes before it.
                for e in std::mem::take(&mut *self.late_events.lock().unwrap()) {
                    pad.push_event(e);
                }
                pad.push_event(gst::event::FlushStart::new());
                pad.push_event(gst::event::FlushStop::new(reset_time));
            }
            Act::Segment(seg) => {
                if let Err(e) = self.obj().new_segment(seg.upcast_ref()) {
                    gst::warning!(CAT, imp = self, "segment not configured: {e}");
                }
            }
            Act::LatencyChanged => {
                // The pipeline asks everyone again and redistributes.
                let obj = self.obj();
                let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
            }
            Act::OfferCaps(caps) => return self.offer_caps(&pad(), &caps, st),
        }
        Ok(())
    }

    /// Offers the producer's caps downstream; what downstream answered goes back to
    /// the session.
    fn offer_caps(
        &self,
        pad: &gst::Pad,
        caps: &gst::Caps,
        st: &mut Streaming,
    ) -> Result<(), gst::FlowError> {
        // After a new stream-start the caps go again even if unchanged (set_caps
        // would skip them).
        let taken = if pad.current_caps().is_some_and(|c| &c == caps) {
            pad.push_event(gst::event::Caps::new(caps));
            Ok(())
        } else if !pad.peer_query_accept_caps(caps) || self.obj().set_caps(caps).is_err() {
            Err(pad.peer_query_caps(None))
        } else {
            Ok(())
        };
        let mut guard = self.session.lock().unwrap();
        let Some(s) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let answered = match taken {
            Ok(()) => {
                s.caps_taken();
                Ok(())
            }
            Err(theirs) => s.caps_refused(&theirs),
        };
        st.refused_since = s.caps_refused_since();
        drop(guard);
        answered.map_err(|stop| self.stop_with(stop))
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
                if let Some(s) = self.session.lock().unwrap().as_mut() {
                    s.accepts_sent();
                }
            }
            Err(e) => gst::info!(
                CAT,
                imp = self,
                "cannot tell the producer what downstream accepts: {e}"
            ),
        }
    }

    pub(super) fn stats(&self) -> gst::Structure {
        let c = self
            .session
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.counters)
            .unwrap_or_default();
        super::session::stats(&c)
    }
}
