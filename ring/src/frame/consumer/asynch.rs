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

use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;

use crate::error::{RecvError, Result};
use crate::ring::channel::asynch::{Registered, readable, register};

use super::{Consumer, Event};

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
        // SAFETY: the doorbell and the socket are the consumer's own fds, which
        // `consumer` keeps open, unchanged, until it drops; the AsyncFds are
        // dropped first (field order; `into_inner` drops them before giving the
        // consumer back).
        let (bell, sock) = unsafe {
            (
                register(
                    consumer.frames.bell().as_fd().as_raw_fd(),
                    "register the doorbell with tokio",
                )?,
                register(consumer.sock.as_raw_fd(), "register the socket with tokio")?,
            )
        };
        Ok(AsyncConsumer {
            bell,
            sock,
            consumer,
        })
    }

    /// The next event. Cancellation-safe: a future dropped before it completes took
    /// nothing, and the next call returns what it would have.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        // The doorbell or the socket reported a hang-up: once nothing is left to
        // deliver, the producer is gone (without a goodbye).
        let mut hung_up = false;
        loop {
            if let Some(ev) = self.consumer.try_recv()? {
                return Ok(ev);
            }
            if hung_up {
                return Err(RecvError::PeerGone);
            }
            // Messages left on the socket (a call reads a bounded number) raise no
            // new readiness: read on before waiting.
            if self.consumer.socket_backlog {
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
            hung_up = readable(&[&self.bell, &self.sock]).await;
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
