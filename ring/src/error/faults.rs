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

/// A descriptor or release read from a shared ring that is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamFault {
    /// A frame outside its arena.
    #[error(
        "frame at slot {slot} offset {offset} length {len} is outside the arena ({slots} slots of {slot_size} bytes)"
    )]
    FrameOutsideArena {
        /// The slot.
        slot: u32,
        /// The offset in it.
        offset: u32,
        /// The length.
        len: u32,
        /// The arena's slots.
        slots: u32,
        /// The arena's slot size.
        slot_size: u64,
    },
    /// More metadata than a descriptor holds.
    #[error("frame {seq} metadata length {len} exceeds {limit}")]
    MetadataLength {
        /// The frame.
        seq: u64,
        /// Its metadata length.
        len: u16,
        /// The most.
        limit: usize,
    },
    /// A frame out of sequence.
    #[error("frame ring holds frame {found}, expected frame {expected}")]
    Sequence {
        /// The frame number found.
        found: u64,
        /// The one expected.
        expected: u64,
    },
    /// A release from a consumer the ledger does not know.
    #[error("release from unknown consumer {consumer}")]
    UnknownConsumer {
        /// The consumer.
        consumer: u32,
    },
    /// A release of a slot the consumer does not hold.
    #[error("consumer {consumer} released slot {slot} of arena {arena} that it does not hold")]
    NotHeld {
        /// The consumer.
        consumer: u32,
        /// The slot.
        slot: u32,
        /// Its arena.
        arena: u32,
    },
}

