//! The frame channel's socket messages: one strict, pure, versioned codec.
//!
//! Each message is one `SOCK_SEQPACKET` datagram:
//!
//! | bytes | field                                        |
//! |-------|----------------------------------------------|
//! | 0..4  | magic `b"SRFC"`                              |
//! | 4..6  | message type (u16, little-endian)            |
//! | 6..8  | fd count this message must carry (u16)        |
//! | 8..12 | body length (u32), equal to the datagram's length − 12 |
//! | 12..  | body, by type (below)                        |
//!
//! `decode` accepts exactly what `encode` produces: unknown types, wrong lengths,
//! trailing bytes, oversized bodies, invalid UTF-8 and out-of-range values are all
//! [`PeerFault::Protocol`](crate::PeerFault::Protocol) naming the fault. It never panics and never allocates more than
//! the datagram's own size. The fd count in the header lets the receiver check the
//! fds that arrived with the message before it looks at the body.
//!
//! This module is the codec only; [`crate::frame`] speaks it (see `docs/protocol.md`).

use std::time::Duration;

use crate::error::{ProtocolFault, Result};
use crate::frame::producer::{ConsumerStats, Policy, ProducerStats};

/// Magic at the start of every message.
pub const MAGIC: [u8; 4] = *b"SRFC";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 12;
/// Largest datagram either side sends or accepts (header included).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest side-message payload.
pub const MAX_SIDE_PAYLOAD: usize = MAX_MESSAGE - HEADER_LEN - 16;
/// Largest reason text in [`Msg::Goodbye`].
pub const MAX_REASON: usize = 1024;
/// Most bytes of a consumer's note.
pub const MAX_NOTE: usize = 16 * 1024;
/// Most bytes of a producer's description.
pub const MAX_DESCRIPTION: usize = 16 * 1024;
/// The version of the `Stats` body (what a probe is told after the description, see
/// `docs/protocol.md`) this crate writes and reads.
pub const STATS_VERSION: u32 = 1;
/// Most consumers one `Stats` message lists (a producer serving more lists the first
/// this many; 64 bytes each, so that the message fits in one datagram).
pub const MAX_STATS_CONSUMERS: usize = 1000;
/// Bytes of one consumer's entry in a `Stats` body.
const STATS_CONSUMER_BYTES: usize = 64;

/// A message of the frame channel's socket protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Consumer → producer, first message: the versions it speaks.
    Hello {
        /// Lowest version the consumer speaks.
        min_version: u32,
        /// Highest version the consumer speaks.
        max_version: u32,
    },
    /// Producer → consumer: accepted. Carries 4 fds, the consumer's control region:
    /// frame ring memfd, frame ring doorbell end, release ring memfd, release ring
    /// doorbell end.
    Welcome {
        /// The version chosen.
        version: u32,
        /// The producer's id for this consumer (for logs and stats).
        consumer_id: u32,
        /// Capacity of the frame ring (descriptors), a power of two.
        frame_ring: u32,
        /// Capacity of the release ring (slot ids), a power of two.
        release_ring: u32,
        /// Most slots this consumer may hold (queued or in use) before the producer
        /// blocks or drops for it; at least 1.
        max_held: u32,
    },
    /// Producer → consumer: a new arena. Carries 1 fd (sealed memfd, read-only for
    /// the consumer).
    Arena {
        /// Id the frame descriptors name it by.
        arena_id: u32,
        /// Bytes per slot, a multiple of the page size.
        slot_size: u32,
        /// Number of slots.
        slots: u32,
    },
    /// Producer → consumer: an arena no frame will name again; unmap it once no
    /// frame of it is held.
    DropArena {
        /// The arena.
        arena_id: u32,
    },
    /// Producer → consumer: an opaque side message, delivered before frame number
    /// `before_frame` of this consumer's stream.
    Side {
        /// Frames published to this consumer before this message.
        before_frame: u64,
        /// Non-zero for sticky messages: the latest of each key is replayed to
        /// consumers that join later.
        sticky_key: u32,
        /// The payload (at most [`MAX_SIDE_PAYLOAD`] bytes).
        payload: Vec<u8>,
    },
    /// Consumer → producer: an opaque note about what the consumer wants (e.g. the
    /// formats its downstream accepts); the latest replaces the ones before.
    Note {
        /// The payload (at most [`MAX_NOTE`] bytes).
        payload: Vec<u8>,
    },
    /// Probe → producer, first and only message: asks what the producer serves,
    /// without becoming a consumer (a device monitor listing producers). Instead of
    /// `Hello`; answered with [`Msg::Description`], then the producer closes.
    Probe {
        /// Lowest version the prober speaks.
        min_version: u32,
        /// Highest version the prober speaks.
        max_version: u32,
    },
    /// Producer → probe: what it serves, opaque to the frame channel (the plugin
    /// sends its caps); the latest the producer's application set.
    Description {
        /// The payload (at most [`MAX_DESCRIPTION`] bytes).
        payload: Vec<u8>,
    },
    /// Producer → probe, after [`Msg::Description`]: its counters and how it serves
    /// (a versioned body, see `docs/protocol.md`). A prober that does not read it
    /// loses nothing; a producer that does not send it is older.
    Stats {
        /// The snapshot.
        stats: Box<ProducerStats>,
    },
    /// Either side: the connection ends. `code` 0 is a clean end (EOS or stop).
    Goodbye {
        /// 0 = clean, otherwise an error.
        code: u32,
        /// A human-readable reason (UTF-8, at most [`MAX_REASON`] bytes).
        reason: String,
    },
}

