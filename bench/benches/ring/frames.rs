//! The frame channel against frames over a unix socket, and memcpy.

use super::*;

/// CPU time this process has used (all threads).
pub(crate) fn cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

pub(crate) fn send_u64(c: &mut UnixStream, v: u64) {
    c.write_all(&v.to_le_bytes()).unwrap();
}

pub(crate) fn recv_u64(c: &mut UnixStream) -> u64 {
    let mut b = [0u8; 8];
    c.read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Frames through the frame channel, one consumer, zero copy: the producer writes only
/// the frame number into each slot, the consumer reads it back (and checks it against
/// the metadata). Returns (frames/s, producer + consumer CPU µs per frame).
pub(crate) fn frame_channel(len: usize, frames: u64) -> (f64, f64) {
    let path = std::env::temp_dir().join(format!("shmring-bench-{}.sock", std::process::id()));
    match fork() {
        Side::Child(mut c) => {
            await_signal(&mut c); // the producer listens
            let mut con = shmring::Consumer::connect(&path, Default::default()).unwrap();
            signal(&mut c);
            let cpu0 = cpu_now();
            let mut got = 0;
            while got < frames {
                if let shmring::Event::Frame(f) = con.recv().unwrap() {
                    let mut b = [0u8; 8];
                    // SAFETY: every frame is at least 8 bytes, mapped while `f` lives.
                    unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), b.as_mut_ptr(), 8) };
                    assert_eq!(&b[..], f.meta(), "frame {got} lost or torn");
                    assert_eq!(u64::from_le_bytes(b), got);
                    got += 1;
                }
            }
            send_u64(&mut c, (cpu_now() - cpu0).as_nanos() as u64);
            drop(con);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            let p = shmring::Producer::bind(&path, Default::default()).unwrap();
            signal(&mut c);
            await_signal(&mut c);
            p.wait_for_consumers(1, Some(Duration::from_secs(10)))
                .unwrap();
            let (t0, cpu0) = (Instant::now(), cpu_now());
            for seq in 0..frames {
                let mut slot = p.acquire(len).unwrap();
                slot.write(0, &seq.to_le_bytes()).unwrap();
                slot.publish(len, &seq.to_le_bytes()).unwrap();
            }
            let child_cpu = Duration::from_nanos(recv_u64(&mut c));
            let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
            drop(p);
            reap(pid);
            (
                frames as f64 / wall.as_secs_f64(),
                (cpu + child_cpu).as_secs_f64() * 1e6 / frames as f64,
            )
        }
    }
}

/// The same frames through a unix stream socket, copied in and out (the payload is
/// the whole frame: a socket cannot send a frame without its bytes). Returns
/// (frames/s, CPU µs per frame).
pub(crate) fn unix_frames(len: usize, frames: u64) -> (f64, f64) {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    match fork() {
        Side::Child(mut c) => {
            drop(a);
            let mut m = vec![0u8; len];
            signal(&mut c);
            let cpu0 = cpu_now();
            for seq in 0..frames {
                b.read_exact(&mut m).unwrap();
                assert_eq!(m[..8], seq.to_le_bytes(), "frame {seq} lost or torn");
            }
            send_u64(&mut c, (cpu_now() - cpu0).as_nanos() as u64);
            child_exit()
        }
        Side::Parent(mut c, pid) => {
            drop(b);
            let mut m = vec![0x5au8; len];
            await_signal(&mut c);
            let (t0, cpu0) = (Instant::now(), cpu_now());
            for seq in 0..frames {
                m[..8].copy_from_slice(&seq.to_le_bytes());
                a.write_all(&m).unwrap();
            }
            let child_cpu = Duration::from_nanos(recv_u64(&mut c));
            let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
            reap(pid);
            (
                frames as f64 / wall.as_secs_f64(),
                (cpu + child_cpu).as_secs_f64() * 1e6 / frames as f64,
            )
        }
    }
}

/// One `memcpy` of `len` bytes between two pre-faulted buffers, in µs (median of 50).
pub(crate) fn memcpy_us(len: usize) -> f64 {
    let src = vec![0x11u8; len];
    let mut dst = vec![0u8; len];
    let runs: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(runs)
}
