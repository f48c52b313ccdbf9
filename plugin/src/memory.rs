//! Shared memory handed to GStreamer without a copy: one `GstMemory` wrapping a range
//! of a slot, owning what keeps the slot alive, for `shmringsink`'s pool (slots
//! upstream writes into) and `shmringsrc` (slots downstream reads).

use gst::glib;

/// Drops the owner boxed by [`wrap`] when GStreamer frees its memory.
unsafe extern "C" fn free_owner<T>(p: glib::ffi::gpointer) {
    // SAFETY: `p` is the Box leaked by `wrap`, handed to GStreamer exactly once as
    // the memory's user data; GStreamer calls this notify exactly once.
    drop(unsafe { Box::from_raw(p as *mut T) });
}

/// A `GstMemory` of `size` bytes at `ptr` (of `maxsize` mapped there), flagged
/// read-only when `readonly`, that owns `owner` and drops it when GStreamer frees
/// the memory. Also returns where the owner now lives (valid until then).
///
/// # Safety
///
/// `ptr..ptr + maxsize` must stay mapped, readable (and writable unless `readonly`,
/// by nobody but the memory's holder) for as long as `owner` lives, and
/// `size <= maxsize`.
pub(crate) unsafe fn wrap<T: Send + 'static>(
    ptr: *const u8,
    maxsize: usize,
    size: usize,
    readonly: bool,
    owner: T,
) -> (gst::Memory, *mut T) {
    let boxed = Box::into_raw(Box::new(owner));
    let flags = if readonly {
        gst::ffi::GST_MEMORY_FLAG_READONLY
    } else {
        0
    };
    // SAFETY: the caller vouches for the range for as long as `owner` lives, and
    // `owner` lives until GStreamer frees the memory and calls `free_owner`.
    let mem = unsafe {
        gst::ffi::gst_memory_new_wrapped(
            flags,
            ptr as glib::ffi::gpointer,
            maxsize,
            0,
            size,
            boxed as glib::ffi::gpointer,
            Some(free_owner::<T>),
        )
    };
    // SAFETY: a new memory with full transfer from gst_memory_new_wrapped.
    (unsafe { glib::translate::from_glib_full(mem) }, boxed)
}
