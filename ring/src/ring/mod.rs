//! The sealed SPSC ring: its shared-memory layout (`layout`), the index protocol that
//! any ring runs (`index`, also on the heap for model checking), the typed
//! [`Sender`](crate::Sender)/[`Receiver`](crate::Receiver) pair over a sealed memfd
//! (`channel`), `write_once` blobs (`blob`) and the copies into shared memory
//! (`copy`).

pub(crate) mod blob;
pub(crate) mod copy;
internal_mods! {
    channel;
    index;
    layout;
}
