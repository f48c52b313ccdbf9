//! The ratios the project holds itself to (issues 16 and 30), from the figures of
//! this run: each a figure of its own in `gst.json`, and a table with the target
//! beside it and the issue that set it.

use super::*;

/// A ratio or bound, its target, and whether lower is better.
pub(crate) struct Target {
    /// The issues that set it (where two did, the tighter limit).
    pub(crate) issue: &'static str,
    pub(crate) name: String,
    pub(crate) what: String,
    pub(crate) value: Option<f64>,
    pub(crate) limit: f64,
    pub(crate) at_most: bool,
}

impl Target {
    pub(crate) fn met(&self) -> Option<bool> {
        let v = self.value?;
        Some(if self.at_most {
            v <= self.limit
        } else {
            v >= self.limit
        })
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn min_of(v: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    v.into_iter().flatten().reduce(f64::min)
}

/// Computes every target's figure from `out`, puts it there, and returns them.
pub(crate) fn compute(out: &mut Out) -> Vec<Target> {
    let mut t = Vec::new();
    latency_targets(out, &mut t);
    throughput_targets(out, &mut t);
    layer_targets(out, &mut t);
    against_shmsink(out, &mut t);
    for x in &t {
        out.put(x.name.clone(), x.value);
    }
    t
}

fn g(out: &Out, k: String) -> Option<f64> {
    out.get(&k)
}

/// Live latency against the physical bound, the rivals and the in-process
/// pipeline.
fn latency_targets(out: &mut Out, t: &mut Vec<Target>) {
    let wake = out.get("wake_eventfd_p50_us");
    let rivals = ["shm", "tcp", "unixfd"];
    for tag in ["audio", "v1080", "v4k"] {
        let ours = g(out, format!("{tag}_shmring_p50_us"));
        let inproc = g(out, format!("{tag}_inprocess_p50_us"));
        let bound = match (inproc, wake) {
            (Some(i), Some(w)) => Some(i + 4.0 * w),
            _ => None,
        };
        out.put(format!("lat_{tag}_bound_p50_us"), bound);
        let best50 = min_of(rivals.iter().map(|r| g(out, format!("{tag}_{r}_p50_us"))));
        let best99 = min_of(rivals.iter().map(|r| g(out, format!("{tag}_{r}_p99_us"))));
        let ours99 = g(out, format!("{tag}_shmring_p99_us"));
        let spin = g(out, format!("{tag}_shmring_spin_p50_us"));
        t.push(Target {
            issue: "16",
            name: format!("lat_{tag}_shmring_vs_bound"),
            what: format!("{tag} live p50 ÷ (in-process p50 + 4 × eventfd wake-up p50)"),
            value: div(ours, bound),
            limit: 1.0,
            at_most: true,
        });
        t.push(Target {
            issue: "16",
            name: format!("lat_{tag}_shmring_vs_rivals_p50"),
            what: format!("{tag} live p50 ÷ the best rival's p50"),
            value: div(ours, best50),
            limit: 0.7,
            at_most: true,
        });
        t.push(Target {
            issue: "16, 30",
            name: format!("lat_{tag}_shmring_vs_rivals_p99"),
            what: format!("{tag} live p99 ÷ the best rival's p99"),
            value: div(ours99, best99),
            limit: 1.0,
            at_most: true,
        });
        t.push(Target {
            issue: "16, 30",
            name: format!("lat_{tag}_spin_over_inprocess_p50_us"),
            what: format!("{tag} live p50 with spinning − in-process p50 (µs)"),
            value: spin.zip(inproc).map(|(s, i)| s - i),
            limit: 4.0,
            at_most: true,
        });
    }
}

/// Throughput against the in-process pipeline and its bound, the live consumer's
/// CPU, and the steadiness of the rounds.
fn throughput_targets(out: &mut Out, t: &mut Vec<Target>) {
    for tag in ["v1080", "v4k"] {
        let inproc = g(out, format!("{tag}_inprocess_fps"));
        t.push(Target {
            issue: "16, 30",
            name: format!("{tag}_shmring_vs_inprocess"),
            what: format!("{tag} zero-copy fps ÷ in-process fps"),
            value: div(g(out, format!("{tag}_shmring_fps")), inproc),
            limit: 0.95,
            at_most: false,
        });
        // In-process time per frame plus one hot memcpy of the frame.
        let bound = match (inproc, g(out, format!("memcpy_{tag}_hot_ms"))) {
            (Some(f), Some(m)) => Some(1.0 / (1.0 / f + m / 1e3)),
            _ => None,
        };
        out.put(format!("{tag}_copy_bound_fps"), bound);
        t.push(Target {
            issue: "16",
            name: format!("{tag}_shmring_copy_vs_bound"),
            what: format!("{tag} copy path fps ÷ (in-process + one hot memcpy) fps"),
            value: div(g(out, format!("{tag}_shmring_copy_fps")), bound),
            limit: 0.9,
            at_most: false,
        });
    }
    t.push(Target {
        issue: "16, 30",
        name: "audio_shmring_vs_inprocess".into(),
        what: "unpaced 10 ms audio buffers/s ÷ in-process".into(),
        value: div(
            out.get("audio_shmring_bufs_per_s"),
            out.get("audio_inprocess_bufs_per_s"),
        ),
        limit: 0.9,
        at_most: false,
    });
    t.push(Target {
        issue: "16",
        name: "v1080_live_consumer_cpu_pct".into(),
        what: "CPU of the default consumer of a 30 fps live 1080p stream (% of a core)".into(),
        value: out.get("v1080_shmring_consumer_cpu_pct"),
        limit: 2.0,
        at_most: true,
    });
    for tag in ["v1080", "v4k", "audio"] {
        let key = format!("{tag}_shmring");
        let v = out.spread.get(&key).map(|(lo, hi)| lo / hi);
        t.push(Target {
            issue: "16",
            name: format!("{tag}_shmring_steadiness"),
            what: format!("{tag}: slowest round ÷ fastest round"),
            value: v,
            limit: 0.8,
            at_most: false,
        });
    }
}

/// Issue 30: what the GStreamer layer may cost above the transport, the hand-over
/// floors and the wake-up, each from this run.
fn layer_targets(out: &mut Out, t: &mut Vec<Target>) {
    for (tag, limit) in [("v1080", 8.0), ("v4k", 12.0)] {
        t.push(Target {
            issue: "30",
            name: format!("{tag}_transport_cpu_us_per_frame"),
            what: format!(
                "{tag} zero-copy: CPU µs per frame of both processes − the in-process pipeline's"
            ),
            value: g(out, format!("{tag}_shmring_transport_cpu_ms_per_frame")).map(|ms| ms * 1e3),
            limit,
            at_most: true,
        });
    }
    // The per-buffer account's floors: what one process spends above its own
    // in-process pipeline to hand a frame to another thread or pipeline.
    let acct = |k: &str| out.get(&format!("acct_v1080_{k}_cpu_us_per_buf"));
    let inproc = acct("inprocess_process");
    let over = |v: Option<f64>| v.zip(inproc).map(|(v, i)| v - i);
    let ours = over(
        acct("shmring_producer")
            .zip(acct("shmring_consumer"))
            .map(|(p, c)| p + c),
    );
    let floor = min_of([
        over(acct("inprocess_queue_process")),
        over(acct("inprocess_app_process")),
    ]);
    out.put("acct_v1080_floor_over_inprocess_us_per_buf".into(), floor);
    out.put("acct_v1080_shmring_over_inprocess_us_per_buf".into(), ours);
    t.push(Target {
        issue: "30",
        name: "v1080_transport_cpu_vs_floor".into(),
        what: "v1080 (account): CPU per buffer over in-process, ours ÷ the cheapest hand-over in one process (queue, appsink → appsrc)".into(),
        value: div(ours, floor.filter(|f| *f > 0.0)),
        limit: 1.3,
        at_most: true,
    });
    let wake = out.get("wake_eventfd_p50_us");
    for tag in ["audio", "v1080", "v4k"] {
        let inproc = g(out, format!("{tag}_inprocess_p50_us"));
        let ours = g(out, format!("{tag}_shmring_p50_us"));
        let bound = inproc.zip(wake).map(|(i, w)| i + 2.0 * w);
        out.put(format!("lat_{tag}_bound2_p50_us"), bound);
        t.push(Target {
            issue: "30",
            name: format!("lat_{tag}_shmring_vs_bound2"),
            what: format!("{tag} live p50 ÷ (in-process p50 + 2 × eventfd wake-up p50)"),
            value: div(ours, bound),
            limit: 1.0,
            at_most: true,
        });
        for rival in ["shm", "unixfd"] {
            t.push(Target {
                issue: "30",
                name: format!("lat_{tag}_p50_vs_{rival}"),
                what: format!("{tag} live p50 ÷ {rival}'s (at most half)"),
                value: div(ours, g(out, format!("{tag}_{rival}_p50_us"))),
                limit: 0.5,
                at_most: true,
            });
        }
    }
}

/// Against shmsink in the same conditions: every figure above that shmsink has
/// one of (what `make bench-load` holds to under load). Lower is better for
/// latency and CPU.
fn against_shmsink(out: &Out, t: &mut Vec<Target>) {
    let mut vs_shm: Vec<(String, String, String, bool)> = Vec::new();
    for tag in ["v1080", "v4k"] {
        vs_shm.push((
            format!("{tag}_shmring_vs_shm"),
            format!("{tag}_shmring_fps"),
            format!("{tag}_shm_fps"),
            false,
        ));
        vs_shm.push((
            format!("{tag}_shmring_copy_vs_shm_copy"),
            format!("{tag}_shmring_copy_fps"),
            format!("{tag}_shm_copy_fps"),
            false,
        ));
    }
    vs_shm.push((
        "audio_shmring_vs_shm".into(),
        "audio_shmring_bufs_per_s".into(),
        "audio_shm_bufs_per_s".into(),
        false,
    ));
    for tag in ["audio", "v1080", "v4k"] {
        for p in ["p50", "p99"] {
            vs_shm.push((
                format!("lat_{tag}_shmring_vs_shm_{p}"),
                format!("{tag}_shmring_{p}_us"),
                format!("{tag}_shm_{p}_us"),
                true,
            ));
        }
    }
    vs_shm.push((
        "v1080_live_consumer_cpu_vs_shm".into(),
        "v1080_shmring_consumer_cpu_pct".into(),
        "v1080_shm_consumer_cpu_pct".into(),
        true,
    ));
    for (name, ours, theirs, lower) in vs_shm {
        t.push(Target {
            issue: "16, 30",
            what: format!("{ours} ÷ {theirs}"),
            value: div(out.get(&ours), out.get(&theirs)),
            name,
            limit: 1.0,
            at_most: lower,
        });
    }
}

/// The targets as a markdown table.
pub(crate) fn table(t: &[Target]) -> String {
    let mut md = String::from(
        "\n**Targets** (every ratio from this run; the issue that set each)\n\n| issue | figure | value | target | met |\n|---|---|---|---|---|\n",
    );
    for x in t {
        md.push_str(&format!(
            "| #{} | {} (`{}`) | {} | {} {} | {} |\n",
            x.issue,
            x.what,
            x.name,
            fmt(x.value, 2),
            if x.at_most { "≤" } else { "≥" },
            x.limit,
            match x.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        ));
    }
    md
}
