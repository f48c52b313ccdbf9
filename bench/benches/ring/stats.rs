//! Medians, percentiles, rounds.

use super::*;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub(crate) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn rounds(name: &str, f: impl Fn() -> f64) -> f64 {
    let runs: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    eprintln!("  {name}: {runs:.3?}");
    median(runs)
}
