//! The producer end of the frame channel.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{AddConnectionError, BindError, PublishError, Result, WaitError};
use crate::frame::arena::MAX_SLOT_BYTES;
use crate::frame::ledger::Ledger;
use crate::frame::wire::{MAX_SIDE_PAYLOAD, Msg, goodbye};
use crate::os::doorbell::{Waker, poll_until, pollfd};
use crate::os::listen::{SeqpacketListener, set_nonblocking};

use super::link::send_msg;
use super::spin::{Spin, SpinJudge};

mod config;
mod publish;
mod service;
mod slots;
mod state;
mod stats;

pub use config::{Policy, ProducerConfig};
pub use slots::{ReusableSlot, WriteSlot};
pub use stats::{ConsumerEvent, ConsumerStats, ProducerStats};

use service::service;
use slots::LOCAL_HOLDER;
use state::{Leave, State};

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

    /// One step of the polling phase of a wait that holds the lock: `true` to look
    /// again (the lock was let go for a pause and is held again), `false` when
    /// polling is over and the caller sleeps (`slept` then set, and a wait that
    /// polled for nothing counted as such by the spin judge).
    fn poll_step<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        spin: &mut Option<Spin>,
        slept: &mut bool,
    ) -> (MutexGuard<'a, State>, bool) {
        let s = spin.get_or_insert_with(|| Spin::new(st.spin_judge.budget(self.cfg.spin)));
        if s.keep_spinning() {
            drop(st);
            s.pause();
            return (self.lock(), true);
        }
        if s.polls() && !*slept {
            st.spin_judge.record(false);
        }
        *slept = true;
        (st, false)
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

impl Producer {
    /// A producer that listens on `path` (mode and allowed uids from `cfg`). A stale
    /// socket file left by a crashed producer is replaced; a live one is never stolen.
    pub fn bind(path: impl AsRef<Path>, cfg: ProducerConfig) -> Result<Producer, BindError> {
        cfg.check().map_err(BindError::Config)?;
        let listener = SeqpacketListener::bind(path.as_ref(), cfg.socket_mode)?;
        set_nonblocking(listener.as_fd())?;
        let path = listener.path().to_path_buf();
        let mut p = Producer::start(cfg, Some(listener))?;
        p.path = Some(path);
        Ok(p)
    }

    /// A producer with no socket path: hand it connected sockets with
    /// [`Producer::add_connection`].
    pub fn new(cfg: ProducerConfig) -> Result<Producer, BindError> {
        cfg.check().map_err(BindError::Config)?;
        Producer::start(cfg, None)
    }

    fn start(
        cfg: ProducerConfig,
        listener: Option<SeqpacketListener>,
    ) -> Result<Producer, BindError> {
        let policy = cfg.policy;
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
                spin_judge: SpinJudge::default(),
                notes_generation: 0,
                policy,
                description: Vec::new(),
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
            .map_err(|e| BindError::Os {
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
    pub fn add_connection(&self, sock: OwnedFd) -> Result<(), AddConnectionError> {
        crate::os::fdpass::check_unix_socket(sock.as_fd(), libc::SOCK_SEQPACKET, "connection")
            .map_err(AddConnectionError::NotASeqpacketSocket)?;
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
    /// or [`Producer::wait_for_consumers`] from another thread
    /// ([`PublishError::Interrupted`], [`WaitError::Interrupted`]).
    pub fn waker(&self) -> Waker {
        self.inner.waker.clone()
    }

    /// Consumers connected now.
    pub fn consumer_count(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Waits until at least `n` consumers are connected, up to `timeout` (`None`:
    /// forever). [`WaitError::Timeout`] or [`WaitError::Interrupted`] otherwise.
    pub fn wait_for_consumers(&self, n: usize, timeout: Option<Duration>) -> Result<(), WaitError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.lock();
        loop {
            if st.conns.len() >= n {
                return Ok(());
            }
            if self.inner.waker.take() {
                return Err(WaitError::Interrupted);
            }
            let step = Duration::from_millis(20);
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(WaitError::Timeout);
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

    /// Sets the policy of every consumer, connected now or joining later (until
    /// changed again; [`Producer::set_policy`] still sets one consumer's).
    pub fn set_default_policy(&self, policy: Policy) {
        let mut st = self.inner.lock();
        st.policy = policy;
        for c in st.conns.iter_mut() {
            c.policy = policy;
        }
    }

    /// The policy consumers get when they join.
    pub fn default_policy(&self) -> Policy {
        self.inner.lock().policy
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
        st.snapshot(&self.inner.cfg)
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
    /// consumer holding the most is cut off. [`PublishError::NoSlot`] means the
    /// caller itself holds every slot unpublished; [`PublishError::TooLarge`], a
    /// frame over [`MAX_SLOT_BYTES`](crate::frame::MAX_SLOT_BYTES).
    pub fn acquire(&self, len: usize) -> Result<WriteSlot, PublishError> {
        // Slot sizes are whole pages, and MAX_SLOT_BYTES is one.
        if len > MAX_SLOT_BYTES {
            return Err(PublishError::TooLarge {
                what: "frame",
                len,
                offset: 0,
                max: MAX_SLOT_BYTES,
            });
        }
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.block_timeout;
        // Taken when every slot is held; `slept` once it slept.
        let mut spin: Option<Spin> = None;
        let mut slept = false;
        let mut st = inner.lock();
        loop {
            st.drain_releases(inner);
            let aid = st.arena_for(inner, len)?;
            if let Some(slot) = st.ledger.acquire(aid) {
                if spin.as_ref().is_some_and(Spin::polls) && !slept {
                    st.spin_judge.record(true);
                }
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
            let again;
            (st, again) = inner.poll_step(st, &mut spin, &mut slept);
            if again {
                continue;
            }
            if inner.waker.take() {
                return Err(PublishError::Interrupted);
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
                    _ => {
                        return Err(PublishError::NoSlot {
                            waited: inner.cfg.block_timeout,
                        });
                    }
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
    pub fn send_side(&self, payload: &[u8], sticky_key: u32) -> Result<(), PublishError> {
        if payload.len() > MAX_SIDE_PAYLOAD {
            return Err(PublishError::TooLarge {
                what: "side message",
                len: payload.len(),
                offset: 0,
                max: MAX_SIDE_PAYLOAD,
            });
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

    /// Sets what a probe ([`Consumer::probe`](crate::frame::Consumer::probe)) is
    /// told about this producer: at most [`MAX_DESCRIPTION`](crate::frame::MAX_DESCRIPTION)
    /// bytes, opaque to the frame channel (the plugin sends its caps). A probe is
    /// answered and closed, never a consumer: it is counted in
    /// [`ProducerStats::probes`] only.
    pub fn set_description(&self, payload: &[u8]) -> Result<(), PublishError> {
        if payload.len() > crate::frame::MAX_DESCRIPTION {
            return Err(PublishError::TooLarge {
                what: "description",
                len: payload.len(),
                offset: 0,
                max: crate::frame::MAX_DESCRIPTION,
            });
        }
        self.inner.lock().description = payload.to_vec();
        Ok(())
    }

    /// The latest note of each consumer that sent one (id, payload), in join order.
    /// Notes are the consumers' word: check them like any peer input.
    pub fn notes(&self) -> Vec<(u32, Vec<u8>)> {
        let st = self.inner.lock();
        st.conns
            .iter()
            .filter_map(|c| c.note.clone().map(|n| (c.id, n)))
            .collect()
    }

    /// A number that changes whenever a consumer joins, leaves or sends a note: a
    /// caller can skip re-reading [`Producer::notes`] while it stays the same.
    pub fn notes_generation(&self) -> u64 {
        self.inner.lock().notes_generation
    }

    /// Cuts consumer `id` off, telling it `reason`. Returns whether it was here.
    pub fn disconnect(&self, id: u32, reason: &str) -> bool {
        let mut st = self.inner.lock();
        let Some(i) = st.conns.iter().position(|c| c.id == id) else {
            return false;
        };
        st.remove(&self.inner, i, state::Leave::CutOff, reason.to_owned());
        true
    }

    /// Forgets the sticky message of `key` (late joiners no longer get it). Returns
    /// whether there was one.
    pub fn forget_sticky(&self, key: u32) -> bool {
        self.inner.lock().sticky.remove(&key).is_some()
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
                    code: goodbye::CLEAN,
                    reason: "producer stopped".into(),
                },
                &[],
                Some(deadline),
            );
        }
    }
}
