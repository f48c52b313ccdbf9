//! Whose word may change the stream's caps: the isolation rule for negotiation, in
//! one place.
//!
//! Consumers tell the sink what their downstream accepts (a note, `caps:` and the
//! caps text). What one consumer says changes only what *it* gets:
//!
//! - a consumer that takes the current caps is *settled*; the caps stay ones every
//!   settled consumer takes;
//! - a consumer that does not is served by a renegotiation only when the new caps
//!   are ones every settled consumer takes too, upstream can make them, and no
//!   other renegotiation was asked for in the last [`RENEGOTIATE_EVERY`];
//!   meanwhile it waits alone (its source drops what it cannot take) while the
//!   others stream on;
//! - a consumer nothing can serve (no caps in common with the settled ones, none
//!   upstream can make, or upstream kept its caps when asked) is disconnected with
//!   a reason naming its caps and the stream's;
//! - buffers are held back (at most [`RENEGOTIATION_WAIT`], while upstream
//!   negotiates again) only when no consumer takes the caps they are in.
//!
//! [`decide`] is pure: the sink gathers what it needs, asks, then acts.

use std::time::{Duration, Instant};

use crate::codec::note::{accepts_of, says_any};

/// Most renegotiations asked of upstream for consumers' sake: one per this.
pub(crate) const RENEGOTIATE_EVERY: Duration = Duration::from_secs(2);
/// How long upstream has to negotiate again once asked; buffers no consumer takes
/// are held back that long at most.
pub(crate) const RENEGOTIATION_WAIT: Duration = Duration::from_secs(1);
/// Consumers are looked at again at most this often, however often they speak.
pub(crate) const DECIDE_EVERY: Duration = Duration::from_millis(100);

/// What the policy is for a consumer that cannot take the current caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Late {
    /// Renegotiate upstream when that harms nobody.
    Renegotiate,
    /// Disconnect it at once.
    Refuse,
}

/// One consumer's word: its id and the caps its downstream accepts (`None`: it
/// said nothing usable, so it takes whatever comes).
#[derive(Clone, Debug)]
pub(crate) struct Wish {
    pub(crate) id: u32,
    pub(crate) accepts: Option<gst::Caps>,
}

/// The renegotiation last asked of upstream: for whom, what they wanted, and
/// whether upstream has answered (new caps, or the wait ran out).
#[derive(Clone, Debug, Default)]
pub(crate) struct Asked {
    pub(crate) at: Option<Instant>,
    pub(crate) wishes: Vec<Wish>,
    pub(crate) answered: bool,
}

impl Asked {
    /// Upstream is negotiating again and has not answered yet.
    pub(crate) fn in_flight(&self, now: Instant) -> bool {
        !self.answered
            && self
                .at
                .is_some_and(|t| now.duration_since(t) < RENEGOTIATION_WAIT)
    }

    /// Another renegotiation may be asked for now.
    pub(crate) fn may_ask(&self, now: Instant) -> bool {
        self.at
            .is_none_or(|t| now.duration_since(t) >= RENEGOTIATE_EVERY)
    }

    fn asked_for(&self, w: &Wish) -> bool {
        self.wishes
            .iter()
            .any(|a| a.id == w.id && a.accepts == w.accepts)
    }
}

/// The sink's memory of its consumers' negotiation.
#[derive(Debug)]
pub(crate) struct Negotiation {
    /// The producer's notes generation last looked at.
    pub(crate) seen: u64,
    /// When the consumers were last looked at.
    pub(crate) looked: Option<Instant>,
    /// Look again then, even if no consumer spoke.
    pub(crate) recheck: Option<Instant>,
    /// The renegotiation last asked of upstream.
    pub(crate) asked: Asked,
    /// At the last look, some consumer took the current caps.
    pub(crate) served: bool,
    /// Each consumer's last note and what it says, parsed once.
    parsed: Vec<(u32, Vec<u8>, Option<gst::Caps>)>,
}

impl Negotiation {
    /// Whether the consumers are to be looked at again (one came, went or spoke
    /// since the last look at `seen`, or a recheck is due), and may be (at most
    /// every `DECIDE_EVERY`).
    pub(crate) fn due(&self, generation: u64, now: Instant) -> bool {
        let news = generation != self.seen || self.recheck.is_some_and(|t| now >= t);
        news && self
            .looked
            .is_none_or(|t| now.duration_since(t) >= DECIDE_EVERY)
    }

