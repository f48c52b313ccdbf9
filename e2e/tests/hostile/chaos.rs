//! Chaos: one live producer pipeline and three reconnecting consumer pipelines, each
//! its own process; at random moments a random side is SIGKILLed or stopped, and
//! started again. After every cycle the three consumers stream again, the producer's
//! open fds and shared-memory mappings are back to what they were with three
//! consumers, every consumer's mappings are back to one channel's worth, and no
//! consumer has died on its own. At the end, with every consumer gone, the
//! producer's fds, mappings and free slots are what they were before any joined.
//!
//! `CHAOS_CYCLES` (default 40; `make chaos` runs 200) and `CHAOS_SEED` replay a run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{eventually_within, socket_path};

const PEER: &str = env!("CARGO_BIN_EXE_gst-peer");

/// A `gst-peer` process: asked for its element's stats over stdin, stopped by
/// closing stdin, killed on drop.
struct Peer {
    role: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn start(role: &'static str, path: &str) -> Peer {
        let mut child = Command::new(PEER)
            .args([role, path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gst-peer");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = Peer {
            role,
            stdin: child.stdin.take(),
            child,
            lines,
        };
        let first = p.line();
        assert_eq!(first, "ready", "{role} did not start");
        p
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(e) => {
                let status = self.child.try_wait().unwrap();
                panic!(
                    "{} {}: no answer ({e}), exit status {status:?}",
                    self.role,
                    self.pid()
                )
            }
        }
    }

    fn stats(&mut self) -> gst::Structure {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "stats").expect("peer alive");
        stdin.flush().unwrap();
        let l = self.line();
        gst::Structure::from_str(&l).unwrap_or_else(|_| panic!("{}: {l}", self.role))
    }

    fn u64(&mut self, field: &str) -> u64 {
        self.stats().get::<u64>(field).unwrap()
    }

    fn u32(&mut self, field: &str) -> u32 {
        self.stats().get::<u32>(field).unwrap()
    }

    /// It must still be running: it never ends on its own.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let said: Vec<String> = self.lines.try_iter().collect();
            panic!("{} {} died: {status}, said {said:?}", self.role, self.pid());
        }
    }

    /// Clean stop: stdin closed, the pipeline goes to NULL, exit status 0.
    fn stop(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.role);
            std::thread::sleep(Duration::from_millis(5));
        };
        let said: Vec<String> = self.lines.try_iter().collect();
        assert!(
            status.success(),
            "{} stopped with {status}: {said:?}",
            self.role
        );
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Shared-memory mappings of a process: every one is a memfd (nothing is named).
fn memfd_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count()
}

/// Polls `cond` until it holds; after 30 s panics with `what` and what it last saw.
fn eventually(what: &str, cond: impl FnMut() -> Result<(), String>) {
    eventually_within(what, Duration::from_secs(30), cond)
}

/// xorshift64*: a reproducible sequence from `CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

#[test]
fn random_kills_and_restarts_leave_survivors_streaming_and_nothing_behind() {
    gst::init().unwrap();
    let cycles = env_u64("CHAOS_CYCLES").unwrap_or(40);
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("chaos: {cycles} cycles, CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let path = socket_path("chaos");
    let path = path.to_str().unwrap();

    let mut producer = Peer::start("produce", path);
    // Alone: what the producer holds with no consumer.
    eventually("the producer streams", || match producer.u64("frames") {
        n if n >= 20 => Ok(()),
        n => Err(format!("{n} frames")),
    });
    let alone = (
        fds(producer.pid()),
        memfd_maps(producer.pid()),
        producer.u32("free-slots"),
    );
    let mut consumers: Vec<Peer> = (0..3).map(|_| Peer::start("consume", path)).collect();

    // Everyone connected and streaming; then what a producer with three consumers
    // and a consumer with one channel hold.
    let settle =
        |producer: &mut Peer, consumers: &mut [Peer], want: Option<(usize, usize, usize)>| {
            for c in consumers.iter_mut() {
                c.check_alive();
            }
            eventually("three consumers connected", || {
                match producer.u32("consumers") {
                    3 => Ok(()),
                    n => Err(format!("{n} consumers")),
                }
            });
            for c in consumers.iter_mut() {
                let before = c.u64("frames");
                eventually("every consumer streams", || match c.u64("frames") {
                    n if n > before + 2 => Ok(()),
                    n => Err(format!("consumer {} at {n} frames, was {before}", c.pid())),
                });
            }
            let Some((pfds, pmaps, cmaps)) = want else {
                let c = memfd_maps(consumers[0].pid());
                return (fds(producer.pid()), memfd_maps(producer.pid()), c);
            };
            eventually("producer fds and mappings back to baseline", || {
                let now = (fds(producer.pid()), memfd_maps(producer.pid()));
                if now == (pfds, pmaps) {
                    Ok(())
                } else {
                    Err(format!("{now:?}, baseline {:?}", (pfds, pmaps)))
                }
            });
            for c in consumers.iter() {
                eventually(
                    "consumer mappings back to one channel",
                    || match memfd_maps(c.pid()) {
                        n if n == cmaps => Ok(()),
                        n => Err(format!(
                            "consumer {}: {n} memfd mappings, baseline {cmaps}",
                            c.pid()
                        )),
                    },
                );
            }
            (pfds, pmaps, cmaps)
        };
    let base = settle(&mut producer, &mut consumers, None);
    eprintln!(
        "chaos: baseline producer {} fds, {} memfd mappings; consumer {} memfd mappings",
        base.0, base.1, base.2
    );

    let mut done = [0u32; 4];
    for cycle in 0..cycles {
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        let act = rng.below(4) as usize;
        match act {
            0 | 1 => {
                let i = rng.below(3) as usize;
                let c = consumers.remove(i);
                if act == 0 {
                    c.kill9()
                } else {
                    c.stop()
                }
                consumers.insert(i, Peer::start("consume", path));
            }
            _ => {
                let old = producer;
                if act == 2 {
                    old.kill9()
                } else {
                    old.stop()
                }
                producer = Peer::start("produce", path);
            }
        }
        done[act] += 1;
        settle(&mut producer, &mut consumers, Some(base));
        if (cycle + 1) % 10 == 0 {
            eprintln!("chaos: {} cycles", cycle + 1);
        }
    }
    eprintln!(
        "chaos: survived {cycles} cycles: consumer SIGKILL {}, consumer stop {}, producer SIGKILL {}, producer stop {}",
        done[0], done[1], done[2], done[3]
    );

    // Every consumer gone: the producer is back to what it held alone.
    for c in consumers.drain(..) {
        c.kill9();
    }
    eventually("the producer is back to serving no one", || {
        let now = (
            fds(producer.pid()),
            memfd_maps(producer.pid()),
            producer.u32("free-slots"),
        );
        if producer.u32("consumers") == 0 && now == alone {
            Ok(())
        } else {
            Err(format!("{now:?}, alone {alone:?}"))
        }
    });
    producer.stop();
}
