//! What `results` and `watch` share on both surfaces: writing the chosen JSONL lines to a file
//! or stdout with a count at the end, and polling a batch until it ends behind a progress bar
//! (on a terminal) or one line per change (otherwise).

use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::{ResultKind, println_out};

/// Result lines on their way to a file or stdout, counted.
pub struct Sink {
    out: BufWriter<Box<dyn AsyncWrite + Unpin + Send>>,
    total: u64,
    written: u64,
}

impl Sink {
    /// Writes to `path` (created or truncated), or to stdout when there is none.
    pub async fn open(path: Option<&Path>) -> Result<Self> {
        let sink: Box<dyn AsyncWrite + Unpin + Send> = match path {
            Some(p) => Box::new(
                tokio::fs::File::create(p)
                    .await
                    .with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(tokio::io::stdout()),
        };
        Ok(Self {
            out: BufWriter::with_capacity(256 * 1024, sink),
            total: 0,
            written: 0,
        })
    }

    /// Counts a line, and writes it when `keep`.
    pub async fn offer(&mut self, line: &[u8], keep: bool) -> Result<()> {
        self.total += 1;
        if keep {
            self.out.write_all(line).await?;
            self.out.write_all(b"\n").await?;
            self.written += 1;
        }
        Ok(())
    }

    /// Flushes, and says on stderr what went to `path` (nothing when it was stdout).
    pub async fn finish(mut self, path: Option<&Path>, only: Option<ResultKind>) -> Result<()> {
        self.out.flush().await?;
        self.out.into_inner().shutdown().await?;
        let (written, total) = (self.written, self.total);
        if let Some(p) = path {
            match only {
                Some(k) => eprintln!(
                    "wrote {written} {} of {total} results to {}",
                    k.as_str(),
                    p.display()
                ),
                None => eprintln!("wrote {written} results to {}", p.display()),
            }
        }
        Ok(())
    }
}

/// What one poll of a batch shows.
pub struct Progress {
    pub total: u64,
    pub done: u64,
    pub status: &'static str,
    /// The line printed when there is no progress bar (printed again only when it changes).
    pub line: String,
    pub ended: bool,
}

/// Fetches the batch every `interval` until `view` says it ended, and returns it. Progress
/// goes to a bar on a terminal, else to stdout (stderr with `json`, which keeps stdout for the
/// final object).
pub async fn until_ended<B, F, Fut>(
    id: &str,
    interval: Duration,
    json: bool,
    mut fetch: F,
    view: impl Fn(&B) -> Progress,
) -> Result<B>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<B>>,
{
    let tty = std::io::stdout().is_terminal();
    let bar = (tty && !json).then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] [{bar:40}] {pos}/{len} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(id.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last_line = String::new();
    let batch = loop {
        let batch = match fetch().await {
            Ok(b) => b,
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(e);
            }
        };
        let p = view(&batch);
        match &bar {
            Some(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(p.status);
            }
            None if p.line != last_line => {
                if json {
                    eprintln!("{}", p.line);
                } else {
                    println_out(&p.line)?;
                }
                last_line = p.line;
            }
            None => {}
        }
        if p.ended {
            break batch;
        }
        tokio::time::sleep(interval).await;
    };
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(batch)
}
