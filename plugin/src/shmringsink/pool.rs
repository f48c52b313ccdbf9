//! The buffer pool `shmringsink` proposes upstream: every buffer is a shared slot, so
//! upstream renders straight into the memory consumers will read (zero copy).
//!
//! Each buffer's single memory wraps a [`ReusableSlot`] and names it (qdata on the
//! `GstMemory` object, set when the memory is made and valid while it lives: a data
//! address can belong to a new slot while an old buffer still points at it, a
//! memory object cannot). `render` recognises such a buffer by its memory and
//! publishes the slot in place, keeping it: the slot is not written again while
//! the memory may be read (GStreamer may keep the buffer, e.g. as the sink's last
//! sample, or push it twice). Who holds the slot is known to the producer's ledger
//! alone; the pool only asks it ([`ReusableSlot::try_rearm`]).
//!
//! Buffers stay bound to their slots, so a steady stream allocates nothing per
//! buffer. A buffer that comes back whole (its one memory ours and referenced by
//! nothing else) waits in the pool's own queue, still holding its slot. An acquire
//! takes the newest whose slot it can write again (the likeliest still cached; for
//! frames of 1 MiB and more it first gives the consumers a moment to release the
//! newest): never published, or published and released by every consumer; a slot a
//! consumer still holds is never written. If none is ready, a new buffer is made
//! (up to the configured maximum), else the oldest waiting one is let go (its slot
//! comes back when the consumers release it) and a new one made from a free slot.
//! Anything else that comes back (memory replaced, shared, tagged) is freed, and
//! with its memory goes its slot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use gst::glib;
use gst::glib::translate::IntoGlib;
use gst::subclass::prelude::*;
use shmring::{Producer, ReusableSlot};

/// The slot a pool buffer's memory wraps, shared by the memory (which owns it) and
/// the pool's queue while the buffer waits there.
pub(crate) type Holder = Mutex<ReusableSlot>;

/// The qdata key under which a pool memory names its holder.
fn holder_quark() -> glib::Quark {
    static Q: OnceLock<glib::Quark> = OnceLock::new();
    *Q.get_or_init(|| glib::Quark::from_str("shmring-slot"))
}

/// The holder of the slot `mem` wraps, if `mem` is a memory one of our pools made
/// (of any sink: the caller checks the producer).
pub(crate) fn holder_of(mem: &gst::MemoryRef) -> Option<Arc<Holder>> {
    // SAFETY: `mem` is a live memory object (we hold a reference through the
    // borrow), so reading its qdata is sound.
    let p = unsafe {
        gst::ffi::gst_mini_object_get_qdata(
            mem.as_mut_ptr() as *mut gst::ffi::GstMiniObject,
            holder_quark().into_glib(),
        )
    };
    if p.is_null() {
        return None;
    }
    // SAFETY: only `alloc_buffer` sets this qdata, to the `Arc<Holder>` the
    // memory owns (its wrapped user data), which lives until the memory is freed:
    // after every borrow of it, including ours.
    Some(unsafe { (*(p as *const Arc<Holder>)).clone() })
}

mod imp {
    use super::*;
    use shmring::measure::quantile;

    /// Buffers that came back, oldest first, and how many of ours exist.
    pub(super) struct Idle {
        queue: VecDeque<(gst::Buffer, Arc<Holder>)>,
        /// Buffers of ours in existence (waiting here, upstream, or in flight).
        live: usize,
        /// Acquires in the current trim window, and the fewest buffers any of them
        /// left waiting.
        acquires: u32,
        low: usize,
        /// Acquires waiting for a buffer to come back (a release wakes them only
        /// then: a futex call per buffer otherwise).
        waiting: usize,
        /// What waiting for the newest buffer needed, and whether it pays.
        hot: HotReuse,
    }

