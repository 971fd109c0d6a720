//! `batchd test …`: drives the test-mode routes of a batchd server started with `--test-mode`
//! (`/v1/batchd/test/...`), for the caller's workspace, with the same base URL and key options as
//! `batchd batches`: read or advance the virtual clock, put the mock's rules, load replayed
//! results, reset the workspace. Against a server not in test mode every command fails with its
//! 404.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use batchd_client::Client;
use batchd_client::wire::test_mode::TestClock;
use clap::{Args, Subcommand};

use super::{ApiArgs, exit_code, println_out};

/// Options shared by every `test` command.
#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TestCommand,
}

#[derive(Debug, Subcommand)]
enum TestCommand {
    /// Show the workspace's virtual clock.
    Clock,
    /// Move the workspace's clock forward, e.g. `25h`, `29days`, `90s`; batches that expire or
    /// pass their retention on the way are ended or archived before this returns.
    Advance {
        #[arg(value_parser = parse_advance)]
        by: Duration,
    },
    /// Replace the mock's rules (and chaos) with a JSON file's `{"rules": [...], "chaos": ...}`
    /// (`-` for stdin).
    Rules { file: std::path::PathBuf },
    /// Load replayed results: a JSONL file in the format results are downloaded in (`-` for
    /// stdin).
    Fixtures { file: std::path::PathBuf },
    /// Delete everything the workspace owns but its keys, and set its clock back to real time.
    Reset,
}

/// A whole number of seconds, zero or more, in humantime's words (`25h`, `1day 2h`, `90s`).
fn parse_advance(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (e.g. 90s, 25h, 29days)"))?;
    if d.subsec_nanos() != 0 {
        return Err("the clock moves in whole seconds".into());
    }
    Ok(d)
}

/// Runs a `test` command; returns the process exit code (usage errors exit from here).
pub async fn run(args: TestArgs) -> i32 {
    let api_key = args.api.key_or_exit();
    exit_code(execute(args, api_key).await)
}

fn read(file: &Path) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).context("reading stdin")?;
        return Ok(body);
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn clock_line(clock: &TestClock) -> String {
    format!("now {} (offset {}s)", clock.now, clock.offset_seconds)
}

async fn execute(args: TestArgs, api_key: String) -> Result<()> {
    let client: Client = args.api.client(api_key).build()?;
    let json = args.api.json;
    let (object, line) = match args.command {
        TestCommand::Clock => {
            let clock = client.test_clock().await?;
            (serde_json::to_string(&clock)?, clock_line(&clock))
        }
        TestCommand::Advance { by } => {
            let clock = client.test_advance(by.as_secs()).await?;
            (serde_json::to_string(&clock)?, clock_line(&clock))
        }
        TestCommand::Rules { file } => {
            let body = read(&file)?;
            if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                bail!("{}: not a JSON document", file.display());
            }
            let rules = client.test_put_rules(body).await?;
            let chaos = if rules.chaos.is_null() {
                String::new()
            } else {
                format!(", chaos {}", rules.chaos)
            };
            (
                serde_json::to_string(&rules)?,
                format!("{} rule(s){chaos}", rules.rules.len()),
            )
        }
        TestCommand::Fixtures { file } => {
            let loaded = client.test_fixtures(read(&file)?).await?;
            (
                serde_json::to_string(&loaded)?,
                format!("loaded {} fixture line(s)", loaded.loaded),
            )
        }
        TestCommand::Reset => {
            let reset = client.test_reset().await?;
            (
                serde_json::to_string(&reset)?,
                format!("reset; {}", clock_line(&reset.clock)),
            )
        }
    };
    println_out(if json { &object } else { &line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_are_whole_seconds_in_humantime_words() {
        assert_eq!(parse_advance("25h"), Ok(Duration::from_secs(90_000)));
        assert_eq!(
            parse_advance("29days"),
            Ok(Duration::from_secs(29 * 86_400))
        );
        assert_eq!(parse_advance("0s"), Ok(Duration::ZERO));
        assert!(parse_advance("1500ms").is_err());
        assert!(parse_advance("-1h").is_err());
        assert!(parse_advance("soon").is_err());
    }
}
