//! batchd's benchmark harness: a Rust load generator, process control for batchd and
//! the fake upstream, the machine limits each figure is held against, and the report.
//!
//! Run it through `scripts/bench.sh`, which builds release binaries first; `--smoke` is a quick
//! scaled-down run, `--rows` picks a subset.

pub mod client;
pub mod machine;
pub mod postgres;
pub mod process;
pub mod report;
pub mod run;
pub mod staticfile;
pub mod table;
pub mod workload;
