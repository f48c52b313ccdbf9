//! A buffer's record list in side-message pieces, and put back together.
//!
//! | bytes | field |
//! |-------|-------|
//! | 0     | type byte (the side message's: a meta piece) |
//! | 1..3  | the list's tag (`u16`, not 0; named by the buffer's metadata) |
//! | 3..7  | the whole list's length (`u32`, not 0) |
//! | 7..   | the next bytes of the list (not empty, at most [`CHUNK`]) |

use super::{CHUNK, PIECE_HEADER};
use crate::codec::bytes::Reader;
use crate::codec::fault::Fault;

/// A record list being put back together from side-message pieces.
#[derive(Debug, Default)]
pub struct Assembly {
    /// The tag of the list being assembled (0: none).
    pub tag: u16,
    total: usize,
    bytes: Vec<u8>,
    /// Bytes of a list too large to keep, counted instead.
    skipped: usize,
    /// The list is larger than the consumer takes: its pieces are counted, not kept.
    pub too_large: bool,
}

/// What a piece did.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// More pieces to come.
    More,
    /// The list of this tag is whole.
    Whole,
    /// The list is over the consumer's limit (reported once per list).
    TooLarge {
        /// Its size.
        total: usize,
    },
}

impl Assembly {
    /// Takes one piece (the side message's body after its type byte), checking it
    /// against the pieces before it; `max` is the consumer's limit.
    pub fn piece(&mut self, body: &[u8], max: usize) -> Result<Piece, Fault> {
        let what = "meta piece";
        let mut r = Reader::new(body, what);
        let tag = r.u16()?;
        let total = r.u32()? as usize;
        let chunk = r.take(body.len() - (PIECE_HEADER - 1))?;
        for (field, zero) in [
            ("tag", tag == 0),
            ("length", total == 0),
            ("bytes", chunk.is_empty()),
        ] {
            if zero {
                return Err(Fault::Missing { what, field });
            }
        }
        let continuing = self.tag == tag && self.have() < self.total;
        if !continuing {
            // A new list (an unfinished one before it belonged to a buffer this
            // consumer did not get).
            *self = Assembly {
                tag,
                total,
                bytes: Vec::new(),
                skipped: 0,
                too_large: total > max,
            };
        } else if total != self.total {
            return Err(Fault::Size {
                what: "meta list (by its pieces)",
                len: total,
                expected: self.total,
            });
        }
        if self.have() + chunk.len() > total {
            return Err(Fault::Limit {
                what: "meta list",
                field: "bytes in pieces",
                value: (self.have() + chunk.len()) as u64,
                limit: total as u64,
            });
        }
        if self.too_large {
            self.skipped += chunk.len();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
        Ok(match (self.have() == total, self.too_large, continuing) {
            (_, true, false) => Piece::TooLarge { total },
            (true, false, _) => Piece::Whole,
            _ => Piece::More,
        })
    }

    fn have(&self) -> usize {
        self.bytes.len() + self.skipped
    }

    /// The whole list of `tag`, if that is what was assembled.
    pub fn take(&mut self, tag: u16) -> Option<Vec<u8>> {
        if self.tag == tag && !self.too_large && self.have() == self.total && self.total > 0 {
            self.tag = 0;
            return Some(std::mem::take(&mut self.bytes));
        }
        None
    }
}

/// The side messages (each a type byte, then the piece) carrying `list` under `tag`.
pub fn pieces(list: &[u8], tag: u16, type_byte: u8) -> impl Iterator<Item = Vec<u8>> + '_ {
    list.chunks(CHUNK).map(move |c| {
        let mut m = Vec::with_capacity(PIECE_HEADER + c.len());
        m.push(type_byte);
        m.extend_from_slice(&tag.to_le_bytes());
        m.extend_from_slice(&(list.len() as u32).to_le_bytes());
        m.extend_from_slice(c);
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_assemble_in_order_and_lies_about_them_are_refused() {
        let list: Vec<u8> = (0..3 * CHUNK as u32 / 2).map(|i| i as u8).collect();
        let pieces: Vec<Vec<u8>> = pieces(&list, 7, 11).collect();
        assert_eq!(pieces.len(), 2);
        let mut a = Assembly::default();
        assert_eq!(a.piece(&pieces[0][1..], 1 << 20).unwrap(), Piece::More);
        assert_eq!(a.take(7), None, "not whole yet");
        assert_eq!(a.piece(&pieces[1][1..], 1 << 20).unwrap(), Piece::Whole);
        assert_eq!(a.take(6), None, "another buffer's tag");
        assert_eq!(a.take(7).unwrap(), list);
        assert_eq!(a.take(7), None, "taken once");

        // A list over the limit is counted once, never kept.
        let mut a = Assembly::default();
        assert_eq!(
            a.piece(&pieces[0][1..], 1000).unwrap(),
            Piece::TooLarge { total: list.len() }
        );
        assert_eq!(a.piece(&pieces[1][1..], 1000).unwrap(), Piece::More);
        assert_eq!(a.take(7), None);
        assert!(a.bytes.is_empty());

        // A second piece that changes the list's size, or overflows it.
        let mut a = Assembly::default();
        a.piece(&pieces[0][1..], 1 << 20).unwrap();
        let mut lie = pieces[1][1..].to_vec();
        lie[2..6].copy_from_slice(&((list.len() + 1) as u32).to_le_bytes());
        assert_eq!(
            a.piece(&lie, 1 << 20),
            Err(Fault::Size {
                what: "meta list (by its pieces)",
                len: list.len() + 1,
                expected: list.len()
            })
        );
        let mut a = Assembly::default();
        let mut over = pieces[0][1..].to_vec();
        over[2..6].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            a.piece(&over, 1 << 20),
            Err(Fault::Limit {
                what: "meta list",
                field: "bytes in pieces",
                value: CHUNK as u64,
                limit: 10
            })
        );
        assert!(
            matches!(a.piece(&[1, 0, 0], 1 << 20), Err(Fault::Short { .. })),
            "no header"
        );
        assert_eq!(
            a.piece(&[0, 0, 1, 0, 0, 0, 5], 1 << 20),
            Err(Fault::Missing {
                what: "meta piece",
                field: "tag"
            })
        );
        // An unfinished list followed by another buffer's: the new one wins.
        let mut a = Assembly::default();
        a.piece(&pieces[0][1..], 1 << 20).unwrap();
        let small: Vec<Vec<u8>> = super::pieces(&[1, 2, 3], 8, 11).collect();
        assert_eq!(a.piece(&small[0][1..], 1 << 20).unwrap(), Piece::Whole);
        assert_eq!(a.take(8).unwrap(), vec![1, 2, 3]);
    }
}
