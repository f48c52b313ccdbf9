//! Typed `Sender<T>`/`Receiver<T>` over a sealed shared ring.
//!
//! Either side creates the ring ([`Sender::create`], [`Receiver::create`]) and hands
//! the returned [`RingFds`] to the other, which attaches ([`Receiver::attach`],
//! [`Sender::attach`]) after validating the memfd's seals, its sealed size and the
//! immutable header. Elements are plain old data ([`bytemuck::Pod`]): any bytes a
//! hostile peer leaves in a slot are a valid `T`, and values are copied out of shared
//! memory, never referenced in place.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::os::doorbell::{Doorbell, Wake, Waker};
use crate::error::{Error, Result};
use crate::os::fdpass;
use crate::ring::layout::{self, Header, Role};
use crate::os::memfd::{Access, Region, Seals};
use crate::ring::index::{self, ConsumerIdx, ProducerIdx, Word, Words};

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
    /// Sends both fds over a connected unix socket, in one message.
    pub fn send(&self, sock: BorrowedFd<'_>) -> Result<()> {
        fdpass::send(
            sock,
            HANDOFF_MSG,
            &[self.memfd.as_fd(), self.doorbell.as_fd()],
        )
    }

    /// Receives a [`RingFds`] sent with [`RingFds::send`]. Anything else (other bytes,
    /// other than exactly two fds) is a protocol error, and the fds that came are closed.
    pub fn recv(sock: BorrowedFd<'_>) -> Result<RingFds> {
        let mut buf = [0u8; 64];
        let r = fdpass::recv(sock, &mut buf, 2, 0)?;
        if &buf[..r.len] != HANDOFF_MSG {
            return Err(Error::Protocol(format!(
                "expected ring hand-off message, got {} bytes {:02x?}",
                r.len,
                &buf[..r.len.min(16)]
            )));
        }
        let mut fds = r.fds.into_iter();
        match (fds.next(), fds.next()) {
            (Some(memfd), Some(doorbell)) => Ok(RingFds { memfd, doorbell }),
            _ => Err(Error::Protocol(
                "ring hand-off carries fewer than 2 fds".into(),
            )),
        }
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
    broken: Option<String>,
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
    ) -> Result<(End, RingFds)> {
        let hdr = Header::new(elem_size, elem_align, capacity, creator)?;
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

    fn attach(fds: RingFds, elem_size: usize, elem_align: usize, creator: Role) -> Result<End> {
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
        End::new(region, hdr, bell)
    }

    fn new(region: Region, hdr: Header, bell: Doorbell) -> Result<End> {
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

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(m) => Err(Error::Broken(m.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a peer fault so that every later call reports it.
    fn fail<T>(&mut self, e: Error) -> Result<T> {
        if e.is_peer_fault() {
            self.broken = Some(e.to_string());
        }
        Err(e)
    }

    fn header_intact(&self) -> Result<()> {
        // SAFETY: the mapping is at least DATA_OFF bytes.
        unsafe { self.hdr.check_unchanged(self.region.mapping().as_ptr()) }
    }

    /// Waits until `ready` says yes: spins for the spin budget, then announces `flag`,
    /// re-checks, and sleeps on the doorbell. `Ok(())` means "check again". A peer
    /// fault found on the way breaks the endpoint.
    fn park(
        &mut self,
        flag: Word,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&End) -> Result<bool>,
    ) -> Result<()> {
        match self.park_inner(flag, deadline, &mut ready) {
            Err(e) => self.fail(e),
            Ok(()) => Ok(()),
        }
    }

    fn park_inner(
        &self,
        flag: Word,
        deadline: Option<Instant>,
        ready: &mut impl FnMut(&End) -> Result<bool>,
    ) -> Result<()> {
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
            Err(Error::PeerGone) if ready(self)? => Ok(()),
            r => r,
        }
    }

    fn sleep(
        &self,
        deadline: Option<Instant>,
        ready: &mut impl FnMut(&End) -> Result<bool>,
    ) -> Result<()> {
        if ready(self)? {
            return Ok(());
        }
        self.header_intact()?;
        match self.bell.wait(Some(&self.waker), deadline)? {
            Wake::Rung => Ok(()),
            Wake::TimedOut => Err(Error::Timeout),
        }
    }
}

/// The sending half of a typed shared ring. `!Clone`: there is exactly one per ring.
#[derive(Debug)]
pub struct Sender<T: Pod> {
    end: End,
    idx: ProducerIdx,
    _t: PhantomData<fn(T)>,
}

/// The receiving half of a typed shared ring. `!Clone`: there is exactly one per ring.
#[derive(Debug)]
pub struct Receiver<T: Pod> {
    end: End,
    idx: ConsumerIdx,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Sender<T> {
    /// Creates a ring of `capacity` elements (a power of two); hand the [`RingFds`] to
    /// the receiving process.
    pub fn create(capacity: usize) -> Result<(Sender<T>, RingFds)> {
        let (end, fds) = End::create(size_of::<T>(), align_of::<T>(), capacity, Role::Sender)?;
        Ok((Sender::from_end(end), fds))
    }

    /// Attaches to a ring a receiver created.
    pub fn attach(fds: RingFds) -> Result<Sender<T>> {
        let end = End::attach(fds, size_of::<T>(), align_of::<T>(), Role::Receiver)?;
        Ok(Sender::from_end(end))
    }

    fn from_end(end: End) -> Self {
        // Start from the shared indices as they are: on create both are 0; on attach
        // a peer could have left anything, which the first `free` validates.
        let head = end.load(Word::Head, Ordering::Relaxed);
        let idx = ProducerIdx::new(end.hdr.capacity, head, head);
        Sender {
            end,
            idx,
            _t: PhantomData,
        }
    }

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

    /// True once the receiver hung up.
    pub fn peer_gone(&self) -> bool {
        self.end.bell.peer_gone()
    }

    /// Sends as many of `items` as fit without waiting; returns how many.
    pub fn try_send_batch(&mut self, items: &[T]) -> Result<usize> {
        self.end.check()?;
        let want = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let free = match self.idx.free(&self.end, want) {
            Ok(f) => f,
            Err(e) => return self.end.fail(e),
        };
        let n = free.min(want);
        for (i, item) in items[..n as usize].iter().enumerate() {
            let dst = self.end.slot_ptr(self.idx.slot(i as u32));
            // SAFETY: `dst` is a free slot of `size_of::<T>()` bytes inside the mapping
            // (validated index, validated header); the receiver does not read it until
            // `commit` publishes it, and if a hostile receiver does, it sees bytes, not
            // a Rust value of ours. Source and destination cannot overlap (ours is a
            // Rust value, the slot is in a shared mapping).
            unsafe {
                std::ptr::copy_nonoverlapping((item as *const T).cast::<u8>(), dst, size_of::<T>())
            };
        }
        self.publish(n)?;
        Ok(n as usize)
    }

    /// Sends one element if there is room; `Ok(false)` when the ring is full.
    pub fn try_send(&mut self, item: &T) -> Result<bool> {
        Ok(self.try_send_batch(std::slice::from_ref(item))? == 1)
    }

    /// Writes one element in place: `fill` gets a raw pointer to the free slot (shared
    /// memory: write through the pointer, e.g. with `ptr::write` or
    /// `ptr::copy_nonoverlapping`; never turn it into a reference). `Ok(false)` when full.
    pub fn try_send_with(&mut self, fill: impl FnOnce(*mut T)) -> Result<bool> {
        self.end.check()?;
        let free = match self.idx.free(&self.end, 1) {
            Ok(f) => f,
            Err(e) => return self.end.fail(e),
        };
        if free == 0 {
            return Ok(false);
        }
        fill(self.end.slot_ptr(self.idx.slot(0)).cast::<T>());
        self.publish(1)?;
        Ok(true)
    }

    fn publish(&mut self, n: u32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.idx.commit(&self.end, n);
        if self.idx.consumer_waiting(&self.end) {
            self.end.bell.ring()?;
        }
        Ok(())
    }

    /// Sends one element, waiting for room as long as needed.
    pub fn send(&mut self, item: &T) -> Result<()> {
        self.send_deadline(item, None)
    }

    /// Sends one element, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, item: &T, timeout: Duration) -> Result<()> {
        self.send_deadline(item, Some(Instant::now() + timeout))
    }

    fn send_deadline(&mut self, item: &T, deadline: Option<Instant>) -> Result<()> {
        loop {
            if self.try_send(item)? {
                return Ok(());
            }
            self.wait_for_room(deadline)?;
        }
    }

    /// Waits until at least one slot is free (or the deadline passes).
    pub fn wait_for_room(&mut self, deadline: Option<Instant>) -> Result<()> {
        let idx = &mut self.idx;
        self.end.park(Word::ProducerWaiting, deadline, |end| {
            Ok(idx.free(end, 1)? > 0)
        })
    }

    /// Elements sent and not yet known to be received.
    pub fn in_flight(&self) -> usize {
        self.idx.in_flight() as usize
    }
}

impl<T: Pod> Receiver<T> {
    /// Creates a ring of `capacity` elements (a power of two); hand the [`RingFds`] to
    /// the sending process.
    pub fn create(capacity: usize) -> Result<(Receiver<T>, RingFds)> {
        let (end, fds) = End::create(size_of::<T>(), align_of::<T>(), capacity, Role::Receiver)?;
        Ok((Receiver::from_end(end), fds))
    }

    /// Attaches to a ring a sender created.
    pub fn attach(fds: RingFds) -> Result<Receiver<T>> {
        let end = End::attach(fds, size_of::<T>(), align_of::<T>(), Role::Sender)?;
        Ok(Receiver::from_end(end))
    }

    fn from_end(end: End) -> Self {
        let tail = end.load(Word::Tail, Ordering::Relaxed);
        let idx = ConsumerIdx::new(end.hdr.capacity, tail, tail);
        Receiver {
            end,
            idx,
            _t: PhantomData,
        }
    }

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

    /// True once the sender hung up.
    pub fn peer_gone(&self) -> bool {
        self.end.bell.peer_gone()
    }

    /// Checks that the shared header still holds what it held at attach time.
    pub fn check_header(&self) -> Result<()> {
        self.end.header_intact()
    }

    /// Receives up to `out.len()` elements without waiting; returns how many.
    pub fn try_recv_batch(&mut self, out: &mut [T]) -> Result<usize> {
        self.end.check()?;
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let avail = match self.idx.available(&self.end, want) {
            Ok(a) => a,
            Err(e) => return self.end.fail(e),
        };
        let n = avail.min(want);
        for (i, o) in out[..n as usize].iter_mut().enumerate() {
            let src = self.end.slot_ptr(self.idx.slot(i as u32));
            // SAFETY: `src` is a published slot of `size_of::<T>()` bytes inside the
            // mapping (validated index, validated header). A hostile sender may be
            // rewriting it as we copy: we get some bytes, and every byte pattern is a
            // valid `T` because `T: Pod`. No overlap: `o` is our own memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.cast_const(),
                    (o as *mut T).cast::<u8>(),
                    size_of::<T>(),
                )
            };
        }
        self.release(n)?;
        Ok(n as usize)
    }

    /// Receives one element into `out` if one is there; `Ok(false)` when empty.
    pub fn try_recv_into(&mut self, out: &mut T) -> Result<bool> {
        Ok(self.try_recv_batch(std::slice::from_mut(out))? == 1)
    }

    /// Receives one element if one is there.
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        let mut v = T::zeroed();
        Ok(self.try_recv_into(&mut v)?.then_some(v))
    }

    /// Reads one element in place: `read` gets a raw pointer to the published slot
    /// (shared memory the sender may still change: copy out of it, never turn it into
    /// a reference). Returns `read`'s result, or `None` when empty.
    pub fn try_recv_with<R>(&mut self, read: impl FnOnce(*const T) -> R) -> Result<Option<R>> {
        self.end.check()?;
        let avail = match self.idx.available(&self.end, 1) {
            Ok(a) => a,
            Err(e) => return self.end.fail(e),
        };
        if avail == 0 {
            return Ok(None);
        }
        let r = read(self.end.slot_ptr(self.idx.slot(0)).cast_const().cast::<T>());
        self.release(1)?;
        Ok(Some(r))
    }

    fn release(&mut self, n: u32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.idx.commit(&self.end, n);
        if self.idx.producer_waiting(&self.end) {
            // A receiver whose sender is gone may still drain; don't fail on the ring.
            match self.end.bell.ring() {
                Ok(()) | Err(Error::PeerGone) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Receives one element, waiting as long as needed.
    pub fn recv(&mut self) -> Result<T> {
        self.recv_deadline(None)
    }

    /// Receives one element, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Receives one element into `out`, waiting until `deadline` (`None`: forever).
    pub fn recv_into(&mut self, out: &mut T, deadline: Option<Instant>) -> Result<()> {
        loop {
            if self.try_recv_into(out)? {
                return Ok(());
            }
            self.wait_for_data(deadline)?;
        }
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T> {
        let mut v = T::zeroed();
        self.recv_into(&mut v, deadline)?;
        Ok(v)
    }

    /// Waits until at least one element is readable (or the deadline passes).
    pub fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<()> {
        let idx = &mut self.idx;
        self.end.park(Word::ConsumerWaiting, deadline, |end| {
            Ok(idx.available(end, 1)? > 0)
        })
    }
}

impl<T: Pod> Sender<T> {
    /// Checks that the shared header still holds what it held at attach time.
    pub fn check_header(&self) -> Result<()> {
        self.end.header_intact()
    }

    /// Free elements right now (reads the shared tail; validates it).
    pub fn room(&mut self) -> Result<usize> {
        self.end.check()?;
        match self.idx.free(&self.end, self.end.hdr.capacity) {
            Ok(f) => Ok(f as usize),
            Err(e) => self.end.fail(e),
        }
    }

    /// For a wait on several rings at once: says "the sender waits for room", then
    /// re-checks. Returns true if there is room already. Call [`Sender::disarm`]
    /// after the wait, whatever it returned.
    pub(crate) fn arm(&mut self) -> Result<bool> {
        index::announce_wait(&self.end, Word::ProducerWaiting);
        Ok(self.room()? > 0)
    }

    /// Ends a wait begun with [`Sender::arm`].
    pub(crate) fn disarm(&self) {
        index::end_wait(&self.end, Word::ProducerWaiting);
    }

    /// The doorbell, to poll alongside other fds.
    pub(crate) fn bell(&self) -> &Doorbell {
        &self.end.bell
    }

    /// Marks the ring closed for the receiver ([`Receiver::sender_closed`]). Release:
    /// whatever the sender does after this (e.g. reuse memory that descriptors in the
    /// ring name) is ordered after the receiver can see the mark.
    pub(crate) fn mark_closed(&self) {
        self.end.closed_word().store(1, Ordering::Release);
    }
}

impl<T: Pod> Receiver<T> {
    /// Whether the sender marked the ring closed (a value the sender controls: it
    /// only ever makes the receiver stop early).
    pub(crate) fn sender_closed(&self) -> bool {
        self.end.closed_word().load(Ordering::Acquire) != 0
    }
    /// Readable elements right now (reads the shared head; validates it).
    pub fn ready(&mut self) -> Result<usize> {
        self.end.check()?;
        match self.idx.available(&self.end, self.end.hdr.capacity) {
            Ok(a) => Ok(a as usize),
            Err(e) => self.end.fail(e),
        }
    }

    /// For a wait on several rings at once: says "the receiver waits for data", then
    /// re-checks. Returns true if there is data already. Call [`Receiver::disarm`]
    /// after the wait, whatever it returned.
    pub(crate) fn arm(&mut self) -> Result<bool> {
        index::announce_wait(&self.end, Word::ConsumerWaiting);
        Ok(self.ready()? > 0)
    }

    /// Ends a wait begun with [`Receiver::arm`].
    pub(crate) fn disarm(&self) {
        index::end_wait(&self.end, Word::ConsumerWaiting);
    }

    /// The doorbell, to poll alongside other fds.
    pub(crate) fn bell(&self) -> &Doorbell {
        &self.end.bell
    }
}
