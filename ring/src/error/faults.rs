//! The faults of the lower layers, each with its fields: a received fd that is not
//! what its place needs, a ring header that lies, a ring index moved out of range.
//! They compose into [`PeerFault`](super::PeerFault) (and so into every
//! operation's error); tests match them by variant.

/// What is wrong with a received fd.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FdFault {
    /// Not a memfd: it takes no seals.
    #[error("not a memfd (F_GET_SEALS not supported)")]
    NotAMemfd,
    /// Not a regular file.
    #[error("not a regular memfd")]
    NotRegular,
    /// Not a socket, where one belongs.
    #[error("{what} is not a socket")]
    NotASocket {
        /// What the fd was for, e.g. `"doorbell fd"`.
        what: &'static str,
    },
    /// A socket of another domain or type.
    #[error(
        "{what} is a socket of domain {domain} type {ty}, expected a unix socket of type {expected}"
    )]
    WrongSocket {
        /// What the fd was for.
        what: &'static str,
        /// Its `SO_DOMAIN`.
        domain: i32,
        /// Its `SO_TYPE`.
        ty: i32,
        /// The type it must have.
        expected: i32,
    },
}

/// A field of a ring's header that is not what it must be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// Not a ring's magic.
    #[error("magic {found:02x?}, expected {expected:02x?}")]
    Magic {
        /// The bytes found.
        found: [u8; 8],
        /// The magic.
        expected: [u8; 8],
    },
    /// A layout version this side does not speak.
    #[error("version {found}, this side speaks {speaks}")]
    Version {
        /// The version found.
        found: u32,
        /// This side's.
        speaks: u32,
    },
    /// Elements of 0 bytes.
    #[error("element size 0 (zero-sized types cannot be sent)")]
    ZeroSized,
    /// Elements of another size than this side's type.
    #[error("element size {found}, this side's type has {expected}")]
    ElementSize {
        /// The size found.
        found: u64,
        /// This side's.
        expected: u64,
    },
    /// An alignment over what the layout gives.
    #[error("element alignment {align} exceeds {limit}")]
    AlignmentOver {
        /// The alignment.
        align: u64,
        /// The most the layout gives.
        limit: u64,
    },
    /// Elements of another alignment than this side's type.
    #[error("element alignment {found}, this side's type has {expected}")]
    Alignment {
        /// The alignment found.
        found: u64,
        /// This side's.
        expected: u64,
    },
    /// A capacity that is not a power of two in range.
    #[error("capacity {capacity} is not a power of two in 1..={limit}")]
    Capacity {
        /// The capacity.
        capacity: u64,
        /// The largest.
        limit: u64,
    },
    /// A ring over the largest size.
    #[error("{capacity} elements of {elem_size} bytes exceed {limit} bytes")]
    TooLarge {
        /// Its capacity.
        capacity: u64,
        /// Its element size.
        elem_size: u64,
        /// The largest ring, in bytes.
        limit: u64,
    },
    /// Data at another offset than the layout's.
    #[error("data offset {found}, expected {expected}")]
    DataOffset {
        /// The offset found.
        found: u64,
        /// The layout's.
        expected: u64,
    },
    /// A ring made by the side that attaches to it.
    #[error("created by a {} but attached as a {}", if *created_by_sender { "sender" } else { "receiver (or unknown role)" }, if *attached_as_sender { "sender" } else { "receiver" })]
    Role {
        /// The header says a sender made it.
        created_by_sender: bool,
        /// This side sends.
        attached_as_sender: bool,
    },
    /// A total length other than the capacity and element size need.
    #[error("total length {found}, {capacity} elements of {elem_size} bytes need {expected}")]
    TotalLength {
        /// The length found.
        found: u64,
        /// The capacity.
        capacity: u64,
        /// The element size.
        elem_size: u64,
        /// What they need.
        expected: u64,
    },
}

/// A ring index the peer moved out of range (it owns one, and may write anything
/// there).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexFault {
    /// The consumer's tail further behind the head than the capacity.
    #[error("ring tail {tail} is {used} behind head {head}, capacity {capacity}")]
    TailBehind {
        /// The tail read.
        tail: u32,
        /// How far behind it is.
        used: u32,
        /// This side's head.
        head: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The consumer's tail moved backwards.
    #[error("ring tail moved backwards from {from} to {to}")]
    TailBackwards {
        /// Where it was.
        from: u32,
        /// Where it is.
        to: u32,
    },
    /// The producer's head further past the tail than the capacity.
    #[error("ring head {head} is {avail} past tail {tail}, capacity {capacity}")]
    HeadPast {
        /// The head read.
        head: u32,
        /// How far past it is.
        avail: u32,
        /// This side's tail.
        tail: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The producer's head moved backwards.
    #[error("ring head moved backwards from {from} to {to}")]
    HeadBackwards {
        /// Where it was.
        from: u32,
        /// Where it is.
        to: u32,
    },
}
