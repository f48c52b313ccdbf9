//! The consumer end of the frame channel.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::arena::ConsumerArena;
use crate::frame::desc::{FrameDesc, META_BYTES, Release};
use crate::frame::ledger::SlotRef;
use crate::frame::wire::{Msg, PROTOCOL_VERSION};
use crate::os::doorbell::{Waker, poll_until, pollfd};
use crate::os::listen;
use crate::ring::channel::{Receiver, RingFds, Sender};

use super::{Spin, recv_msg, say_goodbye, send_msg};

/// How a [`Consumer`] receives.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Copy every frame out of shared memory on receipt and release its slot at once
    /// (a stable private snapshot that a hostile producer cannot change).
    /// Default false: frames are read in place.
    pub copy: bool,
    /// How long [`Consumer::recv`] polls the frame ring before sleeping on the
    /// doorbell (0: sleep at once). Default 20 µs.
    pub spin: Duration,
    /// How long to wait for the producer's welcome. Default 2 s.
    pub handshake_timeout: Duration,
    /// Most arenas the producer may keep announced at once. Default 16.
    pub max_arenas: usize,
    /// Largest arena (slots × slot size) this consumer maps; a bigger one is the
    /// producer's fault. Default 2 GiB (8 slots of 8K RGBA frames fit).
    pub max_arena_bytes: u64,
    /// Most bytes of arenas mapped at once, all arenas together. Default 4 GiB.
    pub max_mapped_bytes: u64,
    /// Most side messages queued ahead of the frame they precede. Default 1024.
    pub max_pending_side: usize,
    /// Wake this long before the next frame is due and poll for it, instead of
    /// sleeping until the producer's doorbell wakes this consumer: lower, steadier
    /// latency for paced (live) streams, for a little CPU (about `wake_ahead` per
    /// frame interval). When the next frame is due is judged from the spacing of
    /// the last frames (only streams whose frames are at least 10 × `wake_ahead`
    /// apart); a frame that is late by more than `wake_ahead` is waited for on the
    /// doorbell as usual. 0: off. Default 0.
    pub wake_ahead: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            copy: false,
            spin: crate::ring::channel::DEFAULT_SPIN,
            handshake_timeout: Duration::from_secs(2),
            max_arenas: 16,
            max_arena_bytes: 2 << 30,
            max_mapped_bytes: 4 << 30,
            max_pending_side: 1024,
            wake_ahead: Duration::ZERO,
        }
    }
}

/// Reconnection pacing for [`Consumer::connect_with_backoff`]: the first retry waits
/// `initial`, each next one twice as long, up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
        }
    }
}

