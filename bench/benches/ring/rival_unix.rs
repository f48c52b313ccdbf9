//! A unix stream socket, for comparison.

use super::*;

pub(crate) fn unix_throughput(msg: usize) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let d = match fork() {
        Side::Child(mut c) => {
            drop(a);
            let mut m = vec![0u8; msg];
            signal(&mut c);
            for seq in 0..(TOTAL / msg) as u64 {
                b.read_exact(&mut m).unwrap();
                // SAFETY: `m` holds `msg` bytes.
                check(unsafe { consume(m.as_ptr(), 0, msg) }, seq, msg);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            let mut m = vec![0x5au8; msg];
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / msg) as u64 {
                // SAFETY: `m` holds `msg` bytes.
                unsafe { generate(m.as_mut_ptr(), 0, msg, seq) };
                a.write_all(&m).unwrap();
            }
            await_signal(&mut c);
            let r = t0.elapsed();
            reap(pid);
            r
        }
    };
    gbps(d)
}

/// Round trips (µs) of 8-byte messages.
pub(crate) fn unix_rtt(n: usize) -> Vec<f64> {
    unix_rtt_of(8, n)
}

/// Round trips (µs) of `msg`-byte messages echoed by a forked child.
pub(crate) fn unix_rtt_of(msg: usize, n: usize) -> Vec<f64> {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    match fork() {
        Side::Child(mut c) => {
            drop(a);
            signal(&mut c);
            let mut v = vec![0u8; msg];
            for _ in 0..n {
                b.read_exact(&mut v).unwrap();
                b.write_all(&v).unwrap();
            }
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            await_signal(&mut c);
            let mut out = Vec::with_capacity(n);
            let mut v = vec![0x5au8; msg];
            for _ in 0..n {
                let t0 = Instant::now();
                a.write_all(&v).unwrap();
                a.read_exact(&mut v).unwrap();
                out.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            reap(pid);
            out
        }
    }
}
