//! The transports, the workloads and the rounds that measure them.

use super::*;

/// Fresh names for sockets and ports.
pub(crate) struct Names {
    pub(crate) dir: PathBuf,
    pub(crate) n: u32,
}

impl Names {
    pub(crate) fn socket(&mut self) -> String {
        self.n += 1;
        self.dir.join(format!("s{}", self.n)).display().to_string()
    }

    pub(crate) fn port(&mut self) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Transport {
    InProcess,
    /// The floor of a hand-over inside one process: a `queue` between two threads.
    InProcessQueue,
    /// The floor of a hand-over between two pipelines of one process: `appsink` →
    /// `appsrc`, the buffer itself passed on.
    InProcessApp,
    Shmring,
    ShmringCopy,
    ShmringSpin,
    ShmringSleep,
    Shm,
    ShmCopy,
    Tcp,
    UnixFd,
}

impl Transport {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Transport::InProcess => "inprocess",
            Transport::InProcessQueue => "inprocess_queue",
            Transport::InProcessApp => "inprocess_app",
            Transport::Shmring => "shmring",
            Transport::ShmringCopy => "shmring_copy",
            Transport::ShmringSpin => "shmring_spin",
            Transport::ShmringSleep => "shmring_sleep",
            Transport::Shm => "shm",
            Transport::ShmCopy => "shm_copy",
            Transport::Tcp => "tcp",
            Transport::UnixFd => "unixfd",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::InProcess => "in one process (upper bound)",
            Transport::InProcessQueue => "one process, a queue between two threads",
            Transport::InProcessApp => "one process, appsink → appsrc (two pipelines)",
            Transport::Shmring => "shmringsink/src, zero-copy",
            Transport::ShmringCopy => "shmringsink/src, copy path",
            Transport::ShmringSpin => {
                "shmringsink/src, spin-time=50000 (spins through each interval)"
            }
            Transport::ShmringSleep => "shmringsink/src, wake-ahead=0",
            Transport::Shm => "shmsink/shmsrc, upstream in its memory",
            Transport::ShmCopy => "shmsink/shmsrc, copying",
            Transport::Tcp => "tcpserversink/tcpclientsrc + gdp",
            Transport::UnixFd => "unixfdsink/unixfdsrc",
        }
    }

    /// Why this machine cannot run it, if it cannot.
    pub(crate) fn absent(self) -> Option<String> {
        let need: &[&str] = match self {
            Transport::InProcess | Transport::InProcessQueue => &[],
            Transport::InProcessApp => &["appsink", "appsrc"],
            Transport::Shmring
            | Transport::ShmringCopy
            | Transport::ShmringSpin
            | Transport::ShmringSleep => &[],
            Transport::Shm | Transport::ShmCopy => &["shmsink", "shmsrc"],
            Transport::Tcp => &["tcpserversink", "tcpclientsrc", "gdppay", "gdpdepay"],
            Transport::UnixFd => &["unixfdsink", "unixfdsrc"],
        };
        let missing: Vec<&str> = need
            .iter()
            .copied()
            .filter(|f| gst::ElementFactory::find(f).is_none())
            .collect();
        if missing.is_empty() {
            None
        } else if self == Transport::UnixFd {
            Some(format!(
                "{} has no {} (added in 1.24)",
                gst::version_string(),
                missing.join(", ")
            ))
        } else {
            Some(format!("elements not installed: {}", missing.join(", ")))
        }
    }
}

/// A workload: a source fragment (ending in caps), the caps a reader that cannot
/// learn them must be told, and whether it is live.
pub(crate) struct Work {
    pub(crate) source: String,
    pub(crate) caps: String,
    pub(crate) live: bool,
    /// Buffers the source makes (the consumer stops after as many: not every
    /// transport carries EOS).
    pub(crate) n: u32,
}

