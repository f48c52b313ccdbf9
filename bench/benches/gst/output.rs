//! Output: JSON, markdown, plots.

use super::*;

pub(crate) fn target_dir() -> PathBuf {
    // target/<profile>/deps/<bench> -> target/bench
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A median with the spread of its rounds: `2817 (2500–3000)`.
pub(crate) fn fmt_spread(out: &Out, figure: &str, key: &str) -> String {
    match (out.get(figure), out.spread.get(key)) {
        (Some(v), Some((lo, hi))) => format!("{v:.0} ({lo:.0}–{hi:.0})"),
        (v, _) => fmt(v, 0),
    }
}

pub(crate) fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no memory-safety preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{date} on {cpu} ({cpus} CPUs), {}", gst::version_string())
}

pub(crate) fn report(
    out: &Out,
    lat: &[Transport],
    video: &[Transport],
    targets: &[targets::Target],
    load: bool,
) {
    let name = if load { "gst-load" } else { "gst" };
    let dir = target_dir();
    // The ring-level figures of the same `make bench`, when it ran first.
    let ring: Vec<(String, Option<f64>)> = std::fs::read_to_string(dir.join("ring.json"))
        .ok()
        .map(|s| parse_flat_json(&s))
        .unwrap_or_default();
    write_json(out, &ring, &dir.join(format!("{name}.json")));

    let mut md = format!(
        "Measured {} by `make {}`.\n\n",
        machine(),
        if load {
            "bench-load` (beside one busy process"
        } else {
            "bench"
        }
    );
    if load {
        md = md.replace("`.\n", "`).\n");
    }
    md.push_str(&format!(
        "**Physical references** (same run, two processes, one wake-up every 10 ms, 200 of them): one-way wake-up p50 / p99 eventfd {} / {} µs, unix socket {} / {} µs, pipe {} / {} µs, busy-poll {} / {} µs. One `memcpy` of a 1080p I420 frame {} ms hot, {} ms cold; of a 4K frame {} ms hot, {} ms cold.\n\n",
        fmt(out.get("wake_eventfd_p50_us"), 1),
        fmt(out.get("wake_eventfd_p99_us"), 1),
        fmt(out.get("wake_socket_p50_us"), 1),
        fmt(out.get("wake_socket_p99_us"), 1),
        fmt(out.get("wake_pipe_p50_us"), 1),
        fmt(out.get("wake_pipe_p99_us"), 1),
        fmt(out.get("wake_busypoll_p50_us"), 1),
        fmt(out.get("wake_busypoll_p99_us"), 1),
        fmt(out.get("memcpy_v1080_hot_ms"), 2),
        fmt(out.get("memcpy_v1080_cold_ms"), 2),
        fmt(out.get("memcpy_v4k_hot_ms"), 2),
        fmt(out.get("memcpy_v4k_cold_ms"), 2),
    ));
    md.push_str(&video_table(out, video));
    let (t1080, t4k) = (
        out.get("v1080_shmring_transport_cpu_ms_per_frame"),
        out.get("v4k_shmring_transport_cpu_ms_per_frame"),
    );
    md.push_str(&format!(
        "\nTransport CPU per frame, zero-copy (both processes minus the in-process pipeline, round by round, median): 1080p {} ms, 4K {} ms.\n",
        fmt(t1080, 3),
        fmt(t4k, 3)
    ));
    md.push_str(&format!(
        "\nOne `memcpy` of a 4K I420 frame: {} ms.\n\n",
        fmt(out.get("memcpy_4k_frame_ms"), 2)
    ));
    md.push_str(&latency_table(out, lat));
    md.push('\n');
    md.push_str(&account::table(out));
    if !ring.is_empty() {
        md.push_str("\n**Ring and frame channel alone** (`target/bench/ring.json`, same run)\n\n| figure | value |\n|---|---|\n");
        for (k, v) in &ring {
            md.push_str(&format!("| `{k}` | {} |\n", fmt(*v, 3)));
        }
    }
    md.push_str(&targets::table(targets));
    std::fs::write(dir.join(format!("{name}.md")), &md).unwrap();
    println!("{md}");
    if load {
        eprintln!("wrote {}/{name}.json, {name}.md", dir.display());
        return;
    }
    if let Err(e) = plots(out, video, lat, &dir) {
        eprintln!("plots not drawn: {e}");
    }
    eprintln!(
        "wrote {}/gst.json, gst.md, video.png, latency.png",
        dir.display()
    );
}

