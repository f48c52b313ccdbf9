//! Arenas: one sealed memfd of fixed-size, page-aligned slots that frames are written
//! into by the producer and read in place by consumers.
//!
//! The producer maps the arena read-write, then seals it `F_SEAL_SHRINK | F_SEAL_GROW
//! | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`: its own mapping keeps writing, while no one
//! else can ever map it writable, `write(2)` it or punch holes in it. A consumer checks
//! those seals and the exact size (`slot_size × slots`) before mapping it read-only,
//! so it can neither scribble on frames other consumers see nor be hit by `SIGBUS`.
//!
//! The frame channel ([`crate::frame`]) creates and hands out arenas.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{AttachError, ProtocolFault, PublishError, StreamFault};
use crate::os::memfd::{self, Access, Region, Seals};

/// Largest arena a consumer accepts (16 GiB).
pub const MAX_ARENA_BYTES: u64 = 16 << 30;

/// Largest slot: the protocol carries slot sizes and frame lengths as 32-bit
/// numbers (4 GiB less a page).
pub const MAX_SLOT_BYTES: usize = (u32::MAX as usize + 1) - 4096;

/// An arena as the producer holds it: writable through this mapping only.
#[derive(Debug)]
pub struct ProducerArena {
    region: Region,
    slot_size: usize,
    slots: u32,
}

/// An arena as a consumer holds it: a verified, read-only mapping.
#[derive(Debug)]
pub struct ConsumerArena {
    region: Region,
    slot_size: usize,
    slots: u32,
}

fn total(slot_size: u64, slots: u32) -> Result<u64, ProtocolFault> {
    let page = memfd::page_size() as u64;
    if slot_size == 0 || slot_size % page != 0 {
        return Err(ProtocolFault::ArenaSlotSize { slot_size, page });
    }
    if slots == 0 {
        return Err(ProtocolFault::ArenaEmpty);
    }
    slot_size
        .checked_mul(slots as u64)
        .filter(|&t| t <= MAX_ARENA_BYTES)
        .ok_or(
            ProtocolFault::ArenaOverLimit {
                slots,
                slot_size,
                limit: MAX_ARENA_BYTES,
            },
        )
}

impl ProducerArena {
    /// Creates an arena of `slots` slots of at least `min_slot_size` bytes each
    /// (rounded up to whole pages).
    pub fn create(min_slot_size: usize, slots: u32) -> Result<ProducerArena, PublishError> {
        // The protocol says slot sizes and frame lengths in 32 bits: never truncate.
        let slot_size = memfd::page_round(min_slot_size.max(1))
            .filter(|&s| s <= MAX_SLOT_BYTES)
            .ok_or(PublishError::TooLarge {
                what: "frame",
                len: min_slot_size,
                offset: 0,
                max: MAX_SLOT_BYTES,
            })?;
        let len = slot_size
            .checked_mul(slots as usize)
            .filter(|&t| t as u64 <= MAX_ARENA_BYTES)
            .ok_or(PublishError::TooLarge {
                what: "arena",
                len: slot_size.saturating_mul(slots as usize),
                offset: 0,
                max: MAX_ARENA_BYTES as usize,
            })?;
        let region = Region::create(c"shmring-arena", len, Seals::FUTURE_WRITE)?;
        Ok(ProducerArena {
            region,
            slot_size,
            slots,
        })
    }

    /// Bytes per slot (a multiple of the page size).
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// A writable pointer to the start of slot `i` (`slot_size` bytes). The producer
    /// writes frames through it; consumers may be reading published slots, so write
    /// only slots the ledger handed out.
    pub fn slot_ptr(&self, i: u32) -> *mut u8 {
        assert!(i < self.slots, "slot {i} out of range");
        // SAFETY: i < slots, and the mapping is slots * slot_size bytes long.
        unsafe {
            self.region
                .mapping()
                .as_ptr()
                .add(i as usize * self.slot_size)
        }
    }

    /// The arena's memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }
}

/// Readable zero bytes a consumer maps after each arena: a frame may end where the
/// arena ends, and the code a frame is handed to may read a little past its end
/// (GStreamer's video unpackers read whole pixel groups: a UYVP frame one pixel wide
/// is read 5 bytes a row from 4-byte strides; decoders read ahead). Those reads see
/// zeros instead of faulting in the consumer.
pub const READ_PAD: usize = 4096;

impl ConsumerArena {
    /// Verifies a received arena fd against what the producer announced (`slot_size`,
    /// `slots`) and maps it read-only.
    pub fn open(fd: OwnedFd, slot_size: u32, slots: u32) -> Result<ConsumerArena, AttachError> {
        let len = total(slot_size as u64, slots)?;
        let region = Region::open_padded(
            fd,
            Seals::READ_ONLY_FOR_PEER,
            "arena",
            len,
            len,
            Access::ReadOnly,
            READ_PAD,
        )?;
        Ok(ConsumerArena {
            region,
            slot_size: slot_size as usize,
            slots,
        })
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The arena's geometry.
    pub fn shape(&self) -> ArenaShape {
        ArenaShape {
            slot_size: self.slot_size as u64,
            slots: self.slots,
        }
    }

    /// A read-only pointer to `len` bytes at `offset` in slot `slot`, after checking
    /// that the range lies inside the slot. The producer may still change those bytes
    /// (consumers see possibly torn data, never memory outside the arena).
    pub fn bytes(&self, slot: u32, offset: u32, len: u32) -> Result<*const u8, StreamFault> {
        let at = self.shape().range(slot, offset, len)?;
        // SAFETY: `range` checked slot < slots and offset + len <= slot_size, so
        // `at + len` lies inside the mapping of slots * slot_size bytes.
        Ok(unsafe { self.region.mapping().as_ptr().add(at as usize).cast_const() })
    }
}

/// An arena's geometry as a consumer was told it: all that checking a frame's
/// position needs (pure, so it can be fuzzed without a memfd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaShape {
    /// Bytes per slot.
    pub slot_size: u64,
    /// Number of slots.
    pub slots: u32,
}

