//! The fixed-size records the frame channel passes through its shared rings: frame
//! descriptors (producer → consumer) and slot releases (consumer → producer).
//!
//! Both are plain old data copied out of shared memory, so any bytes a hostile peer
//! wrote are a valid value; every field is then validated before use. This is a
//! building block of the frame channel.

use bytemuck::{Pod, Zeroable};

use crate::frame::arena::{ArenaShape, ConsumerArena};
use crate::error::{PeerFault, ProtocolFault, StreamFault};
use crate::frame::ledger::SlotRef;

/// Bytes of per-frame metadata a descriptor carries (timestamps, flags, layout).
pub const META_BYTES: usize = 88;

/// One published frame: where its bytes are, its sequence number and its metadata.
/// 128 bytes, two cache lines.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FrameDesc {
    /// Arena id (as announced in an `Arena` message).
    pub arena: u32,
    /// Slot index in the arena.
    pub slot: u32,
    /// Offset of the frame's first byte in the slot.
    pub offset: u32,
    /// Frame length in bytes.
    pub len: u32,
    /// Frame number in this consumer's stream (0, 1, 2, ...).
    pub seq: u64,
    /// Socket messages (arenas, side messages) the producer sent this consumer before
    /// this frame, counted from its welcome: the consumer reads that many before it
    /// delivers the frame, so it never needs a system call to learn there are none.
    pub msgs: u64,
    /// Bytes of `meta` in use.
    pub meta_len: u16,
    /// Reserved, zero.
    pub reserved: u16,
    /// Frames the producer dropped for this consumer just before this one (its
    /// slow-consumer policy), so the consumer can flag a discontinuity.
    pub dropped: u32,
    /// Opaque metadata, `meta_len` bytes used.
    pub meta: [u8; META_BYTES],
}

const _: () = assert!(std::mem::size_of::<FrameDesc>() == 128);

impl FrameDesc {
    /// The metadata in use, after checking `meta_len`.
    pub fn meta(&self) -> Result<&[u8], PeerFault> {
        self.meta.get(..self.meta_len as usize).ok_or_else(|| {
            StreamFault::MetadataLength {
                seq: self.seq,
                len: self.meta_len,
                limit: META_BYTES,
            }
            .into()
        })
    }

    /// Validates every field against what the consumer knows: the frame number it
    /// expects next, and the shape of the arena the descriptor names (`None`: no such
    /// arena was announced). Returns the frame's start as an offset in the arena.
    pub fn validate(&self, expected_seq: u64, arena: Option<ArenaShape>) -> Result<u64, PeerFault> {
        if self.seq != expected_seq {
            return Err(StreamFault::Sequence {
                found: self.seq,
                expected: expected_seq,
            }
            .into());
        }
        self.meta()?;
        let Some(shape) = arena else {
            return Err(ProtocolFault::UnknownArena {
                what: format!("frame {}", self.seq),
                id: self.arena,
            }
            .into());
        };
        Ok(shape.range(self.slot, self.offset, self.len)?)
    }

    /// Checks the descriptor against the arena it names and returns a read-only
    /// pointer to the frame's `len` bytes.
    pub fn locate(&self, arena: &ConsumerArena) -> Result<*const u8, PeerFault> {
        self.meta()?;
        Ok(arena.bytes(self.slot, self.offset, self.len)?)
    }

    /// The slot this frame occupies.
    pub fn slot_ref(&self) -> SlotRef {
        SlotRef {
            arena: self.arena,
            slot: self.slot,
        }
    }
}

/// A slot release as it travels through the release ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Release {
    /// Arena id.
    pub arena: u32,
    /// Slot index.
    pub slot: u32,
}

impl From<SlotRef> for Release {
    fn from(s: SlotRef) -> Release {
        Release {
            arena: s.arena,
            slot: s.slot,
        }
    }
}

impl From<Release> for SlotRef {
    fn from(r: Release) -> SlotRef {
        SlotRef {
            arena: r.arena,
            slot: r.slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::arena::ProducerArena;
    use crate::{Receiver, Sender};

    #[test]
    fn descriptors_cross_a_shared_ring_and_locate_their_bytes() {
        let pa = ProducerArena::create(4096, 2).unwrap();
        let ca = ConsumerArena::open(pa.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap();
        let (mut tx, fds) = Sender::<FrameDesc>::create(8).unwrap();
        let mut rx = Receiver::<FrameDesc>::attach(fds).unwrap();
        let mut d = FrameDesc::zeroed();
        d.slot = 1;
        d.offset = 16;
        d.len = 32;
        d.meta_len = 3;
        d.meta[..3].copy_from_slice(b"pts");
        tx.send(&d).unwrap();
        let got = rx.recv().unwrap();
        assert_eq!(got, d);
        assert_eq!(got.meta().unwrap(), b"pts");
        assert!(got.locate(&ca).is_ok());
    }

    #[test]
    fn lying_descriptors_are_refused() {
        let pa = ProducerArena::create(4096, 2).unwrap();
        let ca = ConsumerArena::open(pa.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap();
        let mut d = FrameDesc::zeroed();
        d.meta_len = 89;
        assert_eq!(
            d.meta().unwrap_err().to_string(),
            "frame 0 metadata length 89 exceeds 88"
        );
        let mut d = FrameDesc::zeroed();
        d.slot = 2;
        assert!(d.locate(&ca).is_err());
        let mut d = FrameDesc::zeroed();
        d.offset = 4095;
        d.len = 2;
        assert!(d.locate(&ca).is_err());
    }
}
