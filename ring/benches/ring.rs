//! Ring benchmark (placeholder while being written).
fn main() {}
