//! What the tool shows: a row per producer and one per consumer under it, with
//! rates worked out from two looks at the same producer.

use std::time::Duration;

use shmring::Policy;
use shmring::frame::{ConsumerStats, ProducerStats};

use crate::sample::Look;

/// One producer's row.
#[derive(Clone, Debug)]
pub struct ProducerRow {
    /// Its name, path or URI as given.
    pub label: String,
    /// Its socket.
    pub path: String,
    /// "serving", "no stats" (a producer too old to send them), or why it did not
    /// answer.
    pub state: String,
    /// Whether it answered with its counters.
    pub ok: bool,
    /// What it says it serves (the plugin's caps), control characters replaced.
    pub caps: String,
    /// Its counters, when it sent them.
    pub stats: Option<ProducerStats>,
    /// Frames and bytes per second since the previous look.
    pub fps: Option<f64>,
    /// Bytes per second since the previous look.
    pub bps: Option<f64>,
    /// Its consumers.
    pub consumers: Vec<ConsumerRow>,
}

/// One consumer's row.
#[derive(Clone, Debug)]
pub struct ConsumerRow {
    /// Its counters as the producer says them.
    pub stats: ConsumerStats,
    /// Frames per second since the previous look (none for a consumer new since).
    pub fps: Option<f64>,
    /// Bytes per second since the previous look.
    pub bps: Option<f64>,
}

/// A rate from two readings of a counter `dt` apart; none when it went back (a
/// restarted producer, a lying one) or no time passed.
pub fn rate(before: u64, now: u64, dt: Duration) -> Option<f64> {
    let d = now.checked_sub(before)?;
    let s = dt.as_secs_f64();
    (s > 0.0).then(|| d as f64 / s)
}

/// The rows of `now`, with rates against `before` (the previous look at the same
/// producers, if any).
pub fn rows(now: &[Look], before: &[Look]) -> Vec<ProducerRow> {
    now.iter()
        .map(|l| {
            let prev = before.iter().find(|b| b.target == l.target);
            row(l, prev)
        })
        .collect()
}

fn row(l: &Look, prev: Option<&Look>) -> ProducerRow {
    let (state, ok, caps) = match &l.answer {
        Ok(i) if i.stats.is_some() => ("serving".to_string(), true, printable(&i.description)),
        Ok(i) => (
            "no stats (an older producer)".into(),
            false,
            printable(&i.description),
        ),
        Err(e) => (e.clone(), false, String::new()),
    };
    let stats = l.stats().cloned();
    let before = prev.and_then(|p| Some((p.stats()?, l.at.saturating_duration_since(p.at))));
    let mut r = ProducerRow {
        label: l.target.label.clone(),
        path: l.target.path.display().to_string(),
        state,
        ok,
        caps,
        stats: None,
        fps: None,
        bps: None,
        consumers: Vec::new(),
    };
    let Some(s) = stats else { return r };
    if let Some((b, dt)) = before {
        r.fps = rate(b.frames, s.frames, dt);
        r.bps = rate(b.bytes, s.bytes, dt);
    }
    r.consumers = s
        .consumers
        .iter()
        .map(|c| {
            let was = before.and_then(|(b, dt)| {
                let w = b
                    .consumers
                    .iter()
                    .find(|x| x.id == c.id && x.pid == c.pid)?;
                Some((w, dt))
            });
            ConsumerRow {
                stats: c.clone(),
                fps: was.and_then(|(w, dt)| rate(w.frames, c.frames, dt)),
                bps: was.and_then(|(w, dt)| rate(w.bytes, c.bytes, dt)),
            }
        })
        .collect();
    r.stats = Some(s);
    r
}

/// A peer's text as a row shows it: valid UTF-8 kept; anything else, control
/// characters and the invisible ones that reorder or hide text on a terminal
/// (bidirectional overrides and isolates, zero-width characters) replaced.
pub fn printable(b: &[u8]) -> String {
    let hidden = |c: char| {
        matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| {
            if c.is_control() || hidden(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A policy's name.
pub fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Block => "block",
        Policy::Drop => "drop",
    }
}

/// How the rows are sorted (`top`'s keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// By name (the default).
    Name,
    /// Most frames per second first.
    Fps,
    /// Most bytes per second first.
    Bytes,
    /// Most drops first (consumers; producers by their consumers' drops).
    Drops,
}

impl Sort {
    /// The key that picks this order in `top`, and its name.
    pub fn key_and_name(self) -> (char, &'static str) {
        match self {
            Sort::Name => ('n', "name"),
            Sort::Fps => ('f', "frames/s"),
            Sort::Bytes => ('m', "MB/s"),
            Sort::Drops => ('d', "drops"),
        }
    }

    /// The order a key picks.
    pub fn of_key(k: u8) -> Option<Sort> {
        [Sort::Name, Sort::Fps, Sort::Bytes, Sort::Drops]
            .into_iter()
            .find(|s| s.key_and_name().0 as u8 == k)
    }
}

/// Sorts producers, and the consumers under each.
pub fn sort(rows: &mut [ProducerRow], by: Sort) {
    let desc = |a: Option<f64>, b: Option<f64>| {
        b.unwrap_or(-1.0)
            .partial_cmp(&a.unwrap_or(-1.0))
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let drops = |r: &ProducerRow| r.consumers.iter().map(|c| c.stats.drops).max().unwrap_or(0);
    match by {
        Sort::Name => rows.sort_by(|a, b| a.label.cmp(&b.label)),
        Sort::Fps => rows.sort_by(|a, b| desc(a.fps, b.fps).then(a.label.cmp(&b.label))),
        Sort::Bytes => rows.sort_by(|a, b| desc(a.bps, b.bps).then(a.label.cmp(&b.label))),
        Sort::Drops => rows.sort_by(|a, b| drops(b).cmp(&drops(a)).then(a.label.cmp(&b.label))),
    }
    for r in rows {
        match by {
            Sort::Name => r.consumers.sort_by_key(|c| c.stats.id),
            Sort::Fps => r.consumers.sort_by(|a, b| desc(a.fps, b.fps)),
            Sort::Bytes => r.consumers.sort_by(|a, b| desc(a.bps, b.bps)),
            Sort::Drops => r
                .consumers
                .sort_by_key(|c| std::cmp::Reverse(c.stats.drops)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_went_back_or_no_time_has_no_rate() {
        let s = Duration::from_secs(1);
        assert_eq!(rate(10, 40, s), Some(30.0));
        assert_eq!(rate(40, 10, s), None);
        assert_eq!(rate(0, u64::MAX, s), Some(u64::MAX as f64));
        assert_eq!(rate(1, 2, Duration::ZERO), None);
    }

    #[test]
    fn a_peers_text_loses_its_control_characters() {
        assert_eq!(printable(b"video/x-raw"), "video/x-raw");
        assert_eq!(
            printable(b"a\x1b[2Jb\n\xff"),
            "a\u{fffd}[2Jb\u{fffd}\u{fffd}"
        );
        // A right-to-left override would show "video" as "oediv" and hide what follows.
        assert_eq!(
            printable("x\u{202e}y\u{200b}".as_bytes()),
            "x\u{fffd}y\u{fffd}"
        );
    }
}