impl ArenaShape {
    /// Checks that `len` bytes at `offset` in slot `slot` lie inside one slot, and
    /// returns the range's start as an offset from the arena's start.
    pub fn range(&self, slot: u32, offset: u32, len: u32) -> Result<u64, StreamFault> {
        let end = offset as u64 + len as u64;
        // The start is checked too, for shapes nobody could map (the fuzzer makes them).
        let start = (slot as u64)
            .checked_mul(self.slot_size)
            .and_then(|s| s.checked_add(offset as u64));
        match start {
            Some(start) if slot < self.slots && end <= self.slot_size => Ok(start),
            _ => Err(StreamFault::FrameOutsideArena {
                slot,
                offset,
                len,
                slots: self.slots,
                slot_size: self.slot_size,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn a_slot_over_4_gib_is_refused_never_truncated() {
        let e = ProducerArena::create(MAX_SLOT_BYTES + 1, 1).unwrap_err();
        assert!(
            matches!(
                e,
                PublishError::TooLarge { what: "frame", len, max: MAX_SLOT_BYTES, .. }
                    if len == MAX_SLOT_BYTES + 1
            ),
            "{e}"
        );
    }

    #[test]
    fn consumer_reads_what_the_producer_wrote_in_place() {
        let p = ProducerArena::create(5000, 3).unwrap();
        assert_eq!(p.slot_size(), 8192);
        // SAFETY: slot 2 is 8192 writable bytes.
        unsafe { p.slot_ptr(2).add(100).write_bytes(7, 50) };
        let c = ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), 8192, 3).unwrap();
        let ptr = c.bytes(2, 100, 50).unwrap();
        let mut copy = [0u8; 50];
        // SAFETY: `bytes` checked the 50-byte range; we copy it out, as consumers must.
        unsafe { std::ptr::copy_nonoverlapping(ptr, copy.as_mut_ptr(), 50) };
        assert_eq!(copy, [7u8; 50]);
    }

    #[test]
    fn consumer_cannot_write_the_arena_by_any_means() {
        let p = ProducerArena::create(4096, 1).unwrap();
        let fd = p.fd().try_clone_to_owned().unwrap();
        assert!(memfd::Mapping::map(fd.as_fd(), 4096, Access::ReadWrite).is_err());
        // SAFETY: plain write(2) of a live buffer; expected to fail.
        let w = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(w, -1);
        // SAFETY: fallocate hole punch on an fd we hold; expected to fail.
        let r = unsafe {
            libc::fallocate(
                fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                4096,
            )
        };
        assert_eq!(r, -1, "hole punching must be refused");
    }

    #[test]
    fn arena_of_another_size_than_announced_is_refused() {
        let p = ProducerArena::create(4096, 4).unwrap();
        let e = ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), 4096, 8).unwrap_err();
        assert_eq!(e.to_string(), "memfd is 16384 bytes, arena needs 32768");
        let e = ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap_err();
        assert_eq!(e.to_string(), "memfd is 16384 bytes, arena needs 8192");
    }

    #[test]
    fn arena_without_future_write_seal_is_refused() {
        let r = Region::create(c"rw-arena", 8192, Seals::NONE).unwrap();
        let e = ConsumerArena::open(r.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap_err();
        assert_eq!(e.to_string(), "memfd lacks F_SEAL_FUTURE_WRITE");
    }

    #[test]
    fn absurd_announcements_are_refused_before_any_syscall_on_the_fd() {
        let p = ProducerArena::create(4096, 1).unwrap();
        for (size, slots) in [(0, 1), (100, 1), (4096, 0), (1 << 31, u32::MAX)] {
            assert!(ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), size, slots).is_err());
        }
    }

    #[test]
    fn reads_a_little_past_a_frame_at_the_arenas_end_see_zeros_not_a_fault() {
        let p = ProducerArena::create(4096, 2).unwrap();
        // SAFETY: slot 1 is 4096 writable bytes.
        unsafe { p.slot_ptr(1).write_bytes(0xab, 4096) };
        let c = ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap();
        let frame = c.bytes(1, 0, 4096).unwrap();
        let mut past = vec![1u8; READ_PAD];
        // SAFETY: the arena's mapping is followed by READ_PAD readable bytes
        // (`Region::open_padded`), which is what this test checks; they are copied
        // out through a raw pointer, as consumers must.
        unsafe { std::ptr::copy_nonoverlapping(frame.add(4096), past.as_mut_ptr(), READ_PAD) };
        assert!(past.iter().all(|&b| b == 0));
        // SAFETY: the frame's last byte, inside the arena.
        assert_eq!(unsafe { frame.add(4095).read() }, 0xab);
    }

    #[test]
    fn frame_ranges_outside_the_slot_are_refused() {
        let p = ProducerArena::create(4096, 2).unwrap();
        let c = ConsumerArena::open(p.fd().try_clone_to_owned().unwrap(), 4096, 2).unwrap();
        assert!(c.bytes(1, 0, 4096).is_ok());
        assert!(c.bytes(2, 0, 1).is_err());
        assert!(c.bytes(0, 4000, 97).is_err());
        let e = c.bytes(0, u32::MAX, u32::MAX).unwrap_err();
        assert!(e.to_string().contains("outside the arena"), "{e}");
    }
}