    /// Waiting for the newest buffer, judged on what it did.
    ///
    /// - **How long** a wait may last: twice the 90th percentile of what the last
    ///   32 waits that caught the buffer needed, 20 to 300 µs (300 µs until 8 did).
    /// - **Whether it pays**, from the producer's own pace: the time from one
    ///   acquire to the next (upstream writing the frame, the render, the wait
    ///   itself). Acquires take turns in blocks of 16, waiting and not; after 4
    ///   blocks of each, the median cycle decides: the wait stays on for the next
    ///   1024 acquires if it made the cycle at least 2 % shorter, off otherwise (a
    ///   tie goes to not waiting, which costs no CPU: a paced stream's cycle is its
    ///   frame interval either way); then the turns start again. What a hot buffer
    ///   saves depends on the machine's caches (a 3 MB frame written into the same
    ///   buffer again or into one of two is 99 against 119 µs on one machine, 1.4
    ///   against 1.8 ms at 4K on another) and on how soon the consumer releases:
    ///   measured here, not assumed.
    #[derive(Default)]
    pub(super) struct HotReuse {
        /// Wait times of the last hits, µs.
        needed: VecDeque<u32>,
        /// Twice their 90th percentile, once there are 8.
        wait: Option<std::time::Duration>,
        /// The previous acquire: when, and whether it waited.
        last: Option<(std::time::Instant, bool)>,
        /// Acquires into the current trial (1 to `2 * TRIAL_BLOCKS * BLOCK`), or
        /// none while a decision holds.
        trial: Option<u32>,
        /// Cycles of the current trial, µs: with the wait, without.
        with: Vec<u32>,
        without: Vec<u32>,
        /// The decision and how many acquires it still holds for.
        on: bool,
        holds: u32,
        pub(super) total_hits: u64,
        pub(super) total_misses: u64,
        /// The last trial's verdict and its median cycles (µs, with and without
        /// the wait), until the pool logs it.
        pub(super) decided: Option<(bool, u32, u32)>,
    }

    /// Acquires in a row that wait or do not, during a trial.
    const BLOCK: u32 = 16;
    /// Blocks of each kind in a trial.
    const TRIAL_BLOCKS: u32 = 4;
    /// Acquires a trial's decision holds for.
    const DECISION_HOLDS: u32 = 1024;

    impl HotReuse {
        /// How long the next wait may last (worked out when a hit adds a
        /// measurement, not per acquire).
        pub(super) fn wait(&self) -> std::time::Duration {
            self.wait.unwrap_or(HOT_REUSE_WAIT)
        }

        fn rework_wait(&mut self) {
            if self.needed.len() < 8 {
                return;
            }
            let mut v = [0u32; 32];
            let v = &mut v[..self.needed.len()];
            for (d, s) in v.iter_mut().zip(&self.needed) {
                *d = *s;
            }
            v.sort_unstable();
            let p90 = quantile(v, 0.9).unwrap_or(0) as u64;
            let us = (2 * p90).clamp(20, HOT_REUSE_WAIT.as_micros() as u64);
            self.wait = Some(std::time::Duration::from_micros(us));
        }

        /// An acquire starts at `now`: counts the cycle the previous one began, and
        /// says whether this one waits for the newest buffer.
        pub(super) fn acquire(&mut self, now: std::time::Instant) -> bool {
            if let Some((then, waited)) = self.last {
                let us = now.saturating_duration_since(then).as_micros();
                let us = us.min(u32::MAX as u128) as u32;
                if self.trial.is_some() {
                    if waited {
                        self.with.push(us);
                    } else {
                        self.without.push(us);
                    }
                }
            }
            let wait = match self.trial {
                None if self.holds > 0 => {
                    self.holds -= 1;
                    self.on
                }
                // A trial opens with its first block, which waits.
                None => {
                    self.with.clear();
                    self.without.clear();
                    self.trial = Some(1);
                    true
                }
                Some(n) if n < 2 * TRIAL_BLOCKS * BLOCK => {
                    self.trial = Some(n + 1);
                    (n / BLOCK) % 2 == 0
                }
                Some(_) => {
                    self.decide();
                    self.on
                }
            };
            self.last = Some((now, wait));
            wait
        }

