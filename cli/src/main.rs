//! The `burrow` binary (being built).
fn main() {}
