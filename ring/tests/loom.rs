//! Model-checks the ring's index protocol and its sleep/wake handshake with loom.
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p shmring --test loom --release`
//! (`make test` does). Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::{Condvar, Mutex};
use loom::thread;
use shmring::internals::index::HeapRing;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// A doorbell with the semantics of the socket pair: `ring` queues a wake-up,
/// `sleep` blocks until one is queued and drains them all. A lost wake-up leaves a
/// thread blocked forever, which loom reports as a deadlock.
#[derive(Default)]
struct Bell {
    pending: Mutex<u32>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.pending.lock().unwrap() += 1;
        self.cv.notify_one();
    }
    fn sleep(&self) {
        let mut p = self.pending.lock().unwrap();
        while *p == 0 {
            p = self.cv.wait(p).unwrap();
        }
        *p = 0;
    }
}

#[test]
fn elements_arrive_in_order_and_no_wake_up_is_lost() {
    model(|| {
        const N: u32 = 3;
        let (mut p, mut c) = HeapRing::new::<u32>(2);
        let data_bell = Arc::new(Bell::default());
        let room_bell = Arc::new(Bell::default());
        let (db, rb) = (data_bell.clone(), room_bell.clone());
        let producer = thread::spawn(move || {
            for i in 0..N {
                let mut v = i;
                loop {
                    match p.push(v) {
                        Ok(wake) => {
                            if wake {
                                db.ring();
                            }
                            break;
                        }
                        Err(back) => {
                            v = back;
                            if !p.prepare_wait() {
                                rb.sleep();
                                p.finish_wait();
                            }
                        }
                    }
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < N as usize {
            match c.pop() {
                Some((v, wake)) => {
                    if wake {
                        room_bell.ring();
                    }
                    got.push(v);
                }
                None => {
                    if !c.prepare_wait() {
                        data_bell.sleep();
                        c.finish_wait();
                    }
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(got, vec![0, 1, 2]);
    });
}

#[test]
fn batches_wrap_around_without_losing_or_duplicating() {
    model(|| {
        let (mut p, mut c) = HeapRing::new::<u32>(2);
        let producer = thread::spawn(move || {
            let mut items = vec![10, 11, 12];
            while !items.is_empty() {
                let (n, _) = p.push_batch(&mut items);
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if c.pop_batch(&mut got, 2).0 == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, vec![10, 11, 12]);
    });
}
