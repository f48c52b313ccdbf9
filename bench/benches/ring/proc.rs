//! Two processes for a measurement: fork, pin, signal, check.

use super::*;

pub(crate) fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it;
    // sched_setaffinity reads it. Failure (e.g. one CPU) is harmless.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % num_cpus(), &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPUs online (not `available_parallelism`, which shrinks once we pin ourselves).
pub(crate) fn num_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// One side of a fork: the child (pinned to CPU 1) or the parent (pinned to CPU 0),
/// each with its end of a control socket.
pub(crate) enum Side {
    Child(UnixStream),
    Parent(UnixStream, libc::pid_t),
}

pub(crate) fn fork() -> Side {
    let (a, b) = UnixStream::pair().unwrap();
    // SAFETY: the benchmark is single-threaded when it forks, so the child may use the
    // allocator and std freely; it leaves through `child_exit` and never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(a);
        pin(1);
        Side::Child(b)
    } else {
        drop(b);
        pin(0);
        Side::Parent(a, pid)
    }
}

pub(crate) fn child_exit() -> ! {
    // SAFETY: ends the child without unwinding into the parent's code or running its
    // atexit handlers a second time.
    unsafe { libc::_exit(0) }
}

pub(crate) fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "bench child failed"
    );
}

pub(crate) fn signal(c: &mut UnixStream) {
    c.write_all(&[1]).unwrap();
}

pub(crate) fn await_signal(c: &mut UnixStream) {
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
}

/// Writes message `seq` (`len` bytes, a multiple of 8) at `p`, from word `from` on.
///
/// # Safety
/// `p` is valid for writes of `len - from * 8` bytes.
pub(crate) unsafe fn generate(p: *mut u8, from: usize, len: usize, seq: u64) {
    for i in from..len / 8 {
        // SAFETY: word `i` lies inside the caller's range.
        unsafe {
            p.add((i - from) * 8)
                .cast::<u64>()
                .write_unaligned(seq.wrapping_add(i as u64))
        };
    }
}

/// Reads words `from..` of a message at `p` and returns their wrapping sum.
///
/// # Safety
/// `p` is valid for reads of `len - from * 8` bytes.
pub(crate) unsafe fn consume(p: *const u8, from: usize, len: usize) -> u64 {
    let mut sum = 0u64;
    for i in from..len / 8 {
        // SAFETY: word `i` lies inside the caller's range.
        sum = sum.wrapping_add(unsafe { p.add((i - from) * 8).cast::<u64>().read_unaligned() });
    }
    sum
}

/// The sum `consume` must find for message `seq` of `len` bytes.
pub(crate) fn expected_sum(seq: u64, len: usize) -> u64 {
    let n = (len / 8) as u64;
    seq.wrapping_mul(n).wrapping_add(n * (n - 1) / 2)
}

pub(crate) fn check(sum: u64, seq: u64, len: usize) {
    assert_eq!(
        sum,
        expected_sum(seq, len),
        "message {seq} lost, torn or out of order"
    );
}

pub(crate) fn gbps(d: Duration) -> f64 {
    TOTAL as f64 / d.as_secs_f64() / 1e9
}
