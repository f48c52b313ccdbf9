//! The consumer end of the frame channel.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{
    ConnectError, NoteError, PeerFault, ProtocolFault, RecvError, Result, Transmit,
};
use crate::frame::arena::ConsumerArena;
use crate::frame::desc::{FrameDesc, Release};
use crate::frame::producer::ProducerStats;
use crate::frame::wire::{Msg, PROTOCOL_VERSION, goodbye};
use crate::os::doorbell::{Waker, poll_until, pollfd};
use crate::os::listen;
use crate::ring::channel::{Receiver, RingFds, Sender};

use super::link::{recv_msg, say_goodbye, send_msg};
use super::spin::SpinJudge;

#[cfg(feature = "tokio")]
mod asynch;
mod config;
mod frame;
mod inbox;
mod wait;

#[cfg(feature = "tokio")]
pub use asynch::AsyncConsumer;
pub use config::{Backoff, ConsumerConfig};
pub use frame::Frame;

use frame::Releaser;
pub use wait::Anticipation;
use wait::Pace;

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
    /// return [`RecvError::PeerGone`].
    End {
        /// The producer's reason.
        reason: String,
    },
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
    broken: Option<PeerFault>,
    waker: Waker,
    cfg: ConsumerConfig,
    /// When frames come and what polling for them catches (for `wake_ahead`).
    pace: Pace,
    /// The frame being received was caught by polling (its arrival time is exact).
    caught_polling: bool,
    /// The last frame's arrival (number, time, caught polling), not yet counted by
    /// `pace`: that waits until the next receive, off the path from a frame's
    /// arrival to its delivery.
    arrival: Option<(u64, Instant, bool)>,
    /// The doorbell rang and was not drained yet: draining waits until the next
    /// sleep, off the path from a frame's arrival to its delivery.
    bell_rang: bool,
    /// The last `pump` stopped at its bound with messages perhaps still waiting
    /// (an async wait reads on instead of waiting for readiness that will not come).
    socket_backlog: bool,
    /// Whether polling for the next frame before sleeping pays.
    spin_judge: SpinJudge,
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
    /// is [`ConnectError::Unresponsive`] after [`ConsumerConfig::handshake_timeout`],
    /// a welcome that does not come [`ConnectError::Timeout`]. No socket at `path`,
    /// or a stale one, is [`ConnectError::NoProducer`].
    pub fn connect(path: impl AsRef<Path>, cfg: ConsumerConfig) -> Result<Consumer, ConnectError> {
        Consumer::connect_once(path.as_ref(), cfg, None)
    }

    /// One connection attempt and hand-off, each wait bounded by the handshake
    /// timeout and ended early by `waker`.
    fn connect_once(
        path: &Path,
        cfg: ConsumerConfig,
        waker: Option<&Waker>,
    ) -> Result<Consumer, ConnectError> {
        let deadline = Instant::now() + cfg.handshake_timeout;
        let sock =
            listen::connect(path, Some(deadline), waker).map_err(|e| no_producer(path, e))?;
        Consumer::hand_off(sock, cfg, waker)
    }

    /// Asks the producer listening on `path` what it serves (what its application
    /// set with [`Producer::set_description`](crate::frame::Producer::set_description)),
    /// without becoming a consumer: the producer counts the probe apart
    /// ([`ProducerStats::probes`](crate::frame::ProducerStats::probes)) and closes the
    /// connection after answering. Every wait ends by `timeout`. The answer is the
    /// producer's word, at most [`MAX_DESCRIPTION`](crate::frame::MAX_DESCRIPTION)
    /// bytes: check it like any peer input.
    pub fn probe(path: impl AsRef<Path>, timeout: Duration) -> Result<Vec<u8>, ConnectError> {
        let path = path.as_ref();
        let deadline = Instant::now() + timeout;
        let sock = listen::connect(path, Some(deadline), None).map_err(|e| no_producer(path, e))?;
        probe_on(&sock, deadline)
    }

    /// As [`Consumer::probe`], and the producer's counters too: its description, then
    /// its [`ProducerStats`] as of the probe (frames, consumers with their pids and
    /// uids, slots, policy and timeouts). A prober is never a consumer and costs the
    /// producer no wait. `stats` is `None` from a producer too old to send them (it
    /// closes after its description). Every wait ends by `timeout`; what comes back
    /// is the producer's word, checked for what each field can hold and no more:
    /// a lying producer can still say any counter it likes.
    pub fn inspect(path: impl AsRef<Path>, timeout: Duration) -> Result<Inspection, ConnectError> {
        let path = path.as_ref();
        let deadline = Instant::now() + timeout;
        let sock = listen::connect(path, Some(deadline), None).map_err(|e| no_producer(path, e))?;
        let description = probe_on(&sock, deadline)?;
        let stats = match recv_by(&sock, deadline) {
            Ok(Msg::Stats { stats }) => Some(*stats),
            Err(ConnectError::PeerGone) => None,
            Ok(m) => {
                return Err(ProtocolFault::Unexpected {
                    expected: "Stats",
                    got: m.name(),
                }
                .into());
            }
            Err(e) => return Err(e),
        };
        Ok(Inspection { description, stats })
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
    ) -> Result<Consumer, ConnectError> {
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
                    return Err(ConnectError::Timeout);
                }
                wake_at = wake_at.min(d);
            }
            match waker {
                Some(w) => {
                    let mut p = [pollfd(w.as_fd(), libc::POLLIN)];
                    poll_until(&mut p, Some(wake_at))?;
                    if w.take() {
                        return Err(ConnectError::Interrupted);
                    }
                }
                None => std::thread::sleep(wake_at.saturating_duration_since(Instant::now())),
            }
            delay = (delay * 2).min(backoff.max);
        }
    }

    /// Completes the hand-off on an already connected `SOCK_SEQPACKET` socket (e.g.
    /// inherited from a parent or passed by a broker: no filesystem access needed).
    pub fn from_fd(sock: OwnedFd, cfg: ConsumerConfig) -> Result<Consumer, ConnectError> {
        Consumer::hand_off(sock, cfg, None)
    }

    /// The hand-off on a connected socket: hello, then the welcome within the
    /// handshake timeout (or until `waker` is woken).
    fn hand_off(
        sock: OwnedFd,
        cfg: ConsumerConfig,
        waker: Option<&Waker>,
    ) -> Result<Consumer, ConnectError> {
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
            Ok(()) | Err(Transmit::PeerGone) => {}
            Err(e) => return Err(e.into()),
        }
        let (msg, fds) = loop {
            if let Some(m) = recv_msg(sock.as_fd(), &mut Vec::new())? {
                break m;
            }
            let mut fds = vec![pollfd(sock.as_fd(), libc::POLLIN)];
            fds.extend(waker.map(|w| pollfd(w.as_fd(), libc::POLLIN)));
            if !poll_until(&mut fds, Some(deadline))? {
                return Err(ConnectError::Timeout);
            }
            if waker.is_some_and(|w| w.take()) {
                return Err(ConnectError::Interrupted);
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
            Msg::Goodbye { code, reason } => return Err(ConnectError::Refused { code, reason }),
            m => {
                return Err(ProtocolFault::Unexpected {
                    expected: "Welcome",
                    got: m.name(),
                }
                .into());
            }
        };
        if version != PROTOCOL_VERSION {
            return Err(ProtocolFault::Version {
                chose: version,
                speaks: PROTOCOL_VERSION,
            }
            .into());
        }
        let mut fds = fds.into_iter();
        let (Some(fm), Some(fb), Some(rm), Some(rb)) =
            (fds.next(), fds.next(), fds.next(), fds.next())
        else {
            return Err(ProtocolFault::WelcomeFds.into());
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
            return Err(ProtocolFault::WelcomeRings {
                frames: frame_ring,
                releases: release_ring,
                frames_held: frames.capacity(),
                releases_held: releases.capacity(),
            }
            .into());
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
            caught_polling: false,
            arrival: None,
            bell_rang: false,
            socket_backlog: false,
            spin_judge: SpinJudge::default(),
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

    /// What waking ahead of the stream measured and did (see
    /// [`ConsumerConfig::wake_ahead`]).
    pub fn anticipation(&mut self) -> Anticipation {
        self.count_arrival();
        self.pace.report()
    }

    /// Counts the last frame's arrival in `pace` (see `arrival`).
    fn count_arrival(&mut self) {
        if let Some((seq, at, caught)) = self.arrival.take() {
            self.pace.arrived(seq, at, caught);
        }
    }

    /// Tells the producer something about this consumer (at most
    /// [`MAX_NOTE`](crate::frame::MAX_NOTE) bytes, opaque to the frame channel; the
    /// plugin sends the formats its downstream accepts). The producer keeps the
    /// latest note of each consumer ([`Producer::notes`](crate::frame::Producer::notes)).
    /// Waits at most 100 ms for room in the socket.
    pub fn send_note(&self, payload: &[u8]) -> Result<(), NoteError> {
        if payload.len() > crate::frame::MAX_NOTE {
            return Err(NoteError::TooLong {
                len: payload.len(),
                limit: crate::frame::MAX_NOTE,
            });
        }
        let msg = Msg::Note {
            payload: payload.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_millis(100);
        Ok(send_msg(self.sock.as_fd(), &msg, &[], Some(deadline))?)
    }

    /// A handle that interrupts a blocked [`Consumer::recv`] from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Receives the next event, waiting as long as needed.
    pub fn recv(&mut self) -> Result<Event, RecvError> {
        self.recv_deadline(None)
    }

    /// Receives the next event, waiting at most `timeout` ([`RecvError::Timeout`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Receives the next event if one is ready.
    pub fn try_recv(&mut self) -> Result<Option<Event>, RecvError> {
        self.check()?;
        let r = self.poll_event(true);
        self.note(r)
    }

    /// Receives the next event, waiting until `deadline` (`None`: forever).
    ///
    /// Errors: [`RecvError::PeerGone`] when the producer vanished without a goodbye
    /// (or after [`Event::End`]), [`RecvError::Closed`] when it cut this consumer
    /// off, [`RecvError::Peer`] naming the fault when it lied (every later call
    /// returns the same fault), [`RecvError::Timeout`], [`RecvError::Interrupted`].
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Event, RecvError> {
        self.check()?;
        // The socket is read only when it has something: while frames flow, the
        // messages sent before a frame are read when its descriptor counts them,
        // so a busy stream costs no syscall per frame; a consumer that waits for
        // each frame sleeps on the socket too and reads it only when the sleep
        // says it is readable (no `recvmsg` that finds nothing before each sleep).
        // A message with no frame after it (end of stream, goodbye) is read as
        // soon as it comes: the first sleep returns at once for it.
        let mut read_socket = false;
        let mut spun = false;
        self.count_arrival();
        self.caught_polling = false;
        loop {
            let r = self.poll_event(read_socket);
            if let Some(ev) = self.note(r)? {
                if let Event::Frame(f) = &ev {
                    if !self.cfg.wake_ahead.is_zero() {
                        self.arrival = Some((f.seq(), Instant::now(), self.caught_polling));
                    }
                }
                return Ok(ev);
            }
            if !std::mem::replace(&mut spun, true) {
                let r = self.spin();
                if self.note(r)? {
                    continue;
                }
            }
            // Whatever woke the last sleep, the deadline holds.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
            let r = self.sleep(deadline);
            read_socket = self.note(r)?;
        }
    }

    fn check(&self) -> Result<(), RecvError> {
        if self.ended {
            return Err(RecvError::PeerGone);
        }
        match &self.broken {
            Some(f) => Err(RecvError::Peer(f.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a fault of the producer so that every later call reports it.
    fn note<T>(&mut self, r: Result<T, RecvError>) -> Result<T, RecvError> {
        if let Err(RecvError::Peer(f)) = &r {
            self.broken = Some(f.clone());
            say_goodbye(&self.sock, goodbye::CUT_OFF, &f.to_string());
        }
        r
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.ended && self.broken.is_none() {
            say_goodbye(&self.sock, goodbye::CLEAN, "consumer closed");
        }
    }
}

/// A failed `connect` to `path`: no socket there, or nobody listening, is
/// [`ConnectError::NoProducer`].
fn no_producer(path: &Path, e: ConnectError) -> ConnectError {
    match e {
        ConnectError::Os { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ECONNREFUSED)
            ) =>
        {
            ConnectError::NoProducer {
                path: path.to_path_buf(),
                source,
            }
        }
        e => e,
    }
}

/// A probe on a connected socket: `Probe`, then the `Description` by `deadline`.
fn probe_on(sock: &OwnedFd, deadline: Instant) -> Result<Vec<u8>, ConnectError> {
    crate::os::fdpass::check_unix_socket(sock.as_fd(), libc::SOCK_SEQPACKET, "producer socket")?;
    let probe = Msg::Probe {
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
    };
    match send_msg(sock.as_fd(), &probe, &[], Some(deadline)) {
        // Refused at once (uid not allowed): its goodbye is still queued for us.
        Ok(()) | Err(Transmit::PeerGone) => {}
        Err(e) => return Err(e.into()),
    }
    match recv_by(sock, deadline)? {
        Msg::Description { payload } => Ok(payload),
        Msg::Goodbye { code, reason } => Err(ConnectError::Refused { code, reason }),
        m => Err(ProtocolFault::Unexpected {
            expected: "Description",
            got: m.name(),
        }
        .into()),
    }
}

/// The next message on `sock`, by `deadline`; its hang-up is `PeerGone`.
fn recv_by(sock: &OwnedFd, deadline: Instant) -> Result<Msg, ConnectError> {
    loop {
        if let Some((m, _)) = recv_msg(sock.as_fd(), &mut Vec::new())? {
            return Ok(m);
        }
        let mut fds = [pollfd(sock.as_fd(), libc::POLLIN)];
        if !poll_until(&mut fds, Some(deadline))? {
            return Err(ConnectError::Timeout);
        }
    }
}

/// What a producer says about itself ([`Consumer::inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// What its application set ([`Producer::set_description`](crate::frame::Producer::set_description)):
    /// the plugin's caps as text, or empty.
    pub description: Vec<u8>,
    /// Its counters and how it serves; `None` from a producer that does not send them.
    pub stats: Option<ProducerStats>,
}

/// Errors after which trying again later makes sense: no producer yet, or it went
/// away mid-hand-off.
fn retryable(e: &ConnectError) -> bool {
    match e {
        ConnectError::NoProducer { .. }
        | ConnectError::PeerGone
        | ConnectError::Timeout
        | ConnectError::Unresponsive { .. } => true,
        ConnectError::Os { source, .. } => {
            matches!(source.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE))
        }
        _ => false,
    }
}