/// What [`Consumer::recv`] returns.
#[derive(Debug)]
pub enum Event {
    /// A frame.
    Frame(Frame),
    /// A side message, in order with the frames.
    Side {
        /// Its sticky key (0: not sticky).
        key: u32,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// The producer ended the stream cleanly (after the last frame). Later calls
    /// return [`Error::PeerGone`].
    End {
        /// The producer's reason.
        reason: String,
    },
}

/// Sends releases back to the producer; shared by the consumer and its frames so a
/// frame can be dropped on any thread.
#[derive(Debug)]
struct Releaser {
    q: Mutex<(Sender<Release>, Vec<Release>)>,
    /// The producer stopped taking releases: more than [`MAX_RELEASE_BACKLOG`]
    /// waited (the consumer reports it as the producer's fault).
    overflowed: std::sync::atomic::AtomicBool,
}

/// Most releases waiting for room in the release ring. The ring holds more entries
/// than there are slots, so an honest producer keeps it from filling; one that stops
/// reading it (and keeps sending frames) would otherwise grow the backlog forever.
const MAX_RELEASE_BACKLOG: usize = 65_536;

impl Releaser {
    fn release(&self, r: Release) {
        let mut g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, backlog) = &mut *g;
        backlog.push(r);
        // The release ring has room unless the producer stopped reading; then the
        // backlog waits for the next release, up to its bound.
        match tx.try_send_batch(backlog) {
            Ok(n) => {
                backlog.drain(..n);
                if backlog.len() > MAX_RELEASE_BACKLOG {
                    backlog.clear();
                    self.overflowed
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            }
            // The producer is gone or broke the ring: nobody to give slots back to.
            Err(_) => backlog.clear(),
        }
    }
}

enum Body {
    Shared {
        ptr: *const u8,
        len: usize,
        _arena: Arc<ConsumerArena>,
        slot: SlotRef,
        releaser: Arc<Releaser>,
    },
    Copied(Vec<u8>),
}

/// A received frame: payload, metadata, sequence number. Dropping it (on any
/// thread) releases its slot to the producer.
///
/// In place (the default), the payload is shared memory that a hostile producer
/// could still change: read it through [`Frame::as_ptr`] or copy it out
/// ([`Frame::copy_to`], [`Frame::to_vec`]); it is never exposed as a `&[u8]`.
/// [`ConsumerConfig::copy`] gives a private copy instead ([`Frame::as_slice`]).
pub struct Frame {
    seq: u64,
    dropped: u32,
    meta: [u8; META_BYTES],
    meta_len: usize,
    body: Body,
}

// SAFETY: the raw pointer points into a read-only mapping that the frame keeps alive
// through its `Arc<ConsumerArena>`; nothing is ever written through it, so reading it
// from another thread is no different from reading it from this one. The releaser is
// behind a Mutex.
unsafe impl Send for Frame {}
// SAFETY: `&Frame` only gives out the pointer, copies of the bytes and the metadata;
// no interior mutability is reachable without the Mutex.
unsafe impl Sync for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("len", &self.len())
            .field("dropped", &self.dropped)
            .field("meta_len", &self.meta_len)
            .field("copied", &self.is_copy())
            .finish()
    }
}

impl Frame {
    /// The frame's number in this consumer's stream (0, 1, 2, …; drops leave no gap).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Frames the producer dropped for this consumer just before this one.
    pub fn dropped_before(&self) -> u32 {
        self.dropped
    }

    /// The metadata published with the frame.
    pub fn meta(&self) -> &[u8] {
        &self.meta[..self.meta_len]
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Shared { len, .. } => *len,
            Body::Copied(v) => v.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the payload is a private copy.
    pub fn is_copy(&self) -> bool {
        matches!(self.body, Body::Copied(_))
    }

    /// The payload's first byte: `len()` readable bytes that stay mapped while the
    /// frame lives. In place, the producer may still change them.
    pub fn as_ptr(&self) -> *const u8 {
        match &self.body {
            Body::Shared { ptr, .. } => *ptr,
            Body::Copied(v) => v.as_ptr(),
        }
    }

    /// The payload as a slice, for a private copy only ([`ConsumerConfig::copy`]).
    pub fn as_slice(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Shared { .. } => None,
            Body::Copied(v) => Some(v),
        }
    }

    /// Copies the payload into `dst` (which must be exactly `len()` bytes).
    pub fn copy_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len(), "copy_to: destination size");
        // SAFETY: `as_ptr` points at `len()` readable bytes kept mapped by `self`;
        // `dst` is our own memory of the same length, so no overlap. A producer
        // changing the source meanwhile gives us some bytes, never UB (`u8` has no
        // invalid values and we hold no reference to the source).
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), dst.as_mut_ptr(), dst.len()) };
    }

    /// The payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        self.copy_to(&mut v);
        v
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Body::Shared { slot, releaser, .. } = &self.body {
            releaser.release(Release::from(*slot));
        }
    }
}

struct PendingSide {
    before_frame: u64,
    key: u32,
    payload: Vec<u8>,
}