/// The single role of an in-process transport: the hand-over none, a queue, or two
/// pipelines joined by the role (see `role::bridge`; neither side waits for the
/// other to preroll, as two pipelines would not).
fn in_process(t: Transport, src: &str, ident: &str, stamp: &'static str, latency: bool) -> Role {
    let (hand_over, snk) = match t {
        Transport::InProcessQueue => ("queue ! ", ""),
        Transport::InProcessApp => (
            "appsink name=bridge_out sync=false async=false emit-signals=true  appsrc name=bridge_in format=time ! ",
            " async=false",
        ),
        _ => ("", ""),
    };
    Role {
        desc: format!(
            "{src} ! {ident}{hand_over}fakesink name=snk sync=false enable-last-sample=false{snk}"
        ),
        stamp,
        measure: "snk",
        latency,
    }
}

/// The producer and consumer roles (or the single in-process role) of `t` on `w`.
pub(crate) fn roles(
    t: Transport,
    w: &Work,
    names: &mut Names,
    latency: bool,
) -> (Role, Option<Role>) {
    let src = &w.source;
    let stamp = if latency { "stamp" } else { "-" };
    let ident = if latency {
        "identity name=stamp ! "
    } else {
        ""
    };
    let copy = "identity drop-allocation=true ! ";
    let role = |desc: String, measure| Role {
        desc,
        stamp,
        measure,
        latency: false,
    };
    let consumer = |desc: String| Role {
        desc,
        stamp: "-",
        measure: "snk",
        latency,
    };
    let fakesink = format!(
        "fakesink name=snk sync=false enable-last-sample=false num-buffers={}",
        w.n
    );
    let live = if w.live { "true" } else { "false" };
    match t {
        Transport::InProcess | Transport::InProcessQueue | Transport::InProcessApp => {
            (in_process(t, src, ident, stamp, latency), None)
        }
        Transport::Shmring
        | Transport::ShmringCopy
        | Transport::ShmringSpin
        | Transport::ShmringSleep => {
            let p = names.socket();
            let c = if t == Transport::ShmringCopy {
                copy
            } else {
                ""
            };
            let spin = match t {
                Transport::ShmringSpin => " spin-time=50000",
                Transport::ShmringSleep => " wake-ahead=0",
                _ => "",
            };
            (
                role(
                    format!(
                        "{src} ! {c}{ident}shmringsink name=snk socket-path={p} wait-for-connection=true sync=false"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "shmringsrc socket-path={p} is-live={live}{spin} ! {fakesink}"
                ))),
            )
        }
        Transport::Shm | Transport::ShmCopy => {
            let p = names.socket();
            let c = if t == Transport::ShmCopy { copy } else { "" };
            (
                role(
                    format!(
                        "{src} ! {c}{ident}shmsink name=snk socket-path={p} wait-for-connection=true sync=false shm-size=134217728"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "shmsrc socket-path={p} is-live={live} ! {} ! {fakesink}",
                    w.caps
                ))),
            )
        }
        Transport::Tcp => {
            let port = names.port();
            (
                role(
                    format!(
                        "{src} ! {ident}gdppay name=snk ! tcpserversink host=127.0.0.1 port={port} sync=false"
                    ),
                    "snk",
                ),
                Some(consumer(format!(
                    "tcpclientsrc host=127.0.0.1 port={port} ! gdpdepay ! {fakesink}"
                ))),
            )
        }
        Transport::UnixFd => {
            let p = names.socket();
            (
                role(
                    format!("{src} ! {ident}unixfdsink name=snk socket-path={p} sync=false"),
                    "snk",
                ),
                Some(consumer(format!("unixfdsrc socket-path={p} ! {fakesink}"))),
            )
        }
    }
}

/// One throughput run: (buffers/s at the consumer, CPU ns per buffer of both
/// processes, producer's stats).
pub(crate) fn throughput(
    t: Transport,
    w: &Work,
    names: &mut Names,
) -> Result<(f64, f64, Option<String>), String> {
    match roles(t, w, names, false) {
        (one, None) => {
            let r = run_one(&one)?;
            Ok((r.rate(), r.cpu_ns as f64 / r.n as f64, None))
        }
        (p, Some(c)) => {
            let (p, c) = run_pair(&p, &c)?;
            if c.n != p.n {
                return Err(format!("consumer got {} of {} buffers", c.n, p.n));
            }
            Ok((c.rate(), (p.cpu_ns + c.cpu_ns) as f64 / c.n as f64, p.stats))
        }
    }
}

