//! How a producer serves its consumers: its configuration and policies.

use std::time::Duration;

/// What the producer does when a consumer cannot take the next frame (its frame ring
/// is full, or it holds its share of slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for that consumer up to [`ProducerConfig::block_timeout`], then cut it off.
    #[default]
    Block,
    /// Skip the frame for that consumer alone (counted in its `drops`); the next
    /// frame it gets says how many it missed.
    Drop,
}

/// How a [`Producer`](crate::Producer) serves its consumers.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Slots per arena (each arena holds this many frames), at least: see
    /// [`ProducerConfig::small_frames_arena`]. Default 8.
    pub slots: u32,
    /// When non-zero, an arena of small frames gets more slots than `slots`: as
    /// many as fit in this many bytes, at most 64. A producer of small frames
    /// (audio, compressed video) can then run further ahead of its consumers, which
    /// on a busy machine saves a sleep and a wake-up every few frames: unpaced 10 ms
    /// audio beside a busy process went from 48 k to 103 k buffers/s with 64 slots
    /// instead of 8 (docs/plugin.md). A consumer's share grows with it (half the
    /// arena's slots, unless `max_held` says otherwise). Default 0: exactly `slots`.
    pub small_frames_arena: usize,
    /// Capacity of each consumer's frame ring (a power of two). Default 64.
    pub frame_ring: u32,
    /// Consumers served at once; more are refused with a goodbye naming the limit.
    /// Default 16.
    pub max_consumers: usize,
    /// Default policy for a consumer that cannot keep up (per consumer:
    /// [`Producer::set_policy`](crate::Producer::set_policy)). Default [`Policy::Block`].
    pub policy: Policy,
    /// How long the producer waits for one slow consumer ([`Policy::Block`]), for a
    /// free slot, or for a consumer's socket to take a message, before cutting the
    /// consumer off. Default 1 s.
    pub block_timeout: Duration,
    /// Most slots one consumer may hold (frames queued to it plus frames it has not
    /// released); beyond that it counts as slow. `None`: half the slots (at least 1).
    pub max_held: Option<u32>,
    /// A consumer that holds any slot longer than this is cut off. `None` (default):
    /// no lease, since a paused consumer legitimately holds its last frame.
    pub lease: Option<Duration>,
    /// File mode of the socket ([`Producer::bind`](crate::Producer::bind)). Default `0o600`.
    pub socket_mode: u32,
    /// If not empty, only these uids may connect (checked with `SO_PEERCRED`).
    pub allowed_uids: Vec<u32>,
    /// How long a new connection has to say hello. Default 2 s.
    pub handshake_timeout: Duration,
    /// Most bytes of messages (side messages, arena announcements, the welcome and
    /// sticky replay) that may wait for one consumer whose socket is full; one more
    /// cuts it off. The producer never waits on a consumer's socket, and a consumer
    /// with messages waiting takes no frame until they are sent (so under
    /// [`Policy::Drop`] it misses frames, and under [`Policy::Block`] it is waited
    /// for like a consumer whose ring is full). Default 1 MiB.
    pub max_queued: usize,
    /// How long a publish or an acquire that has to wait for a consumer (to take a
    /// frame or release a slot) polls before it sleeps on that consumer's doorbell
    /// (0: sleep at once). A consumer that is busy, not stuck, usually catches up
    /// within microseconds; sleeping instead costs a doorbell write on its side and
    /// a wake-up here, tens of microseconds on a loaded machine. A [`Waker`](crate::Waker) is
    /// heard once the poll is over. Default 20 µs.
    pub spin: Duration,
}

impl ProducerConfig {
    /// Default [`ProducerConfig::slots`].
    pub const DEFAULT_SLOTS: u32 = 8;
    /// Default [`ProducerConfig::frame_ring`].
    pub const DEFAULT_FRAME_RING: u32 = 64;
    /// Default [`ProducerConfig::max_consumers`].
    pub const DEFAULT_MAX_CONSUMERS: usize = 16;
    /// Default [`ProducerConfig::block_timeout`].
    pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default [`ProducerConfig::socket_mode`].
    pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
    /// Default [`ProducerConfig::handshake_timeout`].
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default [`ProducerConfig::max_queued`].
    pub const DEFAULT_MAX_QUEUED: usize = 1 << 20;
    /// Default [`ProducerConfig::spin`].
    pub const DEFAULT_SPIN: Duration = crate::ring::channel::DEFAULT_SPIN;
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            slots: Self::DEFAULT_SLOTS,
            frame_ring: Self::DEFAULT_FRAME_RING,
            max_consumers: Self::DEFAULT_MAX_CONSUMERS,
            policy: Policy::Block,
            block_timeout: Self::DEFAULT_BLOCK_TIMEOUT,
            max_held: None,
            lease: None,
            socket_mode: Self::DEFAULT_SOCKET_MODE,
            allowed_uids: Vec::new(),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            max_queued: Self::DEFAULT_MAX_QUEUED,
            spin: Self::DEFAULT_SPIN,
            small_frames_arena: 0,
        }
    }
}

impl ProducerConfig {
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        if self.slots == 0 || self.slots > 4096 {
            return Err(format!("slots {} is not in 1..=4096", self.slots));
        }
        if !self.frame_ring.is_power_of_two() || self.frame_ring < 2 || self.frame_ring > 1 << 16 {
            return Err(format!(
                "frame ring {} is not a power of two in 2..=65536",
                self.frame_ring
            ));
        }
        if self.max_consumers == 0 {
            return Err("max consumers is 0".into());
        }
        if self.socket_mode & !0o777 != 0 {
            return Err(format!(
                "socket mode {:o} has bits outside 0o777",
                self.socket_mode
            ));
        }
        Ok(())
    }

    pub(super) fn max_held(&self) -> usize {
        self.max_held_of(self.slots)
    }

    /// A consumer's share of an arena of `slots` slots.
    pub(super) fn max_held_of(&self, slots: u32) -> usize {
        self.max_held.unwrap_or(slots / 2).max(1) as usize
    }

    /// Slots of an arena for frames of `len` bytes.
    pub fn slots_for(&self, len: usize) -> u32 {
        let slot = crate::os::memfd::page_round(len.max(1)).unwrap_or(usize::MAX);
        let fit = (self.small_frames_arena / slot).min(64) as u32;
        self.slots.max(fit)
    }

    /// Capacity of each consumer's release ring: twice the most slots an arena can
    /// have (the smallest frames' arena, see [`ProducerConfig::small_frames_arena`];
    /// twice, for an arena being retired beside the current one). A consumer can
    /// then release everything it may hold without the ring filling, which its
    /// `Releaser` counts on. Sized by `slots` alone, it had 16 entries against
    /// arenas of 64 slots for small frames (audio with `shmringsink slots=0`): a
    /// consumer that released a burst while the producer was off its CPU kept the
    /// rest in its backlog until its next release, and the producer counted those
    /// slots as held meanwhile.
    pub(super) fn release_ring(&self) -> u32 {
        (self.slots_for(1) * 2).next_power_of_two().max(16)
    }
}
