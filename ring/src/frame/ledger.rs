//! Slot ownership, kept only in the producer's private memory.
//!
//! The frame channel's producer publishes each filled slot to any number of
//! consumers; a slot is free again when every consumer it went to has released it (or
//! has gone). Consumers report releases through shared memory, which they control, so
//! nothing they say is trusted: the ledger knows which slots each consumer holds and
//! refuses a release of a slot that consumer does not hold (never got, or already
//! released). When a consumer disconnects or dies, everything it held comes back.
//!
//! The frame channel's producer ([`crate::frame::Producer`]) keeps one; it has no I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::error::{Result, StreamFault};

/// A slot: which arena, which index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRef {
    /// The arena's id.
    pub arena: u32,
    /// The slot's index in the arena.
    pub slot: u32,
}

/// A consumer's id, as the producer numbers them.
pub type ConsumerId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Handed to the producer's writer, not yet published.
    Writing,
    /// Published; this many consumers still hold it.
    Held(u32),
}

#[derive(Debug)]
struct ArenaSlots {
    state: Vec<State>,
    free: Vec<u32>,
    retiring: bool,
}

/// The producer's private record of who holds which slot.
#[derive(Debug, Default)]
pub struct Ledger {
    arenas: BTreeMap<u32, ArenaSlots>,
    held: HashMap<ConsumerId, HashMap<SlotRef, Instant>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Registers arena `arena` with `slots` free slots.
    pub fn add_arena(&mut self, arena: u32, slots: u32) {
        assert!(
            !self.arenas.contains_key(&arena),
            "arena {arena} added twice"
        );
        self.arenas.insert(
            arena,
            ArenaSlots {
                state: vec![State::Free; slots as usize],
                // Pop from the end: hand out low slots first (cache-friendlier).
                free: (0..slots).rev().collect(),
                retiring: false,
            },
        );
    }

    /// Registers a consumer that holds nothing yet.
    pub fn add_consumer(&mut self, c: ConsumerId) {
        self.held.entry(c).or_default();
    }

    /// Takes a free slot of `arena` for writing, if there is one. A retiring arena
    /// hands out nothing.
    pub fn acquire(&mut self, arena: u32) -> Option<SlotRef> {
        let a = self.arenas.get_mut(&arena)?;
        if a.retiring {
            return None;
        }
        let slot = a.free.pop()?;
        a.state[slot as usize] = State::Writing;
        Some(SlotRef { arena, slot })
    }

    /// Publishes a slot that was being written to `consumers` (each now holds it).
    /// With no consumers the slot is free again at once.
    pub fn publish(&mut self, s: SlotRef, consumers: &[ConsumerId]) {
        let a = self
            .arenas
            .get_mut(&s.arena)
            .expect("publish: unknown arena");
        assert_eq!(
            a.state[s.slot as usize],
            State::Writing,
            "publish: slot not being written"
        );
        let mut n = 0;
        let now = Instant::now();
        for c in consumers {
            let held = self.held.get_mut(c).expect("publish: unknown consumer");
            if held.insert(s, now).is_none() {
                n += 1;
            }
        }
        a.state[s.slot as usize] = if n == 0 { State::Free } else { State::Held(n) };
        if n == 0 {
            a.free.push(s.slot);
        }
    }

    /// Gives back a slot that was acquired and never published.
    pub fn abandon(&mut self, s: SlotRef) {
        self.publish(s, &[]);
    }

    /// Takes `s` back for writing from `holder`, its last holder: true when `holder`
    /// holds it and nobody else does (every consumer it went to has released it) and
    /// its arena is not retiring. The slot is then being written again, as after
    /// [`Ledger::acquire`]; otherwise nothing changes.
    pub fn reclaim(&mut self, holder: ConsumerId, s: SlotRef) -> bool {
        let Some(a) = self.arenas.get_mut(&s.arena) else {
            return false;
        };
        let Some(st) = a.state.get_mut(s.slot as usize) else {
            return false;
        };
        if a.retiring || *st != State::Held(1) {
            return false;
        }
        let Some(held) = self.held.get_mut(&holder) else {
            return false;
        };
        if held.remove(&s).is_none() {
            return false;
        }
        *st = State::Writing;
        true
    }

    /// Consumer `c` releases `s`. Returns true when the slot became free. A slot the
    /// consumer does not hold (unknown, never sent to it, or already released) is an
    /// [`PeerFault::Stream`](crate::PeerFault::Stream) naming it: the caller ends that consumer's connection.
    pub fn release(&mut self, c: ConsumerId, s: SlotRef) -> Result<bool> {
        let held = self
            .held
            .get_mut(&c)
            .ok_or(StreamFault::UnknownConsumer { consumer: c })?;
        if held.remove(&s).is_none() {
            return Err(StreamFault::NotHeld {
                consumer: c,
                slot: s.slot,
                arena: s.arena,
            }
            .into());
        }
        Ok(self.unref(s))
    }

    fn unref(&mut self, s: SlotRef) -> bool {
        let a = self
            .arenas
            .get_mut(&s.arena)
            .expect("held slot of unknown arena");
        let st = &mut a.state[s.slot as usize];
        match *st {
            State::Held(1) => {
                *st = State::Free;
                a.free.push(s.slot);
                true
            }
            State::Held(n) => {
                *st = State::Held(n - 1);
                false
            }
            other => unreachable!("held slot in state {other:?}"),
        }
    }