/// The consumer end of a frame channel.
pub struct Consumer {
    sock: OwnedFd,
    id: u32,
    max_held: u32,
    frames: Receiver<FrameDesc>,
    releaser: Arc<Releaser>,
    arenas: HashMap<u32, Arc<ConsumerArena>>,
    sides: VecDeque<PendingSide>,
    last_side_before: u64,
    next_seq: u64,
    stash: Option<FrameDesc>,
    /// Messages read since the welcome (see [`FrameDesc::msgs`]).
    msgs_read: u64,
    /// Receive buffer for socket messages.
    buf: Vec<u8>,
    goodbye: Option<(u32, String)>,
    /// The producer hung up without a goodbye: no frame comes any more, so side
    /// messages queued for later frames are delivered as they are, then the end.
    hung_up: bool,
    ended: bool,
    broken: Option<String>,
    waker: Waker,
    cfg: ConsumerConfig,
    /// When the last frame was seen, and the smoothed spacing of frames (for
    /// `wake_ahead`).
    pace: Pace,
}

/// Arrival times of frames, to tell when the next one is due.
#[derive(Default, Debug)]
struct Pace {
    last: Option<Instant>,
    gap: Option<Duration>,
}

impl Pace {
    /// Frames closer than this are a burst (a backlog drained), not the stream's pace.
    const BURST: Duration = Duration::from_micros(50);

    fn arrived(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let g = now.saturating_duration_since(last);
            if g >= Self::BURST {
                // Exponential average, 1/8 weight: follows a rate change within a
                // dozen frames, shrugs off one late frame.
                self.gap = Some(match self.gap {
                    None => g,
                    Some(old) => (old * 7 + g) / 8,
                });
            }
        }
        self.last = Some(now);
    }

    /// When the next frame is due, if the stream has a pace.
    fn due(&self) -> Option<Instant> {
        Some(self.last? + self.gap?)
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("next_seq", &self.next_seq)
            .field("arenas", &self.arenas.len())
            .finish()
    }
}

impl Consumer {
    /// Connects to the producer listening on `path` and completes the hand-off.
    ///
    /// Every wait has a deadline: a listener that accepts nothing (its backlog full)
    /// is [`Error::Unresponsive`] after [`ConsumerConfig::handshake_timeout`], and so
    /// is a welcome that does not come ([`Error::Timeout`]).
    pub fn connect(path: impl AsRef<Path>, cfg: ConsumerConfig) -> Result<Consumer> {
        Consumer::connect_once(path.as_ref(), cfg, None)
    }

    /// One connection attempt and hand-off, each wait bounded by the handshake
    /// timeout and ended early by `waker`.
    fn connect_once(path: &Path, cfg: ConsumerConfig, waker: Option<&Waker>) -> Result<Consumer> {
        let deadline = Instant::now() + cfg.handshake_timeout;
        let sock = listen::connect(path, Some(deadline), waker)?;
        Consumer::hand_off(sock, cfg, waker)
    }

