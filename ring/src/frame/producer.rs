//! The producer end of the frame channel.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::arena::ProducerArena;
use crate::channel::{Receiver, Sender};
use crate::desc::{FrameDesc, META_BYTES, Release};
use crate::doorbell::{Waker, poll_until, pollfd};
use crate::error::{Error, Result};
use crate::ledger::{ConsumerId, Ledger, SlotRef};
use crate::listen::{PeerCred, SeqpacketListener, check_allowed, peer_cred, set_nonblocking};
use crate::wire::{MAX_SIDE_PAYLOAD, Msg, PROTOCOL_VERSION};

use super::outbox::Outbox;
use super::{Spin, recv_msg, say_goodbye, send_msg};

/// What the producer does when a consumer cannot take the next frame (its frame ring
/// is full, or it holds its share of slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for that consumer up to [`ProducerConfig::block_timeout`], then cut it off.
    #[default]
    Block,
    /// Skip the frame for that consumer alone (counted in its `drops`); the next
    /// frame it gets says how many it missed.
    Drop,
}

/// How a [`Producer`] serves its consumers.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Slots per arena (each arena holds this many frames). Default 8.
    pub slots: u32,
    /// Capacity of each consumer's frame ring (a power of two). Default 64.
    pub frame_ring: u32,
    /// Consumers served at once; more are refused with a goodbye naming the limit.
    /// Default 16.
    pub max_consumers: usize,
    /// Default policy for a consumer that cannot keep up (per consumer:
    /// [`Producer::set_policy`]). Default [`Policy::Block`].
    pub policy: Policy,
    /// How long the producer waits for one slow consumer ([`Policy::Block`]), for a
    /// free slot, or for a consumer's socket to take a message, before cutting the
    /// consumer off. Default 1 s.
    pub block_timeout: Duration,
    /// Most slots one consumer may hold (frames queued to it plus frames it has not
    /// released); beyond that it counts as slow. `None`: half the slots (at least 1).
    pub max_held: Option<u32>,
    /// A consumer that holds any slot longer than this is cut off. `None` (default):
    /// no lease, since a paused consumer legitimately holds its last frame.
    pub lease: Option<Duration>,
    /// File mode of the socket ([`Producer::bind`]). Default `0o600`.
    pub socket_mode: u32,
    /// If not empty, only these uids may connect (checked with `SO_PEERCRED`).
    pub allowed_uids: Vec<u32>,
    /// How long a new connection has to say hello. Default 2 s.
    pub handshake_timeout: Duration,
    /// Most bytes of messages (side messages, arena announcements, the welcome and
    /// sticky replay) that may wait for one consumer whose socket is full; one more
    /// cuts it off. The producer never waits on a consumer's socket, and a consumer
    /// with messages waiting takes no frame until they are sent (so under
    /// [`Policy::Drop`] it misses frames, and under [`Policy::Block`] it is waited
    /// for like a consumer whose ring is full). Default 1 MiB.
    pub max_queued: usize,
    /// How long a publish or an acquire that has to wait for a consumer (to take a
    /// frame or release a slot) polls before it sleeps on that consumer's doorbell
    /// (0: sleep at once). A consumer that is busy, not stuck, usually catches up
    /// within microseconds; sleeping instead costs a doorbell write on its side and
    /// a wake-up here, tens of microseconds on a loaded machine. A [`Waker`] is
    /// heard once the poll is over. Default 20 µs.
    pub spin: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            slots: 8,
            frame_ring: 64,
            max_consumers: 16,
            policy: Policy::Block,
            block_timeout: Duration::from_secs(1),
            max_held: None,
            lease: None,
            socket_mode: 0o600,
            allowed_uids: Vec::new(),
            handshake_timeout: Duration::from_secs(2),
            max_queued: 1 << 20,
            spin: crate::channel::DEFAULT_SPIN,
        }
    }
}

impl ProducerConfig {
    fn check(&self) -> Result<()> {
        if self.slots == 0 || self.slots > 4096 {
            return Err(Error::Invalid(format!(
                "slots {} is not in 1..=4096",
                self.slots
            )));
        }
        if !self.frame_ring.is_power_of_two() || self.frame_ring < 2 || self.frame_ring > 1 << 16 {
            return Err(Error::Invalid(format!(
                "frame ring {} is not a power of two in 2..=65536",
                self.frame_ring
            )));
        }
        if self.max_consumers == 0 {
            return Err(Error::Invalid("max consumers is 0".into()));
        }
        if self.socket_mode & !0o777 != 0 {
            return Err(Error::Invalid(format!(
                "socket mode {:o} has bits outside 0o777",
                self.socket_mode
            )));
        }
        Ok(())
    }

    fn max_held(&self) -> usize {
        self.max_held.unwrap_or(self.slots / 2).max(1) as usize
    }

    fn release_ring(&self) -> u32 {
        (self.slots * 2).next_power_of_two().max(16)
    }
}

/// Counters of one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The producer's id for it.
    pub id: u32,
    /// Its process id, as the kernel recorded it at connect time.
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
    /// Frames sent to it.
    pub frames: u64,
    /// Payload bytes sent to it.
    pub bytes: u64,
    /// Frames dropped for it ([`Policy::Drop`]).
    pub drops: u64,
    /// Slots it holds now.
    pub held: usize,
    /// Bytes of messages waiting for room in its socket (see
    /// [`ProducerConfig::max_queued`]).
    pub queued: usize,
    /// Its policy.
    pub policy: Policy,
}

/// A snapshot of a producer's counters.
#[derive(Clone, Debug, Default)]
pub struct ProducerStats {
    /// Frames published.
    pub frames: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Consumers connected now, with their counters.
    pub consumers: Vec<ConsumerStats>,
    /// Consumers that ever joined.
    pub joined: u64,
    /// Consumers that left (goodbye or hang-up).
    pub left: u64,
    /// Consumers cut off (protocol violation, too slow, lease expired).
    pub cut_off: u64,
    /// Connections refused (uid not allowed, too many consumers, bad hello).
    pub refused: u64,
    /// Live arenas.
    pub arenas: usize,
    /// Bytes per slot of the current arena (0 before the first frame).
    pub slot_size: usize,
    /// Free slots in the current arena.
    pub free_slots: usize,
}

