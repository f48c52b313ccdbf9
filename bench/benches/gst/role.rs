//! One pipeline in this process (`--role`): what each child process of the bench runs.

use super::*;

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + sys) of this process, all threads, in ns.
pub(crate) fn cpu_ns() -> u64 {
    // SAFETY: a zeroed rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to our rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[derive(Default)]
pub(crate) struct Probe {
    pub(crate) n: u64,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    pub(crate) cpu_first: u64,
    pub(crate) cpu_eos: u64,
    pub(crate) latencies_ns: Vec<i64>,
    /// The kernel's counters at the first buffer and at EOS (see `account`).
    pub(crate) usage_first: Option<account::Usage>,
    pub(crate) usage_eos: Option<account::Usage>,
}

/// Runs `desc` to EOS and prints `result ...` (or `error ...`). `stamp` and
/// `measure` name elements whose sink pads write / read the time stamps; `latency`
/// says whether `measure` reads them.
pub(crate) fn role(desc: &str, stamp: &str, measure: &str, latency: bool, hold: bool) -> ! {
    // Before any thread exists: every thread the pipeline makes inherits them.
    let counters = Arc::new(account::Counters::open());
    gst::init().unwrap();
    gstshmring::plugin_register_static().unwrap();
    let pipeline = match gst::parse::launch(desc) {
        Ok(p) => p.downcast::<gst::Pipeline>().unwrap(),
        Err(e) => {
            println!("error cannot build pipeline: {e}");
            std::process::exit(1);
        }
    };
    let probe = add_probes(&pipeline, stamp, measure, latency, &counters);
    bridge(&pipeline);
    // A tcpserversink drops what it renders before a client connects: hold the
    // stream (prerolled in PAUSED) until one has.
    let (client_tx, client_rx) = mpsc::channel::<()>();
    let mut gated = false;
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        if e.factory().is_some_and(|f| f.name() == "tcpserversink") {
            gated = true;
            let tx = Mutex::new(client_tx.clone());
            e.connect("client-added", false, move |_| {
                let _ = tx.lock().unwrap().send(());
                None
            });
        }
    }
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Paused).is_err() {
        println!("error {}", first_error(&bus));
        std::process::exit(1);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    if gated && client_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        println!("error no client connected");
        std::process::exit(1);
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(300),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let outcome = match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => None,
        Some(gst::MessageView::Error(e)) => Some(format!("{} ({:?})", e.error(), e.debug())),
        _ => Some("no EOS within 300 s".into()),
    };
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        if e.factory().is_some_and(|f| f.name().starts_with("shmring")) {
            println!("stats {}", e.property::<gst::Structure>("stats"));
        }
    }
    if let Some(e) = outcome {
        pipeline.set_state(gst::State::Null).unwrap();
        println!("error {e} (after {} buffers)", probe.lock().unwrap().n);
        std::process::exit(1);
    }
    let p = probe.lock().unwrap();
    if let Some(first) = &p.usage_first {
        let eos = p.usage_eos.unwrap_or_else(|| counters.read());
        println!("usage {}", account::encode(&account::delta(first, &eos)));
    }
    let lat: Vec<String> = p.latencies_ns.iter().map(|l| l.to_string()).collect();
    println!(
        "result {} {} {} {} {} {}",
        p.n,
        p.first_ns,
        p.last_ns,
        p.cpu_first,
        p.cpu_eos.max(p.cpu_first),
        lat.join(",")
    );
    std::io::stdout().flush().unwrap();
    if hold {
        // A producer keeps its pipeline (and connections) until the consumer is
        // done: a sink that queues (tcpserversink) would lose what it has not sent.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    std::process::exit(0);
}

/// Joins `appsink name=bridge_out` to `appsrc name=bridge_in`, if the pipeline has
/// them: each sample (the buffer itself, with its caps) goes on, and so does the end
/// of the stream.
fn bridge(pipeline: &gst::Pipeline) {
    let (Some(out), Some(into)) = (
        pipeline.by_name("bridge_out"),
        pipeline.by_name("bridge_in"),
    ) else {
        return;
    };
    let to = into.clone();
    out.connect("new-sample", false, move |args| {
        let sink = args[0].get::<gst::Element>().unwrap();
        let flow = match sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
            Some(sample) => to.emit_by_name::<gst::FlowReturn>("push-sample", &[&sample]),
            None => gst::FlowReturn::Eos,
        };
        Some(flow.to_value())
    });
    out.connect("eos", false, move |_| {
        // Flushing or ended already: nothing is left to pass on either way.
        let _ = into.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
        None
    });
}

pub(crate) fn first_error(bus: &gst::Bus) -> String {
    match bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .as_ref()
        .map(|m| m.view())
    {
        Some(gst::MessageView::Error(e)) => format!("{} ({:?})", e.error(), e.debug()),
        _ => "state change failed".into(),
    }
}

/// Probes on the sink pads of `stamp` (writes the monotonic time into each
/// buffer's first bytes) and `measure` (counts buffers, reads the stamps back when
/// `latency`, takes the CPU time at the first buffer and at EOS).
fn add_probes(
    pipeline: &gst::Pipeline,
    stamp: &str,
    measure: &str,
    latency: bool,
    counters: &Arc<account::Counters>,
) -> Arc<Mutex<Probe>> {
    if let Some(e) = pipeline.by_name(stamp) {
        e.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let b = b.make_mut();
                    if let Ok(mut m) = b.map_writable() {
                        if m.len() >= 8 {
                            m[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
                        }
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    let probe = Arc::new(Mutex::new(Probe::default()));
    if let Some(e) = pipeline.by_name(measure) {
        let p = probe.clone();
        let counters = counters.clone();
        e.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let now = monotonic_ns();
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let mut p = p.lock().unwrap();
                        if p.n == 0 {
                            p.first_ns = now;
                            p.cpu_first = cpu_ns();
                            p.usage_first = Some(counters.read());
                        }
                        p.n += 1;
                        p.last_ns = now;
                        if latency {
                            let mut stamp = [0u8; 8];
                            if b.copy_to_slice(0, &mut stamp).is_ok() {
                                p.latencies_ns
                                    .push(now as i64 - u64::from_le_bytes(stamp) as i64);
                            }
                        }
                    }
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        let mut p = p.lock().unwrap();
                        p.cpu_eos = cpu_ns();
                        p.usage_eos = Some(counters.read());
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    probe
}