/// A message on a socket that breaks the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolFault {
    /// More fds than the control buffer holds.
    #[error("control data truncated (MSG_CTRUNC): peer sent more than {limit} fds")]
    ControlTruncated {
        /// The most fds a message may carry.
        limit: usize,
    },
    /// A control message other than `SCM_RIGHTS`.
    #[error("unexpected control message (level {level}, type {ty})")]
    ControlMessage {
        /// Its level.
        level: i32,
        /// Its type.
        ty: i32,
    },
    /// A datagram longer than the receive buffer.
    #[error("message longer than {limit} bytes (MSG_TRUNC)")]
    Truncated {
        /// The buffer's size.
        limit: usize,
    },
    /// More fds than the message may carry.
    #[error("message carries {fds} fds, at most {limit} allowed")]
    TooManyFds {
        /// The fds that came.
        fds: usize,
        /// The most.
        limit: usize,
    },
    /// Not a ring hand-off where one was expected.
    #[error("expected ring hand-off message, got {len} bytes {head:02x?}")]
    NotAHandOff {
        /// Its length.
        len: usize,
        /// Its first bytes (at most 16).
        head: Vec<u8>,
    },
    /// A ring hand-off without both its fds.
    #[error("ring hand-off carries fewer than 2 fds")]
    HandOffFds,
    /// A peer whose uid the producer does not serve.
    #[error("peer uid {uid} (pid {pid}) is not in the allowed uids {allowed:?}")]
    UidNotAllowed {
        /// Its uid.
        uid: u32,
        /// Its pid.
        pid: i32,
        /// The uids served.
        allowed: Vec<u32>,
    },
    /// A peer whose credentials the kernel does not give (so no uid to check).
    #[error("peer credentials unavailable")]
    NoCredentials,
    /// A message shorter than its header.
    #[error("message of {len} bytes is shorter than the header")]
    ShortMessage {
        /// Its length.
        len: usize,
    },
    /// A message longer than any the protocol has.
    #[error("message of {len} bytes exceeds {limit}")]
    LongMessage {
        /// Its length.
        len: usize,
        /// The longest.
        limit: usize,
    },
    /// Not the protocol's magic.
    #[error("bad magic {found:02x?}")]
    Magic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A header whose body length disagrees with the datagram.
    #[error("header says {said} body bytes, datagram has {has}")]
    BodyLength {
        /// What the header says.
        said: usize,
        /// What came.
        has: usize,
    },
    /// A message type nobody defined.
    #[error("unknown message type {ty}")]
    UnknownType {
        /// The type.
        ty: u16,
    },
    /// A body shorter than its fields.
    #[error("{what} body truncated: needs {needs} more bytes, has {has}")]
    BodyTruncated {
        /// The message.
        what: &'static str,
        /// Bytes the next field needs.
        needs: usize,
        /// Bytes left.
        has: usize,
    },
    /// Bytes after the last field.
    #[error("{what} has {extra} trailing bytes")]
    Trailing {
        /// The message.
        what: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A length field over its limit.
    #[error("{what} of {len} bytes exceeds {limit}")]
    FieldTooLong {
        /// The field, e.g. `"Side payload"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The most.
        limit: usize,
    },
    /// A goodbye's reason that is not text.
    #[error("Goodbye reason is not UTF-8")]
    ReasonNotUtf8,
    /// A ring size that is not a power of two in range.
    #[error("{what} {field} {value} is not a power of two in 1..={limit}")]
    NotPowerOfTwo {
        /// The message.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The largest.
        limit: u32,
    },
    /// A field that may not be 0.
    #[error("{what} {field} is 0")]
    Zero {
        /// The message.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A header whose fd count disagrees with its type.
    #[error("{what} header announces {announced} fds, the type carries {carries}")]
    FdsAnnounced {
        /// The message.
        what: &'static str,
        /// What the header announces.
        announced: usize,
        /// What the type carries.
        carries: usize,
    },
    /// Another number of fds than the message carries.
    #[error("{what} carries {carries} fds, {arrived} arrived")]
    FdsArrived {
        /// The message.
        what: &'static str,
        /// What it carries.
        carries: usize,
        /// What came.
        arrived: usize,
    },
    /// A message other than the one the protocol expects here.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// The message expected.
        expected: &'static str,
        /// The one that came.
        got: &'static str,
    },
    /// A protocol version this side does not speak.
    #[error("producer chose protocol version {chose}, this consumer speaks {speaks}")]
    Version {
        /// The version chosen.
        chose: u32,
        /// This side's.
        speaks: u32,
    },
    /// A `Stats` body of another version than this side reads.
    #[error("Stats of version {found}, this side reads version {reads}")]
    StatsVersion {
        /// The version the body says.
        found: u32,
        /// The one this side reads.
        reads: u32,
    },
    /// A field that holds none of its defined values.
    #[error("{what} {field} {value} is none of its values")]
    BadValue {
        /// The message.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// What it held.
        value: u64,
    },
    /// A welcome without its fds.
    #[error("Welcome without its 4 fds")]
    WelcomeFds,
    /// A welcome whose rings disagree with their memfds.
    #[error(
        "Welcome announces rings of {frames} and {releases}, the memfds hold {frames_held} and {releases_held}"
    )]
    WelcomeRings {
        /// The frame ring announced.
        frames: u32,
        /// The release ring announced.
        releases: u32,
        /// The frame ring's memfd's capacity.
        frames_held: usize,
        /// The release ring's.
        releases_held: usize,
    },
    /// A frame before the socket messages it follows.
    #[error("frame {seq} follows {follows} socket messages, {arrived} arrived")]
    MessagesMissing {
        /// The frame.
        seq: u64,
        /// The messages it follows.
        follows: u64,
        /// The messages that came.
        arrived: u64,
    },
    /// A producer that takes no releases back.
    #[error("producer takes no releases: more than {limit} wait")]
    ReleasesPiledUp {
        /// How many may wait.
        limit: usize,
    },
    /// An arena announced twice.
    #[error("arena {id} announced twice")]
    ArenaTwice {
        /// The arena.
        id: u32,
    },
    /// More arenas at once than a consumer maps.
    #[error("more than {limit} arenas announced at once")]
    TooManyArenas {
        /// The most.
        limit: usize,
    },
    /// An arena larger than a consumer maps.
    #[error(
        "arena {id} of {slots} slots of {slot_size} bytes is over the {limit} bytes this consumer maps"
    )]
    ArenaTooLarge {
        /// The arena.
        id: u32,
        /// Its slots.
        slots: u32,
        /// Its slot size.
        slot_size: u32,
        /// The most bytes one arena may have.
        limit: u64,
    },
    /// An arena that would make more mapped than a consumer maps.
    #[error(
        "arena {id} of {bytes} bytes would make {mapped} bytes mapped, over this consumer's {limit}"
    )]
    MappedTooMuch {
        /// The arena.
        id: u32,
        /// Its bytes.
        bytes: u64,
        /// What would be mapped with it.
        mapped: u64,
        /// The most.
        limit: u64,
    },
    /// An arena named that was never announced.
    #[error("{what} names arena {id}, which was never announced")]
    UnknownArena {
        /// What named it, e.g. `"frame 3"`, `"DropArena"`.
        what: String,
        /// The arena.
        id: u32,
    },
    /// A side message for a frame already delivered.
    #[error("side message for before frame {before} arrived after frame {after}")]
    SideLate {
        /// The frame it comes before.
        before: u64,
        /// The frame already delivered.
        after: u64,
    },
    /// More side messages queued ahead of their frames than a consumer keeps.
    #[error("more than {limit} side messages queued ahead of their frames")]
    TooManySides {
        /// The most.
        limit: usize,
    },
    /// A handshake message in the stream.
    #[error("producer sent a handshake message mid-stream")]
    HandshakeMidStream,
    /// A consumer's message from a producer.
    #[error("producer sent a consumer's Note")]
    NoteFromProducer,
    /// An arena's slot size that is not whole pages.
    #[error("arena slot size {slot_size} is not a non-zero multiple of the page size {page}")]
    ArenaSlotSize {
        /// The slot size.
        slot_size: u64,
        /// The page size.
        page: u64,
    },
    /// An arena of no slot.
    #[error("arena has 0 slots")]
    ArenaEmpty,
    /// An arena over the largest.
    #[error("arena of {slots} slots of {slot_size} bytes exceeds {limit} bytes")]
    ArenaOverLimit {
        /// Its slots.
        slots: u32,
        /// Its slot size.
        slot_size: u64,
        /// The largest arena.
        limit: u64,
    },
}
