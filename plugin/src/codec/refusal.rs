//! What a consumer refuses of what its producer sent, and why: the one error type
//! of the source's handling of a producer.

use std::fmt;

use super::fault::Fault;
use super::trust::Lie;

/// Why a consumer refuses something its producer sent: bytes that do not decode
/// ([`Fault`]) or a value that lies about what GStreamer will do with it
/// ([`Lie`]), and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What was refused, e.g. `"bad side message"`.
    pub what: &'static str,
    /// Why (boxed: a lie names a whole layout, and results stay small).
    pub why: Box<Why>,
}

/// A [`Refusal`]'s reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The bytes do not decode.
    Fault(Fault),
    /// The value lies.
    Lie(Lie),
}

impl Refusal {
    /// `what` did not decode.
    pub fn fault(what: &'static str, fault: Fault) -> Refusal {
        Refusal {
            what,
            why: Box::new(Why::Fault(fault)),
        }
    }

    /// `what` lied.
    pub fn lie(what: &'static str, lie: Lie) -> Refusal {
        Refusal {
            what,
            why: Box::new(Why::Lie(lie)),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.why {
            Why::Fault(e) => write!(f, "{}: {e}", self.what),
            Why::Lie(e) => write!(f, "{}: {e}", self.what),
        }
    }
}

impl std::error::Error for Refusal {}