/// Something that happened to a consumer, for the producer's log
/// ([`Producer::take_events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// A consumer completed its hand-off.
    Joined {
        /// Its id.
        id: u32,
        /// Its credentials.
        cred: PeerCred,
    },
    /// A connection was refused before it became a consumer.
    Refused {
        /// Its credentials, when the kernel had them.
        cred: Option<PeerCred>,
        /// Why.
        reason: String,
    },
    /// A consumer said goodbye or hung up; everything it held came back.
    Left {
        /// Its id.
        id: u32,
        /// What it said, or how it went.
        reason: String,
    },
    /// A consumer was cut off; everything it held came back.
    CutOff {
        /// Its id.
        id: u32,
        /// The fault, e.g. "consumer 3 released slot 5 of arena 0 that it does not hold".
        reason: String,
    },
}

/// One connected consumer, as the producer sees it.
struct Conn {
    id: ConsumerId,
    cred: PeerCred,
    sock: Arc<OwnedFd>,
    frames: Sender<FrameDesc>,
    releases: Receiver<Release>,
    policy: Policy,
    sent: u64,
    bytes: u64,
    drops: u64,
    pending_dropped: u32,
    /// Messages (arenas, side messages) posted to it since its welcome (sent, or
    /// waiting in `outbox`).
    msgs: u64,
    /// What its socket has not taken yet.
    outbox: Outbox,
    /// Why it is to be cut off, when a message could not even be queued for it
    /// (found where it cannot be removed at once; see [`State::cut_off_doomed`]).
    doomed: Option<String>,
    /// Its two doorbells (frame taken, slot released), duplicated once so that a
    /// publish can sleep on them without the lock (and without a dup per wait).
    bells: Option<Arc<[OwnedFd; 2]>>,
}

enum Leave {
    Left,
    CutOff,
}

/// Why a consumer cannot take a frame.
#[derive(Clone, Copy, Debug)]
struct Congestion {
    ring_full: bool,
    share_full: bool,
    /// Messages wait for room in its socket: no frame may overtake them.
    socket_full: bool,
}

impl Congestion {
    fn any(&self) -> bool {
        self.ring_full || self.share_full || self.socket_full
    }
}

struct State {
    ledger: Ledger,
    arenas: BTreeMap<u32, Arc<ProducerArena>>,
    current: Option<u32>,
    next_arena: u32,
    conns: Vec<Conn>,
    next_id: ConsumerId,
    sticky: BTreeMap<u32, Vec<u8>>,
    events: VecDeque<ConsumerEvent>,
    stats: ProducerStats,
}

const MAX_EVENTS: usize = 256;

struct Inner {
    cfg: ProducerConfig,
    state: Mutex<State>,
    changed: Condvar,
    /// Interrupts a blocked `acquire`, `publish` or `wait_for_consumers`.
    waker: Waker,
    /// Wakes the service thread.
    svc: Waker,
    stop: AtomicBool,
    incoming: Mutex<Vec<OwnedFd>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent enough to keep
        // serving (every update is a few field writes); do not propagate poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The producer end of a frame channel. Cheap to share between threads (`&self`
/// methods); dropping it says goodbye to every consumer and removes its socket.
pub struct Producer {
    inner: Arc<Inner>,
    service: Option<JoinHandle<()>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("path", &self.path)
            .field("consumers", &self.consumer_count())
            .finish()
    }
}

/// A slot handed out for writing. Fill it through [`WriteSlot::as_mut_ptr`] or
/// [`WriteSlot::write`], then [`WriteSlot::publish`] it; dropping it unpublished
/// gives it back.
pub struct WriteSlot {
    inner: Arc<Inner>,
    arena: Arc<ProducerArena>,
    slot: SlotRef,
    done: bool,
}

