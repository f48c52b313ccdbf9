//! What a producer counts and logs about its consumers.

use crate::os::listen::PeerCred;

use super::Policy;

/// Counters of one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The producer's id for it.
    pub id: u32,
    /// Its process id, as the kernel recorded it at connect time.
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
    /// Frames sent to it.
    pub frames: u64,
    /// Payload bytes sent to it.
    pub bytes: u64,
    /// Frames dropped for it ([`Policy::Drop`]).
    pub drops: u64,
    /// Slots it holds now.
    pub held: usize,
    /// Bytes of messages waiting for room in its socket (see
    /// [`ProducerConfig::max_queued`](crate::ProducerConfig::max_queued)).
    pub queued: usize,
    /// Frames sent to it that it has not taken yet: its frame ring's depth, as its
    /// shared tail says at the snapshot (its own word, for display only).
    pub pending: u64,
    /// Its policy.
    pub policy: Policy,
}

/// A snapshot of a producer's counters, and of how it serves (what a probe is
/// told, see [`Consumer::inspect`](crate::Consumer::inspect)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Frames published.
    pub frames: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Consumers connected now, with their counters.
    pub consumers: Vec<ConsumerStats>,
    /// Consumers that ever joined.
    pub joined: u64,
    /// Consumers that left (goodbye or hang-up).
    pub left: u64,
    /// Consumers cut off (protocol violation, too slow, lease expired).
    pub cut_off: u64,
    /// Connections refused (uid not allowed, too many consumers, bad hello).
    pub refused: u64,
    /// Probes answered (connections that asked what this producer serves and left,
    /// never consumers).
    pub probes: u64,
    /// Live arenas.
    pub arenas: usize,
    /// Bytes per slot of the current arena (0 before the first frame).
    pub slot_size: usize,
    /// Free slots in the current arena.
    pub free_slots: usize,
    /// Slots of the current arena (0 before the first frame).
    pub slots: usize,
    /// The most consumers it serves at once.
    pub max_consumers: usize,
    /// What it does with a consumer that cannot take the next frame, by default.
    pub policy: Policy,
    /// How long it waits for a consumer under [`Policy::Block`] before cutting it off.
    pub block_timeout: std::time::Duration,
    /// How long a consumer may hold a slot, if limited.
    pub lease: Option<std::time::Duration>,
}

/// Something that happened to a consumer, for the producer's log
/// ([`Producer::take_events`](crate::Producer::take_events)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// A consumer completed its hand-off.
    Joined {
        /// Its id.
        id: u32,
        /// Its credentials.
        cred: PeerCred,
    },
    /// A connection was refused before it became a consumer.
    Refused {
        /// Its credentials, when the kernel had them.
        cred: Option<PeerCred>,
        /// Why.
        reason: String,
    },
    /// A consumer said goodbye or hung up; everything it held came back.
    Left {
        /// Its id.
        id: u32,
        /// What it said, or how it went.
        reason: String,
    },
    /// A consumer was cut off; everything it held came back.
    CutOff {
        /// Its id.
        id: u32,
        /// The fault, e.g. "consumer 3 released slot 5 of arena 0 that it does not hold".
        reason: String,
    },
}
