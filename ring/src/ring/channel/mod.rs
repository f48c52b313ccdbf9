//! Typed `Sender<T>`/`Receiver<T>` over a sealed shared ring.
//!
//! Either side creates the ring ([`Sender::create`], [`Receiver::create`]) and hands
//! the returned [`RingFds`] to the other, which attaches ([`Receiver::attach`],
//! [`Sender::attach`]) after validating the memfd's seals, its sealed size and the
//! immutable header. Elements are plain old data ([`bytemuck::Pod`]): any bytes a
//! hostile peer leaves in a slot are a valid `T`, and values are copied out of shared
//! memory, never referenced in place.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};


use crate::os::doorbell::{poll_until, pollfd, Doorbell, Wake, Waker};
use crate::error::{
    AttachError, CreateError, Error, LinkError, OsError, PeerFault, ProtocolFault, RecvMsgError,
    Result, SendMsgError,
};
use crate::os::fdpass;
use crate::ring::layout::{self, Header, Role};
use crate::os::memfd::{Access, Region, Seals};
use crate::ring::index::{self, Word, Words};

#[cfg(feature = "tokio")]
pub(crate) mod asynch;
/// What a sender and a receiver both say of their end of the ring (`$peer`: the
/// other side, for the docs).
macro_rules! end_accessors {
    ($peer:literal) => {
        /// Capacity in elements.
        pub fn capacity(&self) -> usize {
            self.end.hdr.capacity as usize
        }

        /// How long blocking calls spin before sleeping (0 = sleep at once).
        pub fn set_spin(&mut self, spin: Duration) {
            self.end.spin = spin;
        }

        /// A handle that interrupts this side's blocking calls from another thread.
        pub fn waker(&self) -> Waker {
            self.end.waker.clone()
        }

        #[doc = concat!("True once the ", $peer, " hung up.")]
        pub fn peer_gone(&self) -> bool {
            self.end.bell.peer_gone()
        }
    };
}

mod receiver;
mod sender;

#[cfg(feature = "tokio")]
pub use asynch::AsyncReceiver;
pub use receiver::Receiver;
pub use sender::Sender;

/// Default time a blocking call spins before it sleeps on the doorbell.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// What one side hands the other to attach a ring: the ring's memfd and the peer's end
/// of the doorbell socket pair.
#[derive(Debug)]
pub struct RingFds {
    /// The ring region (sealed `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
    pub memfd: OwnedFd,
    /// The attaching side's end of the doorbell (`SOCK_STREAM` unix socket).
    pub doorbell: OwnedFd,
}

const HANDOFF_MSG: &[u8; 16] = b"SHMRING-RING/1\0\0";

impl RingFds {
    /// How long [`RingFds::send`] and [`RingFds::recv`] wait for the peer, at most.
    pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

    /// Sends both fds over a connected unix socket, in one message, waiting at most
    /// [`RingFds::HANDOFF_TIMEOUT`] for room in it ([`Error::Timeout`]).
    pub fn send(&self, sock: BorrowedFd<'_>) -> Result<()> {
        self.send_deadline(sock, Some(Instant::now() + Self::HANDOFF_TIMEOUT))
    }

