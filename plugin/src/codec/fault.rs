//! Why bytes a peer sent are refused: every decoder of the codec returns a
//! [`Fault`], with the fields that say what was wrong (tests match the variant;
//! users read its `Display`).

use std::fmt;

/// A decoding fault: bytes a peer sent that are not what they claim to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A record ends `missing` bytes before a field it must have.
    Short {
        /// The record.
        what: &'static str,
        /// Bytes missing.
        missing: usize,
    },
    /// Bytes left after a record's last field.
    Trailing {
        /// The record.
        what: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A fixed-size message of another size.
    Size {
        /// The message.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The size it must have.
        expected: usize,
    },
    /// Text that is not UTF-8 (valid up to byte `at`).
    NotUtf8 {
        /// The record holding the text.
        what: &'static str,
        /// The first byte that is not.
        at: usize,
    },
    /// Text with a NUL byte (GStreamer takes C strings).
    Nul {
        /// The record holding the text.
        what: &'static str,
        /// Where.
        at: usize,
    },
    /// Text GStreamer does not parse as what it must be (caps, tags, a structure,
    /// a date).
    Unparsable {
        /// What it must be.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// Caps text that is not one fixed structure reading back as itself.
    NotFixed {
        /// What the caps are for.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A type or kind byte nobody defined.
    Unknown {
        /// What the byte says the type of.
        what: &'static str,
        /// The byte.
        value: u64,
    },
    /// A field holding a value it cannot have.
    Value {
        /// The record.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A field holding a value it cannot have, of a type that is not an integer
    /// (a rate, a frame rate, caps).
    Invalid {
        /// The record.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Its value, as text.
        value: String,
    },
    /// More of something than a consumer takes.
    Limit {
        /// The record.
        what: &'static str,
        /// What is counted.
        field: &'static str,
        /// How many.
        value: u64,
        /// How many at most.
        limit: u64,
    },
    /// A field that must be set (not empty, not unknown) and is not.
    Missing {
        /// The record.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// Two fields out of order: `later` is before `earlier`.
    Order {
        /// The record.
        what: &'static str,
        /// The field that must come first, and its value.
        earlier: (&'static str, u64),
        /// The field that must not be before it, and its value.
        later: (&'static str, u64),
    },
    /// A rectangle (x, y, width, height) outside the frame (or past `u32`).
    Outside {
        /// The record.
        what: &'static str,
        /// The rectangle.
        rect: [u32; 4],
        /// The frame's width and height, when the caps say.
        frame: Option<(u32, u32)>,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Short { what, missing } => write!(f, "{what} ends {missing} bytes early"),
            Fault::Trailing { what, extra } => write!(f, "{what} has {extra} bytes too many"),
            Fault::Size {
                what,
                len,
                expected,
            } => write!(f, "{what} is {len} bytes, not {expected}"),
            Fault::NotUtf8 { what, at } => {
                write!(f, "{what} text is not UTF-8 (from byte {at})")
            }
            Fault::Nul { what, at } => write!(f, "{what} text has a NUL byte at {at}"),
            Fault::Unparsable { what, text } => write!(f, "unparsable {what} {text:?}"),
            Fault::Unknown { what, value } => write!(f, "unknown {what} {value}"),
            Fault::NotFixed { what, text } => {
                write!(f, "{what} {text:?} are not one fixed structure")
            }
            Fault::Value { what, field, value } => {
                write!(f, "{what} {field} {value} is not valid")
            }
            Fault::Invalid { what, field, value } => {
                write!(f, "{what} {field} {value} is not valid")
            }
            Fault::Limit {
                what,
                field,
                value,
                limit,
            } => write!(f, "{what}: {value} {field}, more than {limit}"),
            Fault::Missing { what, field } => write!(f, "{what} without {field}"),
            Fault::Order {
                what,
                earlier,
                later,
            } => write!(
                f,
                "{what}: {} {} is before {} {}",
                later.0, later.1, earlier.0, earlier.1
            ),
            Fault::Outside {
                what,
                rect: [x, y, w, h],
                frame,
            } => match frame {
                Some((fw, fh)) => {
                    write!(
                        f,
                        "{what} {w}x{h} at {x},{y} is outside the {fw}x{fh} frame"
                    )
                }
                None => write!(f, "{what} {w}x{h} at {x},{y} overflows"),
            },
        }
    }
}

impl std::error::Error for Fault {}
