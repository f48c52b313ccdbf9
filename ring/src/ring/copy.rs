//! Copying a large payload into shared memory that another process will read.
//!
//! A frame copied into a slot is read next by a consumer on another core, not by
//! the writer: ordinary stores would first pull every destination line into the
//! writer's cache (a read for ownership) and then evict what the writer was working
//! on. From [`STREAM_MIN`] bytes up, x86-64 copies with non-temporal (streaming)
//! stores instead, which write whole lines straight towards memory; below it, and on
//! other targets, it is a plain `memcpy`.

/// Copies smaller than this use `memcpy` (the destination may as well stay cached).
pub const STREAM_MIN: usize = 2 << 20;

/// Copies `src` to `dst` for another process to read. Returns after the bytes are
/// ordered before any later store (an `sfence` follows streaming stores), so a
/// release store that publishes them afterwards (a ring index) covers them.
///
/// # Safety
///
/// `dst` must be valid for writes of `src.len()` bytes and must not overlap `src`.
/// It may be shared memory that other processes read (or write) at the same time:
/// nothing here reads `dst`, and what they see is bytes, never a Rust value.
pub(crate) unsafe fn to_shared(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_MIN {
        // SAFETY: as this function's contract says; SSE2 is part of x86-64.
        unsafe { stream_x86_64(dst, src) };
        return;
    }
    // SAFETY: the caller guarantees `dst` is writable for `src.len()` bytes and does
    // not overlap `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
}

#[cfg(target_arch = "x86_64")]
unsafe fn stream_x86_64(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let len = src.len();
    let s = src.as_ptr();
    // Streaming stores need a 16-byte aligned destination: plain copy up to it.
    let head = (dst as usize).wrapping_neg() & 15;
    let head = head.min(len);
    // SAFETY: `head <= len`: inside `src` and the caller's `dst` range, which do
    // not overlap.
    unsafe { std::ptr::copy_nonoverlapping(s, dst, head) };
    let mut i = head;
    while i + 64 <= len {
        // SAFETY: `i + 64 <= len`, so all four 16-byte loads lie in `src` (unaligned
        // loads) and all four stores in the caller's `dst` range; `dst + head` is
        // 16-byte aligned and `i - head` a multiple of 64, so each store is aligned
        // as `_mm_stream_si128` requires.
        unsafe {
            let a = _mm_loadu_si128(s.add(i).cast::<__m128i>());
            let b = _mm_loadu_si128(s.add(i + 16).cast::<__m128i>());
            let c = _mm_loadu_si128(s.add(i + 32).cast::<__m128i>());
            let d = _mm_loadu_si128(s.add(i + 48).cast::<__m128i>());
            _mm_stream_si128(dst.add(i).cast::<__m128i>(), a);
            _mm_stream_si128(dst.add(i + 16).cast::<__m128i>(), b);
            _mm_stream_si128(dst.add(i + 32).cast::<__m128i>(), c);
            _mm_stream_si128(dst.add(i + 48).cast::<__m128i>(), d);
        }
        i += 64;
    }
    // SAFETY: the last `len - i` bytes (`i <= len`), inside both ranges.
    unsafe { std::ptr::copy_nonoverlapping(s.add(i), dst.add(i), len - i) };
    // Streaming stores are weakly ordered: fence them before whatever publishes them.
    // SAFETY: SSE is part of x86-64; a fence has no other precondition.
    unsafe { _mm_sfence() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte_at_every_alignment_and_touches_nothing_else() {
        for len in [
            0,
            1,
            15,
            17,
            63,
            64,
            65,
            1000,
            STREAM_MIN - 1,
            STREAM_MIN,
            STREAM_MIN + 77,
        ] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for shift in [0, 1, 7, 15, 16] {
                let mut buf = vec![0xAAu8; len + 64];
                // SAFETY: `shift + len <= buf.len()`; `src` is another allocation.
                unsafe { to_shared(buf.as_mut_ptr().add(shift), &src) };
                assert!(buf[..shift].iter().all(|&b| b == 0xAA), "before, len {len}");
                assert!(
                    buf[shift..shift + len] == src[..],
                    "len {len} shift {shift}"
                );
                assert!(
                    buf[shift + len..].iter().all(|&b| b == 0xAA),
                    "after, len {len}"
                );
            }
        }
    }
}
