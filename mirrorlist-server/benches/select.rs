//! Benchmark of `handler::handle` (filled in below once the handler exists).
fn main() {}
