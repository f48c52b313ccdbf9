//! Layout of a shared ring region (one memfd, sealed `SHRINK | GROW | SEAL`):
//!
//! | offset | size | contents                                                   |
//! |--------|------|------------------------------------------------------------|
//! | 0      | 40   | header, written once by the creator (below)                |
//! | 128    | 12   | `head: u32`, `producer_waiting: u32`, `closed: u32` (sender's line) |
//! | 256    | 8    | `tail: u32`, `consumer_waiting: u32` (consumer's line)     |
//! | 4096   | n    | `capacity` elements of `elem_size` bytes                   |
//!
//! Header, all little-endian: magic `b"SHMRING\0"` (8), version u32, elem_size u32,
//! capacity u32, data_offset u32, total_len u64, creator role u32 (0 = sender,
//! 1 = receiver), elem_align u32.
//!
//! Head and tail sit 128 bytes apart so that the adjacent-line prefetcher does not
//! pair them. Elements start on a page boundary.

use crate::error::{HeaderFault, PeerFault};

pub(crate) const MAGIC: [u8; 8] = *b"SHMRING\0";
/// The version of the ring layout this crate speaks.
pub const RING_VERSION: u32 = 1;
pub(crate) const HEAD_OFF: usize = 128;
pub(crate) const PRODUCER_WAITING_OFF: usize = 132;
/// Non-zero once the sender closed the ring: nothing in it may be used any more (the
/// frame channel's producer sets it when it cuts a consumer off, before it takes
/// back the slots that consumer's descriptors name).
pub(crate) const CLOSED_OFF: usize = 136;
pub(crate) const TAIL_OFF: usize = 256;
pub(crate) const CONSUMER_WAITING_OFF: usize = 260;
pub(crate) const DATA_OFF: usize = 4096;
/// Largest capacity (elements) a ring may have.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// Largest ring region accepted from a peer (4 GiB).
pub const MAX_RING_BYTES: u64 = 1 << 32;
pub(crate) const HEADER_LEN: usize = 40;

/// Which side created a ring (the other attaches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Sender = 0,
    Receiver = 1,
}

/// The header values, as this side holds them privately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) elem_size: u32,
    pub(crate) elem_align: u32,
    pub(crate) capacity: u32,
    pub(crate) total_len: u64,
    pub(crate) creator: Role,
}

impl Header {
    /// The header for a new ring, or an error if the numbers do not fit.
    pub(crate) fn new(
        elem_size: usize,
        elem_align: usize,
        capacity: usize,
        creator: Role,
    ) -> Result<Header, HeaderFault> {
        if elem_size == 0 {
            return Err(HeaderFault::ZeroSized);
        }
        if elem_align > DATA_OFF {
            return Err(HeaderFault::AlignmentOver {
                align: elem_align as u64,
                limit: DATA_OFF as u64,
            });
        }
        if !capacity.is_power_of_two() || capacity > MAX_CAPACITY as usize {
            return Err(HeaderFault::Capacity {
                capacity: capacity as u64,
                limit: MAX_CAPACITY as u64,
            });
        }
        let total = elem_size
            .checked_mul(capacity)
            .and_then(|d| d.checked_add(DATA_OFF))
            .and_then(crate::os::memfd::page_round)
            .filter(|&t| t as u64 <= MAX_RING_BYTES)
            .ok_or(HeaderFault::TooLarge {
                capacity: capacity as u64,
                elem_size: elem_size as u64,
                limit: MAX_RING_BYTES,
            })?;
        Ok(Header {
            elem_size: elem_size as u32,
            elem_align: elem_align as u32,
            capacity: capacity as u32,
            total_len: total as u64,
            creator,
        })
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&RING_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.elem_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..24].copy_from_slice(&(DATA_OFF as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.total_len.to_le_bytes());
        b[32..36].copy_from_slice(&(self.creator as u32).to_le_bytes());
        b[36..40].copy_from_slice(&self.elem_align.to_le_bytes());
        b
    }

    /// Writes the header at `base`.
    ///
    /// # Safety
    /// `base` points at a writable mapping of at least `DATA_OFF` bytes.
    pub(crate) unsafe fn write(&self, base: *mut u8) {
        let b = self.encode();
        // SAFETY: the caller guarantees HEADER_LEN < DATA_OFF writable bytes at `base`.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), base, HEADER_LEN) };
    }

    /// Copies the raw header bytes out of shared memory (the peer may be changing them).
    ///
    /// # Safety
    /// `base` points at a readable mapping of at least `DATA_OFF` bytes.
    pub(crate) unsafe fn read_raw(base: *const u8) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        // SAFETY: the caller guarantees HEADER_LEN readable bytes; we copy them into a
        // private buffer once and parse only the copy, so a concurrent change by the
        // peer yields some bytes, never a torn Rust value.
        unsafe { std::ptr::copy_nonoverlapping(base, b.as_mut_ptr(), HEADER_LEN) };
        b
    }

    /// Parses and validates a header copied from a region of `file_len` sealed bytes,
    /// for elements of `elem_size` bytes and alignment `elem_align`, created by `creator`.
    pub(crate) fn parse(
        b: &[u8; HEADER_LEN],
        elem_size: usize,
        elem_align: usize,
        creator: Role,
        file_len: u64,
    ) -> Result<Header, PeerFault> {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        if b[0..8] != MAGIC {
            return Err(HeaderFault::Magic {
                found: b[0..8].try_into().expect("8 bytes"),
                expected: MAGIC,
            }
            .into());
        }
        let version = u32_at(8);
        if version != RING_VERSION {
            return Err(HeaderFault::Version {
                found: version,
                speaks: RING_VERSION,
            }
            .into());
        }
        let esz = u32_at(12);
        if esz as usize != elem_size {
            return Err(HeaderFault::ElementSize {
                found: esz.into(),
                expected: elem_size as u64,
            }
            .into());
        }
        let align = u32_at(36);
        if align as usize != elem_align {
            return Err(HeaderFault::Alignment {
                found: align.into(),
                expected: elem_align as u64,
            }
            .into());
        }
        let cap = u32_at(16);
        let data_off = u32_at(20);
        if data_off as usize != DATA_OFF {
            return Err(HeaderFault::DataOffset {
                found: data_off.into(),
                expected: DATA_OFF as u64,
            }
            .into());
        }
        let role = u32_at(32);
        if role != creator as u32 {
            return Err(HeaderFault::Role {
                created_by_sender: role == 0,
                attached_as_sender: creator != Role::Sender,
            }
            .into());
        }
        let expect = Header::new(elem_size, elem_align, cap as usize, creator)?;
        let total = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        if total != expect.total_len {
            return Err(HeaderFault::TotalLength {
                found: total,
                capacity: cap.into(),
                elem_size: elem_size as u64,
                expected: expect.total_len,
            }
            .into());
        }
        if file_len != total {
            return Err(PeerFault::BadSize {
                what: "ring header",
                expected: total,
                actual: file_len,
            });
        }
        Ok(expect)
    }

    /// Compares the header in shared memory with this private copy.
    ///
    /// # Safety
    /// `base` points at a readable mapping of at least `DATA_OFF` bytes.
    pub(crate) unsafe fn check_unchanged(&self, base: *const u8) -> Result<(), PeerFault> {
        // SAFETY: forwarded from the caller.
        let now = unsafe { Self::read_raw(base) };
        let mine = self.encode();
        if now != mine {
            let first = now
                .iter()
                .zip(mine.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(PeerFault::HeaderChanged {
                byte: first,
                now: now[first],
                was: mine[first],
            });
        }
        Ok(())
    }
}