/// Every figure of the run (and of the ring's, when it ran first) as one flat
/// JSON object.
fn write_json(out: &Out, ring: &[(String, Option<f64>)], path: &std::path::Path) {
    let mut json = String::from("{\n");
    let all: Vec<&(String, Option<f64>)> = out.json.iter().chain(ring.iter()).collect();
    for (i, (k, v)) in all.iter().enumerate() {
        let v = v.map_or("null".into(), |v| format!("{v}"));
        let comma = if i + 1 < all.len() { "," } else { "" };
        json.push_str(&format!("  \"{k}\": {v}{comma}\n"));
    }
    json.push_str("}\n");
    std::fs::write(path, json).unwrap();
}

/// The raw video table, a row per transport.
fn video_table(out: &Out, video: &[Transport]) -> String {
    let mut md = String::new();
    md.push_str("**Raw video, non-live, `sync=false`** (frames/s at the consumer: median of 5 interleaved rounds, slowest–fastest in brackets; ratio to the in-process pipeline; CPU of both processes per frame)\n\n");
    md.push_str("| transport | 1080p fps | × in-process | 1080p CPU ms/frame | 4K fps | × in-process | 4K GB/s | 4K CPU ms/frame |\n|---|---|---|---|---|---|---|---|\n");
    for t in video {
        let k = t.key();
        let f = |n: &str| out.get(&format!("{n}_{k}_fps"));
        let note = out
            .notes
            .get(&format!("v1080_{k}"))
            .or_else(|| out.notes.get(&format!("v4k_{k}")))
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.label(),
            note,
            fmt_spread(out, &format!("v1080_{k}_fps"), &format!("v1080_{k}")),
            ratio(f("v1080"), out.get("v1080_inprocess_fps")),
            fmt(out.get(&format!("v1080_{k}_cpu_ms_per_frame")), 3),
            fmt_spread(out, &format!("v4k_{k}_fps"), &format!("v4k_{k}")),
            ratio(f("v4k"), out.get("v4k_inprocess_fps")),
            fmt(out.get(&format!("v4k_{k}_gbps")), 2),
            fmt(out.get(&format!("v4k_{k}_cpu_ms_per_frame")), 3),
        ));
    }
    md
}

/// The audio and live latency table, a row per transport.
fn latency_table(out: &Out, lat: &[Transport]) -> String {
    let mut md = String::new();
    md.push_str("**Audio S16LE 48 kHz stereo, 10 ms buffers**: unpaced buffers/s (non-live, `wave=sine-table`, median of 5 interleaved rounds); live latency from the producer's push to the consumer's arrival (µs; `CLOCK_MONOTONIC` written into each buffer; 3 interleaved rounds pooled, the first 10 buffers of each left out)\n\n");
    md.push_str("| transport | unpaced bufs/s | audio p50 | p99 | max | 1080p live p50 | p99 | max | 4K live p50 | p99 | consumer CPU, 1080p live |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for t in lat {
        let k = t.key();
        let note = out
            .notes
            .get(&format!("audio_{k}_lat"))
            .or_else(|| out.notes.get(&format!("audio_{k}")))
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let g = |n: String| out.get(&n);
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.label(),
            note,
            fmt_spread(out, &format!("audio_{k}_bufs_per_s"), &format!("audio_{k}")),
            fmt(g(format!("audio_{k}_p50_us")), 1),
            fmt(g(format!("audio_{k}_p99_us")), 1),
            fmt(g(format!("audio_{k}_max_us")), 1),
            fmt(g(format!("v1080_{k}_p50_us")), 1),
            fmt(g(format!("v1080_{k}_p99_us")), 1),
            fmt(g(format!("v1080_{k}_max_us")), 1),
            fmt(g(format!("v4k_{k}_p50_us")), 1),
            fmt(g(format!("v4k_{k}_p99_us")), 1),
            g(format!("v1080_{k}_consumer_cpu_pct")).map_or("—".into(), |c| format!("{c:.2} %")),
        ));
    }
    md.push_str(&format!(
        "\nThe same in-process pipeline fed back to back (its source not live, so caches and predictors stay warm): p50 {} µs audio, {} µs 1080p, {} µs 4K. The distance to the live in-process figures above is what running a path once per interval costs on this machine.\n",
        fmt(out.get("audio_inprocess_hot_p50_us"), 1),
        fmt(out.get("v1080_inprocess_hot_p50_us"), 1),
        fmt(out.get("v4k_inprocess_hot_p50_us"), 1),
    ));
    md
}

