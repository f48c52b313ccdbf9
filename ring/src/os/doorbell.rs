//! Doorbells: how one side wakes the other, and how a sleeper notices a dead peer.
//!
//! A doorbell is one end of a connected unix `SOCK_STREAM` socket pair; each side holds
//! its own end. Ringing sends one byte with `MSG_DONTWAIT`; the sleeper `poll`s its end
//! and drains it with `recv(MSG_DONTWAIT)`: one call takes every pending byte (a
//! stream, unlike a seqpacket socket, returns all queued bytes at once).
//!
//! Why not an eventfd: a peer that shares an eventfd shares its *file description*.
//! It can clear `O_NONBLOCK` on it and push the counter to its maximum, after which a
//! plain `write(2)` of ours blocks until someone reads — and the only reader is that
//! peer. `pwritev2(RWF_NOWAIT)` does not help: eventfd writes answer `EOPNOTSUPP`.
//! With a socket pair each side has its own file description (the peer cannot touch
//! our flags or steal our wake-ups), every call is non-blocking by its own flags, a
//! full queue (`EAGAIN`) simply means "already rung", and the peer's death shows up as
//! `POLLHUP` on our end: the doorbell doubles as the hang-up detector.
//!
//! The [`Waker`] is a local eventfd that never leaves this process; another thread
//! uses it to interrupt a blocking wait (GStreamer's `unlock`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{FdFault, LinkError, OsError};
use crate::os::fdpass;

/// Our end of a doorbell socket pair.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

/// Why a [`Doorbell::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The peer rang (or sent something on an extra fd).
    Rung,
    /// The deadline passed.
    TimedOut,
}

impl Doorbell {
    /// A connected pair: keep one, hand the other's fd to the peer.
    pub fn pair() -> Result<(Doorbell, OwnedFd), OsError> {
        let (a, b) = fdpass::socket_pair(libc::SOCK_STREAM)?;
        Ok((Doorbell { fd: a }, b))
    }

    /// Wraps a doorbell fd received from the peer, after checking that it is a unix
    /// `SOCK_STREAM` socket.
    pub fn from_fd(fd: OwnedFd) -> Result<Doorbell, FdFault> {
        fdpass::check_unix_socket(fd.as_fd(), libc::SOCK_STREAM, "doorbell fd")?;
        Ok(Doorbell { fd })
    }

    /// Rings the peer. Never blocks: a full queue means the peer has wake-ups pending
    /// already. A peer that hung up is [`LinkError::PeerGone`].
    pub fn ring(&self) -> Result<(), LinkError> {
        let b = [1u8];
        loop {
            // SAFETY: sends one byte from a live buffer; MSG_DONTWAIT makes this call
            // non-blocking whatever flags the file description has.
            let r = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    b.as_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => Ok(()),
                Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => {
                    Err(LinkError::PeerGone)
                }
                _ => Err(LinkError::Os {
                    op: "send(doorbell)",
                    source: e,
                }),
            };
        }
    }

    /// Empties our end without blocking. Reads a bounded amount so that a peer
    /// flooding us cannot keep us here; usually one `recv` takes everything.
    pub fn drain(&self) {
        let mut b = [0u8; 256];
        for _ in 0..16 {
            // SAFETY: receives into a live, writable buffer; MSG_DONTWAIT makes the call
            // non-blocking whatever flags the file description has.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // Less than a full buffer: drained (or empty, or the peer closed, which the
            // next wait sees as POLLHUP).
            if r < b.len() as isize {
                return;
            }
        }
    }

    /// True once the peer's end is closed (its process died or dropped it).
    pub fn peer_gone(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Sleeps until the peer rings, hangs up, `waker` is woken, or `deadline` passes.
    ///
    /// Returns [`Wake::Rung`] after draining, [`LinkError::PeerGone`] on hang-up,
    /// [`LinkError::Interrupted`] when woken. Spurious returns are possible: callers
    /// re-check their condition.
    pub fn wait(
        &self,
        waker: Option<&Waker>,
        deadline: Option<Instant>,
    ) -> Result<Wake, LinkError> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: waker.map_or(-1, |w| w.fd.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if d <= now {
                    return Ok(Wake::TimedOut);
                }
                Some(d - now)
            }
        };
        let r = ppoll(&mut fds, timeout);
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(Wake::Rung);
            }
            return Err(LinkError::Os {
                op: "poll",
                source: e,
            });
        }
        if fds[1].revents != 0 {
            if let Some(w) = waker {
                if w.take() {
                    return Err(LinkError::Interrupted);
                }
            }
        }
        let re = fds[0].revents;
        // Hang-up first: a closed peer end is also "readable" (end of stream), and
        // treating it as a ring would spin forever. Callers re-check the ring before
        // reporting PeerGone, so nothing the peer published before dying is lost.
        if re & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(LinkError::PeerGone);
        }
        if re & libc::POLLIN != 0 {
            self.drain();
            return Ok(Wake::Rung);
        }
        if r == 0 {
            return Ok(Wake::TimedOut);
        }
        Ok(Wake::Rung)
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Polls `fds` until one is ready or `deadline` passes (`None`: forever). Returns
/// false on timeout. `EINTR` counts as "something may be ready": callers re-check.
pub(crate) fn poll_until(
    fds: &mut [libc::pollfd],
    deadline: Option<Instant>,
) -> Result<bool, OsError> {
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let r = ppoll(fds, timeout);
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(true);
        }
        return Err(OsError {
            op: "poll",
            source: e,
        });
    }
    Ok(r > 0)
}

/// A pollfd for `fd` asking for `events`.
pub(crate) fn pollfd(fd: BorrowedFd<'_>, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

/// `ppoll` for at most `timeout` (`None`: forever), to the nanosecond (`poll` would
/// round a wake-up to whole milliseconds); its return value (errno on -1).
fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> i32 {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a live, writable slice of pollfds (negative fds are ignored);
    // `tp` is null or points at a timespec that outlives the call; no signal mask.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tp,
            std::ptr::null(),
        )
    }
}

/// Interrupts a blocking wait from another thread. Cheap to clone; all clones wake
/// the same endpoint. The eventfd behind it never leaves this process.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// A new waker (a non-blocking, close-on-exec eventfd).
    pub fn new() -> Result<Waker, OsError> {
        // SAFETY: eventfd with valid flags; returns a fresh fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(OsError::last("eventfd"));
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Makes the current or next wait of the endpoint return [`LinkError::Interrupted`] (or its operation's `Interrupted`).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. The eventfd is private to this
        // process and non-blocking; a saturated counter (EAGAIN) means "already woken".
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Clears a pending wake-up; true if there was one.
    pub fn take(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; the eventfd is non-blocking.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        r == 8
    }

    /// Sleeps for `d` unless woken: [`LinkError::Interrupted`] (the wake-up taken) if
    /// [`wake`](Waker::wake) was called before or during the sleep.
    pub fn sleep(&self, d: Duration) -> Result<(), LinkError> {
        let mut p = [pollfd(self.as_fd(), libc::POLLIN)];
        poll_until(&mut p, Some(Instant::now() + d))?;
        if self.take() {
            return Err(LinkError::Interrupted);
        }
        Ok(())
    }

    /// The eventfd, for callers that poll it themselves.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
