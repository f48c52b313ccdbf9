//! How the operations' error types are made from one another: case for case, each
//! to its namesake, so that no conversion has a case it cannot map (and none is
//! turned into a string).

use super::ops::{AttachError, ConnectError, LinkError, NoteError, RecvError, Transmit};
use super::{Error, PeerFault};

/// `From<$from> for $to` for types that both have a link's cases (`PeerGone`,
/// `Timeout`, `Interrupted`, `Peer`, `Os`), each to its namesake; `$pat => $e` arms
/// for the cases `$from` has besides.
macro_rules! link_cases {
    ($from:ident => $to:ident $(; $pat:pat => $e:expr)*) => {
        impl From<$from> for $to {
            fn from(e: $from) -> $to {
                match e {
                    $from::PeerGone => $to::PeerGone,
                    $from::Timeout => $to::Timeout,
                    $from::Interrupted => $to::Interrupted,
                    $from::Peer(f) => $to::Peer(f),
                    $from::Os { op, source } => $to::Os { op, source },
                    $($pat => $e,)*
                }
            }
        }
    };
}

link_cases!(LinkError => Error);
link_cases!(LinkError => RecvError);
link_cases!(RecvError => Error; RecvError::Closed { code, reason } => Error::Closed { code, reason });
link_cases!(RecvError => ConnectError; RecvError::Closed { code, reason } => ConnectError::Refused { code, reason });

/// `From` a message that could not be sent ([`Transmit`]) for each listed type.
macro_rules! transmit_cases {
    ($($to:ident),*) => {$(
        impl From<Transmit> for $to {
            fn from(e: Transmit) -> $to {
                match e {
                    Transmit::Timeout => $to::Timeout,
                    Transmit::PeerGone => $to::PeerGone,
                    Transmit::Os(e) => e.into(),
                }
            }
        }
    )*};
}

transmit_cases!(NoteError, Error, RecvError, ConnectError);

/// For each listed type (which has `Peer` and `Os`): `From` an [`AttachError`].
macro_rules! peer_cases {
    ($($to:ident),*) => {$(
        impl From<AttachError> for $to {
            fn from(e: AttachError) -> $to {
                match e {
                    AttachError::Peer(f) => $to::Peer(f),
                    AttachError::Os { op, source } => $to::Os { op, source },
                }
            }
        }
    )*};
}

peer_cases!(Error, RecvError, ConnectError);

/// For each listed type: `From` any lower layer's fault (a [`PeerFault`] or what
/// composes into one), as its `Peer` case.
macro_rules! fault_cases {
    ($($to:ident),*) => {$(
        impl<F: Into<PeerFault>> From<F> for $to {
            fn from(f: F) -> $to {
                $to::Peer(f.into())
            }
        }
    )*};
}

fault_cases!(ConnectError, AttachError, LinkError, RecvError);
