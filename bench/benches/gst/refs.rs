//! The machine's physical references, measured in the same run as the transports:
//! how long one process takes to wake another (eventfd, unix socket, busy-poll), and
//! what a `memcpy` of a frame costs, hot and cold.

use super::*;

use std::sync::atomic::{AtomicU64, Ordering};

/// How the waiting process is woken.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wake {
    Eventfd,
    Socket,
    /// A pipe: the cheapest wake-up whose writing end stays the writer's own file
    /// description (docs/plugin.md, "Latency").
    Pipe,
    BusyPoll,
}

impl Wake {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Wake::Eventfd => "eventfd",
            Wake::Socket => "socket",
            Wake::Pipe => "pipe",
            Wake::BusyPoll => "busypoll",
        }
    }
}

/// Shared memory both processes see after `fork`: [0] the waker's send time (ns),
/// [1] its sequence number, [2..] the wakee's measured delays (ns).
struct Shared {
    ptr: *mut AtomicU64,
    words: usize,
}

impl Shared {
    fn new(words: usize) -> Shared {
        // SAFETY: an anonymous shared mapping of `words` u64, no fd; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        Shared {
            ptr: p.cast(),
            words,
        }
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words);
        // SAFETY: `i` is inside the mapping, which is zeroed, 8-aligned (page
        // aligned) and lives as long as `self`; AtomicU64 has u64's layout.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.words * 8) };
    }
}

/// One-way wake-up delays (µs, sorted) of `n` wake-ups `period` apart, between this
/// process and a forked child. Called before GStreamer starts any thread.
pub(crate) fn wake_delays(how: Wake, n: usize, period: Duration) -> Vec<f64> {
    let sh = Shared::new(2 + n);
    // SAFETY: eventfd with no pointer arguments; checked below.
    let efd = unsafe { libc::eventfd(0, 0) };
    assert!(efd >= 0, "eventfd");
    let mut sv = [0; 2];
    // SAFETY: `sv` holds the two fds socketpair writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair");
    let mut pp = [0; 2];
    // SAFETY: `pp` holds the two fds pipe writes.
    let r = unsafe { libc::pipe(pp.as_mut_ptr()) };
    assert_eq!(r, 0, "pipe");
    // SAFETY: the bench has started no thread yet (this runs before gst::init), so
    // the child is a plain copy of this single-threaded process; it only touches
    // the shared mapping and the fds, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        for i in 0..n {
            let mut b = [0u8; 8];
            match how {
                // SAFETY: reads 8 bytes into a live buffer from our own eventfd.
                Wake::Eventfd => unsafe {
                    libc::read(efd, b.as_mut_ptr().cast(), 8);
                },
                // SAFETY: reads 1 byte into a live buffer from our socket end.
                Wake::Socket => unsafe {
                    libc::read(sv[1], b.as_mut_ptr().cast(), 1);
                },
                // SAFETY: reads 1 byte into a live buffer from our pipe's reading end.
                Wake::Pipe => unsafe {
                    libc::read(pp[0], b.as_mut_ptr().cast(), 1);
                },
                Wake::BusyPoll => {
                    while sh.at(1).load(Ordering::Acquire) == i as u64 {
                        std::hint::spin_loop();
                    }
                }
            }
            let d = monotonic_ns().saturating_sub(sh.at(0).load(Ordering::Acquire));
            sh.at(2 + i).store(d.max(1), Ordering::Release);
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    for i in 0..n {
        std::thread::sleep(period);
        sh.at(0).store(monotonic_ns(), Ordering::Release);
        let one = 1u64.to_ne_bytes();
        match how {
            // SAFETY: writes 8 bytes from a live buffer to our eventfd.
            Wake::Eventfd => unsafe {
                libc::write(efd, one.as_ptr().cast(), 8);
            },
            // SAFETY: writes 1 byte from a live buffer to our socket end.
            Wake::Socket => unsafe {
                libc::write(sv[0], one.as_ptr().cast(), 1);
            },
            // SAFETY: writes 1 byte from a live buffer to our pipe's writing end.
            Wake::Pipe => unsafe {
                libc::write(pp[1], one.as_ptr().cast(), 1);
            },
            Wake::BusyPoll => sh.at(1).store(i as u64 + 1, Ordering::Release),
        }
        let until = Instant::now() + Duration::from_secs(5);
        while sh.at(2 + i).load(Ordering::Acquire) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child; closes our own fds.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(efd);
        libc::close(sv[0]);
        libc::close(sv[1]);
        libc::close(pp[0]);
        libc::close(pp[1]);
    }
    let mut v: Vec<f64> = (0..n)
        .map(|i| sh.at(2 + i).load(Ordering::Acquire) as f64 / 1e3)
        .filter(|&d| d > 0.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Median ms of one `memcpy` of `len` bytes: `hot` copies between the same two
/// buffers (in cache as far as they fit), cold ones walk through 256 MiB.
pub(crate) fn memcpy_ms(len: usize, hot: bool) -> f64 {
    let count = if hot { 2 } else { (256 << 20) / len + 2 };
    let mut bufs: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; len]).collect();
    let mut t = Vec::new();
    for i in 0..if hot { 20 } else { count * 2 } {
        let (a, b) = (i % count, (i + 1) % count);
        let (src, dst) = if a < b {
            let (l, r) = bufs.split_at_mut(b);
            (&l[a], &mut r[0])
        } else {
            let (l, r) = bufs.split_at_mut(a);
            (&r[0], &mut l[b])
        };
        let t0 = Instant::now();
        dst.copy_from_slice(std::hint::black_box(src));
        std::hint::black_box(&dst);
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    median(t)
}

/// Every reference, into `out`.
pub(crate) fn measure(out: &mut Out) {
    for how in [Wake::Eventfd, Wake::Socket, Wake::Pipe, Wake::BusyPoll] {
        eprintln!("wake-up reference: {}", how.key());
        let v = wake_delays(how, 200, Duration::from_millis(10));
        let q = |p: f64| (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * p) as usize]);
        out.put(format!("wake_{}_p50_us", how.key()), q(0.5));
        out.put(format!("wake_{}_p99_us", how.key()), q(0.99));
    }
    for (tag, len) in [("v1080", 1920 * 1080 * 3 / 2), ("v4k", 3840 * 2160 * 3 / 2)] {
        out.put(format!("memcpy_{tag}_hot_ms"), Some(memcpy_ms(len, true)));
        out.put(format!("memcpy_{tag}_cold_ms"), Some(memcpy_ms(len, false)));
    }
}