impl std::fmt::Debug for WriteSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSlot")
            .field("slot", &self.slot)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Producer {
    /// A producer that listens on `path` (mode and allowed uids from `cfg`). A stale
    /// socket file left by a crashed producer is replaced; a live one is never stolen.
    pub fn bind(path: impl AsRef<Path>, cfg: ProducerConfig) -> Result<Producer> {
        cfg.check()?;
        let listener = SeqpacketListener::bind(path.as_ref(), cfg.socket_mode)?;
        set_nonblocking(listener.as_fd())?;
        let path = listener.path().to_path_buf();
        let mut p = Producer::start(cfg, Some(listener))?;
        p.path = Some(path);
        Ok(p)
    }

    /// A producer with no socket path: hand it connected sockets with
    /// [`Producer::add_connection`].
    pub fn new(cfg: ProducerConfig) -> Result<Producer> {
        cfg.check()?;
        Producer::start(cfg, None)
    }

    fn start(cfg: ProducerConfig, listener: Option<SeqpacketListener>) -> Result<Producer> {
        let inner = Arc::new(Inner {
            cfg,
            state: Mutex::new(State {
                ledger: {
                    let mut l = Ledger::new();
                    l.add_consumer(LOCAL_HOLDER);
                    l
                },
                arenas: BTreeMap::new(),
                current: None,
                next_arena: 0,
                conns: Vec::new(),
                next_id: 1,
                sticky: BTreeMap::new(),
                events: VecDeque::new(),
                stats: ProducerStats::default(),
            }),
            changed: Condvar::new(),
            waker: Waker::new()?,
            svc: Waker::new()?,
            stop: AtomicBool::new(false),
            incoming: Mutex::new(Vec::new()),
        });
        let i2 = inner.clone();
        let service = std::thread::Builder::new()
            .name("shmring-producer".into())
            .spawn(move || service(i2, listener))
            .map_err(|e| Error::Os {
                op: "spawn",
                source: e,
            })?;
        Ok(Producer {
            inner,
            service: Some(service),
            path: None,
        })
    }

    /// Serves a consumer on an already connected `SOCK_SEQPACKET` socket (e.g. one
    /// end of a socket pair whose other end went to a sandboxed process).
    pub fn add_connection(&self, sock: OwnedFd) -> Result<()> {
        crate::fdpass::check_unix_socket(sock.as_fd(), libc::SOCK_SEQPACKET, "connection")?;
        set_nonblocking(sock.as_fd())?;
        self.inner
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sock);
        self.inner.svc.wake();
        Ok(())
    }

    /// The socket path, for a producer made with [`Producer::bind`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.cfg
    }

    /// A handle that interrupts a blocked [`Producer::acquire`], [`WriteSlot::publish`]
    /// or [`Producer::wait_for_consumers`] from another thread ([`Error::Interrupted`]).
    pub fn waker(&self) -> Waker {
        self.inner.waker.clone()
    }

    /// Consumers connected now.
    pub fn consumer_count(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Waits until at least `n` consumers are connected, up to `timeout` (`None`:
    /// forever). [`Error::Timeout`] or [`Error::Interrupted`] otherwise.
    pub fn wait_for_consumers(&self, n: usize, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.lock();
        loop {
            if st.conns.len() >= n {
                return Ok(());
            }
            if self.inner.waker.take() {
                return Err(Error::Interrupted);
            }
            let step = Duration::from_millis(20);
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout);
                    }
                    (d - now).min(step)
                }
                None => step,
            };
            st = self
                .inner
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sets the policy of consumer `id`. False if there is no such consumer.
    pub fn set_policy(&self, id: u32, policy: Policy) -> bool {
        let mut st = self.inner.lock();
        match st.conns.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.policy = policy;
                true
            }
            None => false,
        }
    }

    /// A snapshot of the counters, with one entry per connected consumer.
    pub fn stats(&self) -> ProducerStats {
        let mut st = self.inner.lock();
        st.drain_releases(&self.inner);
        let mut s = st.stats.clone();
        s.consumers = st
            .conns
            .iter()
            .map(|c| ConsumerStats {
                id: c.id,
                pid: c.cred.pid,
                uid: c.cred.uid,
                frames: c.sent,
                bytes: c.bytes,
                drops: c.drops,
                held: st.ledger.held_by(c.id),
                queued: c.outbox.bytes(),
                policy: c.policy,
            })
            .collect();
        s.arenas = st.arenas.len();
        if let Some(cur) = st.current {
            s.slot_size = st.arenas[&cur].slot_size();
            s.free_slots = st.ledger.free_slots(cur);
        }
        s
    }

    /// Takes the consumer events logged since the last call (the newest
    /// 256 are kept).
    pub fn take_events(&self) -> Vec<ConsumerEvent> {
        self.inner.lock().events.drain(..).collect()
    }

    /// Hands out a slot of at least `len` bytes for writing, waiting for one to come
    /// back if all are held (see [`ProducerConfig::block_timeout`]).
    ///
    /// When `len` exceeds the current arena's slot size, a new arena with bigger slots
    /// is added (and announced to every consumer); the old one is dropped once its
    /// last slot comes back. If all slots stay held past the block timeout, the
    /// consumer holding the most is cut off. [`Error::Timeout`] means the caller
    /// itself holds every slot unpublished.
    pub fn acquire(&self, len: usize) -> Result<WriteSlot> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.block_timeout;
        let mut spin = Spin::new(inner.cfg.spin);
        let mut st = inner.lock();
        loop {
            st.drain_releases(inner);
            let aid = st.arena_for(inner, len)?;
            if let Some(slot) = st.ledger.acquire(aid) {
                return Ok(WriteSlot {
                    inner: inner.clone(),
                    arena: st.arenas[&aid].clone(),
                    slot,
                    done: false,
                });
            }
            // A consumer at work releases within microseconds: poll for a while
            // (without the lock) before sleeping on the doorbells. Wakers are
            // looked at once the poll is over (reading one is a system call).
            if spin.keep_spinning() {
                drop(st);
                spin.pause();
                st = inner.lock();
                continue;
            }
            if inner.waker.take() {
                return Err(Error::Interrupted);
            }
            if Instant::now() >= deadline {
                let worst = (0..st.conns.len())
                    .map(|i| (st.ledger.held_by(st.conns[i].id), i))
                    .max();
                match worst {
                    Some((n, i)) if n > 0 => {
                        let reason = format!(
                            "consumer {} held {n} slots for {:?} while the producer had none free",
                            st.conns[i].id, inner.cfg.block_timeout
                        );
                        st.remove(inner, i, Leave::CutOff, reason);
                        continue;
                    }
                    _ => return Err(Error::Timeout),
                }
            }
            // Sleep until some consumer releases something, without holding the lock
            // (another thread may be dropping a WriteSlot). The waiting flags are
            // shared by concurrent waiters, so the sleep is capped: a cleared flag
            // costs at most one step, never a lost wake-up.
            let mut bells = Vec::with_capacity(st.conns.len());
            let mut ready = false;
            for c in &mut st.conns {
                ready |= c.releases.arm().unwrap_or(true);
                if let Ok(fd) = c.releases.bell().as_fd().try_clone_to_owned() {
                    bells.push(fd);
                }
            }
            drop(st);
            if !ready {
                let mut fds: Vec<libc::pollfd> = bells
                    .iter()
                    .map(|b| pollfd(b.as_fd(), libc::POLLIN))
                    .collect();
                fds.push(pollfd(inner.waker.as_fd(), libc::POLLIN));
                let until = deadline.min(Instant::now() + Duration::from_millis(10));
                poll_until(&mut fds, Some(until))?;
            }
            st = inner.lock();
            for c in &mut st.conns {
                c.releases.disarm();
                c.releases.bell().drain();
            }
        }
    }

    /// Sends an opaque side message to every consumer, ordered with frames: each
    /// consumer receives it after every frame published before this call and before
    /// every frame published after. A non-zero `sticky_key` makes it sticky: the
    /// latest message of each key is replayed (in ascending key order) to consumers
    /// that join later, before their first frame.
    ///
    /// Never waits on a consumer: one whose socket is full gets the message queued
    /// (see [`ProducerConfig::max_queued`]); one whose queue overflows is cut off.
    pub fn send_side(&self, payload: &[u8], sticky_key: u32) -> Result<()> {
        if payload.len() > MAX_SIDE_PAYLOAD {
            return Err(Error::Invalid(format!(
                "side message of {} bytes exceeds {MAX_SIDE_PAYLOAD}",
                payload.len()
            )));
        }
        let inner = &self.inner;
        let mut st = inner.lock();
        if sticky_key != 0 {
            st.sticky.insert(sticky_key, payload.to_vec());
        }
        for i in 0..st.conns.len() {
            let msg = Msg::Side {
                before_frame: st.conns[i].sent,
                sticky_key,
                payload: payload.to_vec(),
            };
            st.post(inner, i, &msg, &[]);
        }
        st.cut_off_doomed(inner);
        Ok(())
    }

    /// Forgets the sticky message of `key` (late joiners no longer get it). Returns
    /// whether there was one.
    pub fn forget_sticky(&self, key: u32) -> bool {
        self.inner.lock().sticky.remove(&key).is_some()
    }

    /// Forgets every sticky message.
    pub fn forget_all_sticky(&self) {
        self.inner.lock().sticky.clear();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.svc.wake();
        if let Some(h) = self.service.take() {
            let _ = h.join();
        }
        let mut st = self.inner.lock();
        // What waits for each consumer, then the goodbye: 200 ms for all of them.
        let deadline = Instant::now() + Duration::from_millis(200);
        for mut c in st.conns.drain(..) {
            while let Ok(false) = c.outbox.flush(c.sock.as_fd()) {
                let mut p = [pollfd(c.sock.as_fd(), libc::POLLOUT)];
                if !poll_until(&mut p, Some(deadline)).unwrap_or(false) {
                    break;
                }
            }
            if !c.outbox.is_empty() {
                continue;
            }
            let _ = send_msg(
                c.sock.as_fd(),
                &Msg::Goodbye {
                    code: 0,
                    reason: "producer stopped".into(),
                },
                &[],
                Some(deadline),
            );
        }
    }
}

