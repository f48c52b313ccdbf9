//! `AsyncReceiver` (feature `tokio`): a [`Receiver`] whose `recv` is a future, on
//! the same wait protocol as the blocking one; and what `AsyncConsumer` shares with
//! it (registering our fds with tokio's reactor, waiting for their readiness).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::task::Poll;

use bytemuck::Pod;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Receiver;
use crate::error::RecvError;

/// An fd an endpoint owns, borrowed by the reactor (see [`register`]).
pub(crate) struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd` with the current tokio runtime's reactor, for reading; `what`
/// names it in the error.
///
/// # Safety
/// `fd` must stay open, the same file description, until the returned `AsyncFd`
/// is dropped: the caller owns it and drops the `AsyncFd` first. (A peer cannot
/// close or replace an fd of ours.)
pub(crate) unsafe fn register(
    fd: RawFd,
    what: &'static str,
) -> Result<AsyncFd<Registered>, RecvError> {
    // SAFETY: the caller keeps `fd` open and unchanged while the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(Registered(fd), Interest::READABLE) }.map_err(|e| {
        RecvError::Os {
            op: what,
            source: e.into_parts().1,
        }
    })
}

/// Waits until one of `fds` is readable; true when one reported a hang-up.
///
/// Readiness is edge-triggered: it is cleared here, and the caller looks at what
/// made the fd readable (drains it, reads it) before it waits again. A hang-up is
/// not cleared: it raises no new edge, and a later wait must see it too.
pub(crate) async fn readable(fds: &[&AsyncFd<Registered>]) -> bool {
    std::future::poll_fn(|cx| {
        let mut woke = None;
        for fd in fds {
            if let Poll::Ready(g) = fd.poll_read_ready(cx) {
                let closed = match g {
                    Ok(mut g) => {
                        let r = g.ready();
                        let closed = r.is_read_closed() || r.is_error();
                        if !closed {
                            g.clear_ready();
                        }
                        closed
                    }
                    Err(_) => true,
                };
                woke = Some(woke.unwrap_or(false) | closed);
            }
        }
        woke.map_or(Poll::Pending, Poll::Ready)
    })
    .await
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
        // SAFETY: `rx` owns its doorbell and keeps it open, unchanged, until it
        // drops; the AsyncFd is dropped first (field order; `into_inner` drops it
        // before giving the receiver back).
        let bell = unsafe {
            register(
                rx.bell().as_fd().as_raw_fd(),
                "register the doorbell with tokio",
            )
        }?;
        Ok(AsyncReceiver { bell, rx })
    }

    /// The next element; [`RecvError::PeerGone`] once the sender is gone and the
    /// ring is empty.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let mut hung_up = false;
        loop {
            if let Some(v) = self.rx.try_recv()? {
                return Ok(v);
            }
            if hung_up {
                return Err(RecvError::PeerGone);
            }
            self.rx.bell().drain();
            let ready = self.rx.arm();
            if !matches!(ready, Ok(false)) {
                self.rx.disarm();
                ready?;
                continue;
            }
            hung_up = readable(&[&self.bell]).await;
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
