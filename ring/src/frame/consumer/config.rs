//! How a consumer receives and reconnects.

use std::time::Duration;

/// How a [`Consumer`](crate::Consumer) receives.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Copy every frame out of shared memory on receipt and release its slot at once
    /// (a stable private snapshot that a hostile producer cannot change).
    /// Default false: frames are read in place.
    pub copy: bool,
    /// How long [`Consumer::recv`](crate::Consumer::recv) polls the frame ring before sleeping on the
    /// doorbell (0: sleep at once). Default 20 µs.
    pub spin: Duration,
    /// How long to wait for the producer's welcome. Default 2 s.
    pub handshake_timeout: Duration,
    /// Most arenas the producer may keep announced at once. Default 16.
    pub max_arenas: usize,
    /// Largest arena (slots × slot size) this consumer maps; a bigger one is the
    /// producer's fault. Default 2 GiB (8 slots of 8K RGBA frames fit).
    pub max_arena_bytes: u64,
    /// Most bytes of arenas mapped at once, all arenas together. Default 4 GiB.
    pub max_mapped_bytes: u64,
    /// Most side messages queued ahead of the frame they precede. Default 1024.
    pub max_pending_side: usize,
    /// The most this consumer polls for each frame of a paced (live) stream, waking
    /// shortly before the frame can come instead of sleeping until the producer's
    /// doorbell wakes it: a wake-up costs from a few µs to a millisecond depending
    /// on the machine (a virtual CPU that halted), a poll that catches its frame
    /// nothing. 0: off. Default 0.
    ///
    /// Within this cap the consumer decides from what it measures: when frames
    /// come (the stream's grid, from the earliest recent arrivals), how late they
    /// come after it (the producer's jitter, on frames caught while polling), how
    /// late its own timed wake-ups come, and whether polls catch their frame. It
    /// polls at most 1.5 % of the frame interval, only for streams at least 2 ms
    /// apart, and turns itself off for 900 frames when fewer than 4 of 8 polls
    /// caught their frame ([`Consumer::anticipation`](crate::Consumer::anticipation) says what it did).
    pub wake_ahead: Duration,
}

impl ConsumerConfig {
    /// Default [`ConsumerConfig::spin`].
    pub const DEFAULT_SPIN: Duration = crate::ring::channel::DEFAULT_SPIN;
    /// Default [`ConsumerConfig::handshake_timeout`].
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            copy: false,
            spin: Self::DEFAULT_SPIN,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            max_arenas: 16,
            max_arena_bytes: 2 << 30,
            max_mapped_bytes: 4 << 30,
            max_pending_side: 1024,
            wake_ahead: Duration::ZERO,
        }
    }
}

/// Reconnection pacing for [`Consumer::connect_with_backoff`](crate::Consumer::connect_with_backoff): the first retry waits
/// `initial`, each next one twice as long, up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
        }
    }
}
