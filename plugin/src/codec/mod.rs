//! Everything the GStreamer side sends across the frame channel, in one place: how
//! it is laid out in bytes, how it is read back strictly, and what a consumer
//! checks before GStreamer sees it.
//!
//! | what | from → to | module |
//! |------|-----------|--------|
//! | per-buffer metadata (timestamps, flags, video layout): the descriptor's 88 bytes | producer → consumer | [`buffer`] |
//! | side messages (caps, events), ordered with the buffers | producer → consumer | [`side`] |
//! | a buffer's other `GstMeta`s, as a record list in side-message pieces | producer → consumer | [`metas`] |
//! | a table of contents | producer → consumer | [`toc`] |
//! | what downstream accepts (the `caps:` note) | consumer → producer | [`note`] |
//! | what a producer says of itself to a probe (its description) | producer → prober | [`description`] |
//!
//! Every layout is a byte table in its module's documentation; [`bytes`] is the one
//! reader and writer they share, and every decoder returns a [`Fault`] naming the
//! field that lied. The two trust rules live here too:
//!
//! - **Refuse lies, carry the undescribed** ([`trust`]): everything GStreamer
//!   interprets (caps, layouts, flags, latency) is checked against what it will do
//!   with it; bytes whose layout nobody claims cross as opaque bytes.
//! - **Isolation**: what a consumer says (its [`note`]) is only ever read by
//!   [`note::accepts_of`] and decided on by `shmringsink`'s negotiation, which
//!   changes only what that consumer gets.
//!
//! Nothing here depends on the elements: the elements, the Python package and the
//! test peers all use this module.

pub mod buffer;
pub mod bytes;
pub mod description;
mod fault;
pub mod metas;
pub mod note;
mod refusal;
pub mod side;
pub mod text;
pub mod toc;
pub mod trust;

pub use buffer::{BUFFER_META_LEN, BufferMeta, MAX_PLANES, TRAVELLING_FLAGS, VideoLayout};
pub use fault::Fault;
pub use refusal::{Refusal, Why};
pub use side::{Side, key};
pub use text::{NONE, caps_from_text, ct, to_ct};