impl WriteSlot {
    /// Where to write: `capacity()` bytes of shared memory. Write through the pointer
    /// (never make a Rust reference of it that outlives the slot); consumers read it
    /// only after [`WriteSlot::publish`].
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.arena.slot_ptr(self.slot.slot)
    }

    /// Bytes the slot holds.
    pub fn capacity(&self) -> usize {
        self.arena.slot_size()
    }

    /// Which slot this is.
    pub fn slot(&self) -> SlotRef {
        self.slot
    }

    /// Copies `bytes` into the slot at `offset`.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|e| e > self.capacity())
        {
            return Err(Error::Invalid(format!(
                "{} bytes at offset {offset} overflow a slot of {}",
                bytes.len(),
                self.capacity()
            )));
        }
        // SAFETY: the range was checked to lie inside this slot; the slot is ours
        // (the ledger handed it out for writing and no consumer holds it), and
        // `bytes` is our own memory, so the two cannot overlap. A consumer that
        // reads the slot anyway (a hostile one) sees bytes; nothing reads it back.
        // Large frames go with streaming stores (`copy`), fenced before publish.
        unsafe { crate::copy::to_shared(self.as_mut_ptr().add(offset), bytes) };
        Ok(())
    }

    /// Publishes the slot's first `len` bytes with `meta` (at most
    /// [`META_BYTES`] bytes) to every consumer that can take it. Returns how many
    /// consumers it went to.
    pub fn publish(self, len: usize, meta: &[u8]) -> Result<usize> {
        self.publish_range(0, len, meta)
    }

    /// Publishes `len` bytes at `offset` in the slot.
    pub fn publish_range(mut self, offset: usize, len: usize, meta: &[u8]) -> Result<usize> {
        self.publish_inner(offset, len, meta, false)
    }

    /// Publishes like [`WriteSlot::publish_range`] and keeps a local reference: the
    /// slot is not reused while the returned [`HeldSlot`] lives, whatever the
    /// consumers do. For memory this process still reads after publishing (e.g. a
    /// GStreamer buffer that stays referenced): it must not be written any more.
    pub fn publish_held(
        mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
    ) -> Result<(usize, HeldSlot)> {
        let n = self.publish_inner(offset, len, meta, true)?;
        Ok((n, HeldSlot { slot: Some(self) }))
    }

    /// Publishes; from here on the slot is the ledger's (`done`), whatever happens.
    fn publish_inner(
        &mut self,
        offset: usize,
        len: usize,
        meta: &[u8],
        keep: bool,
    ) -> Result<usize> {
        if offset.checked_add(len).is_none_or(|e| e > self.capacity()) {
            return Err(Error::Invalid(format!(
                "frame of {len} bytes at offset {offset} overflows a slot of {}",
                self.capacity()
            )));
        }
        if meta.len() > META_BYTES {
            return Err(Error::Invalid(format!(
                "metadata of {} bytes exceeds {META_BYTES}",
                meta.len()
            )));
        }
        self.done = true;
        let inner = &*self.inner;
        publish(
            inner,
            inner.lock(),
            self.slot,
            offset as u32,
            len as u32,
            meta,
            keep,
        )
    }
}

/// Publishes the frame in `slot`: decides which consumers take it (a congested
/// consumer is skipped under `Policy::Drop`, waited for under `Policy::Block`, and
/// cut off after the block timeout), then sends it to them all under one hold of
/// the lock. Waits happen *without* the lock, so that joins, releases, `stats` and
/// everything else go on while a slow consumer is waited for; after each wait
/// every consumer is looked at again.
fn publish<'a>(
    inner: &'a Inner,
    mut st: MutexGuard<'a, State>,
    slot: SlotRef,
    offset: u32,
    len: u32,
    meta: &[u8],
    keep: bool,
) -> Result<usize> {
    // Block deadlines and drops of this frame, by consumer id, across passes.
    let mut deadlines: Vec<(ConsumerId, Instant)> = Vec::new();
    let mut dropped: Vec<ConsumerId> = Vec::new();
    let mut spin = Spin::new(inner.cfg.spin);
    'pass: loop {
        st.drain_releases(inner);
        let mut targets = Vec::with_capacity(st.conns.len());
        let mut i = 0;
        while i < st.conns.len() {
            let id = st.conns[i].id;
            if dropped.contains(&id) {
                i += 1;
                continue;
            }
            let why = match st.congestion(inner, i) {
                Ok(c) if !c.any() => {
                    targets.push(id);
                    i += 1;
                    continue;
                }
                Ok(c) => c,
                Err(reason) => {
                    st.remove(inner, i, Leave::CutOff, reason);
                    continue;
                }
            };
            if st.conns[i].policy == Policy::Drop {
                let c = &mut st.conns[i];
                c.drops += 1;
                c.pending_dropped = c.pending_dropped.saturating_add(1);
                dropped.push(id);
                i += 1;
                continue;
            }
            let deadline = match deadlines.iter().find(|(c, _)| *c == id) {
                Some(&(_, d)) => d,
                None => {
                    let d = Instant::now() + inner.cfg.block_timeout;
                    deadlines.push((id, d));
                    d
                }
            };
            if Instant::now() >= deadline {
                let c = &st.conns[i];
                let reason = format!(
                    "consumer {id} took no frame for {:?} (ring {}/{} used, {} slots held)",
                    inner.cfg.block_timeout,
                    c.frames.in_flight(),
                    c.frames.capacity(),
                    st.ledger.held_by(id)
                );
                st.remove(inner, i, Leave::CutOff, reason);
                continue;
            }
            // A consumer at work takes frames and releases slots within
            // microseconds: poll for a while (without the lock, so that it and
            // everything else go on) before sleeping on its doorbells, where a
            // waker is heard again.
            if spin.keep_spinning() {
                drop(st);
                spin.pause();
                st = inner.lock();
                continue 'pass;
            }
            let sock = why.socket_full.then(|| st.conns[i].sock.clone());
            let bells = match st.arm_wait(i, why) {
                Ok(Some(bells)) => bells,
                Ok(None) => {
                    st.disarm_wait(id);
                    continue 'pass;
                }
                Err(e) => {
                    st.disarm_wait(id);
                    st.remove(inner, i, Leave::CutOff, format!("consumer {id}: {e}"));
                    continue;
                }
            };
            drop(st);
            let woke = wait_bells(inner, &bells, sock.as_deref(), deadline);
            st = inner.lock();
            st.disarm_wait(id);
            match woke {
                Ok(()) => {}
                Err(Error::Interrupted) => {
                    st.ledger.abandon(slot);
                    st.collect_arenas(inner);
                    return Err(Error::Interrupted);
                }
                Err(e) => {
                    if let Some(j) = st.conns.iter().position(|c| c.id == id) {
                        st.remove(inner, j, Leave::CutOff, format!("consumer {id}: {e}"));
                    }
                }
            }
            continue 'pass;
        }
        return st.send_frame(inner, slot, targets, offset, len, meta, keep);
    }
}

