//! The bodies of the fuzz targets (`fuzz/`), here so that the stable test that
//! replays the committed corpus runs exactly what the fuzzer runs. Not part of the
//! API.

use bytemuck::Zeroable;

use crate::frame::arena::ArenaShape;
use crate::frame::desc::FrameDesc;
use crate::frame::wire::Msg;

/// Decodes a datagram; the first byte picks how many fds "arrived" with it (0..=4).
/// Whatever decodes must encode to the same bytes. Returns whether it decoded.
pub fn wire_decode(data: &[u8]) -> bool {
    let Some((&fds, msg)) = data.split_first() else {
        return false;
    };
    match Msg::decode(msg, (fds % 5) as usize) {
        Ok(m) => {
            assert_eq!(
                m.encode(),
                msg,
                "decode accepted bytes that encode differently"
            );
            true
        }
        Err(_) => false,
    }
}

/// Validates a descriptor against an arena shape: 128 descriptor bytes, then the
/// expected frame number (u64), slot size (u64), slot count (u32) and whether the
/// arena is known (1 byte), all little-endian, missing bytes zero. An accepted
/// descriptor must lie inside the arena. Returns whether it was accepted.
pub fn desc_validate(data: &[u8]) -> bool {
    let mut buf = [0u8; 128 + 8 + 8 + 4 + 1];
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    let mut d = FrameDesc::zeroed();
    bytemuck::bytes_of_mut(&mut d).copy_from_slice(&buf[..128]);
    let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    let expected = u64_at(128);
    let shape = ArenaShape {
        slot_size: u64_at(136),
        slots: u32::from_le_bytes(buf[144..148].try_into().expect("4 bytes")),
    };
    let known = buf[148] & 1 == 1;
    match d.validate(expected, known.then_some(shape)) {
        Ok(at) => {
            assert_eq!(d.seq, expected);
            assert!(d.meta().is_ok());
            assert!(d.slot < shape.slots);
            let end = at as u128 + d.len as u128;
            assert!(end <= shape.slot_size as u128 * shape.slots as u128);
            assert!(d.offset as u64 + d.len as u64 <= shape.slot_size);
            true
        }
        Err(_) => false,
    }
}

/// Parses a ring header a peer wrote: 40 header bytes, then 8 bytes of file length,
/// then a byte whose low bit says which side created the ring. Whatever is accepted
/// must describe a ring that fits the file exactly, with a power-of-two capacity
/// within the limits. Returns whether it was accepted.
pub fn ring_header(data: &[u8]) -> bool {
    use crate::ring::layout::{HEADER_LEN, Header, MAX_CAPACITY, Role};
    if data.len() < HEADER_LEN + 8 {
        return false;
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&data[..HEADER_LEN]);
    let file_len = u64::from_le_bytes(data[HEADER_LEN..HEADER_LEN + 8].try_into().expect("8"));
    let creator = match data.get(HEADER_LEN + 8) {
        Some(b) if b & 1 == 1 => Role::Receiver,
        _ => Role::Sender,
    };
    match Header::parse(&h, 64, 8, creator, file_len) {
        Ok(hdr) => {
            assert_eq!(
                hdr.total_len, file_len,
                "accepted a header that does not fit"
            );
            assert!(hdr.capacity.is_power_of_two() && hdr.capacity <= MAX_CAPACITY);
            assert_eq!(hdr.encode(), h, "accepted bytes that encode differently");
            true
        }
        Err(_) => false,
    }
}

/// A valid ring header input for [`ring_header`] (a corpus seed).
#[doc(hidden)]
pub fn ring_header_seed(capacity: usize, receiver_created: bool) -> Vec<u8> {
    use crate::ring::layout::{Header, Role};
    let role = if receiver_created {
        Role::Receiver
    } else {
        Role::Sender
    };
    let h = Header::new(64, 8, capacity, role).expect("valid shape");
    let mut v = h.encode().to_vec();
    v.extend_from_slice(&h.total_len.to_le_bytes());
    v.push(receiver_created as u8);
    v
}