    /// [`RingFds::send`], waiting until `deadline` (`None`: as long as it takes).
    pub fn send_deadline(&self, sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<()> {
        let fds = [self.memfd.as_fd(), self.doorbell.as_fd()];
        loop {
            match fdpass::send_flags(sock, HANDOFF_MSG, &fds, libc::MSG_DONTWAIT) {
                Err(SendMsgError::WouldBlock) => wait_for(sock, libc::POLLOUT, deadline)?,
                r => return Ok(r?),
            }
        }
    }

    /// Receives a [`RingFds`] sent with [`RingFds::send`], waiting at most
    /// [`RingFds::HANDOFF_TIMEOUT`] for it ([`Error::Timeout`]). Anything else (other
    /// bytes, other than exactly two fds) is a protocol error, and the fds that came
    /// are closed.
    pub fn recv(sock: BorrowedFd<'_>) -> Result<RingFds> {
        Self::recv_deadline(sock, Some(Instant::now() + Self::HANDOFF_TIMEOUT))
    }

    /// [`RingFds::recv`], waiting until `deadline` (`None`: as long as it takes).
    pub fn recv_deadline(sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<RingFds> {
        let mut buf = [0u8; 64];
        let r = loop {
            match fdpass::recv(sock, &mut buf, 2, libc::MSG_DONTWAIT) {
                Ok(r) => break r,
                Err(RecvMsgError::WouldBlock) => wait_for(sock, libc::POLLIN, deadline)?,
                Err(RecvMsgError::PeerGone) => return Err(Error::PeerGone),
                Err(RecvMsgError::Peer(f)) => return Err(Error::Peer(f)),
                Err(RecvMsgError::Os(e)) => return Err(e.into()),
            }
        };
        if &buf[..r.len] != HANDOFF_MSG {
            return Err(ProtocolFault::NotAHandOff {
                len: r.len,
                head: buf[..r.len.min(16)].to_vec(),
            }
            .into());
        }
        let mut fds = r.fds.into_iter();
        match (fds.next(), fds.next()) {
            (Some(memfd), Some(doorbell)) => Ok(RingFds { memfd, doorbell }),
            _ => Err(ProtocolFault::HandOffFds.into()),
        }
    }
}

/// Waits until `sock` is ready for `events` (or hung up, which the next call on it
/// reports), or `deadline` passes ([`Error::Timeout`]).
fn wait_for(sock: BorrowedFd<'_>, events: i16, deadline: Option<Instant>) -> Result<()> {
    let mut p = [pollfd(sock, events)];
    if poll_until(&mut p, deadline)? {
        Ok(())
    } else {
        Err(Error::Timeout)
    }
}

/// The state both ends share: the mapped region, the private header copy, the
/// doorbell, the waker and the wait policy.
#[derive(Debug)]
struct End {
    region: Region,
    hdr: Header,
    bell: Doorbell,
    waker: Waker,
    spin: Duration,
    broken: Option<PeerFault>,
}

impl Words for End {
    fn load(&self, w: Word, o: Ordering) -> u32 {
        self.word(w).load(o)
    }
    fn store(&self, w: Word, v: u32, o: Ordering) {
        self.word(w).store(v, o)
    }
    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst)
    }
}

impl End {
    fn create(
        elem_size: usize,
        elem_align: usize,
        capacity: usize,
        creator: Role,
    ) -> Result<(End, RingFds), CreateError> {
        let hdr = Header::new(elem_size, elem_align, capacity, creator)
            .map_err(CreateError::Shape)?;
        let region = Region::create(c"shmring-ring", hdr.total_len as usize, Seals::NONE)?;
        // SAFETY: the region is ours alone until its fd is handed out, it is mapped
        // read-write and at least DATA_OFF bytes long (total_len >= DATA_OFF).
        unsafe { hdr.write(region.mapping().as_ptr()) };
        let (bell, peer_bell) = Doorbell::pair()?;
        let fds = RingFds {
            memfd: region.dup_fd()?,
            doorbell: peer_bell,
        };
        Ok((End::new(region, hdr, bell)?, fds))
    }

    fn attach(
        fds: RingFds,
        elem_size: usize,
        elem_align: usize,
        creator: Role,
    ) -> Result<End, AttachError> {
        let bell = Doorbell::from_fd(fds.doorbell)?;
        let region = Region::open(
            fds.memfd,
            Seals::FIXED_SIZE,
            "ring",
            layout::DATA_OFF as u64 + 1,
            layout::MAX_RING_BYTES,
            Access::ReadWrite,
        )?;
        // SAFETY: `Region::open` mapped the whole sealed file, at least DATA_OFF + 1 bytes.
        let raw = unsafe { Header::read_raw(region.mapping().as_ptr()) };
        let hdr = Header::parse(
            &raw,
            elem_size,
            elem_align,
            creator,
            region.mapping().len() as u64,
        )?;
        Ok(End::new(region, hdr, bell)?)
    }

    fn new(region: Region, hdr: Header, bell: Doorbell) -> Result<End, OsError> {
        Ok(End {
            region,
            hdr,
            bell,
            waker: Waker::new()?,
            spin: DEFAULT_SPIN,
            broken: None,
        })
    }