/// `Goodbye` codes.
pub mod goodbye {
    /// A clean end: the producer stopped (after its last frame), or the consumer left.
    pub const CLEAN: u32 = 0;
    /// The sender cut the connection for a fault of the other side (too slow, a
    /// protocol violation); the reason says which.
    pub const CUT_OFF: u32 = 1;
    /// The producer refused the connection before it became a consumer (uid not
    /// allowed, too many consumers, no hello).
    pub const REFUSED: u32 = 2;
}

/// Message type numbers.
mod ty {
    pub const HELLO: u16 = 1;
    pub const WELCOME: u16 = 2;
    pub const ARENA: u16 = 3;
    pub const DROP_ARENA: u16 = 4;
    pub const SIDE: u16 = 5;
    pub const GOODBYE: u16 = 6;
    pub const NOTE: u16 = 7;
    pub const PROBE: u16 = 8;
    pub const DESCRIPTION: u16 = 9;
    pub const STATS: u16 = 10;
}

impl Msg {
    /// The number of fds this message carries.
    pub fn fd_count(&self) -> usize {
        match self {
            Msg::Welcome { .. } => 4,
            Msg::Arena { .. } => 1,
            _ => 0,
        }
    }

    /// The message's type name, e.g. `"Welcome"` (for logs and errors).
    pub fn name(&self) -> &'static str {
        Msg::type_name(self.type_number())
    }

    fn type_number(&self) -> u16 {
        match self {
            Msg::Hello { .. } => ty::HELLO,
            Msg::Welcome { .. } => ty::WELCOME,
            Msg::Arena { .. } => ty::ARENA,
            Msg::DropArena { .. } => ty::DROP_ARENA,
            Msg::Side { .. } => ty::SIDE,
            Msg::Goodbye { .. } => ty::GOODBYE,
            Msg::Note { .. } => ty::NOTE,
            Msg::Probe { .. } => ty::PROBE,
            Msg::Description { .. } => ty::DESCRIPTION,
            Msg::Stats { .. } => ty::STATS,
        }
    }

    fn type_name(t: u16) -> &'static str {
        match t {
            ty::HELLO => "Hello",
            ty::WELCOME => "Welcome",
            ty::ARENA => "Arena",
            ty::DROP_ARENA => "DropArena",
            ty::SIDE => "Side",
            ty::GOODBYE => "Goodbye",
            ty::NOTE => "Note",
            ty::PROBE => "Probe",
            ty::DESCRIPTION => "Description",
            ty::STATS => "Stats",
            _ => "unknown",
        }
    }

    /// Encodes the message as one datagram.
    ///
    /// Panics if a payload or reason exceeds its limit: that is a bug in the caller,
    /// not peer input.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let t = match self {
            Msg::Hello {
                min_version,
                max_version,
            } => {
                put32(&mut body, *min_version);
                put32(&mut body, *max_version);
                ty::HELLO
            }
            Msg::Probe {
                min_version,
                max_version,
            } => {
                put32(&mut body, *min_version);
                put32(&mut body, *max_version);
                ty::PROBE
            }
            Msg::Description { payload } => {
                assert!(payload.len() <= MAX_DESCRIPTION, "description too large");
                put32(&mut body, payload.len() as u32);
                body.extend_from_slice(payload);
                ty::DESCRIPTION
            }
            Msg::Stats { stats } => {
                put_stats(&mut body, stats);
                ty::STATS
            }
            Msg::Welcome {
                version,
                consumer_id,
                frame_ring,
                release_ring,
                max_held,
            } => {
                for v in [version, consumer_id, frame_ring, release_ring, max_held] {
                    put32(&mut body, *v);
                }
                ty::WELCOME
            }
            Msg::Arena {
                arena_id,
                slot_size,
                slots,
            } => {
                for v in [arena_id, slot_size, slots] {
                    put32(&mut body, *v);
                }
                ty::ARENA
            }
            Msg::DropArena { arena_id } => {
                put32(&mut body, *arena_id);
                ty::DROP_ARENA
            }
            Msg::Side {
                before_frame,
                sticky_key,
                payload,
            } => {
                assert!(payload.len() <= MAX_SIDE_PAYLOAD, "side payload too large");
                body.extend_from_slice(&before_frame.to_le_bytes());
                put32(&mut body, *sticky_key);
                put32(&mut body, payload.len() as u32);
                body.extend_from_slice(payload);
                ty::SIDE
            }
            Msg::Note { payload } => {
                assert!(payload.len() <= MAX_NOTE, "note too large");
                put32(&mut body, payload.len() as u32);
                body.extend_from_slice(payload);
                ty::NOTE
            }
            Msg::Goodbye { code, reason } => {
                assert!(reason.len() <= MAX_REASON, "goodbye reason too long");
                put32(&mut body, *code);
                put32(&mut body, reason.len() as u32);
                body.extend_from_slice(reason.as_bytes());
                ty::GOODBYE
            }
        };
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(self.fd_count() as u16).to_le_bytes());
        put32(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one datagram that arrived with `fds` file descriptors.
    pub fn decode(buf: &[u8], fds: usize) -> Result<Msg, ProtocolFault> {
        let (t, nfds) = Self::header(buf)?;
        let name = Msg::type_name(t);
        let mut r = Reader {
            buf: &buf[HEADER_LEN..],
            what: name,
        };
        let msg = Self::body(t, &mut r)?;
        if !r.buf.is_empty() {
            return Err(ProtocolFault::Trailing {
                what: name,
                extra: r.buf.len(),
            });
        }
        if nfds != msg.fd_count() {
            return Err(ProtocolFault::FdsAnnounced {
                what: name,
                announced: nfds,
                carries: msg.fd_count(),
            });
        }
        if fds != nfds {
            return Err(ProtocolFault::FdsArrived {
                what: name,
                carries: nfds,
                arrived: fds,
            });
        }
        Ok(msg)
    }

    /// Checks the fixed header and returns the type and the announced fd count.
    fn header(buf: &[u8]) -> Result<(u16, usize), ProtocolFault> {
        if buf.len() < HEADER_LEN {
            return Err(ProtocolFault::ShortMessage { len: buf.len() });
        }
        if buf.len() > MAX_MESSAGE {
            return Err(ProtocolFault::LongMessage {
                len: buf.len(),
                limit: MAX_MESSAGE,
            });
        }
        if buf[0..4] != MAGIC {
            return Err(ProtocolFault::Magic {
                found: buf[0..4].try_into().expect("4 bytes"),
            });
        }
        let t = u16::from_le_bytes([buf[4], buf[5]]);
        let nfds = u16::from_le_bytes([buf[6], buf[7]]) as usize;
        let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
        if len != buf.len() - HEADER_LEN {
            return Err(ProtocolFault::BodyLength {
                said: len,
                has: buf.len() - HEADER_LEN,
            });
        }
        Ok((t, nfds))
    }

    /// Reads the body of a message of type `t`.
    fn body(t: u16, r: &mut Reader<'_>) -> Result<Msg, ProtocolFault> {
        Ok(match t {
            ty::HELLO => Msg::Hello {
                min_version: r.u32()?,
                max_version: r.u32()?,
            },
            ty::WELCOME => Msg::Welcome {
                version: r.u32()?,
                consumer_id: r.u32()?,
                frame_ring: r.pow2("frame ring capacity")?,
                release_ring: r.pow2("release ring capacity")?,
                max_held: r.nonzero("slot share")?,
            },
            ty::ARENA => Msg::Arena {
                arena_id: r.u32()?,
                slot_size: r.nonzero("slot size")?,
                slots: r.nonzero("slot count")?,
            },
            ty::DROP_ARENA => Msg::DropArena { arena_id: r.u32()? },
            ty::SIDE => Msg::Side {
                before_frame: r.u64()?,
                sticky_key: r.u32()?,
                payload: r.sized("Side payload", MAX_SIDE_PAYLOAD)?.to_vec(),
            },
            ty::GOODBYE => {
                let code = r.u32()?;
                let reason = std::str::from_utf8(r.sized("Goodbye reason", MAX_REASON)?)
                    .map_err(|_| ProtocolFault::ReasonNotUtf8)?
                    .to_owned();
                Msg::Goodbye { code, reason }
            }
            ty::NOTE => Msg::Note {
                payload: r.sized("Note", MAX_NOTE)?.to_vec(),
            },
            ty::PROBE => Msg::Probe {
                min_version: r.u32()?,
                max_version: r.u32()?,
            },
            ty::DESCRIPTION => Msg::Description {
                payload: r.sized("Description", MAX_DESCRIPTION)?.to_vec(),
            },
            ty::STATS => Msg::Stats {
                stats: Box::new(stats(r)?),
            },
            other => return Err(ProtocolFault::UnknownType { ty: other }),
        })
    }
}

