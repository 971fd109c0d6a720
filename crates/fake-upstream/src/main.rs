//! `fake-upstream`: the fake model server as a process, for benchmarks and manual testing.
//! Prints `fake-upstream listening on http://ADDR` once bound (so a parent can read the port
//! when it asked for port 0), then serves until killed.

use std::io::Write;
use std::time::Duration;

use batchd_fake_upstream::{FakeConfig, FakeUpstream};
use clap::Parser;

/// A fast fake Anthropic (`/v1/messages`) and OpenAI (`/v1/chat/completions`) model server
/// with fault directives scripted in request bodies (see the crate docs).
#[derive(Debug, Parser)]
#[command(name = "fake-upstream", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Latency before every answer (`0ms`, `50ms`, `2s`).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Words per answer (the last user turn's words, cycled); default: its first 8 words.
    #[arg(long)]
    answer_words: Option<usize>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers.max(1));
    }
    runtime.build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let addr = listener.local_addr()?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "fake-upstream listening on http://{addr}")?;
            stdout.flush()?;
        }
        // A process has nobody to read recordings, so it runs the benchmark configuration.
        let mut config = FakeConfig::fast().latency(args.latency);
        config.answer_words = args.answer_words;
        FakeUpstream::serve_forever(listener, config).await;
        Ok(())
    })
}
