//! `batchd-bench`: see the library docs and `scripts/bench.sh`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = batchd_bench::run::Args::parse();
    // Two workers: the bench shares the machine with batchd and the fake upstream, and more
    // threads than cores would only add scheduling noise to what it measures.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(batchd_bench::run::run(args))?;
    Ok(())
}