fn too_long(what: &'static str, len: usize, limit: usize) -> ProtocolFault {
    ProtocolFault::FieldTooLong { what, len, limit }
}

fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Microseconds, saturated.
fn us(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

fn policy_code(p: Policy) -> u32 {
    match p {
        Policy::Block => 0,
        Policy::Drop => 1,
    }
}

/// The `Stats` body: version, the producer's counters, how it serves, then each
/// consumer (at most [`MAX_STATS_CONSUMERS`]).
fn put_stats(b: &mut Vec<u8>, s: &ProducerStats) {
    put32(b, STATS_VERSION);
    for v in [s.frames, s.bytes, s.joined, s.left, s.cut_off, s.refused, s.probes] {
        put64(b, v);
    }
    for v in [s.arenas, s.slot_size, s.slots, s.free_slots, s.max_consumers] {
        put64(b, v as u64);
    }
    put32(b, policy_code(s.policy));
    put64(b, us(s.block_timeout));
    put64(b, s.lease.map_or(u64::MAX, us));
    let listed = &s.consumers[..s.consumers.len().min(MAX_STATS_CONSUMERS)];
    put32(b, listed.len() as u32);
    for c in listed {
        put32(b, c.id);
        put32(b, c.pid as u32);
        put32(b, c.uid);
        put32(b, policy_code(c.policy));
        for v in [c.frames, c.bytes, c.drops, c.pending] {
            put64(b, v);
        }
        put64(b, c.held as u64);
        put64(b, c.queued as u64);
    }
}

/// Reads what [`put_stats`] writes: a producer's word, every field checked for
/// what it can hold (counts fit a `usize`, policies are known, the list is bounded
/// before anything is allocated for it).
fn stats(r: &mut Reader<'_>) -> Result<ProducerStats, ProtocolFault> {
    let version = r.u32()?;
    if version != STATS_VERSION {
        return Err(ProtocolFault::StatsVersion {
            found: version,
            reads: STATS_VERSION,
        });
    }
    let mut s = ProducerStats {
        frames: r.u64()?,
        bytes: r.u64()?,
        joined: r.u64()?,
        left: r.u64()?,
        cut_off: r.u64()?,
        refused: r.u64()?,
        probes: r.u64()?,
        arenas: r.usize("arenas")?,
        slot_size: r.usize("slot size")?,
        slots: r.usize("slots")?,
        free_slots: r.usize("free slots")?,
        max_consumers: r.usize("max consumers")?,
        policy: r.policy("policy")?,
        block_timeout: Duration::from_micros(r.u64()?),
        lease: match r.u64()? {
            u64::MAX => None,
            v => Some(Duration::from_micros(v)),
        },
        consumers: Vec::new(),
    };
    let n = r.u32()? as usize;
    if n > MAX_STATS_CONSUMERS {
        return Err(too_long("Stats consumer list", n, MAX_STATS_CONSUMERS));
    }
    // A list longer than the body is refused before it is allocated.
    let needs = n * STATS_CONSUMER_BYTES;
    if needs > r.buf.len() {
        return Err(ProtocolFault::BodyTruncated {
            what: r.what,
            needs,
            has: r.buf.len(),
        });
    }
    s.consumers.reserve_exact(n);
    for _ in 0..n {
        s.consumers.push(ConsumerStats {
            id: r.u32()?,
            pid: r.u32()? as i32,
            uid: r.u32()?,
            policy: r.policy("consumer policy")?,
            frames: r.u64()?,
            bytes: r.u64()?,
            drops: r.u64()?,
            pending: r.u64()?,
            held: r.usize("consumer held")?,
            queued: r.usize("consumer queued")?,
        });
    }
    Ok(s)
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A u32 length of at most `limit`, then that many bytes.
    fn sized(&mut self, what: &'static str, limit: usize) -> Result<&'a [u8], ProtocolFault> {
        let n = self.u32()? as usize;
        if n > limit {
            return Err(too_long(what, n, limit));
        }
        self.bytes(n)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolFault> {
        if self.buf.len() < n {
            return Err(ProtocolFault::BodyTruncated {
                what: self.what,
                needs: n,
                has: self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, ProtocolFault> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, ProtocolFault> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn usize(&mut self, field: &'static str) -> Result<usize, ProtocolFault> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| ProtocolFault::BadValue {
            what: self.what,
            field,
            value: v,
        })
    }

    fn policy(&mut self, field: &'static str) -> Result<Policy, ProtocolFault> {
        match self.u32()? {
            0 => Ok(Policy::Block),
            1 => Ok(Policy::Drop),
            v => Err(ProtocolFault::BadValue {
                what: self.what,
                field,
                value: v as u64,
            }),
        }
    }

    fn pow2(&mut self, field: &'static str) -> Result<u32, ProtocolFault> {
        let v = self.u32()?;
        if !v.is_power_of_two() || v > crate::MAX_CAPACITY {
            return Err(ProtocolFault::NotPowerOfTwo {
                what: self.what,
                field,
                value: v,
                limit: crate::MAX_CAPACITY,
            });
        }
        Ok(v)
    }

    fn nonzero(&mut self, field: &'static str) -> Result<u32, ProtocolFault> {
        let v = self.u32()?;
        if v == 0 {
            return Err(ProtocolFault::Zero {
                what: self.what,
                field,
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PeerFault;

    fn samples() -> Vec<Msg> {
        vec![
            Msg::Hello {
                min_version: 1,
                max_version: 3,
            },
            Msg::Welcome {
                version: 1,
                consumer_id: 7,
                frame_ring: 64,
                release_ring: 128,
                max_held: 4,
            },
            Msg::Arena {
                arena_id: 2,
                slot_size: 4096 * 760,
                slots: 8,
            },
            Msg::DropArena { arena_id: 2 },
            Msg::Side {
                before_frame: 1 << 40,
                sticky_key: 3,
                payload: b"video/x-raw, format=I420".to_vec(),
            },
            Msg::Side {
                before_frame: 0,
                sticky_key: 0,
                payload: vec![],
            },
            Msg::Goodbye {
                code: 0,
                reason: "end of stream".into(),
            },
            Msg::Note {
                payload: b"accepts video/x-raw, format=RGBA".to_vec(),
            },
            Msg::Probe {
                min_version: 1,
                max_version: 1,
            },
            Msg::Description {
                payload: b"video/x-raw, format=I420".to_vec(),
            },
            Msg::Description { payload: vec![] },
            Msg::Stats {
                stats: Box::new(sample_stats()),
            },
            Msg::Stats {
                stats: Box::default(),
            },
        ]
    }

    fn sample_stats() -> ProducerStats {
        let consumer = |id: u32, policy| ConsumerStats {
            id,
            pid: 4000 + id as i32,
            uid: 1000,
            frames: u64::MAX,
            bytes: 3 << 40,
            drops: 7,
            held: 2,
            queued: 512,
            pending: 1,
            policy,
        };
        ProducerStats {
            frames: 300,
            bytes: 300 << 21,
            consumers: vec![consumer(1, Policy::Block), consumer(2, Policy::Drop)],
            joined: 3,
            left: 1,
            cut_off: 0,
            refused: 2,
            probes: 9,
            arenas: 1,
            slot_size: 3 << 20,
            slots: 8,
            free_slots: 5,
            max_consumers: 16,
            policy: Policy::Drop,
            block_timeout: Duration::from_secs(1),
            lease: Some(Duration::from_millis(250)),
        }
    }

    /// A `Stats` message's body bytes, for tampering.
    fn stats_bytes() -> Vec<u8> {
        Msg::Stats {
            stats: Box::new(sample_stats()),
        }
        .encode()
    }

    /// Offset of the consumer count in a `Stats` message: header, version, 7
    /// counters, 5 sizes, the policy, 2 timeouts.
    const STATS_COUNT_AT: usize = HEADER_LEN + 4 + 7 * 8 + 5 * 8 + 4 + 2 * 8;

    #[test]
    fn stats_of_another_version_an_unknown_policy_or_too_many_consumers_are_refused() {
        let mut b = stats_bytes();
        b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&2u32.to_le_bytes());
        let e = Msg::decode(&b, 0).unwrap_err().to_string();
        assert!(
            e.contains("Stats of version 2, this side reads version 1"),
            "{e}"
        );
        let mut b = stats_bytes();
        let policy_at = STATS_COUNT_AT - 2 * 8 - 4;
        b[policy_at..policy_at + 4].copy_from_slice(&9u32.to_le_bytes());
        let e = Msg::decode(&b, 0).unwrap_err().to_string();
        assert!(e.contains("Stats policy 9 is none of its values"), "{e}");
        let mut b = stats_bytes();
        b[STATS_COUNT_AT..STATS_COUNT_AT + 4]
            .copy_from_slice(&((MAX_STATS_CONSUMERS + 1) as u32).to_le_bytes());
        let e = Msg::decode(&b, 0).unwrap_err().to_string();
        assert!(e.contains("Stats consumer list of 1001 bytes exceeds 1000"), "{e}");
        // A list the body cannot hold is refused before anything is reserved for it.
        let mut b = stats_bytes();
        b[STATS_COUNT_AT..STATS_COUNT_AT + 4].copy_from_slice(&900u32.to_le_bytes());
        let e = Msg::decode(&b, 0).unwrap_err().to_string();
        assert!(e.contains("needs 57600 more bytes, has 128"), "{e}");
    }

    #[test]
    fn the_most_consumers_a_stats_message_lists_fit_in_one_message() {
        let mut s = sample_stats();
        let c = s.consumers[0].clone();
        s.consumers = vec![c; MAX_STATS_CONSUMERS + 5];
        let b = Msg::Stats {
            stats: Box::new(s.clone()),
        }
        .encode();
        assert!(b.len() <= MAX_MESSAGE);
        let Msg::Stats { stats } = Msg::decode(&b, 0).unwrap() else {
            panic!("not Stats");
        };
        assert_eq!(stats.consumers.len(), MAX_STATS_CONSUMERS);
        s.consumers.truncate(MAX_STATS_CONSUMERS);
        assert_eq!(*stats, s);
    }

    #[test]
    fn a_description_larger_than_allowed_is_refused() {
        let mut b = Msg::Description {
            payload: vec![1; 8],
        }
        .encode();
        b[HEADER_LEN..HEADER_LEN + 4]
            .copy_from_slice(&((MAX_DESCRIPTION + 1) as u32).to_le_bytes());
        assert!(
            Msg::decode(&b, 0)
                .unwrap_err()
                .to_string()
                .contains(&format!("Description of {} bytes exceeds", MAX_DESCRIPTION + 1))
        );
    }

    #[test]
    fn a_note_larger_than_allowed_is_refused() {
        let mut b = Msg::Note {
            payload: vec![1; 8],
        }
        .encode();
        b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&((MAX_NOTE + 1) as u32).to_le_bytes());
        assert!(
            Msg::decode(&b, 0)
                .unwrap_err()
                .to_string()
                .contains(&format!("Note of {} bytes exceeds", MAX_NOTE + 1))
        );
    }

    #[test]
    fn every_message_survives_encode_then_decode() {
        for m in samples() {
            assert_eq!(Msg::decode(&m.encode(), m.fd_count()).unwrap(), m);
        }
    }

    #[test]
    fn decode_rejects_every_truncation_of_every_message() {
        for m in samples() {
            let b = m.encode();
            for n in 0..b.len() {
                assert!(
                    Msg::decode(&b[..n], m.fd_count()).is_err(),
                    "{m:?} cut at {n}"
                );
            }
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes_even_with_a_consistent_length() {
        let mut b = Msg::DropArena { arena_id: 1 }.encode();
        b.extend_from_slice(&[0, 0]);
        b[8] += 2;
        let e = Msg::decode(&b, 0).unwrap_err();
        assert!(matches!(
            e,
            ProtocolFault::Trailing {
                what: "DropArena",
                extra: 2
            }
        ));
        assert_eq!(
            PeerFault::from(e).to_string(),
            "protocol violation: DropArena has 2 trailing bytes"
        );
    }

    #[test]
    fn decode_rejects_a_wrong_fd_count() {
        let b = Msg::Arena {
            arena_id: 1,
            slot_size: 4096,
            slots: 2,
        }
        .encode();
        let e = Msg::decode(&b, 3).unwrap_err();
        assert!(matches!(
            e,
            ProtocolFault::FdsArrived {
                what: "Arena",
                carries: 1,
                arrived: 3
            }
        ));
        assert_eq!(
            PeerFault::from(e).to_string(),
            "protocol violation: Arena carries 1 fds, 3 arrived"
        );
    }

    #[test]
    fn decode_rejects_an_oversized_side_payload_claim() {
        let mut b = Msg::Side {
            before_frame: 0,
            sticky_key: 0,
            payload: vec![1, 2, 3],
        }
        .encode();
        b[HEADER_LEN + 12..HEADER_LEN + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = Msg::decode(&b, 0).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
    }

    #[test]
    fn decode_rejects_unknown_types_and_bad_magic() {
        let mut b = Msg::DropArena { arena_id: 1 }.encode();
        b[4] = 99;
        assert!(matches!(
            Msg::decode(&b, 0),
            Err(ProtocolFault::UnknownType { ty: 99 })
        ));
        let mut b = Msg::DropArena { arena_id: 1 }.encode();
        b[0] = b'X';
        let e = Msg::decode(&b, 0).unwrap_err();
        assert!(matches!(e, ProtocolFault::Magic { found } if found[0] == b'X'));
        assert!(e.to_string().contains("bad magic"), "{e}");
    }

    #[test]
    fn decode_rejects_a_non_power_of_two_ring() {
        let mut b = Msg::Welcome {
            version: 1,
            consumer_id: 1,
            frame_ring: 64,
            release_ring: 64,
            max_held: 4,
        }
        .encode();
        b[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&100u32.to_le_bytes());
        let e = Msg::decode(&b, 2).unwrap_err();
        assert!(e.to_string().contains("frame ring capacity 100"), "{e}");
    }

    #[test]
    fn decode_rejects_a_reason_that_is_not_utf8() {
        let mut b = Msg::Goodbye {
            code: 1,
            reason: "ab".into(),
        }
        .encode();
        let n = b.len();
        b[n - 1] = 0xff;
        let e = Msg::decode(&b, 0).unwrap_err();
        assert!(matches!(e, ProtocolFault::ReasonNotUtf8));
        assert_eq!(
            PeerFault::from(e).to_string(),
            "protocol violation: Goodbye reason is not UTF-8"
        );
    }

    #[test]
    fn decode_of_pseudo_random_bytes_never_panics() {
        // A cheap, deterministic stand-in for the fuzzer in every `cargo test`: mutate
        // valid messages byte by byte and feed plain noise.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for m in samples() {
            let b = m.encode();
            for _ in 0..2000 {
                let mut c = b.clone();
                let i = (next() as usize) % c.len();
                c[i] = next() as u8;
                let _ = Msg::decode(&c, (next() % 4) as usize);
            }
        }
        for _ in 0..5000 {
            let n = (next() % 80) as usize;
            let mut c: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            if c.len() >= 4 && next() % 2 == 0 {
                c[..4].copy_from_slice(&MAGIC);
            }
            let _ = Msg::decode(&c, 0);
        }
    }
}