/// Sleeps on a consumer's two doorbells (frame taken, slot released) until one
/// rings, its socket `sock` has room (when given), `deadline` (capped at 50 ms: the
/// arm flags are shared with other waiters), or a wake-up. A hung-up bell is
/// [`Error::PeerGone`].
fn wait_bells(
    inner: &Inner,
    bells: &Bells,
    sock: Option<&OwnedFd>,
    deadline: Instant,
) -> Result<()> {
    // poll() skips a negative fd: a missing bell is never ready.
    let bell = |k: usize| libc::pollfd {
        fd: bells.as_ref().map_or(-1, |b| b[k].as_raw_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    // Room in its socket, when messages wait for it.
    let room = libc::pollfd {
        fd: sock.map_or(-1, |s| s.as_raw_fd()),
        events: libc::POLLOUT,
        revents: 0,
    };
    let mut fds = [
        bell(0),
        bell(1),
        pollfd(inner.waker.as_fd(), libc::POLLIN),
        room,
    ];
    let until = deadline.min(Instant::now() + Duration::from_millis(50));
    poll_until(&mut fds, Some(until))?;
    if fds[2].revents != 0 && inner.waker.take() {
        return Err(Error::Interrupted);
    }
    let hup = libc::POLLHUP | libc::POLLERR;
    if (fds[0].revents | fds[1].revents | fds[3].revents) & hup != 0 {
        return Err(Error::PeerGone);
    }
    Ok(())
}

/// A published slot this process keeps a reference to ([`WriteSlot::publish_held`]):
/// it stays mapped and is not handed out again until this is dropped.
pub struct HeldSlot {
    /// The published slot (`done`: its own drop gives nothing back); taken out by
    /// [`HeldSlot::try_reclaim`].
    slot: Option<WriteSlot>,
}

impl HeldSlot {
    fn held(&self) -> &WriteSlot {
        self.slot
            .as_ref()
            .expect("a HeldSlot holds its slot until consumed")
    }

    /// The slot.
    pub fn slot(&self) -> SlotRef {
        self.held().slot
    }

    /// Takes the slot back for writing, without a new acquire, when every consumer
    /// it went to has released it (or has gone) and its arena is still current:
    /// the same memory, at the same address, writable again. Otherwise the slot
    /// stays held and comes back unchanged. Never waits.
    ///
    /// For a writer that keeps its buffers bound to slots (a buffer pool reusing
    /// its buffers): cheaper than dropping this and acquiring anew.
    pub fn try_reclaim(mut self) -> std::result::Result<WriteSlot, HeldSlot> {
        let ws = self.held();
        let mut st = ws.inner.lock();
        st.drain_releases(&ws.inner);
        let reclaimed = st.ledger.reclaim(LOCAL_HOLDER, ws.slot);
        drop(st);
        if !reclaimed {
            return Err(self);
        }
        let mut ws = self.slot.take().expect("checked above");
        ws.done = false;
        Ok(ws)
    }
}

impl std::fmt::Debug for HeldSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldSlot")
            .field("slot", &self.slot.as_ref().map(|s| s.slot))
            .finish()
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let Some(ws) = &self.slot else {
            return;
        };
        let mut st = ws.inner.lock();
        // The local holder always holds what it kept; an error would be a bug here.
        let _ = st.ledger.release(LOCAL_HOLDER, ws.slot);
        st.collect_arenas(&ws.inner);
    }
}

/// The ledger id of this process's own references ([`HeldSlot`]); consumers are
/// numbered from 1.
const LOCAL_HOLDER: ConsumerId = 0;

impl Drop for WriteSlot {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.inner.lock();
            st.ledger.abandon(self.slot);
            st.collect_arenas(&self.inner);
        }
    }
}