    /// Forgets consumer `c` and releases everything it held. Returns how many slots
    /// it held.
    pub fn remove_consumer(&mut self, c: ConsumerId) -> usize {
        let Some(held) = self.held.remove(&c) else {
            return 0;
        };
        let n = held.len();
        for s in held.into_keys() {
            self.unref(s);
        }
        n
    }

    /// How many slots consumer `c` holds.
    pub fn held_by(&self, c: ConsumerId) -> usize {
        self.held.get(&c).map_or(0, |h| h.len())
    }

    /// When consumer `c` was given the oldest slot it still holds.
    pub fn oldest_held(&self, c: ConsumerId) -> Option<Instant> {
        self.held.get(&c)?.values().min().copied()
    }

    /// Free slots of `arena`.
    pub fn free_slots(&self, arena: u32) -> usize {
        self.arenas.get(&arena).map_or(0, |a| a.free.len())
    }

    /// Stops handing out slots of `arena`; it can be dropped once every slot is free.
    pub fn retire(&mut self, arena: u32) {
        if let Some(a) = self.arenas.get_mut(&arena) {
            a.retiring = true;
        }
    }

    /// Removes and returns the ids of retiring arenas whose every slot is free.
    pub fn collect_retired(&mut self) -> Vec<u32> {
        let done: Vec<u32> = self
            .arenas
            .iter()
            .filter(|(_, a)| a.retiring && a.free.len() == a.state.len())
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            self.arenas.remove(id);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let mut l = Ledger::new();
        l.add_arena(1, 4);
        for c in [10, 11, 12] {
            l.add_consumer(c);
        }
        l
    }

    #[test]
    fn slot_is_free_only_after_every_consumer_released_it() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10, 11]);
        assert_eq!(l.free_slots(1), 3);
        assert!(!l.release(10, s).unwrap());
        assert!(l.release(11, s).unwrap());
        assert_eq!(l.free_slots(1), 4);
    }

    #[test]
    fn release_of_a_slot_never_received_is_refused() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10]);
        let e = l.release(11, s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "consumer 11 released slot 0 of arena 1 that it does not hold"
        );
        // The honest holder is unaffected.
        assert!(l.release(10, s).unwrap());
    }

    #[test]
    fn double_release_is_refused_and_does_not_free_the_slot_early() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10, 11]);
        assert!(!l.release(10, s).unwrap());
        assert!(l.release(10, s).is_err());
        assert_eq!(l.free_slots(1), 3, "slot must stay held by consumer 11");
    }

    #[test]
    fn release_of_a_nonexistent_slot_or_arena_is_refused() {
        let mut l = ledger();
        assert!(l.release(10, SlotRef { arena: 1, slot: 99 }).is_err());
        assert!(l.release(10, SlotRef { arena: 7, slot: 0 }).is_err());
        assert!(l.release(99, SlotRef { arena: 1, slot: 0 }).is_err());
    }

    #[test]
    fn a_departed_consumer_gives_back_everything_it_held() {
        let mut l = ledger();
        let mut slots = Vec::new();
        while let Some(s) = l.acquire(1) {
            l.publish(s, &[10, 12]);
            slots.push(s);
        }
        assert_eq!(l.free_slots(1), 0);
        for s in &slots {
            l.release(12, *s).unwrap();
        }
        assert_eq!(l.held_by(10), 4);
        assert_eq!(l.remove_consumer(10), 4);
        assert_eq!(l.free_slots(1), 4);
        assert_eq!(l.held_by(10), 0);
    }

    #[test]
    fn publish_to_nobody_frees_the_slot_at_once() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[]);
        assert_eq!(l.free_slots(1), 4);
    }

    #[test]
    fn a_slot_is_reclaimed_only_from_its_last_holder() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10, 11]);
        assert!(!l.reclaim(10, s), "consumer 11 still holds it");
        assert!(!l.reclaim(12, s), "consumer 12 never held it");
        l.release(11, s).unwrap();
        assert!(l.reclaim(10, s));
        assert_eq!(l.held_by(10), 0);
        assert_eq!(l.free_slots(1), 3, "being written again, not free");
        // A reclaimed slot is published and released like a fresh one.
        assert!(l.release(10, s).is_err(), "10 no longer holds it");
        l.publish(s, &[12]);
        assert!(l.release(12, s).unwrap());
        assert_eq!(l.free_slots(1), 4);
        assert!(!l.reclaim(12, s), "free slots are acquired, not reclaimed");
        assert!(!l.reclaim(12, SlotRef { arena: 9, slot: 0 }));
        assert!(!l.reclaim(12, SlotRef { arena: 1, slot: 99 }));
    }

    #[test]
    fn a_retiring_arena_gives_nothing_back_for_writing() {
        let mut l = ledger();
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10]);
        l.retire(1);
        assert!(!l.reclaim(10, s));
        assert!(l.release(10, s).unwrap());
    }

    #[test]
    fn retired_arena_hands_out_nothing_and_is_collected_when_empty() {
        let mut l = ledger();
        l.add_arena(2, 2);
        let s = l.acquire(1).unwrap();
        l.publish(s, &[10]);
        l.retire(1);
        assert_eq!(l.acquire(1), None);
        assert_eq!(l.collect_retired(), Vec::<u32>::new());
        l.release(10, s).unwrap();
        assert_eq!(l.collect_retired(), vec![1]);
        assert!(l.acquire(2).is_some());
    }
}
