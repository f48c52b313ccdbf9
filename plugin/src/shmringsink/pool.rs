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
        /// Acquires left that do not wait for the newest buffer (after a miss).
        skip_hot: u32,
        /// What waiting for the newest buffer needed and caught.
        hot: HotReuse,
    }

    /// Waiting for the newest buffer, judged on what it did: how long the waits
    /// that caught it took (the next wait lasts twice their 90th percentile, 20 to
    /// 300 µs), and how many caught it (fewer than 8 of 32: it stops for 256
    /// acquires, then tries again).
    #[derive(Default)]
    pub(super) struct HotReuse {
        /// Wait times of the last hits, µs.
        needed: VecDeque<u32>,
        /// Twice their 90th percentile, once there are 8.
        wait: Option<std::time::Duration>,
        tries: u32,
        hits: u32,
        pub(super) total_hits: u64,
        pub(super) total_misses: u64,
    }

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
            let p90 = v[(v.len() - 1) * 9 / 10] as u64;
            let us = (2 * p90).clamp(20, HOT_REUSE_WAIT.as_micros() as u64);
            self.wait = Some(std::time::Duration::from_micros(us));
        }

        /// A wait ended, after `took`, with the newest buffer or not. Returns how
        /// many acquires to skip waiting.
        pub(super) fn record(&mut self, hit: bool, took: std::time::Duration) -> u32 {
            self.tries += 1;
            if hit {
                self.hits += 1;
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
            let mut skip = if hit { 0 } else { HOT_REUSE_SKIP };
            if self.tries >= 32 {
                if self.hits < 8 {
                    skip = HOT_REUSE_OFF;
                }
                self.tries = 0;
                self.hits = 0;
            }
            skip
        }
    }

    /// Buffers of this size and more (frames that stop fitting in cache when
    /// several cycle) are worth waiting for a moment: an acquire first gives the
    /// consumers a moment (at most `HOT_REUSE_WAIT`, what [`HotReuse`] measured it
    /// needs) to release the newest returned buffer, which is then written again
    /// while still cached (docs/plugin.md says what it was measured to save). After
    /// a miss, the next `HOT_REUSE_SKIP` acquires do not wait; after too many,
    /// `HOT_REUSE_OFF`.
    const HOT_REUSE_MIN: usize = 1 << 20;
    const HOT_REUSE_WAIT: std::time::Duration = std::time::Duration::from_micros(300);
    const HOT_REUSE_SKIP: u32 = 16;
    const HOT_REUSE_OFF: u32 = 256;

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
                skip_hot: 0,
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
            loop {
                if self.flushing.load(Ordering::Acquire) {
                    return Err(gst::FlowError::Flushing);
                }
                // Frames too big to stay cached when several cycle: give the
                // consumer a moment to release the newest (it is usually at it),
                // so that the same hot memory is written again. A consumer that
                // keeps buffers longer (a queue downstream) makes the wait miss:
                // then it is skipped for a while.
                if g.skip_hot > 0 {
                    g.skip_hot -= 1;
                } else if self.size.load(Ordering::Relaxed) >= HOT_REUSE_MIN {
                    if let Some((_, newest)) = g.queue.back() {
                        let newest = newest.clone();
                        let wait = g.hot.wait();
                        drop(g);
                        let start = std::time::Instant::now();
                        let mut ok = rearm(&newest);
                        while !ok && start.elapsed() < wait {
                            for _ in 0..256 {
                                std::hint::spin_loop();
                            }
                            ok = rearm(&newest);
                        }
                        g = self.idle.lock().unwrap();
                        g.skip_hot = g.hot.record(ok, start.elapsed());
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
    use std::time::Duration;

    #[test]
    fn the_hot_buffer_wait_follows_what_it_needed_and_stops_when_it_misses() {
        let mut h = HotReuse::default();
        assert_eq!(h.wait(), Duration::from_micros(300), "until measured");
        // Hits after 30 µs: the wait becomes twice their 90th percentile.
        for _ in 0..16 {
            assert_eq!(h.record(true, Duration::from_micros(30)), 0);
        }
        assert_eq!(h.wait(), Duration::from_micros(60));
        // Instant hits: never below 20 µs.
        for _ in 0..32 {
            h.record(true, Duration::ZERO);
        }
        assert_eq!(h.wait(), Duration::from_micros(20));
        // A miss skips 16 acquires; 32 tries with fewer than 8 hits, 256.
        let mut h = HotReuse::default();
        let mut skips = Vec::new();
        for i in 0..32 {
            skips.push(h.record(i < 7, Duration::from_micros(20)));
        }
        assert_eq!(skips[10], 16);
        assert_eq!(*skips.last().unwrap(), 256);
        assert_eq!((h.total_hits, h.total_misses), (7, 25));
    }
}