        /// Ends a trial: waiting stays on only if its median cycle was at least
        /// 2 % shorter.
        fn decide(&mut self) {
            let median = |v: &mut Vec<u32>| {
                v.sort_unstable();
                quantile(v, 0.5)
            };
            let (w, wo) = (median(&mut self.with), median(&mut self.without));
            let pays = match (w, wo) {
                (Some(w), Some(wo)) => (w as u64) * 100 < (wo as u64) * 98,
                _ => false,
            };
            self.decided = Some((pays, w.unwrap_or(0), wo.unwrap_or(0)));
            self.on = pays;
            self.holds = DECISION_HOLDS;
            self.trial = None;
        }

        /// A wait ended, after `took`, with the newest buffer or not.
        pub(super) fn record(&mut self, hit: bool, took: std::time::Duration) {
            if hit {
                self.total_hits += 1;
                self.needed
                    .push_back(took.as_micros().min(u32::MAX as u128) as u32);
                if self.needed.len() > 32 {
                    self.needed.pop_front();
                }
                self.rework_wait();
            } else {
                self.total_misses += 1;
            }
        }
    }

    /// Buffers of this size and more (frames that stop fitting in cache when
    /// several cycle) may be worth waiting for: an acquire first gives the
    /// consumers a moment (at most `HOT_REUSE_WAIT`, what [`HotReuse`] measured it
    /// needs) to release the newest returned buffer, which is then written again
    /// while still cached, for as long as [`HotReuse`] finds that this makes the
    /// producer faster.
    const HOT_REUSE_MIN: usize = 1 << 20;
    const HOT_REUSE_WAIT: std::time::Duration = std::time::Duration::from_micros(300);

    /// Acquires after which buffers that waited unused throughout are let go.
    const TRIM_WINDOW: u32 = 64;

    impl Default for Idle {
        fn default() -> Self {
            Idle {
                queue: VecDeque::new(),
                live: 0,
                acquires: 0,
                low: usize::MAX,
                waiting: 0,
                hot: HotReuse::default(),
            }
        }
    }

    impl Idle {
        /// Counts an acquire that finds `waiting` buffers (before taking one). Once
        /// per window, if every acquire left one waiting, that one is surplus (a
        /// burst made it, the stream no longer needs it): it goes, and its slot
        /// with it, so the pool shrinks back to what the stream uses.
        fn trim(&mut self) -> Option<gst::Buffer> {
            self.low = self.low.min(self.queue.len().saturating_sub(1));
            self.acquires += 1;
            if self.acquires < TRIM_WINDOW {
                return None;
            }
            let surplus = self.low > 0;
            self.acquires = 0;
            self.low = usize::MAX;
            if !surplus {
                return None;
            }
            let (buffer, _) = self.queue.pop_front()?;
            self.live -= 1;
            Some(buffer)
        }
    }

    pub struct Pool {
        /// The sink's producer, not kept alive by the pool: once the sink stopped
        /// (and dropped it), buffers are no longer made and nobody is served.
        pub(super) producer: Mutex<Option<std::sync::Weak<Producer>>>,
        pub(super) size: AtomicUsize,
        /// Most buffers at once (0: no limit but the slots').
        max: AtomicUsize,
        idle: Mutex<Idle>,
        /// Signalled when a buffer comes back or the pool starts flushing.
        returned: Condvar,
        /// Inactive or flushing (GStreamer's flush_start/flush_stop; a new pool is
        /// inactive).
        flushing: AtomicBool,
    }