impl State {
    fn log(&mut self, e: ConsumerEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Ends consumer `i`'s connection and takes back everything it held.
    fn remove(&mut self, inner: &Inner, i: usize, how: Leave, reason: String) {
        let c = self.conns.remove(i);
        if let Leave::CutOff = how {
            // Tell it why, then close its frame ring *before* its slots are taken
            // back: a consumer that reads a descriptor and then sees the mark
            // delivers nothing from a slot that may be rewritten.
            say_goodbye(&*c.sock, 1, &reason);
            c.frames.mark_closed();
        }
        self.ledger.remove_consumer(c.id);
        match how {
            Leave::Left => {
                self.stats.left += 1;
                self.log(ConsumerEvent::Left { id: c.id, reason });
            }
            Leave::CutOff => {
                self.stats.cut_off += 1;
                self.log(ConsumerEvent::CutOff { id: c.id, reason });
            }
        }
        // Wake the service thread so it stops polling this socket.
        inner.svc.wake();
        inner.changed.notify_all();
        self.collect_arenas(inner);
    }

    /// Drops retired arenas whose last slot came back, telling the consumers.
    fn collect_arenas(&mut self, inner: &Inner) {
        for id in self.ledger.collect_retired() {
            self.arenas.remove(&id);
            // Queued like any message; a consumer whose queue overflows is cut off
            // by the next publish or the service thread.
            for i in 0..self.conns.len() {
                self.post(inner, i, &Msg::DropArena { arena_id: id }, &[]);
            }
        }
    }

    /// Takes every release the consumers posted; a bogus one cuts its sender off.
    fn drain_releases(&mut self, inner: &Inner) {
        let mut i = 0;
        while i < self.conns.len() {
            match self.drain_one(i) {
                Ok(()) => i += 1,
                Err(e) => {
                    let reason = format!("consumer {}: {e}", self.conns[i].id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
            }
        }
        self.collect_arenas(inner);
    }

    fn drain_one(&mut self, i: usize) -> Result<()> {
        let mut buf = [Release { arena: 0, slot: 0 }; 64];
        loop {
            let c = &mut self.conns[i];
            let n = c.releases.try_recv_batch(&mut buf)?;
            for r in &buf[..n] {
                self.ledger.release(c.id, SlotRef::from(*r))?;
            }
            if n < buf.len() {
                return Ok(());
            }
        }
    }

    /// The current arena, replaced by a bigger one if `len` does not fit.
    fn arena_for(&mut self, inner: &Inner, len: usize) -> Result<u32> {
        if let Some(cur) = self.current {
            if self.arenas[&cur].slot_size() >= len {
                return Ok(cur);
            }
        }
        let arena = Arc::new(ProducerArena::create(len, inner.cfg.slots)?);
        let id = self.next_arena;
        self.next_arena = self.next_arena.wrapping_add(1);
        self.ledger.add_arena(id, arena.slots());
        self.arenas.insert(id, arena.clone());
        if let Some(old) = self.current.replace(id) {
            self.ledger.retire(old);
        }
        let announce = arena_msg(id, &arena);
        for i in 0..self.conns.len() {
            self.post(inner, i, &announce, &[arena.fd()]);
        }
        self.cut_off_doomed(inner);
        self.collect_arenas(inner);
        Ok(id)
    }

    /// Posts `msg` to consumer `i` (see [`Outbox`]): sent now, or queued. One that
    /// cannot even have it queued is doomed, to be cut off by [`Self::cut_off_doomed`]
    /// (here, or by the next publish or the service thread).
    fn post(&mut self, inner: &Inner, i: usize, msg: &Msg, fds: &[BorrowedFd<'_>]) {
        let c = &mut self.conns[i];
        if c.doomed.is_some() {
            return;
        }
        match c
            .outbox
            .post(c.sock.as_fd(), msg, fds, inner.cfg.max_queued)
        {
            Ok(queued) => {
                c.msgs += 1;
                if queued {
                    // The service thread sends it once the socket has room.
                    inner.svc.wake();
                }
            }
            Err(reason) => {
                c.doomed = Some(format!("consumer {}: {reason}", c.id));
                inner.svc.wake();
            }
        }
    }

    /// Cuts off every consumer a message could not be queued for.
    fn cut_off_doomed(&mut self, inner: &Inner) {
        while let Some(i) = self.conns.iter().position(|c| c.doomed.is_some()) {
            let reason = self.conns[i].doomed.take().expect("doomed");
            self.remove(inner, i, Leave::CutOff, reason);
        }
    }

    /// Sends what waits for consumer `i`; a consumer gone meanwhile is doomed.
    fn flush(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        if c.doomed.is_some() {
            return false;
        }
        match c.outbox.flush(c.sock.as_fd()) {
            Ok(empty) => empty,
            Err(reason) => {
                c.doomed = Some(format!("consumer {}: {reason}", c.id));
                false
            }
        }
    }

    /// What keeps consumer `i` from taking a frame now: a full frame ring, its full
    /// share of slots, messages its socket has not taken yet, or nothing. An error
    /// is the reason to cut it off.
    fn congestion(&mut self, inner: &Inner, i: usize) -> std::result::Result<Congestion, String> {
        let id = self.conns[i].id;
        let fault = |e: Error| format!("consumer {id}: {e}");
        self.drain_one(i).map_err(fault)?;
        let socket_full = !self.flush(i);
        if let Some(reason) = self.conns[i].doomed.take() {
            return Err(reason);
        }
        let held = self.ledger.held_by(id);
        Ok(Congestion {
            ring_full: self.conns[i].frames.room().map_err(fault)? == 0,
            share_full: held >= inner.cfg.max_held(),
            socket_full,
        })
    }

    /// Sends the frame in `slot` to `targets` (every consumer ready for it, as just
    /// checked under this same hold of the lock).
    #[allow(clippy::too_many_arguments)]
    fn send_frame(
        &mut self,
        inner: &Inner,
        slot: SlotRef,
        mut targets: Vec<ConsumerId>,
        offset: u32,
        len: u32,
        meta: &[u8],
        keep: bool,
    ) -> Result<usize> {
        if keep {
            targets.push(LOCAL_HOLDER);
        }
        self.ledger.publish(slot, &targets);
        if keep {
            targets.pop();
        }
        let mut d = FrameDesc {
            arena: slot.arena,
            slot: slot.slot,
            offset,
            len,
            meta_len: meta.len() as u16,
            ..bytemuck::Zeroable::zeroed()
        };
        d.meta[..meta.len()].copy_from_slice(meta);
        let mut sent = 0;
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            if !targets.contains(&c.id) {
                i += 1;
                continue;
            }
            d.seq = c.sent;
            d.dropped = c.pending_dropped;
            d.msgs = c.msgs;
            match c.frames.try_send(&d) {
                Ok(true) => {
                    c.sent += 1;
                    c.bytes += len as u64;
                    c.pending_dropped = 0;
                    sent += 1;
                    i += 1;
                }
                Ok(false) => {
                    let reason = format!("consumer {}: frame ring full after room was seen", c.id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
                Err(e) => {
                    let reason = format!("consumer {}: {e}", c.id);
                    self.remove(inner, i, Leave::CutOff, reason);
                }
            }
        }
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        Ok(sent)
    }

    /// Arms consumer `i`'s doorbells for what congests it. `None`: it may have
    /// moved already (look again); otherwise the bells to sleep on.
    ///
    /// Only what blocks it is armed: room in the frame ring when that is full,
    /// releases when it holds its share (a consumer rings only an armed bell, so
    /// arming the other would not end the sleep any sooner).
    fn arm_wait(&mut self, i: usize, why: Congestion) -> Result<Option<Bells>> {
        let c = &mut self.conns[i];
        let a = if why.ring_full {
            c.frames.arm()
        } else {
            Ok(false)
        };
        let b = if why.share_full {
            c.releases.arm()
        } else {
            Ok(false)
        };
        match (a, b) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(true), _) | (_, Ok(true)) => Ok(None),
            // Without its duplicates (out of fds at its join) the capped sleep
            // still comes back.
            _ => Ok(Some(c.bells.clone())),
        }
    }

    /// Disarms and drains the doorbells of the consumer `id`, if still here.
    fn disarm_wait(&mut self, id: ConsumerId) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            c.frames.disarm();
            c.releases.disarm();
            c.frames.bell().drain();
            c.releases.bell().drain();
        }
    }

    /// Makes a consumer of a connection that said hello; on failure the socket
    /// comes back with the reason. Its welcome (with the control region), the
    /// current arena and the sticky messages are posted to it in that order, like
    /// everything else (see [`Outbox`]): a consumer that said hello and then reads
    /// nothing holds up no one.
    fn join(
        &mut self,
        inner: &Inner,
        sock: OwnedFd,
        cred: PeerCred,
    ) -> std::result::Result<(), (OwnedFd, Error)> {
        let cfg = &inner.cfg;
        if self.conns.len() >= cfg.max_consumers {
            let e = Error::Invalid(format!(
                "producer already serves {} consumers (its maximum)",
                cfg.max_consumers
            ));
            return Err((sock, e));
        }
        let rings = Sender::<FrameDesc>::create(cfg.frame_ring as usize).and_then(|(f, ffds)| {
            Receiver::<Release>::create(cfg.release_ring() as usize)
                .map(|(r, rfds)| (f, ffds, r, rfds))
        });
        let (frames, ffds, releases, rfds) = match rings {
            Ok(r) => r,
            Err(e) => return Err((sock, e)),
        };
        let welcome = Msg::Welcome {
            version: PROTOCOL_VERSION,
            consumer_id: self.next_id,
            frame_ring: cfg.frame_ring,
            release_ring: cfg.release_ring(),
            max_held: cfg.max_held() as u32,
        };
        let mut outbox = Outbox::default();
        let fds = [
            ffds.memfd.as_fd(),
            ffds.doorbell.as_fd(),
            rfds.memfd.as_fd(),
            rfds.doorbell.as_fd(),
        ];
        if let Err(reason) = outbox.post(sock.as_fd(), &welcome, &fds, cfg.max_queued) {
            return Err((sock, Error::Invalid(format!("cannot welcome it: {reason}"))));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.ledger.add_consumer(id);
        let dup = |b: &crate::Doorbell| b.as_fd().try_clone_to_owned().ok();
        let bells = dup(frames.bell())
            .zip(dup(releases.bell()))
            .map(|(f, r)| Arc::new([f, r]));
        self.conns.push(Conn {
            id,
            cred,
            sock: Arc::new(sock),
            frames,
            releases,
            policy: cfg.policy,
            sent: 0,
            bytes: 0,
            drops: 0,
            pending_dropped: 0,
            msgs: 0,
            outbox,
            doomed: None,
            bells,
        });
        if !self.conns[self.conns.len() - 1].outbox.is_empty() {
            inner.svc.wake();
        }
        let i = self.conns.len() - 1;
        if let Some(cur) = self.current {
            let arena = self.arenas[&cur].clone();
            self.post(inner, i, &arena_msg(cur, &arena), &[arena.fd()]);
        }
        let sticky: Vec<(u32, Vec<u8>)> =
            self.sticky.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (key, payload) in sticky {
            let m = Msg::Side {
                before_frame: 0,
                sticky_key: key,
                payload,
            };
            self.post(inner, i, &m, &[]);
        }
        self.stats.joined += 1;
        self.log(ConsumerEvent::Joined { id, cred });
        self.cut_off_doomed(inner);
        inner.changed.notify_all();
        Ok(())
    }
}

/// The announcement of `arena` (its fd goes with it).
fn arena_msg(id: u32, arena: &ProducerArena) -> Msg {
    Msg::Arena {
        arena_id: id,
        slot_size: arena.slot_size() as u32,
        slots: arena.slots(),
    }
}

/// A consumer's doorbells to sleep on without the lock ([`Conn::bells`]).
type Bells = Option<Arc<[OwnedFd; 2]>>;

/// How many connections may wait for their hello at once.
const MAX_PENDING: usize = 128;

/// Takes out the pending connection that has waited longest.
fn take_oldest(pending: &mut Vec<Pending>) -> Option<Pending> {
    let k = (0..pending.len()).min_by_key(|&k| pending[k].deadline)?;
    Some(pending.swap_remove(k))
}

/// Refuses the pending connection that has waited longest, if any (true).
fn refuse_oldest(inner: &Inner, pending: &mut Vec<Pending>, reason: &str) -> bool {
    let Some(p) = take_oldest(pending) else {
        return false;
    };
    refuse(inner, &p.sock, p.cred, reason.to_owned());
    true
}

/// Makes room in a full waiting room: refuses the *silent* pending connection that
/// has waited longest. Older ones whose hello arrived since the last poll (a flood
/// may admit many connections between two polls) are handed off on the way, so a
/// consumer that said hello is never refused for room, whatever the flood's pace.
fn make_room(inner: &Inner, pending: &mut Vec<Pending>, reason: &str) {
    while let Some(p) = take_oldest(pending) {
        // One non-blocking read: a hello joins (or is refused for its own fault).
        if let Some(p) = handshake(inner, p, false) {
            refuse(inner, &p.sock, p.cred, reason.to_owned());
            return;
        }
    }
}

/// `EMFILE` or `ENFILE`.
fn out_of_fds(e: &Error) -> bool {
    matches!(e, Error::Os { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// A connection that has not said hello yet.
struct Pending {
    sock: OwnedFd,
    cred: Option<PeerCred>,
    deadline: Instant,
}

/// The service thread: accepts connections, runs hand-offs, watches consumers'
/// sockets for goodbyes and hang-ups, enforces the lease.
fn service(inner: Arc<Inner>, listener: Option<SeqpacketListener>) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut next_lease_check = Instant::now();
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for sock in inner
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            admit(&inner, &mut pending, sock);
        }
        // Consumers with messages waiting are polled for room in their socket too.
        let snapshot: Vec<(ConsumerId, Arc<OwnedFd>, bool)> = {
            let mut st = inner.lock();
            st.cut_off_doomed(&inner);
            st.conns
                .iter()
                .map(|c| (c.id, c.sock.clone(), !c.outbox.is_empty()))
                .collect()
        };
        let mut fds = vec![pollfd(inner.svc.as_fd(), libc::POLLIN)];
        if let Some(l) = &listener {
            fds.push(pollfd(l.as_fd(), libc::POLLIN));
        }
        let first_pending = fds.len();
        let polled_pending = pending.len();
        fds.extend(pending.iter().map(|p| pollfd(p.sock.as_fd(), libc::POLLIN)));
        let first_conn = fds.len();
        fds.extend(snapshot.iter().map(|(_, s, queued)| {
            let out = if *queued { libc::POLLOUT } else { 0 };
            pollfd(s.as_fd(), libc::POLLIN | out)
        }));
        let mut deadline = pending.iter().map(|p| p.deadline).min();
        if inner.cfg.lease.is_some() {
            deadline = Some(deadline.map_or(next_lease_check, |d| d.min(next_lease_check)));
        }
        if poll_until(&mut fds, deadline).is_err() {
            // poll itself failing (ENOMEM) is not the peers' doing: try again shortly.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        inner.svc.take();
        // Hand-offs: readable or expired pending connections among those polled
        // (ones given back go to the end), in reverse so indices hold.
        for k in (0..polled_pending).rev() {
            let re = fds[first_pending + k].revents;
            if re == 0 && pending[k].deadline > now {
                continue;
            }
            let p = pending.swap_remove(k);
            if let Some(p) = handshake(&inner, p, re == 0) {
                pending.push(p);
            }
        }
        // New connections after the hand-offs, which index `pending` as polled.
        if let Some(l) = &listener {
            if fds[1].revents != 0 {
                for _ in 0..64 {
                    match l.accept() {
                        Ok(sock) => admit(&inner, &mut pending, sock),
                        Err(e) => {
                            // The listener stays readable: free an fd (the oldest
                            // silent connection) or pause, never spin.
                            if out_of_fds(&e)
                                && !refuse_oldest(&inner, &mut pending, "out of file descriptors")
                            {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            break;
                        }
                    }
                }
            }
        }
        for (k, (id, _, _)) in snapshot.iter().enumerate() {
            let re = fds[first_conn + k].revents;
            if re & libc::POLLOUT != 0 {
                let mut st = inner.lock();
                if let Some(i) = st.conns.iter().position(|c| c.id == *id) {
                    st.flush(i);
                    st.cut_off_doomed(&inner);
                }
            }
            if re & !libc::POLLOUT != 0 {
                consumer_message(&inner, *id);
            }
        }
        if let Some(lease) = inner.cfg.lease {
            if Instant::now() >= next_lease_check {
                enforce_lease(&inner, lease);
                next_lease_check = Instant::now() + (lease / 4).min(Duration::from_millis(100));
            }
        }
    }
}

/// Checks a new connection's credentials and queues it for its hello.
fn admit(inner: &Inner, pending: &mut Vec<Pending>, sock: OwnedFd) {
    let cred = peer_cred(sock.as_fd()).ok();
    if !inner.cfg.allowed_uids.is_empty() {
        let verdict = match cred {
            Some(c) => check_allowed(c, &inner.cfg.allowed_uids),
            None => Err(Error::Protocol("peer credentials unavailable".into())),
        };
        if let Err(e) = verdict {
            refuse(inner, &sock, cred, e.to_string());
            return;
        }
    }
    if set_nonblocking(sock.as_fd()).is_err() {
        return;
    }
    // A flood of connections that never say hello costs a bounded number of fds:
    // the oldest silent one makes room.
    if pending.len() >= MAX_PENDING {
        make_room(
            inner,
            pending,
            &format!("{MAX_PENDING} connections already waiting for their hello"),
        );
    }
    pending.push(Pending {
        sock,
        cred,
        deadline: Instant::now() + inner.cfg.handshake_timeout,
    });
}

fn refuse(inner: &Inner, sock: &OwnedFd, cred: Option<PeerCred>, reason: String) {
    // Counted before the peer hears it: whoever it tells finds the refusal in stats.
    {
        let mut st = inner.lock();
        st.stats.refused += 1;
        st.log(ConsumerEvent::Refused {
            cred,
            reason: reason.clone(),
        });
    }
    say_goodbye(sock, 2, &reason);
}

/// Reads a pending connection's hello and makes it a consumer, or refuses it. Gives
/// the connection back if nothing was there yet (a spurious wake-up).
fn handshake(inner: &Inner, p: Pending, expired: bool) -> Option<Pending> {
    let hello = if expired {
        Err(format!("no hello within {:?}", inner.cfg.handshake_timeout))
    } else {
        match recv_msg(p.sock.as_fd(), &mut Vec::new()) {
            Ok(Some((
                Msg::Hello {
                    min_version,
                    max_version,
                },
                _,
            ))) => {
                if (min_version..=max_version).contains(&PROTOCOL_VERSION) {
                    Ok(())
                } else {
                    Err(format!(
                        "consumer speaks protocol versions {min_version}..={max_version}, producer speaks {PROTOCOL_VERSION}"
                    ))
                }
            }
            Ok(Some((m, _))) => Err(format!(
                "protocol violation: expected Hello, got {}",
                m.name()
            )),
            Ok(None) => return Some(p),
            Err(Error::PeerGone) => return None,
            Err(e) => Err(e.to_string()),
        }
    };
    let cred = p.cred.unwrap_or(PeerCred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    });
    let refusal = match hello {
        Ok(()) => {
            let mut st = inner.lock();
            match st.join(inner, p.sock, cred) {
                Ok(()) => return None,
                Err((sock, e)) => (sock, e.to_string()),
            }
        }
        Err(reason) => (p.sock, reason),
    };
    refuse(inner, &refusal.0, p.cred, refusal.1);
    None
}

fn consumer_message(inner: &Inner, id: ConsumerId) {
    let mut st = inner.lock();
    let Some(i) = st.conns.iter().position(|c| c.id == id) else {
        return;
    };
    match recv_msg(st.conns[i].sock.as_fd(), &mut Vec::new()) {
        Ok(None) => {}
        Ok(Some((Msg::Goodbye { code, reason }, _))) => {
            let reason = if code == 0 {
                format!("consumer {id} said goodbye: {reason}")
            } else {
                format!("consumer {id} left with error {code}: {reason}")
            };
            st.remove(inner, i, Leave::Left, reason);
        }
        Ok(Some((m, _))) => {
            let reason = format!(
                "protocol violation: consumer {id} sent {} after its hello",
                m.name()
            );
            st.remove(inner, i, Leave::CutOff, reason);
        }
        Err(Error::PeerGone) => {
            st.remove(inner, i, Leave::Left, format!("consumer {id} hung up"));
        }
        Err(e) => {
            let reason = format!("consumer {id}: {e}");
            st.remove(inner, i, Leave::CutOff, reason);
        }
    }
}

fn enforce_lease(inner: &Inner, lease: Duration) {
    let mut st = inner.lock();
    st.drain_releases(inner);
    let now = Instant::now();
    let mut i = 0;
    while i < st.conns.len() {
        let id = st.conns[i].id;
        match st.ledger.oldest_held(id) {
            Some(t) if now.duration_since(t) > lease => {
                let reason =
                    format!("consumer {id} held a slot for longer than the {lease:?} lease");
                st.remove(inner, i, Leave::CutOff, reason);
            }
            _ => i += 1,
        }
    }
}