/// One live run: the sorted latencies (ns, warm-up left out) and the consumer's CPU
/// over the stream (fraction of one core; the whole pipeline in one process).
pub(crate) fn latency(
    t: Transport,
    w: &Work,
    names: &mut Names,
) -> Result<(Vec<i64>, f64), String> {
    let r = match roles(t, w, names, true) {
        (one, None) => run_one(&one)?,
        (p, Some(c)) => run_pair(&p, &c)?.1,
    };
    let cpu = r.cpu_ns as f64 / (r.last_ns.saturating_sub(r.first_ns)).max(1) as f64;
    let lat = r.latencies_ns;
    if lat.len() <= WARM_UP + 10 {
        return Err(format!("only {} buffers measured", lat.len()));
    }
    let mut v = lat[WARM_UP..].to_vec();
    v.sort();
    Ok((v, cpu))
}

/// Runs `f` for every transport in turn, `ROUNDS` times over (interleaved, so that
/// the machine's slow and fast moments fall on all of them alike); medians of
/// each's (rate, CPU ns per buffer), `None` for one that cannot run here or failed
/// (the reason noted under `{tag}_{transport}`).
pub(crate) fn rounds(
    transports: &[Transport],
    out: &mut Out,
    tag: &str,
    f: impl Fn(Transport, &mut Names) -> Result<(f64, f64), String>,
    names: &mut Names,
) -> Vec<(Transport, Option<(f64, f64)>)> {
    // (transport, why absent, results, failures)
    type Runs = (Transport, Option<String>, Vec<(f64, f64)>, Vec<String>);
    let mut got: Vec<Runs> = transports
        .iter()
        .map(|&t| (t, t.absent(), Vec::new(), Vec::new()))
        .collect();
    for round in 0..ROUNDS {
        for (t, absent, ok, failed) in got.iter_mut() {
            if absent.is_some() {
                continue;
            }
            eprintln!("{tag} {} round {}", t.key(), round + 1);
            let r = f(*t, names);
            out.by_round
                .entry(format!("{tag}_{}", t.key()))
                .or_default()
                .push(r.as_ref().ok().copied());
            match r {
                Ok(x) => ok.push(x),
                Err(e) => {
                    eprintln!("  failed: {e}");
                    failed.push(e);
                }
            }
        }
    }
    got.into_iter()
        .map(|(t, absent, ok, failed)| {
            let key = format!("{tag}_{}", t.key());
            if let Some(why) = absent {
                out.notes.insert(key, why);
                return (t, None);
            }
            if !failed.is_empty() {
                out.notes.insert(
                    key.clone(),
                    format!("{} of {ROUNDS} rounds failed: {}", failed.len(), failed[0]),
                );
            }
            if ok.is_empty() {
                return (t, None);
            }
            let rates = ok.iter().map(|x| x.0);
            let lo = rates.clone().fold(f64::INFINITY, f64::min);
            let hi = rates.fold(0f64, f64::max);
            out.spread.insert(key, (lo, hi));
            (
                t,
                Some((
                    median(ok.iter().map(|x| x.0).collect()),
                    median(ok.iter().map(|x| x.1).collect()),
                )),
            )
        })
        .collect()
}

/// The figures, in order, and the table rows.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) json: Vec<(String, Option<f64>)>,
    pub(crate) notes: BTreeMap<String, String>,
    /// Slowest and fastest round of each `{tag}_{transport}`.
    pub(crate) spread: BTreeMap<String, (f64, f64)>,
    /// Each round's (rate, CPU ns per buffer) of each `{tag}_{transport}`, `None`
    /// for a failed round.
    pub(crate) by_round: BTreeMap<String, Vec<Option<(f64, f64)>>>,
}

impl Out {
    pub(crate) fn put(&mut self, name: String, v: Option<f64>) {
        eprintln!(
            "  {name} = {}",
            v.map_or("null".into(), |v| format!("{v:.3}"))
        );
        self.json.push((name, v));
    }

    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.json
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| *v)
    }
}