    /// Connects, retrying with `backoff` while there is no producer (no socket file,
    /// nobody listening, or one that went away during the hand-off), until `timeout`
    /// passes (`None`: forever) or `waker` is woken. A producer that answers with
    /// garbage is an error at once.
    pub fn connect_with_backoff(
        path: impl AsRef<Path>,
        cfg: ConsumerConfig,
        backoff: Backoff,
        timeout: Option<Duration>,
        waker: Option<&Waker>,
    ) -> Result<Consumer> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut delay = backoff.initial;
        loop {
            match Consumer::connect_once(path.as_ref(), cfg.clone(), waker) {
                Ok(c) => return Ok(c),
                Err(e) if !retryable(&e) => return Err(e),
                Err(_) => {}
            }
            let mut wake_at = Instant::now() + delay;
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Err(Error::Timeout);
                }
                wake_at = wake_at.min(d);
            }
            match waker {
                Some(w) => {
                    let mut p = [pollfd(w.as_fd(), libc::POLLIN)];
                    poll_until(&mut p, Some(wake_at))?;
                    if w.take() {
                        return Err(Error::Interrupted);
                    }
                }
                None => std::thread::sleep(wake_at.saturating_duration_since(Instant::now())),
            }
            delay = (delay * 2).min(backoff.max);
        }
    }

    /// Completes the hand-off on an already connected `SOCK_SEQPACKET` socket (e.g.
    /// inherited from a parent or passed by a broker: no filesystem access needed).
    pub fn from_fd(sock: OwnedFd, cfg: ConsumerConfig) -> Result<Consumer> {
        Consumer::hand_off(sock, cfg, None)
    }

    /// The hand-off on a connected socket: hello, then the welcome within the
    /// handshake timeout (or until `waker` is woken).
    fn hand_off(sock: OwnedFd, cfg: ConsumerConfig, waker: Option<&Waker>) -> Result<Consumer> {
        crate::os::fdpass::check_unix_socket(
            sock.as_fd(),
            libc::SOCK_SEQPACKET,
            "producer socket",
        )?;
        let deadline = Instant::now() + cfg.handshake_timeout;
        let hello = send_msg(
            sock.as_fd(),
            &Msg::Hello {
                min_version: PROTOCOL_VERSION,
                max_version: PROTOCOL_VERSION,
            },
            &[],
            Some(deadline),
        );
        match hello {
            // A producer that refused us at once (uid not allowed) may have closed
            // before our hello arrived: its goodbye is still queued for us.
            Ok(()) | Err(Error::PeerGone) => {}
            Err(e) => return Err(e),
        }
        let (msg, fds) = loop {
            if let Some(m) = recv_msg(sock.as_fd(), &mut Vec::new())? {
                break m;
            }
            let mut fds = vec![pollfd(sock.as_fd(), libc::POLLIN)];
            fds.extend(waker.map(|w| pollfd(w.as_fd(), libc::POLLIN)));
            if !poll_until(&mut fds, Some(deadline))? {
                return Err(Error::Timeout);
            }
            if waker.is_some_and(|w| w.take()) {
                return Err(Error::Interrupted);
            }
        };
        let (version, id, frame_ring, release_ring, max_held) = match msg {
            Msg::Welcome {
                version,
                consumer_id,
                frame_ring,
                release_ring,
                max_held,
            } => (version, consumer_id, frame_ring, release_ring, max_held),
            Msg::Goodbye { code, reason } => return Err(Error::Closed { code, reason }),
            m => {
                return Err(Error::Protocol(format!(
                    "expected Welcome, got {}",
                    m.name()
                )));
            }
        };
        if version != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "producer chose protocol version {version}, this consumer speaks {PROTOCOL_VERSION}"
            )));
        }
        let mut fds = fds.into_iter();
        let (Some(fm), Some(fb), Some(rm), Some(rb)) =
            (fds.next(), fds.next(), fds.next(), fds.next())
        else {
            return Err(Error::Protocol("Welcome without its 4 fds".into()));
        };
        let mut frames = Receiver::<FrameDesc>::attach(RingFds {
            memfd: fm,
            doorbell: fb,
        })?;
        let releases = Sender::<Release>::attach(RingFds {
            memfd: rm,
            doorbell: rb,
        })?;
        if frames.capacity() != frame_ring as usize || releases.capacity() != release_ring as usize
        {
            return Err(Error::Protocol(format!(
                "Welcome announces rings of {frame_ring} and {release_ring}, the memfds hold {} and {}",
                frames.capacity(),
                releases.capacity()
            )));
        }
        frames.set_spin(Duration::ZERO);
        Ok(Consumer {
            sock,
            id,
            max_held,
            frames,
            releaser: Arc::new(Releaser {
                q: Mutex::new((releases, Vec::new())),
                overflowed: Default::default(),
            }),
            arenas: HashMap::new(),
            sides: VecDeque::new(),
            last_side_before: 0,
            next_seq: 0,
            stash: None,
            msgs_read: 0,
            buf: Vec::new(),
            goodbye: None,
            hung_up: false,
            ended: false,
            broken: None,
            waker: Waker::new()?,
            cfg,
            pace: Pace::default(),
        })
    }

    /// The producer's id for this consumer.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Most frames this consumer may hold at once (queued in its ring or not yet
    /// dropped) before the producer blocks or drops for it, as the producer
    /// announced. A consumer that keeps frames (a GStreamer queue downstream) should
    /// copy past a share of this, or it stalls the producer.
    pub fn max_held(&self) -> u32 {
        self.max_held
    }

    /// Frames received so far (the next frame's number).
    pub fn frames_received(&self) -> u64 {
        self.next_seq
    }

    /// A handle that interrupts a blocked [`Consumer::recv`] from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Receives the next event, waiting as long as needed.
    pub fn recv(&mut self) -> Result<Event> {
        self.recv_deadline(None)
    }

    /// Receives the next event, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Receives the next event if one is ready.
    pub fn try_recv(&mut self) -> Result<Option<Event>> {
        self.check()?;
        let r = self.poll_event(true);
        self.note(r)
    }

    /// Receives the next event, waiting until `deadline` (`None`: forever).
    ///
    /// Errors: [`Error::PeerGone`] when the producer vanished without a goodbye (or
    /// after [`Event::End`]), [`Error::Closed`] when it cut this consumer off, a
    /// protocol or corruption error naming the fault when it lied (the consumer is
    /// then broken), [`Error::Timeout`], [`Error::Interrupted`].
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Event> {
        self.check()?;
        // The socket is read only once the ring stayed empty through the spin:
        // while frames flow, the messages sent before a frame are read when its
        // descriptor counts them, so a busy stream costs no syscall per frame. A
        // message with no frame after it (end of stream, goodbye) waits at most
        // the spin.
        let mut read_socket = false;
        loop {
            let r = self.poll_event(read_socket);
            if let Some(ev) = self.note(r)? {
                if matches!(ev, Event::Frame(_)) && !self.cfg.wake_ahead.is_zero() {
                    self.pace.arrived(Instant::now());
                }
                return Ok(ev);
            }
            if !read_socket {
                let r = self.spin();
                read_socket = !self.note(r)?;
                continue;
            }
            // Whatever woke the last sleep, the deadline holds.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            let r = self.sleep(deadline);
            self.note(r)?;
        }
    }

    fn check(&self) -> Result<()> {
        if self.ended {
            return Err(Error::PeerGone);
        }
        match &self.broken {
            Some(m) => Err(Error::Broken(m.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a fault of the producer so that every later call reports it.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if e.is_peer_fault() {
                self.broken = Some(e.to_string());
                say_goodbye(&self.sock, 1, &e.to_string());
            }
        }
        r
    }

    /// Everything that can be delivered without waiting; the socket is read for
    /// messages with no frame after them only if `read_socket`.
    fn poll_event(&mut self, read_socket: bool) -> Result<Option<Event>> {
        if let Some(ev) = self.due_side() {
            return Ok(Some(ev));
        }
        let desc = match self.stash.take() {
            Some(d) => Some(d),
            None => self.frames.try_recv()?,
        };
        if let Some(d) = desc {
            if self.frames.sender_closed() {
                return Err(self.cut_off());
            }
            // The messages the producer sent before this frame (arenas, side
            // messages) are on the socket: the descriptor says how many.
            self.read_messages_before(&d)?;
            // (A descriptor whose seq lies is refused by `frame`; the side messages
            // due are those before the frame expected next.)
            if self
                .sides
                .front()
                .is_some_and(|s| s.before_frame <= self.next_seq)
            {
                self.stash = Some(d);
                return Ok(self.due_side());
            }
            return self.frame(d).map(|f| Some(Event::Frame(f)));
        }
        if !read_socket {
            return Ok(None);
        }
        // Nothing in the ring: whatever else the producer said is on the socket.
        self.pump()?;
        self.check_cut_off()?;
        if let Some(ev) = self.due_side() {
            return Ok(Some(ev));
        }
        if self.frames.ready()? > 0 {
            return self.poll_event(true);
        }
        // A goodbye was sent after the last descriptor, so once it is here and the
        // ring is empty, the stream is over.
        if let Some((code, reason)) = self.goodbye.take() {
            // Only side messages queued ahead of frames that never came remain.
            if let Some(s) = self.sides.pop_front() {
                self.goodbye = Some((code, reason));
                return Ok(Some(Event::Side {
                    key: s.key,
                    payload: s.payload,
                }));
            }
            self.ended = true;
            if code == 0 {
                return Ok(Some(Event::End { reason }));
            }
            return Err(Error::Closed { code, reason });
        }
        if self.hung_up {
            // Gone without a goodbye, the ring drained: what it queued for frames
            // that never came, then the end.
            if let Some(s) = self.sides.pop_front() {
                return Ok(Some(Event::Side {
                    key: s.key,
                    payload: s.payload,
                }));
            }
            self.ended = true;
            return Err(Error::PeerGone);
        }
        Ok(None)
    }

    /// Reads socket messages until all `d.msgs` the producer sent before frame `d`
    /// are in. They are on the socket already (sent before the descriptor was
    /// written); missing ones are a protocol violation.
    fn read_messages_before(&mut self, d: &FrameDesc) -> Result<()> {
        while self.msgs_read < d.msgs {
            if self.goodbye.is_some() || !self.pump_one()? {
                return Err(Error::Protocol(format!(
                    "frame {} follows {} socket messages, {} arrived",
                    d.seq, d.msgs, self.msgs_read
                )));
            }
        }
        Ok(())
    }

    /// The producer closed our frame ring: it cut us off. Its goodbye (sent first)
    /// says why.
    fn cut_off(&mut self) -> Error {
        self.ended = true;
        self.stash = None;
        let _ = self.pump();
        match self.goodbye.take() {
            Some((code, reason)) => Error::Closed { code, reason },
            None => Error::Closed {
                code: 1,
                reason: "producer closed the frame ring".into(),
            },
        }
    }

    /// A goodbye with an error code means the producer cut us off and has taken back
    /// our slots: descriptors still in the ring name slots it may be rewriting, so
    /// nothing more is delivered.
    fn check_cut_off(&mut self) -> Result<()> {
        if let Some((code, reason)) = &self.goodbye {
            if *code != 0 {
                self.ended = true;
                self.stash = None;
                return Err(Error::Closed {
                    code: *code,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    fn due_side(&mut self) -> Option<Event> {
        if self
            .sides
            .front()
            .is_some_and(|s| s.before_frame <= self.next_seq)
        {
            let s = self.sides.pop_front()?;
            return Some(Event::Side {
                key: s.key,
                payload: s.payload,
            });
        }
        None
    }

    /// Validates a descriptor and makes a frame of it.
    fn frame(&mut self, d: FrameDesc) -> Result<Frame> {
        if self
            .releaser
            .overflowed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::Protocol(format!(
                "producer takes no releases: more than {MAX_RELEASE_BACKLOG} wait"
            )));
        }
        let arena = self.arenas.get(&d.arena).cloned();
        d.validate(self.next_seq, arena.as_ref().map(|a| a.shape()))?;
        let arena = arena.expect("validate refuses unknown arenas");
        let ptr = d.locate(&arena)?;
        self.next_seq += 1;
        let mut meta = [0u8; META_BYTES];
        let meta_len = d.meta_len as usize;
        meta[..meta_len].copy_from_slice(&d.meta[..meta_len]);
        let mut f = Frame {
            seq: d.seq,
            dropped: d.dropped,
            meta,
            meta_len,
            body: Body::Shared {
                ptr,
                len: d.len as usize,
                _arena: arena,
                slot: d.slot_ref(),
                releaser: self.releaser.clone(),
            },
        };
        if self.cfg.copy {
            let v = f.to_vec();
            // Dropping the shared body releases the slot at once.
            let shared = std::mem::replace(&mut f.body, Body::Copied(v));
            if let Body::Shared { slot, releaser, .. } = shared {
                releaser.release(Release::from(slot));
            }
        }
        Ok(f)
    }

    /// Reads every message waiting on the socket (without blocking).
    fn pump(&mut self) -> Result<()> {
        // A bounded number per call, so a flooding producer cannot keep us here.
        for _ in 0..256 {
            if !self.pump_one()? {
                break;
            }
        }
        Ok(())
    }

    /// Reads and applies one message if one is waiting (and no goodbye came yet).
    fn pump_one(&mut self) -> Result<bool> {
        if self.goodbye.is_some() {
            return Ok(false);
        }
        let buf = &mut self.buf;
        let Some((msg, mut fds)) = (match recv_msg(self.sock.as_fd(), buf) {
            Err(Error::PeerGone) => return Ok(false),
            r => r?,
        }) else {
            return Ok(false);
        };
        if !matches!(msg, Msg::Goodbye { .. }) {
            self.msgs_read += 1;
        }
        {
            match msg {
                Msg::Arena {
                    arena_id,
                    slot_size,
                    slots,
                } => {
                    if self.arenas.contains_key(&arena_id) {
                        return Err(Error::Protocol(format!("arena {arena_id} announced twice")));
                    }
                    if self.arenas.len() >= self.cfg.max_arenas {
                        return Err(Error::Protocol(format!(
                            "more than {} arenas announced at once",
                            self.cfg.max_arenas
                        )));
                    }
                    let bytes = slot_size as u64 * slots as u64;
                    let mapped: u64 = self
                        .arenas
                        .values()
                        .map(|a| a.slot_size() as u64 * a.slots() as u64)
                        .sum();
                    if bytes > self.cfg.max_arena_bytes {
                        return Err(Error::Protocol(format!(
                            "arena {arena_id} of {slots} slots of {slot_size} bytes is over the {} bytes this consumer maps",
                            self.cfg.max_arena_bytes
                        )));
                    }
                    if mapped + bytes > self.cfg.max_mapped_bytes {
                        return Err(Error::Protocol(format!(
                            "arena {arena_id} of {bytes} bytes would make {} bytes mapped, over this consumer's {}",
                            mapped + bytes,
                            self.cfg.max_mapped_bytes
                        )));
                    }
                    let fd = fds.pop().expect("decode checked the fd count");
                    let a = ConsumerArena::open(fd, slot_size, slots)?;
                    self.arenas.insert(arena_id, Arc::new(a));
                }
                Msg::DropArena { arena_id } => {
                    // Frames still held keep their own reference to the mapping.
                    if self.arenas.remove(&arena_id).is_none() {
                        return Err(Error::Protocol(format!(
                            "DropArena for arena {arena_id}, which was never announced"
                        )));
                    }
                }
                Msg::Side {
                    before_frame,
                    sticky_key,
                    payload,
                } => {
                    let floor = self.last_side_before.max(self.next_seq);
                    if before_frame < floor {
                        return Err(Error::Protocol(format!(
                            "side message for before frame {before_frame} arrived after frame {floor}"
                        )));
                    }
                    if self.sides.len() >= self.cfg.max_pending_side {
                        return Err(Error::Protocol(format!(
                            "more than {} side messages queued ahead of their frames",
                            self.cfg.max_pending_side
                        )));
                    }
                    self.last_side_before = before_frame;
                    self.sides.push_back(PendingSide {
                        before_frame,
                        key: sticky_key,
                        payload,
                    });
                }
                Msg::Goodbye { code, reason } => self.goodbye = Some((code, reason)),
                Msg::Hello { .. } | Msg::Welcome { .. } => {
                    return Err(Error::Protocol(
                        "producer sent a handshake message mid-stream".into(),
                    ));
                }
            }
        }
        Ok(true)
    }

    /// With `wake_ahead`: sleeps (on the doorbell, as usual) until `wake_ahead`
    /// before the next frame is due, then polls the ring until it comes or is
    /// `wake_ahead` late. True when there is something to look at.
    fn anticipate(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let ahead = self.cfg.wake_ahead;
        // Only for streams paced well apart: a fast stream keeps the consumer busy
        // anyway, and polling a large share of each interval would cost CPU for
        // nothing.
        let paced = self.pace.gap.is_some_and(|g| g >= ahead * 10);
        let Some(due) = self.pace.due().filter(|_| !ahead.is_zero() && paced) else {
            return Ok(false);
        };
        let give_up = match deadline {
            Some(d) => d.min(due + ahead),
            None => due + ahead,
        };
        let wake = due.checked_sub(ahead).unwrap_or(due);
        if Instant::now() < wake {
            if self.frames.arm()? {
                self.frames.disarm();
                return Ok(true);
            }
            let mut fds = [
                pollfd(self.sock.as_fd(), libc::POLLIN),
                pollfd(self.frames.bell().as_fd(), libc::POLLIN),
                pollfd(self.waker.as_fd(), libc::POLLIN),
            ];
            let woke = poll_until(&mut fds, Some(wake.min(give_up)));
            self.frames.disarm();
            if woke? {
                // Early: a frame rang, or a message, a hang-up or the waker came,
                // which the usual wait (at once, the fds still ready) sorts out.
                let rang =
                    fds[1].revents == libc::POLLIN && fds[0].revents == 0 && fds[2].revents == 0;
                if rang {
                    self.frames.bell().drain();
                }
                return Ok(rang);
            }
        }
        while Instant::now() < give_up {
            if self.frames.ready()? > 0 {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        Ok(false)
    }

    /// Polls the ring for up to the configured spin time. True when a frame came.
    fn spin(&mut self) -> Result<bool> {
        let mut spin = Spin::new(self.cfg.spin);
        while spin.keep_spinning() {
            if self.frames.ready()? > 0 {
                return Ok(true);
            }
            spin.pause();
        }
        Ok(false)
    }

    /// Waits for the ring, the socket, the waker or the deadline. `Ok(())` means
    /// "look again".
    fn sleep(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.anticipate(deadline)? {
            return Ok(());
        }
        if self.frames.arm()? {
            self.frames.disarm();
            return Ok(());
        }
        let mut fds = [
            pollfd(self.sock.as_fd(), libc::POLLIN),
            pollfd(self.frames.bell().as_fd(), libc::POLLIN),
            pollfd(self.waker.as_fd(), libc::POLLIN),
        ];
        let r = poll_until(&mut fds, deadline);
        self.frames.disarm();
        if !r? {
            return Err(Error::Timeout);
        }
        if fds[2].revents != 0 && self.waker.take() {
            return Err(Error::Interrupted);
        }
        let hup = libc::POLLHUP | libc::POLLERR;
        if (fds[0].revents | fds[1].revents) & hup != 0 {
            // The producer is gone. Deliver what it left (frames in the ring, queued
            // messages) first; only then report it.
            // A hang-up stays readable: from here on nothing is waited for (a
            // sleep would return at once, again and again).
            self.pump()?;
            self.hung_up = true;
            if self.goodbye.is_none()
                && self.stash.is_none()
                && self.sides.is_empty()
                && self.frames.ready()? == 0
            {
                self.ended = true;
                return Err(Error::PeerGone);
            }
            return Ok(());
        }
        if fds[1].revents & libc::POLLIN != 0 {
            self.frames.bell().drain();
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.ended && self.broken.is_none() {
            say_goodbye(&self.sock, 0, "consumer closed");
        }
    }
}

/// Errors after which trying again later makes sense: no producer yet, or it went
/// away mid-hand-off.
fn retryable(e: &Error) -> bool {
    match e {
        Error::PeerGone | Error::Timeout | Error::Unresponsive { .. } => true,
        Error::Os { source, .. } => matches!(
            source.raw_os_error(),
            Some(libc::ENOENT | libc::ECONNREFUSED | libc::ECONNRESET | libc::EPIPE)
        ),
        _ => false,
    }
}