    fn closed_word(&self) -> &AtomicU32 {
        // SAFETY: as in `word`: a 4-aligned offset below DATA_OFF in a live mapping,
        // accessed only atomically; any value is a valid u32.
        unsafe {
            &*self
                .region
                .mapping()
                .as_ptr()
                .add(layout::CLOSED_OFF)
                .cast::<AtomicU32>()
        }
    }

    fn word(&self, w: Word) -> &AtomicU32 {
        let off = match w {
            Word::Head => layout::HEAD_OFF,
            Word::ProducerWaiting => layout::PRODUCER_WAITING_OFF,
            Word::Tail => layout::TAIL_OFF,
            Word::ConsumerWaiting => layout::CONSUMER_WAITING_OFF,
        };
        // SAFETY: `off` is a 4-aligned offset below DATA_OFF inside the mapping, which
        // is page-aligned and lives as long as `self`. An `AtomicU32` may alias memory
        // that another process changes: every access to it is atomic on our side, and
        // any value the peer stores is a valid u32 that the index code validates.
        unsafe { &*self.region.mapping().as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Pointer to element slot `i` (< capacity).
    fn slot_ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.hdr.capacity as usize);
        // SAFETY: i < capacity, and the mapping holds DATA_OFF + capacity * elem_size
        // bytes (the header was validated against the sealed file size).
        unsafe {
            self.region
                .mapping()
                .as_ptr()
                .add(layout::DATA_OFF + i * self.hdr.elem_size as usize)
        }
    }

    fn check(&self) -> Result<(), LinkError> {
        match &self.broken {
            Some(f) => Err(LinkError::Peer(f.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a peer fault so that every later call reports it.
    fn fail<T>(&mut self, e: impl Into<LinkError>) -> Result<T, LinkError> {
        let e = e.into();
        if let LinkError::Peer(f) = &e {
            self.broken = Some(f.clone());
        }
        Err(e)
    }

    fn header_intact(&self) -> Result<(), LinkError> {
        // SAFETY: the mapping is at least DATA_OFF bytes.
        Ok(unsafe { self.hdr.check_unchanged(self.region.mapping().as_ptr()) }?)
    }

    /// Waits until `ready` says yes: spins for the spin budget, then announces `flag`,
    /// re-checks, and sleeps on the doorbell. `Ok(())` means "check again". A peer
    /// fault found on the way breaks the endpoint.
    fn park(
        &mut self,
        flag: Word,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&End) -> Result<bool, LinkError>,
    ) -> Result<(), LinkError> {
        match self.park_inner(flag, deadline, &mut ready) {
            Err(e) => self.fail(e),
            Ok(()) => Ok(()),
        }
    }

    fn park_inner(
        &self,
        flag: Word,
        deadline: Option<Instant>,
        ready: &mut impl FnMut(&End) -> Result<bool, LinkError>,
    ) -> Result<(), LinkError> {
        if !self.spin.is_zero() {
            let start = Instant::now();
            let until = deadline.map_or(start + self.spin, |d| d.min(start + self.spin));
            let mut n = 0u32;
            loop {
                if ready(self)? {
                    return Ok(());
                }
                n = n.wrapping_add(1);
                if n % 64 == 0 && Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        index::announce_wait(self, flag);
        let r = self.sleep(deadline, ready);
        index::end_wait(self, flag);
        match r {
            // Whatever the peer published before it died is still good: let the
            // caller drain it before it sees PeerGone.
            Err(LinkError::PeerGone) if ready(self)? => Ok(()),
            r => r,
        }
    }

    fn sleep(
        &self,
        deadline: Option<Instant>,
        ready: &mut impl FnMut(&End) -> Result<bool, LinkError>,
    ) -> Result<(), LinkError> {
        if ready(self)? {
            return Ok(());
        }
        self.header_intact()?;
        match self.bell.wait(Some(&self.waker), deadline)? {
            Wake::Rung => Ok(()),
            Wake::TimedOut => Err(LinkError::Timeout),
        }
    }
}