    impl Default for Pool {
        fn default() -> Self {
            Pool {
                producer: Mutex::default(),
                size: AtomicUsize::default(),
                max: AtomicUsize::default(),
                idle: Mutex::default(),
                returned: Condvar::new(),
                flushing: AtomicBool::new(true),
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for Pool {
        const NAME: &'static str = "GstShmringBufferPool";
        type Type = super::SlotPool;
        type ParentType = gst::BufferPool;
    }

    impl ObjectImpl for Pool {}
    impl GstObjectImpl for Pool {}

    impl BufferPoolImpl for Pool {
        fn options() -> &'static [&'static str] {
            &["GstBufferPoolOptionVideoMeta"]
        }

        fn set_config(&self, config: &mut gst::BufferPoolConfigRef) -> bool {
            let Some((_caps, size, _min, max)) = config.params() else {
                return false;
            };
            self.size.store(size as usize, Ordering::Relaxed);
            self.max.store(max as usize, Ordering::Relaxed);
            self.parent_set_config(config)
        }

        /// Nothing is made ahead: the first acquires make buffers, and slots are
        /// taken only for buffers upstream asks for.
        fn start(&self) -> bool {
            true
        }

        fn stop(&self) -> bool {
            let idle = {
                let mut g = self.idle.lock().unwrap();
                g.live -= g.queue.len();
                std::mem::take(&mut g.queue)
            };
            drop(idle);
            self.parent_stop()
        }

        fn flush_start(&self) {
            self.flushing.store(true, Ordering::Release);
            let _g = self.idle.lock().unwrap();
            self.returned.notify_all();
        }

        fn flush_stop(&self) {
            self.flushing.store(false, Ordering::Release);
        }

        fn acquire_buffer(
            &self,
            params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            let dont_wait =
                params.is_some_and(|p| p.flags().contains(gst::BufferPoolAcquireFlags::DONTWAIT));
            let mut g = self.idle.lock().unwrap();
            if let Some(surplus) = g.trim() {
                drop(g);
                drop(surplus);
                g = self.idle.lock().unwrap();
            }
            // One look at the newest buffer per acquire, not per pass of the loop.
            let mut waited_hot = false;
            loop {
                if self.flushing.load(Ordering::Acquire) {
                    return Err(gst::FlowError::Flushing);
                }
                // Frames too big to stay cached when several cycle: give the
                // consumer a moment to release the newest (it is usually at it),
                // so that the same hot memory is written again, while that is
                // measured to make the producer faster (a consumer that keeps
                // buffers longer, a queue downstream, makes every wait miss).
                if !waited_hot && self.size.load(Ordering::Relaxed) >= HOT_REUSE_MIN {
                    waited_hot = true;
                    let start = std::time::Instant::now();
                    if g.hot.acquire(start) {
                        if let Some((_, newest)) = g.queue.back() {
                            let newest = newest.clone();
                            let wait = g.hot.wait();
                            drop(g);
                            let mut ok = rearm(&newest);
                            while !ok && start.elapsed() < wait {
                                for _ in 0..256 {
                                    std::hint::spin_loop();
                                }
                                ok = rearm(&newest);
                            }
                            g = self.idle.lock().unwrap();
                            g.hot.record(ok, start.elapsed());
                        }
                    }
                    if let Some((pays, with, without)) = g.hot.decided.take() {
                        gst::debug!(
                            super::super::CAT,
                            "waiting for the newest buffer {}: median cycle {with} µs with, \
                             {without} µs without ({} hits, {} misses so far)",
                            if pays { "pays" } else { "does not pay" },
                            g.hot.total_hits,
                            g.hot.total_misses
                        );
                    }
                }
                // The newest first: its memory is the likeliest still in cache
                // (cycling through every buffer would stream a frame's worth of
                // cold memory per frame); one a consumer still holds is skipped.
                if let Some(i) = g.queue.iter().rposition(|(_, h)| rearm(h)) {
                    let (buffer, _) = g.queue.remove(i).expect("position in the queue");
                    return Ok(buffer);
                }
                let max = self.max.load(Ordering::Relaxed);
                let oldest = if max == 0 || g.live < max {
                    g.live += 1;
                    None
                } else if let Some((buffer, _)) = g.queue.pop_front() {
                    // Every buffer is upstream's or held by a consumer: let the
                    // oldest go (its slot comes back when released) for a new one.
                    Some(buffer)
                } else if dont_wait {
                    return Err(gst::FlowError::Eos);
                } else {
                    g.waiting += 1;
                    g = self.returned.wait(g).unwrap();
                    g.waiting -= 1;
                    continue;
                };
                drop(g);
                drop(oldest);
                // May wait for a free slot (the producer's block timeout).
                return self.alloc_buffer(params).inspect_err(|_| {
                    self.idle.lock().unwrap().live -= 1;
                });
            }
        }

        fn alloc_buffer(
            &self,
            _params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            let producer = self
                .producer
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|p| p.upgrade())
                .ok_or(gst::FlowError::Flushing)?;
            let size = self.size.load(Ordering::Relaxed);
            let slot = producer.acquire(size).map_err(|e| match e {
                shmring::PublishError::Interrupted => gst::FlowError::Flushing,
                _ => gst::FlowError::Error,
            })?;
            let (ptr, capacity) = (slot.as_mut_ptr(), slot.capacity());
            let holder: Arc<Holder> = Arc::new(Mutex::new(ReusableSlot::from(slot)));
            // SAFETY: `ptr` is the start of a slot of `capacity` bytes, writable through
            // the producer's own mapping and handed out to us alone by the ledger; the
            // holder keeps the slot and its arena mapping alive until GStreamer frees
            // the memory. size <= capacity (acquire returned a slot of at least `size`
            // bytes). Consumers can only map the arena read-only, so nobody else
            // writes this memory. The memory is handed out for writing only while
            // its slot is writable: never while a consumer holds it (see `rearm`).
            let (mem, owned) = unsafe { crate::memory::wrap(ptr, capacity, size, false, holder) };
            // SAFETY: `mem` is a fresh memory nobody else has seen; `owned` (the
            // holder it owns) lives until it is freed, so the qdata never dangles
            // while anyone can read it (`holder_of`). No destroy notify: the
            // memory's own free drops the holder.
            unsafe {
                gst::ffi::gst_mini_object_set_qdata(
                    mem.as_mut_ptr() as *mut gst::ffi::GstMiniObject,
                    holder_quark().into_glib(),
                    owned as glib::ffi::gpointer,
                    None,
                )
            };
            let mut buffer = gst::Buffer::new();
            buffer.get_mut().expect("fresh buffer").append_memory(mem);
            Ok(buffer)
        }

        fn release_buffer(&self, mut buffer: gst::Buffer) {
            // GStreamer reset its timestamps, flags (but TAG_MEMORY) and metas.
            let holder = self
                .holder(&buffer)
                .filter(|_| self.ready_for_reuse(&mut buffer));
            let mut g = self.idle.lock().unwrap();
            let gone = match holder {
                Some(h) => {
                    g.queue.push_back((buffer, h));
                    None
                }
                None => {
                    g.live -= 1;
                    Some(buffer)
                }
            };
            if g.waiting > 0 {
                self.returned.notify_one();
            }
            drop(g);
            // Freed outside the lock: its memory takes the slot (or the hold) along.
            drop(gone);
        }
    }

