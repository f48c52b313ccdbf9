//! `AsyncConsumer` (feature `tokio`): a [`Consumer`] whose `recv` is a future.
//!
//! The consumer's doorbell and socket are registered with tokio's reactor
//! (`AsyncFd`); the wait is the blocking consumer's, made of the same steps: look,
//! say in the ring "I wait" (so that the producer rings), look again, then sleep
//! until the doorbell or the socket is readable. Nothing is taken from the ring or
//! the socket while the future waits, so dropping it (a `select!` arm that lost, a
//! timeout) loses no event: `recv` is cancellation-safe. A future dropped while
//! armed leaves the "I wait" word set, which only makes the producer ring once more
//! than needed.

use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::*;

/// An fd the consumer owns, borrowed by the reactor for as long as the
/// `AsyncConsumer` lives (its `AsyncFd`s are dropped before the consumer).
struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether `fd` has something to read right now (a poll that does not wait).
fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our own fd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// A [`Consumer`] for async code on a tokio runtime: [`AsyncConsumer::recv`] is the
/// blocking [`Consumer::recv`] as a cancellation-safe future. It never spins and
/// never wakes ahead (`spin_time` and `wake_ahead` are the blocking consumer's).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::{AsyncConsumer, Consumer, ConsumerConfig, Event};
///
/// let c = Consumer::connect("/run/user/1000/cam", ConsumerConfig::default())?;
/// let mut c = AsyncConsumer::new(c)?; // inside a tokio runtime
/// loop {
///     match c.recv().await? {
///         Event::Frame(f) => println!("frame {} of {} bytes", f.seq(), f.len()),
///         Event::Side { key, .. } => println!("side message {key}"),
///         Event::End { reason } => break println!("end: {reason}"),
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct AsyncConsumer {
    // Declared before `consumer`: dropped (deregistered) before its fds close.
    bell: AsyncFd<Registered>,
    sock: AsyncFd<Registered>,
    consumer: Consumer,
}

impl std::fmt::Debug for AsyncConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConsumer")
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl AsyncConsumer {
    /// Registers `consumer`'s doorbell and socket with the current tokio runtime's
    /// reactor. Must be called from within a runtime (with I/O enabled).
    pub fn new(consumer: Consumer) -> Result<AsyncConsumer, RecvError> {
        let reg = |fd: RawFd, what: &'static str| {
            // SAFETY: `fd` is the consumer's doorbell or socket, which `consumer`
            // owns and keeps open, unchanged, until it drops, and the `AsyncFd`s
            // are dropped first (field order; `into_inner` drops them before
            // giving the consumer back). Nothing the producer does can close or
            // replace our fds.
            unsafe { AsyncFd::register_with_interest(Registered(fd), Interest::READABLE) }.map_err(
                |e| RecvError::Os {
                    op: what,
                    source: e.into_parts().1,
                },
            )
        };
        Ok(AsyncConsumer {
            bell: reg(
                consumer.frames.bell().as_fd().as_raw_fd(),
                "register the doorbell with tokio",
            )?,
            sock: reg(consumer.sock.as_raw_fd(), "register the socket with tokio")?,
            consumer,
        })
    }

    /// The next event. Cancellation-safe: a future dropped before it completes took
    /// nothing, and the next call returns what it would have.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            if let Some(ev) = self.consumer.try_recv()? {
                return Ok(ev);
            }
            // Nothing left, and the producer hung up without a goodbye (its
            // doorbell and socket stay readable for good: no sleep would end).
            if self.consumer.frames.bell().peer_gone() {
                return Err(RecvError::PeerGone);
            }
            // Messages left on the socket (a call reads a bounded number) raise no
            // new readiness: read on before waiting.
            if readable_now(self.consumer.sock.as_raw_fd()) {
                continue;
            }
            // Say "I wait" in the ring, then look again: a frame published before
            // the word was seen is found here, one after it rings the doorbell.
            self.consumer.frames.bell().drain();
            let ready = self.consumer.frames.arm();
            if !matches!(ready, Ok(false)) {
                self.consumer.frames.disarm();
                ready?;
                continue;
            }
            // Readiness is edge-triggered: it is cleared below only once what made
            // the fd readable was looked at (drained, or read by `try_recv`).
            std::future::poll_fn(|cx| {
                let mut any = false;
                for fd in [&self.bell, &self.sock] {
                    if let std::task::Poll::Ready(g) = fd.poll_read_ready(cx) {
                        if let Ok(mut g) = g {
                            g.clear_ready();
                        }
                        any = true;
                    }
                }
                if any {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            self.consumer.frames.disarm();
        }
    }

    /// The consumer, for its other calls (stats, notes, the producer's id).
    pub fn get_ref(&self) -> &Consumer {
        &self.consumer
    }

    /// The consumer, for its other calls.
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Deregisters from the reactor and gives the blocking consumer back.
    pub fn into_inner(self) -> Consumer {
        let AsyncConsumer {
            bell,
            sock,
            consumer,
        } = self;
        drop((bell, sock));
        consumer
    }
}
