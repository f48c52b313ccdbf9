//! The one reader and writer of the codec's byte layouts: little-endian integers,
//! length-prefixed (`u32`) byte strings and text, read strictly — a reader never
//! reads past its bytes, and a record is whole only when every byte was read.

use std::str::FromStr;

use super::fault::Fault;

/// Appends a record's fields, little-endian.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty record.
    pub fn new() -> Writer {
        Writer(Vec::new())
    }

    /// An empty record with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Writer {
        Writer(Vec::with_capacity(n))
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v)
    }

    /// A `u16`.
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }

    /// An `i32`.
    pub fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }

    /// An `f64`.
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }

    /// Bytes as they are, with no length (fixed-size fields).
    pub fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b)
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b)
    }

    /// Length-prefixed text.
    pub fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes())
    }
}

/// Reads a record a peer wrote; every read that would pass its end is a
/// [`Fault::Short`] naming the record.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `b`, a record of kind `what` (named in faults).
    pub fn new(b: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { b, what }
    }

    /// What is read (for faults).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        if self.b.len() < n {
            return Err(Fault::Short {
                what: self.what,
                missing: n - self.b.len(),
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.take(1)?[0])
    }

    /// A byte that is 0 or 1.
    pub fn flag(&mut self, field: &'static str) -> Result<bool, Fault> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Fault::Value {
                what: self.what,
                field,
                value: v.into(),
            }),
        }
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16, Fault> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// An `i32`.
    pub fn i32(&mut self) -> Result<i32, Fault> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, Fault> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// An `f64`.
    pub fn f64(&mut self) -> Result<f64, Fault> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], Fault> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// Length-prefixed text: UTF-8 with no NUL (GStreamer takes C strings).
    pub fn text(&mut self) -> Result<&'a str, Fault> {
        let b = self.bytes()?;
        text(b, self.what)
    }

    /// Length-prefixed text of a `GstStructure`.
    pub fn structure(&mut self) -> Result<gst::Structure, Fault> {
        let what = self.what;
        let s = self.text()?;
        gst::Structure::from_str(s).map_err(|_| Fault::Unparsable {
            what,
            text: s.to_owned(),
        })
    }

    /// Ends the record: no byte may be left.
    pub fn done(&self) -> Result<(), Fault> {
        match self.b.len() {
            0 => Ok(()),
            extra => Err(Fault::Trailing {
                what: self.what,
                extra,
            }),
        }
    }
}

/// `b` as text GStreamer can take: UTF-8 with no NUL byte.
pub fn text<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str, Fault> {
    let s = std::str::from_utf8(b).map_err(|e| Fault::NotUtf8 {
        what,
        at: e.valid_up_to(),
    })?;
    match s.find('\0') {
        Some(at) => Err(Fault::Nul { what, at }),
        None => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_nothing_past_it() {
        let mut w = Writer::new();
        w.u8(7);
        w.u16(0x102);
        w.i32(-3);
        w.u64(u64::MAX);
        w.f64(1.5);
        w.text("abc");
        let b = w.into_bytes();
        let mut r = Reader::new(&b, "test");
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(0x102));
        assert_eq!(r.i32(), Ok(-3));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.f64(), Ok(1.5));
        assert_eq!(r.text(), Ok("abc"));
        assert_eq!(r.done(), Ok(()));
        assert_eq!(
            r.u8(),
            Err(Fault::Short {
                what: "test",
                missing: 1
            })
        );
    }

    #[test]
    fn lengths_past_the_end_and_bad_text_are_faults() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, b'a'], "test");
        assert_eq!(
            r.bytes(),
            Err(Fault::Short {
                what: "test",
                missing: u32::MAX as usize - 1
            })
        );
        assert_eq!(text(b"a\0b", "t"), Err(Fault::Nul { what: "t", at: 1 }));
        assert_eq!(
            text(b"a\xff", "t"),
            Err(Fault::NotUtf8 { what: "t", at: 1 })
        );
        let r = Reader::new(&[1, 2], "test");
        assert_eq!(
            r.done(),
            Err(Fault::Trailing {
                what: "test",
                extra: 2
            })
        );
        assert_eq!(
            Reader::new(&[2], "test").flag("mark"),
            Err(Fault::Value {
                what: "test",
                field: "mark",
                value: 2
            })
        );
    }
}