    impl Pool {
        /// Whether a returned `buffer` whose memory `holder` holds the slot of may
        /// wait for reuse, and if so makes it whole again. Its one memory is still
        /// the one made for the slot (`holder` was found by the memory object) and
        /// this buffer's alone: nobody reads it any more. Resizing tagged it (audio
        /// buffers are shorter than the pool's size), which is no reason to let it
        /// go: its full size comes back.
        fn ready_for_reuse(&self, buffer: &mut gst::Buffer) -> bool {
            if buffer.peek_memory(0).offset() != 0 || !buffer.is_all_memory_writable() {
                return false;
            }
            let Some(b) = buffer.get_mut() else {
                return false;
            };
            let size = self.size.load(Ordering::Relaxed);
            if b.size() != size {
                b.set_size(size);
            }
            b.unset_flags(gst::BufferFlags::TAG_MEMORY);
            true
        }

        /// The holder of the slot `buffer`'s one memory wraps, if it is ours.
        fn holder(&self, buffer: &gst::Buffer) -> Option<Arc<Holder>> {
            if buffer.n_memory() != 1 {
                return None;
            }
            holder_of(buffer.peek_memory(0))
        }
    }

    /// Makes a waiting buffer's slot writable: true when it is being written (never
    /// published) or was just taken back from the consumers, who all released it.
    /// A slot being published right now (its holder locked by `render`) is not.
    fn rearm(holder: &Holder) -> bool {
        holder.try_lock().is_ok_and(|mut slot| slot.try_rearm())
    }
}

glib::wrapper! {
    /// A buffer pool whose buffers are shared slots of a [`Producer`].
    pub struct SlotPool(ObjectSubclass<imp::Pool>) @extends gst::BufferPool, gst::Object;
}

impl SlotPool {
    pub(crate) fn new(producer: &Arc<Producer>) -> SlotPool {
        let p: SlotPool = glib::Object::new();
        *p.imp().producer.lock().unwrap() = Some(Arc::downgrade(producer));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::imp::HotReuse;
    use std::time::{Duration, Instant};

    #[test]
    fn the_hot_buffer_wait_follows_what_it_needed() {
        let mut h = HotReuse::default();
        assert_eq!(h.wait(), Duration::from_micros(300), "until measured");
        // Hits after 30 µs: the wait becomes twice their 90th percentile.
        for _ in 0..16 {
            h.record(true, Duration::from_micros(30));
        }
        assert_eq!(h.wait(), Duration::from_micros(60));
        // Instant hits: never below 20 µs.
        for _ in 0..32 {
            h.record(true, Duration::ZERO);
        }
        assert_eq!(h.wait(), Duration::from_micros(20));
        h.record(false, Duration::from_micros(20));
        assert_eq!((h.total_hits, h.total_misses), (48, 1));
    }

    /// Runs `n` acquires of a producer whose frame takes `with` after an acquire
    /// that waited and `without` after one that did not; returns how many waited.
    fn run(h: &mut HotReuse, t: &mut Instant, n: u32, with: u64, without: u64) -> u32 {
        let mut waited = 0;
        for _ in 0..n {
            let w = h.acquire(*t);
            waited += w as u32;
            *t += Duration::from_micros(if w { with } else { without });
        }
        waited
    }

    #[test]
    fn the_hot_buffer_wait_stays_on_only_where_it_makes_the_producer_faster() {
        // Faster with the wait (a 4K frame written into cached memory): a trial of
        // 64 acquires each way, then on for 1024, then a new trial.
        let mut h = HotReuse::default();
        let mut t = Instant::now();
        assert_eq!(
            run(&mut h, &mut t, 128, 650, 850),
            64,
            "the trial takes turns"
        );
        assert_eq!(run(&mut h, &mut t, 1025, 650, 850), 1025, "kept on");
        assert_eq!(h.decided.take().map(|d| d.0), Some(true));
        assert_eq!(
            run(&mut h, &mut t, 16, 650, 850),
            16,
            "a new trial opens waiting"
        );
        assert_eq!(
            run(&mut h, &mut t, 16, 650, 850),
            0,
            "then its block without"
        );

        // Slower with it (the consumer releases late, the wait only delays).
        let mut h = HotReuse::default();
        let mut t = Instant::now();
        run(&mut h, &mut t, 128, 140, 100);
        assert_eq!(run(&mut h, &mut t, 1025, 140, 100), 0, "off");
        assert_eq!(h.decided, Some((false, 140, 100)));

        // No difference (a paced stream: every cycle is the frame interval), or
        // under 2 %: off, since waiting costs CPU.
        for (with, without) in [(33_333, 33_333), (990, 1000)] {
            let mut h = HotReuse::default();
            let mut t = Instant::now();
            run(&mut h, &mut t, 128, with, without);
            assert_eq!(
                run(&mut h, &mut t, 1025, with, without),
                0,
                "{with} vs {without}"
            );
        }

        // One long pause (a flush, a paused pipeline) in a trial does not decide it.
        let mut h = HotReuse::default();
        let mut t = Instant::now();
        run(&mut h, &mut t, 40, 650, 850);
        t += Duration::from_secs(5);
        run(&mut h, &mut t, 88, 650, 850);
        assert_eq!(run(&mut h, &mut t, 1025, 650, 850), 1025);
    }
}
