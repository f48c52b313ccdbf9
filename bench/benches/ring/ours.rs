//! The ring: throughput and round trip between two processes.

use super::*;

pub(crate) fn shmring_throughput<const N: usize>(cap: usize, in_place: bool) -> f64 {
    let (mut tx, fds) = Sender::<[u8; N]>::create(cap).unwrap();
    let d = match fork() {
        Side::Child(mut c) => {
            drop(tx);
            let mut rx = Receiver::<[u8; N]>::attach(fds).unwrap();
            let mut m: Box<[u8; N]> = vec![0u8; N].into_boxed_slice().try_into().unwrap();
            signal(&mut c);
            for seq in 0..(TOTAL / N) as u64 {
                let sum = if in_place {
                    loop {
                        match rx
                            .try_recv_with(|p| {
                                // SAFETY: the published slot holds N readable bytes.
                                unsafe { consume(p.cast(), 0, N) }
                            })
                            .unwrap()
                        {
                            Some(s) => break s,
                            None => rx.wait_for_data(None).unwrap(),
                        }
                    }
                } else {
                    rx.recv_into(&mut m, None).unwrap();
                    // SAFETY: `m` holds N bytes.
                    unsafe { consume(m.as_ptr(), 0, N) }
                };
                check(sum, seq, N);
            }
            signal(&mut c);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(fds);
            let mut m: Box<[u8; N]> = vec![0u8; N].into_boxed_slice().try_into().unwrap();
            await_signal(&mut c);
            let t0 = Instant::now();
            for seq in 0..(TOTAL / N) as u64 {
                if in_place {
                    while !tx
                        .try_send_with(|p| {
                            // SAFETY: the free slot holds N writable bytes.
                            unsafe { generate(p.cast(), 0, N, seq) }
                        })
                        .unwrap()
                    {
                        tx.wait_for_room(None).unwrap();
                    }
                } else {
                    // SAFETY: `m` holds N bytes.
                    unsafe { generate(m.as_mut_ptr(), 0, N, seq) };
                    tx.send(&m).unwrap();
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

pub(crate) fn shmring_rtt(spin: bool, n: usize) -> Vec<f64> {
    let (mut ping, ping_fds) = Sender::<u64>::create(64).unwrap();
    let (mut pong, pong_fds) = Receiver::<u64>::create(64).unwrap();
    let spin_budget = if spin {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    ping.set_spin(spin_budget);
    pong.set_spin(spin_budget);
    match fork() {
        Side::Child(mut c) => {
            drop((ping, pong));
            let mut rx = Receiver::<u64>::attach(ping_fds).unwrap();
            let mut tx = Sender::<u64>::attach(pong_fds).unwrap();
            rx.set_spin(spin_budget);
            tx.set_spin(spin_budget);
            signal(&mut c);
            for _ in 0..n {
                let v = rx.recv().unwrap();
                tx.send(&v).unwrap();
            }
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop((ping_fds, pong_fds));
            await_signal(&mut c);
            let mut out = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t0 = Instant::now();
                ping.send(&i).unwrap();
                let v = pong.recv().unwrap();
                out.push(t0.elapsed().as_secs_f64() * 1e6);
                assert_eq!(v, i);
            }
            let r = out;
            reap(pid);
            r
        }
    }
}
