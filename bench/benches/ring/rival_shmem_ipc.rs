//! shmem-ipc 0.3, for comparison.

use super::*;

pub(crate) fn dup_file(fd: std::os::fd::BorrowedFd<'_>) -> std::fs::File {
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd (or -1, checked) that we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(n >= 0);
    // SAFETY: `n` is a fresh fd nothing else owns.
    std::fs::File::from(unsafe { OwnedFd::from_raw_fd(n) })
}

pub(crate) fn shmem_ipc_throughput(msg: usize, ring_bytes: usize) -> f64 {
    // A ring of u64 words: messages are whole words, so chunks never split one.
    let words = msg / 8;
    let mut tx = shmem_ipc::sharedring::Sender::<u64>::new(ring_bytes / 8).unwrap();
    let memfd = dup_file(tx.memfd().as_file().as_fd());
    let empty = dup_file(tx.empty_signal().as_fd());
    let full = dup_file(tx.full_signal().as_fd());
    let d = match fork() {
        Side::Child(mut c) => {
            drop(tx);
            let mut rx =
                shmem_ipc::sharedring::Receiver::<u64>::open(ring_bytes / 8, memfd, empty, full)
                    .unwrap();
            signal(&mut c);
            for seq in 0..(TOTAL / msg) as u64 {
                let mut got = 0;
                let mut sum = 0u64;
                while got < words {
                    let mut took = 0;
                    rx.receive_raw(|p, count| {
                        took = count.min(words - got);
                        // SAFETY: shmem-ipc hands `count >= took` readable words at `p`.
                        sum =
                            sum.wrapping_add(unsafe { consume(p.cast(), got, got * 8 + took * 8) });
                        took
                    })
                    .unwrap();
                    got += took;
                    if took == 0 {
                        rx.block_until_readable().unwrap();
                    }
                }
                check(sum, seq, msg);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop((memfd, empty, full));
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / msg) as u64 {
                let mut put = 0;
                while put < words {
                    let mut took = 0;
                    tx.send_raw(|p, count| {
                        took = count.min(words - put);
                        // SAFETY: shmem-ipc hands `count >= took` writable words at `p`.
                        unsafe { generate(p.cast(), put, put * 8 + took * 8, seq) };
                        took
                    })
                    .unwrap();
                    put += took;
                    if took == 0 {
                        tx.block_until_writable().unwrap();
                    }
                }
            }
            await_signal(&mut c);
            let r = t0.elapsed();
            reap(pid);
            r
        }
    };
    gbps(d)
}
