//! The benchmarks live under `benches/` (`make bench`); this library is empty.
