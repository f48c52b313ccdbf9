//! The buffer pool `shmringsink` proposes upstream: every buffer is a shared slot, so
//! upstream renders straight into the memory consumers will read (zero copy).
//!
//! Each buffer's single memory wraps a [`WriteSlot`]. `render` recognises such a
//! buffer by its `GstMemory` (the [`Registry`], keyed by the memory object: a data
//! address can belong to a new slot while an old buffer still points at it), takes the slot out and publishes
//! it with a local hold ([`HeldSlot`]): the slot is not reused while the memory lives
//! (GStreamer may keep the buffer, e.g. as the sink's last sample, or push it twice).
//! A published buffer must never be written again, so when it comes back to the pool
//! it is discarded (`TAG_MEMORY`) and the next acquire gets a fresh slot; a buffer
//! dropped unpublished gives its slot back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use gst::glib;
use gst::subclass::prelude::*;
use shmring::frame::HeldSlot;
use shmring::{Producer, WriteSlot};

/// The slot a pool buffer's memory wraps.
pub(crate) enum SlotState {
    /// Handed to upstream for writing.
    Writable(WriteSlot),
    /// Published; kept (for its `Drop`) until the memory goes.
    Published { _held: HeldSlot },
    /// Being published.
    Taken,
}

/// A slot while a buffer wraps it.
pub(crate) type Holder = Mutex<SlotState>;

/// Slot holders by their `GstMemory` (address of the live memory object).
#[derive(Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<usize, Weak<Holder>>>,
}

impl Registry {
    /// The holder of the memory object at `addr`, if it is one of ours.
    pub(crate) fn get(&self, addr: usize) -> Option<Arc<Holder>> {
        self.map.lock().unwrap().get(&addr)?.upgrade()
    }

    fn insert(&self, addr: usize, h: &Arc<Holder>) {
        self.map.lock().unwrap().insert(addr, Arc::downgrade(h));
    }

    fn remove(&self, addr: usize, h: &Arc<Holder>) {
        let mut m = self.map.lock().unwrap();
        // A new slot at the same address may have replaced this entry already.
        if m.get(&addr).is_some_and(|w| w.as_ptr() == Arc::as_ptr(h)) {
            m.remove(&addr);
        }
    }
}

struct Owned {
    holder: Arc<Holder>,
    registry: Arc<Registry>,
    addr: usize,
}

unsafe extern "C" fn free_owned(p: glib::ffi::gpointer) {
    // SAFETY: `p` is the Box<Owned> leaked in `alloc_buffer`, given to GStreamer once
    // as the memory's user data; this notify runs exactly once, when the memory goes.
    let o = unsafe { Box::from_raw(p as *mut Owned) };
    o.registry.remove(o.addr, &o.holder);
    // Dropping the holder drops an unpublished slot, which gives it back.
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct Pool {
        pub(super) producer: Mutex<Option<Arc<Producer>>>,
        pub(super) registry: Mutex<Option<Arc<Registry>>>,
        pub(super) size: AtomicUsize,
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
            let Some((_caps, size, _min, _max)) = config.params() else {
                return false;
            };
            self.size.store(size as usize, Ordering::Relaxed);
            self.parent_set_config(config)
        }

        fn alloc_buffer(
            &self,
            _params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            let producer = self
                .producer
                .lock()
                .unwrap()
                .clone()
                .ok_or(gst::FlowError::Flushing)?;
            let registry = self
                .registry
                .lock()
                .unwrap()
                .clone()
                .ok_or(gst::FlowError::Flushing)?;
            let size = self.size.load(Ordering::Relaxed);
            let slot = producer.acquire(size).map_err(|e| match e {
                shmring::Error::Interrupted => gst::FlowError::Flushing,
                _ => gst::FlowError::Error,
            })?;
            let ptr = slot.as_mut_ptr();
            let capacity = slot.capacity();
            let holder: Arc<Holder> = Arc::new(Mutex::new(SlotState::Writable(slot)));
            let owned = Box::into_raw(Box::new(Owned {
                holder: holder.clone(),
                registry: registry.clone(),
                addr: 0,
            }));
            // SAFETY: `ptr` is the start of a slot of `capacity` bytes, writable through
            // the producer's own mapping and handed out to us alone by the ledger; the
            // holder keeps the slot (and its arena mapping) alive until GStreamer
            // frees the memory and calls `free_owned`. size <= capacity (acquire
            // returned a slot of at least `size` bytes). Consumers can only map the
            // arena read-only, so nobody else writes this memory.
            let mem = unsafe {
                gst::ffi::gst_memory_new_wrapped(
                    0,
                    ptr as glib::ffi::gpointer,
                    capacity,
                    0,
                    size,
                    owned as glib::ffi::gpointer,
                    Some(free_owned),
                )
            };
            // SAFETY: `owned` is ours until the memory is freed, which cannot happen
            // before we hand the memory to a buffer below.
            unsafe { (*owned).addr = mem as usize };
            registry.insert(mem as usize, &holder);
            let mut buffer = gst::Buffer::new();
            // SAFETY: a new memory with full transfer from gst_memory_new_wrapped.
            let mem: gst::Memory = unsafe { glib::translate::from_glib_full(mem) };
            buffer.get_mut().expect("fresh buffer").append_memory(mem);
            Ok(buffer)
        }

        fn release_buffer(&self, mut buffer: gst::Buffer) {
            let published = buffer.n_memory() != 1 || {
                let addr = buffer.peek_memory(0).as_ptr() as usize;
                let reg = self.registry.lock().unwrap().clone();
                reg.and_then(|r| r.get(addr))
                    .is_none_or(|h| !matches!(*h.lock().unwrap(), SlotState::Writable(_)))
            };
            if published {
                // Its slot went to the consumers: never hand this memory out again.
                buffer.make_mut().set_flags(gst::BufferFlags::TAG_MEMORY);
            }
            self.parent_release_buffer(buffer);
        }
    }
}

glib::wrapper! {
    /// A buffer pool whose buffers are shared slots of a [`Producer`].
    pub struct SlotPool(ObjectSubclass<imp::Pool>) @extends gst::BufferPool, gst::Object;
}

impl SlotPool {
    pub(crate) fn new(producer: Arc<Producer>, registry: Arc<Registry>) -> SlotPool {
        let p: SlotPool = glib::Object::new();
        *p.imp().producer.lock().unwrap() = Some(producer);
        *p.imp().registry.lock().unwrap() = Some(registry);
        p
    }
}
