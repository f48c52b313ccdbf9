//! `AsyncReceiver` (feature `tokio`): a [`Receiver`] whose `recv` is a future, on
//! the same wait protocol as the blocking one (see `frame::consumer::asynch`).

use std::os::fd::{AsFd, AsRawFd, RawFd};

use bytemuck::Pod;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Receiver;
use crate::error::RecvError;

/// The receiver's doorbell fd, borrowed by the reactor while the `AsyncReceiver`
/// lives (its `AsyncFd` is dropped before the receiver).
struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A [`Receiver`] for async code on a tokio runtime: [`AsyncReceiver::recv`] waits
/// on the doorbell through tokio's reactor. Cancellation-safe: a future dropped
/// before it completes took nothing.
///
/// ```no_run
/// # async fn f(fds: shmring::RingFds) -> Result<(), shmring::Error> {
/// let rx = shmring::Receiver::<[u8; 64]>::attach(fds)?;
/// let mut rx = shmring::AsyncReceiver::new(rx)?; // inside a tokio runtime
/// while let Ok(msg) = rx.recv().await {
///     println!("{} bytes", msg.len());
/// }
/// # Ok(())
/// # }
/// ```
pub struct AsyncReceiver<T: Pod> {
    // Declared before `rx`: deregistered before its fd closes.
    bell: AsyncFd<Registered>,
    rx: Receiver<T>,
}

impl<T: Pod> std::fmt::Debug for AsyncReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncReceiver").finish_non_exhaustive()
    }
}

impl<T: Pod> AsyncReceiver<T> {
    /// Registers `rx`'s doorbell with the current tokio runtime's reactor. Must be
    /// called from within a runtime (with I/O enabled).
    pub fn new(rx: Receiver<T>) -> Result<AsyncReceiver<T>, RecvError> {
        let fd = rx.bell().as_fd().as_raw_fd();
        // SAFETY: `fd` is the receiver's doorbell, which `rx` owns and keeps open,
        // unchanged, until it drops, and the `AsyncFd` is dropped first (field
        // order; `into_inner` drops it before giving the receiver back). The
        // sender cannot close or replace our fd.
        let bell = unsafe { AsyncFd::register_with_interest(Registered(fd), Interest::READABLE) }
            .map_err(|e| RecvError::Os {
                op: "register the doorbell with tokio",
                source: e.into_parts().1,
            })?;
        Ok(AsyncReceiver { bell, rx })
    }

    /// The next element; [`RecvError::PeerGone`] once the sender is gone and the
    /// ring is empty.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        loop {
            if let Some(v) = self.rx.try_recv()? {
                return Ok(v);
            }
            if self.rx.bell().peer_gone() {
                return Err(RecvError::PeerGone);
            }
            self.rx.bell().drain();
            let ready = self.rx.arm();
            if !matches!(ready, Ok(false)) {
                self.rx.disarm();
                ready?;
                continue;
            }
            if let Ok(mut g) = self.bell.readable().await {
                g.clear_ready();
            }
            self.rx.disarm();
        }
    }

    /// The receiver, for its other calls.
    pub fn get_mut(&mut self) -> &mut Receiver<T> {
        &mut self.rx
    }

    /// Deregisters from the reactor and gives the blocking receiver back.
    pub fn into_inner(self) -> Receiver<T> {
        let AsyncReceiver { bell, rx } = self;
        drop(bell);
        rx
    }
}