    /// Whether buffers flow: some consumer takes the current caps, or upstream
    /// is not negotiating again at the sink's request.
    pub(crate) fn flows(&self, now: Instant) -> bool {
        self.served || !self.asked.in_flight(now)
    }
}

impl Default for Negotiation {
    fn default() -> Self {
        Negotiation {
            seen: 0,
            looked: None,
            recheck: None,
            asked: Asked::default(),
            served: true,
            parsed: Vec::new(),
        }
    }
}

impl Negotiation {
    /// The wishes of the consumers that sent `notes` (id, note; in join order),
    /// parsing only notes not seen before; `said_nothing` hears of each newly
    /// parsed note that says no caps.
    pub(crate) fn wishes(
        &mut self,
        notes: Vec<(u32, Vec<u8>)>,
        said_nothing: impl Fn(u32),
    ) -> Vec<Wish> {
        let mut parsed = Vec::with_capacity(notes.len());
        let mut wishes = Vec::with_capacity(notes.len());
        for (id, note) in notes {
            let known = self
                .parsed
                .iter()
                .position(|(i, n, _)| *i == id && *n == note);
            let accepts = match known {
                Some(k) => self.parsed.swap_remove(k).2,
                None => {
                    let a = accepts_of(&note);
                    if a.is_none() && !says_any(&note) {
                        said_nothing(id);
                    }
                    a
                }
            };
            wishes.push(Wish {
                id,
                accepts: accepts.clone(),
            });
            parsed.push((id, note, accepts));
        }
        self.parsed = parsed;
        wishes
    }

    /// Upstream negotiated (again): what it chose goes; look at once whether
    /// the consumers it was asked for take it.
    pub(crate) fn caps_set(&mut self, now: Instant) {
        self.asked.answered = true;
        self.recheck = Some(now);
    }
}

/// What one look at the consumers decided.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// What upstream's caps queries are narrowed to (`None`: not narrowed).
    pub(crate) narrow: Option<gst::Caps>,
    /// Consumers a renegotiation would serve (ask upstream, if `may_ask`).
    pub(crate) waiting: Vec<Wish>,
    /// Consumers nothing can serve, with the reason to tell them.
    pub(crate) refused: Vec<(u32, String)>,
    /// Some consumer takes the current caps (or there is none): buffers flow.
    pub(crate) served: bool,
    /// A consumer waits for a renegotiation that may not be asked for yet.
    pub(crate) deferred: bool,
}