/// A flat `{"name": number-or-null}` object, as `ring.json` is written.
pub(crate) fn parse_flat_json(s: &str) -> Vec<(String, Option<f64>)> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().trim_end_matches(',').split_once(':')?;
            let k = k.trim().trim_matches('"').to_owned();
            Some((k, v.trim().parse().ok()))
        })
        .collect()
}

/// The label under the middle of group `x` of bars (one group per transport).
pub(crate) fn group_label(shown: &[Transport], x: f64) -> String {
    if (x.fract() - 0.5).abs() > 0.01 {
        return String::new();
    }
    shown
        .get(x.floor() as usize)
        .map(|t| t.key().to_owned())
        .unwrap_or_default()
}

pub(crate) fn plots(
    out: &Out,
    video: &[Transport],
    lat: &[Transport],
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVuSans.ttf (fonts-dejavu-core): {e}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into()))
        .map_err(|_| "bad font")?;

    video_plot(out, video, &dir.join("video.png"))?;
    latency_plot(out, lat, &dir.join("latency.png"))?;
    Ok(())
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Video: frames/s relative to the in-process pipeline, 1080p and 4K side by side.
fn video_plot(out: &Out, video: &[Transport], path: &std::path::Path) -> PlotResult {
    use plotters::prelude::*;
    let shown: Vec<Transport> = video
        .iter()
        .copied()
        .filter(|t| out.get(&format!("v1080_{}_fps", t.key())).is_some())
        .collect();
    let top = ["v1080", "v4k"]
        .iter()
        .flat_map(|tag| {
            let base = out.get(&format!("{tag}_inprocess_fps"));
            shown
                .iter()
                .filter_map(move |t| Some(out.get(&format!("{tag}_{}_fps", t.key()))? / base?))
        })
        .fold(1.2f64, f64::max)
        * 1.05;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Raw I420 video, two processes: frames/s relative to one process",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..shown.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // A label in the middle of each group of bars.
        .x_labels(shown.len() * 2 + 1)
        .x_label_formatter(&|x| group_label(&shown, *x))
        .y_desc("× in-process frames/s")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, (tag, color)) in [("v1080", BLUE), ("v4k", RED)].iter().enumerate() {
        let base = out.get(&format!("{tag}_inprocess_fps"));
        let bars: Vec<Rectangle<(f64, f64)>> = shown
            .iter()
            .enumerate()
            .filter_map(|(x, t)| {
                let v = out.get(&format!("{tag}_{}_fps", t.key()))? / base?;
                let x0 = x as f64 + 0.1 + 0.4 * i as f64;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.38, v)],
                    color.mix(0.7).filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(if *tag == "v1080" { "1080p" } else { "4K" })
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;

    Ok(())
}

/// Latency: p50 and p99 per transport (log scale), audio and 1080p video.
fn latency_plot(out: &Out, lat: &[Transport], path: &std::path::Path) -> PlotResult {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let shown: Vec<Transport> = lat
        .iter()
        .copied()
        .filter(|t| out.get(&format!("audio_{}_p50_us", t.key())).is_some())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Live latency, producer push to consumer arrival (µs, log scale)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..shown.len() as f64, (0.5f64..100_000f64).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // A label in the middle of each group of bars.
        .x_labels(shown.len() * 2 + 1)
        .x_label_formatter(&|x| group_label(&shown, *x))
        .y_desc("µs")
        .label_style(("sans-serif", 16))
        .draw()?;
    let series = [
        ("audio", "p50", "audio p50", BLUE.mix(0.9)),
        ("audio", "p99", "audio p99", BLUE.mix(0.4)),
        ("v1080", "p50", "1080p p50", RED.mix(0.9)),
        ("v1080", "p99", "1080p p99", RED.mix(0.4)),
    ];
    for (i, (tag, p, label, color)) in series.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = shown
            .iter()
            .enumerate()
            .filter_map(|(x, t)| {
                let v = out.get(&format!("{tag}_{}_{p}_us", t.key()))?;
                let x0 = x as f64 + 0.08 + 0.21 * i as f64;
                Some(Rectangle::new(
                    [(x0, 0.5), (x0 + 0.19, v.max(0.5))],
                    color.filled(),
                ))
            })
            .collect();
        let c = *color;
        chart
            .draw_series(bars)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
