//! The rows as text (a table, `inspect`'s page) and as JSON.

use std::fmt::Write as _;

use shmring::frame::ProducerStats;

use crate::rows::{ConsumerRow, ProducerRow, policy_name};

/// A rate, or "-" when there is none yet.
fn rate(v: Option<f64>, scale: f64) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1}", v / scale),
        _ => "-".into(),
    }
}

/// At most `n` characters of `s`, an ellipsis where cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The table of `top` and `list`: one line per producer, one per consumer under it.
pub fn table(rows: &[ProducerRow], width: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>7} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:<6} {:>7} {:>6}",
        "PRODUCER / CONSUMER",
        "PID",
        "FRAMES/S",
        "MB/S",
        "DROPS",
        "HELD",
        "PENDING",
        "QUEUED",
        "POLICY",
        "UID",
        "CUT"
    );
    for r in rows {
        let s = r.stats.as_ref();
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:<6} {:>7} {:>6}",
            cut(&r.label, 24),
            "",
            rate(r.fps, 1.0),
            rate(r.bps, 1e6),
            "",
            s.map_or(String::new(), |s| format!(
                "{}/{}",
                s.slots - s.free_slots.min(s.slots),
                s.slots
            )),
            "",
            "",
            s.map_or("", |s| policy_name(s.policy)),
            "",
            s.map_or(String::new(), |s| s.cut_off.to_string()),
        );
        let caps = if r.ok {
            format!("  {} consumer(s); {}", r.consumers.len(), r.caps)
        } else {
            format!("  {}", r.state)
        };
        let _ = writeln!(out, "{}", cut(&caps, width.max(20)));
        for c in &r.consumers {
            consumer_line(&mut out, c);
        }
    }
    out
}

fn consumer_line(out: &mut String, c: &ConsumerRow) {
    let s = &c.stats;
    let _ = writeln!(
        out,
        "  └ consumer {:<13} {:>7} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:<6} {:>7} {:>6}",
        s.id,
        s.pid,
        rate(c.fps, 1.0),
        rate(c.bps, 1e6),
        s.drops,
        s.held,
        s.pending,
        s.queued,
        policy_name(s.policy),
        s.uid,
        "",
    );
}

/// `inspect`'s page: everything the producer said about itself.
pub fn page(r: &ProducerRow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "producer   {}", r.label);
    let _ = writeln!(out, "socket     {}", r.path);
    let _ = writeln!(out, "state      {}", r.state);
    let _ = writeln!(
        out,
        "caps       {}",
        if r.caps.is_empty() { "(none)" } else { &r.caps }
    );
    let Some(s) = &r.stats else { return out };
    served(&mut out, s);
    for c in &r.consumers {
        let s = &c.stats;
        let _ = writeln!(
            out,
            "consumer {}: pid {} uid {}, {} frames ({} bytes), {} dropped, {} slots held, {} frames pending, {} bytes queued, policy {}",
            s.id,
            s.pid,
            s.uid,
            s.frames,
            s.bytes,
            s.drops,
            s.held,
            s.pending,
            s.queued,
            policy_name(s.policy)
        );
    }
    out
}

fn served(out: &mut String, s: &ProducerStats) {
    let _ = writeln!(out, "frames     {} ({} bytes)", s.frames, s.bytes);
    let _ = writeln!(
        out,
        "slots      {} of {} bytes, {} free, in {} arena(s)",
        s.slots, s.slot_size, s.free_slots, s.arenas
    );
    let _ = writeln!(
        out,
        "policy     {}, block timeout {} ms, lease {}",
        policy_name(s.policy),
        s.block_timeout.as_millis(),
        s.lease
            .map_or("none".into(), |l| format!("{} ms", l.as_millis()))
    );
    let _ = writeln!(
        out,
        "consumers  {} now (at most {}); {} joined, {} left, {} cut off, {} refused; {} probes",
        s.consumers.len(),
        s.max_consumers,
        s.joined,
        s.left,
        s.cut_off,
        s.refused,
        s.probes
    );
}

/// A JSON string.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number, or `null` for none (or not finite).
fn json_f(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".into(),
    }
}

/// The rows as one JSON document: `{"producers": [...]}`, each producer with its
/// counters (`null` where it sent none) and its consumers.
pub fn json(rows: &[ProducerRow]) -> String {
    let producers: Vec<String> = rows.iter().map(json_producer).collect();
    format!("{{\"producers\":[{}]}}\n", producers.join(","))
}

fn json_producer(r: &ProducerRow) -> String {
    let mut o = format!(
        "{{\"name\":{},\"path\":{},\"state\":{},\"ok\":{},\"caps\":{},\"frames_per_s\":{},\"bytes_per_s\":{}",
        json_str(&r.label),
        json_str(&r.path),
        json_str(&r.state),
        r.ok,
        json_str(&r.caps),
        json_f(r.fps),
        json_f(r.bps)
    );
    match &r.stats {
        None => o.push_str(",\"stats\":null,\"consumers\":[]}"),
        Some(s) => {
            let _ = write!(
                o,
                ",\"stats\":{{\"frames\":{},\"bytes\":{},\"joined\":{},\"left\":{},\"cut_off\":{},\"refused\":{},\"probes\":{},\"arenas\":{},\"slot_size\":{},\"slots\":{},\"free_slots\":{},\"max_consumers\":{},\"policy\":{},\"block_timeout_ms\":{},\"lease_ms\":{}}}",
                s.frames,
                s.bytes,
                s.joined,
                s.left,
                s.cut_off,
                s.refused,
                s.probes,
                s.arenas,
                s.slot_size,
                s.slots,
                s.free_slots,
                s.max_consumers,
                json_str(policy_name(s.policy)),
                s.block_timeout.as_millis(),
                s.lease.map_or("null".into(), |l| l.as_millis().to_string())
            );
            let cs: Vec<String> = r.consumers.iter().map(json_consumer).collect();
            let _ = write!(o, ",\"consumers\":[{}]}}", cs.join(","));
        }
    }
    o
}

fn json_consumer(c: &ConsumerRow) -> String {
    let s = &c.stats;
    format!(
        "{{\"id\":{},\"pid\":{},\"uid\":{},\"frames\":{},\"bytes\":{},\"drops\":{},\"held\":{},\"pending\":{},\"queued\":{},\"policy\":{},\"frames_per_s\":{},\"bytes_per_s\":{}}}",
        s.id,
        s.pid,
        s.uid,
        s.frames,
        s.bytes,
        s.drops,
        s.held,
        s.pending,
        s.queued,
        json_str(policy_name(s.policy)),
        json_f(c.fps),
        json_f(c.bps)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_str("a\"b\\c\n\u{1b}"), "\"a\\\"b\\\\c\\u000a\\u001b\"");
        assert_eq!(json_f(Some(f64::NAN)), "null");
        assert_eq!(json_f(Some(2.0)), "2.000");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