/// Decides for `wishes` (of the consumers that sent a note, in join order) and
/// `silent` consumers (that sent none: they take any caps) given the `current`
/// caps (`None` before the first negotiation), whether upstream `can_make` some
/// caps, whether a renegotiation `may_ask` now, and the last one `asked`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    current: Option<&gst::Caps>,
    wishes: &[Wish],
    silent: usize,
    can_make: impl Fn(&gst::Caps) -> bool,
    may_ask: bool,
    asked: &Asked,
    now: Instant,
    late: Late,
) -> Verdict {
    let mut v = Verdict {
        served: true,
        ..Default::default()
    };
    let Some(current) = current else {
        // First negotiation: what all accept, earlier consumers first; one with
        // nothing in common with those before it is checked once caps are set.
        for w in wishes {
            if let Some(c) = &w.accepts {
                v.narrow = Some(match v.narrow.take() {
                    None => c.clone(),
                    Some(n) => {
                        let both = n.intersect(c);
                        if both.is_empty() { n } else { both }
                    }
                });
            }
        }
        return v;
    };
    let takes = |w: &Wish| w.accepts.as_ref().is_none_or(|c| c.can_intersect(current));
    // What every settled consumer takes (they all take `current`).
    for w in wishes.iter().filter(|w| takes(w)) {
        if let Some(c) = &w.accepts {
            v.narrow = Some(match v.narrow.take() {
                None => c.clone(),
                Some(n) => n.intersect(c),
            });
        }
    }
    v.served = silent > 0 || wishes.is_empty() || wishes.iter().any(takes);
    let in_flight = asked.in_flight(now);
    for w in wishes.iter().filter(|w| !takes(w)) {
        let caps = w
            .accepts
            .as_ref()
            .expect("a consumer without caps takes any");
        let refuse = |why: String| {
            (
                w.id,
                format!("its downstream accepts {caps}, the stream is {current}{why}"),
            )
        };
        if late == Late::Refuse {
            v.refused
                .push(refuse(" (late-consumer-caps=refuse)".into()));
            continue;
        }
        if asked.asked_for(w) && !in_flight {
            v.refused.push(refuse(
                ", and upstream kept it when asked to negotiate again".into(),
            ));
            continue;
        }
        let both = match &v.narrow {
            None => caps.clone(),
            Some(n) => n.intersect(caps),
        };
        if both.is_empty() {
            let others = v.narrow.as_ref().expect("empty only against others");
            v.refused.push(refuse(format!(
                ", and the consumers streaming take only {others}"
            )));
        } else if !can_make(&both) {
            v.refused
                .push(refuse(", and upstream can make none of it".into()));
        } else if may_ask || in_flight && asked.asked_for(w) {
            v.narrow = Some(both);
            v.waiting.push(w.clone());
        } else {
            v.deferred = true;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumers_are_looked_at_when_they_change_at_most_every_decide_every() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        assert!(n.due(1, t0), "a consumer spoke, never looked");
        n.seen = 1;
        n.looked = Some(t0);
        assert!(!n.due(1, t0 + DECIDE_EVERY), "nothing new");
        assert!(
            !n.due(2, t0 + DECIDE_EVERY / 2),
            "too soon after the last look"
        );
        assert!(n.due(2, t0 + DECIDE_EVERY));
        n.recheck = Some(t0 + RENEGOTIATION_WAIT);
        assert!(n.due(1, t0 + RENEGOTIATION_WAIT), "a recheck is due");
    }

    #[test]
    fn buffers_are_held_back_only_while_upstream_renegotiates_for_no_one_served() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        assert!(n.flows(t0));
        n.served = false;
        assert!(n.flows(t0), "nothing asked of upstream");
        n.asked = Asked {
            at: Some(t0),
            wishes: Vec::new(),
            answered: false,
        };
        assert!(!n.flows(t0 + RENEGOTIATION_WAIT / 2));
        assert!(n.flows(t0 + RENEGOTIATION_WAIT), "upstream's time ran out");
        n.caps_set(t0);
        assert!(n.flows(t0), "upstream answered");
    }

    fn caps(s: &str) -> gst::Caps {
        gst::init().unwrap();
        s.parse().unwrap()
    }

    fn wish(id: u32, s: Option<&str>) -> Wish {
        Wish {
            id,
            accepts: s.map(caps),
        }
    }

    const I420: &str = "video/x-raw, format=(string)I420, width=(int)320, height=(int)240";

    fn look(
        current: &str,
        wishes: &[Wish],
        upstream: &str,
        may_ask: bool,
        asked: &Asked,
    ) -> Verdict {
        let up = caps(upstream);
        decide(
            Some(&caps(current)),
            wishes,
            0,
            |c| up.can_intersect(c),
            may_ask,
            asked,
            Instant::now(),
            Late::Renegotiate,
        )
    }

    #[test]
    fn a_consumer_upstream_cannot_serve_is_refused_and_nobody_waits() {
        let v = look(
            I420,
            &[wish(1, None), wish(2, Some("video/x-raw, format=GRAY8"))],
            "video/x-raw, format=I420",
            true,
            &Asked::default(),
        );
        assert!(v.served && v.waiting.is_empty());
        assert_eq!(v.refused.len(), 1);
        assert_eq!(v.refused[0].0, 2);
        assert!(v.refused[0].1.contains("GRAY8") && v.refused[0].1.contains("I420"));
        assert!(
            v.refused[0].1.contains("upstream can make none"),
            "{}",
            v.refused[0].1
        );
    }

    #[test]
    fn a_wish_every_settled_consumer_shares_is_served_by_a_renegotiation() {
        let v = look(
            I420,
            &[
                wish(1, Some("video/x-raw, format={ I420, GRAY8 }")),
                wish(2, Some("video/x-raw, format=GRAY8")),
            ],
            "video/x-raw",
            true,
            &Asked::default(),
        );
        assert!(v.served && v.refused.is_empty());
        assert_eq!(v.waiting.len(), 1);
        assert_eq!(v.narrow.unwrap(), caps("video/x-raw, format=GRAY8"));
    }

    #[test]
    fn a_wish_a_settled_consumer_does_not_share_is_refused_naming_what_they_take() {
        let v = look(
            I420,
            &[
                wish(1, Some("video/x-raw, format=I420")),
                wish(2, Some("video/x-raw, format=GRAY8")),
            ],
            "video/x-raw",
            true,
            &Asked::default(),
        );
        assert!(v.waiting.is_empty());
        assert!(v.refused[0].1.contains("consumers streaming take only"));
        // Caps queries stay narrowed to what the settled consumer takes.
        assert_eq!(v.narrow.unwrap(), caps("video/x-raw, format=I420"));
    }

    #[test]
    fn a_wish_within_the_interval_waits_and_narrows_nothing() {
        let v = look(
            I420,
            &[wish(1, None), wish(2, Some("video/x-raw, format=GRAY8"))],
            "video/x-raw",
            false,
            &Asked::default(),
        );
        assert!(v.deferred && v.waiting.is_empty() && v.refused.is_empty() && v.served);
        assert!(v.narrow.is_none());
    }

    #[test]
    fn a_wish_upstream_ignored_is_refused_once_it_answered_and_not_before() {
        let w = wish(2, Some("video/x-raw, format=GRAY8"));
        let mut asked = Asked {
            at: Some(Instant::now()),
            wishes: vec![w.clone()],
            answered: false,
        };
        let v = look(I420, std::slice::from_ref(&w), "video/x-raw", false, &asked);
        assert!(v.refused.is_empty() && !v.served && v.waiting.len() == 1);
        asked.answered = true;
        let v = look(I420, std::slice::from_ref(&w), "video/x-raw", false, &asked);
        assert!(
            v.refused[0].1.contains("upstream kept it"),
            "{:?}",
            v.refused
        );
        // Changing its mind makes it a new wish, asked for at the next interval.
        let other = wish(2, Some("video/x-raw, format=RGBA"));
        let v = look(I420, &[other], "video/x-raw", false, &asked);
        assert!(v.refused.is_empty() && v.deferred);
    }

    #[test]
    fn buffers_flow_while_one_consumer_takes_them() {
        let asked = Asked {
            at: Some(Instant::now()),
            wishes: vec![],
            answered: false,
        };
        let v = look(
            I420,
            &[wish(1, None), wish(2, Some("video/x-raw, format=GRAY8"))],
            "video/x-raw",
            false,
            &asked,
        );
        assert!(v.served);
        let v = look(
            I420,
            &[wish(2, Some("video/x-raw, format=GRAY8"))],
            "video/x-raw",
            false,
            &asked,
        );
        assert!(!v.served);
        // A consumer that sent no note takes any caps: its buffers flow.
        let v = decide(
            Some(&caps(I420)),
            &[wish(2, Some("video/x-raw, format=GRAY8"))],
            1,
            |_| true,
            false,
            &asked,
            Instant::now(),
            Late::Renegotiate,
        );
        assert!(v.served);
    }

    #[test]
    fn the_refuse_policy_refuses_without_asking() {
        let v = decide(
            Some(&caps(I420)),
            &[wish(2, Some("video/x-raw, format=RGBA"))],
            0,
            |_| true,
            true,
            &Asked::default(),
            Instant::now(),
            Late::Refuse,
        );
        assert!(v.waiting.is_empty());
        assert!(v.refused[0].1.contains("late-consumer-caps=refuse"));
    }

    #[test]
    fn the_first_negotiation_takes_what_all_accept_earlier_consumers_first() {
        let v = decide(
            None,
            &[
                wish(1, Some("video/x-raw, format={ RGBA, I420 }")),
                wish(2, Some("video/x-raw, format=GRAY8")),
                wish(3, Some("video/x-raw, format=RGBA")),
            ],
            0,
            |_| true,
            true,
            &Asked::default(),
            Instant::now(),
            Late::Renegotiate,
        );
        assert_eq!(v.narrow.unwrap(), caps("video/x-raw, format=RGBA"));
    }
}
