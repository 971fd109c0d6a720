//! The PostgreSQL rows: 1, 2 and 3 batchd processes on one PostgreSQL, each count on a fresh
//! database, at a 0 ms and a slow upstream (the fake, shared by the processes). One batch of
//! `--requests` compact requests is created on the first process and timed from the create's
//! answer to `ended`; beside the rate, the CPU per 1,000 requests of batchd (every process) and
//! of PostgreSQL (the whole cluster), both from `/proc`, since on a shared machine CPU per
//! request is the figure to trust.
//!
//! The cluster is `BATCHD_BENCH_DATABASE_URL` (an admin URL of a server on this machine, so its
//! processes can be read) when set, else a throwaway one started by
//! `scripts/pg-test-cluster.sh` with PostgreSQL's default (durable) settings and stopped at the
//! end. Databases are made and dropped with `psql`. Without PostgreSQL's binaries the rows say
//! so and are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::Api;
use crate::process::{Batchd, Guarded, cpu_seconds, start_batchd, start_fake};
use crate::table::{Row, Verdict};

/// Where the throwaway cluster comes from, relative to the repository root (the bench's usual
/// working directory).
const CLUSTER_SCRIPT: &str = "scripts/pg-test-cluster.sh";
/// The environment variable naming an existing cluster instead.
pub const URL_VAR: &str = "BATCHD_BENCH_DATABASE_URL";
/// The batchd process counts of the rows.
pub const PROCESS_COUNTS: [usize; 3] = [1, 2, 3];
/// How often the bench polls the batch.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for a batch.
const DEADLINE: Duration = Duration::from_secs(1200);

/// A PostgreSQL server the rows run on: its admin URL and its postmaster's pid (whose children
/// are the server's processes), and the directory of a throwaway cluster to stop at the end.
pub struct Cluster {
    pub admin_url: String,
    postmaster: u32,
    throwaway: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.throwaway {
            let _ = Command::new(CLUSTER_SCRIPT).args(["stop", dir]).status();
        }
    }
}

/// Runs `psql` on `url` with one statement; its trimmed output.
fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([url, "-XtAqc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why the rows cannot run on this machine, if they cannot: no `psql`, or neither a cluster
/// URL nor PostgreSQL's server binaries to start one.
pub fn missing() -> Option<String> {
    let found = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("psql", "--version") {
        return Some("no psql on this machine".into());
    }
    if std::env::var_os(URL_VAR).is_some() {
        return None;
    }
    let server = std::fs::read_dir("/usr/lib/postgresql")
        .is_ok_and(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").exists()));
    if !server {
        return Some(format!(
            "no PostgreSQL server binaries under /usr/lib/postgresql and no {URL_VAR}"
        ));
    }
    if !Path::new(CLUSTER_SCRIPT).exists() {
        return Some(format!(
            "{CLUSTER_SCRIPT} not found (run from the repository root)"
        ));
    }
    None
}

impl Cluster {
    /// The cluster of `BATCHD_BENCH_DATABASE_URL`, or a throwaway durable one.
    pub fn start() -> anyhow::Result<Self> {
        let (admin_url, throwaway) = match std::env::var(URL_VAR) {
            Ok(url) => (url, None),
            Err(_) => {
                let out = Command::new(CLUSTER_SCRIPT)
                    .arg("start")
                    // Durable: the rows measure PostgreSQL as it would be deployed.
                    .env_remove("PGTEST_FAST")
                    .output()
                    .context("starting a PostgreSQL cluster")?;
                if !out.status.success() {
                    bail!(
                        "{CLUSTER_SCRIPT} start: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let var = |name: &str| {
                    text.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(str::to_owned)
                        .with_context(|| format!("no {name} in {text:?}"))
                };
                (var("BATCHD_TEST_DATABASE_URL=")?, Some(var("PGTEST_DIR=")?))
            }
        };
        let data_dir = psql(&admin_url, "SHOW data_directory")?;
        let pid_file = PathBuf::from(&data_dir).join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .with_context(|| {
                format!(
                    "reading {} (the server must run on this machine)",
                    pid_file.display()
                )
            })?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid has no pid")?;
        Ok(Self {
            admin_url,
            postmaster,
            throwaway,
        })
    }

    /// The server's version and durability settings, for the report.
    pub fn describe(&self) -> String {
        let show = |what: &str| psql(&self.admin_url, &format!("SHOW {what}")).unwrap_or_default();
        format!(
            "PostgreSQL {} (fsync {}, synchronous_commit {})",
            show("server_version"),
            show("fsync"),
            show("synchronous_commit")
        )
    }

    /// CPU seconds the whole server has used so far: the postmaster's own and that of its
    /// children, those that exited (reaped, in its cutime and cstime) and those still running.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let own = children_cpu(self.postmaster)?;
        let running: f64 = child_pids(self.postmaster)
            .into_iter()
            .filter_map(cpu_seconds)
            .sum();
        Some(own + running)
    }

    /// A fresh database; its URL.
    fn create_database(&self, name: &str) -> anyhow::Result<String> {
        psql(&self.admin_url, &format!("CREATE DATABASE {name}"))?;
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(base, _)| base);
        Ok(format!("{base}/{name}"))
    }

    fn drop_database(&self, name: &str) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}

/// A process's own CPU plus that of its reaped children, in seconds (`/proc/PID/stat` fields
/// 14 to 17).
fn children_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let ticks: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(ticks.iter().sum::<u64>() as f64 / 100.0)
}

/// The pids whose parent is `parent`.
fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// What the rows need from the run.
pub struct Setup<'a> {
    pub batchd_bin: &'a Path,
    pub fake_bin: &'a Path,
    pub work: &'a Path,
    pub key: &'a str,
    pub requests: usize,
    pub concurrency: usize,
    pub answer_words: usize,
}

/// One measurement: `processes` batchd processes on a fresh database, at `latency`.
pub struct Measured {
    pub rate: f64,
    /// CPU milliseconds per 1,000 requests: every batchd process, and the PostgreSQL cluster.
    pub batchd_ms: Option<f64>,
    pub postgres_ms: Option<f64>,
    pub succeeded: u64,
}

/// Measures one (process count, latency) pair.
pub async fn measure(
    setup: &Setup<'_>,
    cluster: &Cluster,
    body: bytes::Bytes,
    processes: usize,
    latency: Duration,
    label: &str,
) -> anyhow::Result<Measured> {
    let db = format!("batchd_bench_{}_{label}", std::process::id());
    let url = cluster.create_database(&db)?;
    let outcome = measure_on(setup, cluster, body, processes, latency, &url, label).await;
    cluster.drop_database(&db);
    outcome
}

async fn measure_on(
    setup: &Setup<'_>,
    cluster: &Cluster,
    body: bytes::Bytes,
    processes: usize,
    latency: Duration,
    url: &str,
    label: &str,
) -> anyhow::Result<Measured> {
    let migrated = Command::new(setup.batchd_bin)
        .args(["migrate", "--database-url", url])
        .output()
        .context("running batchd migrate")?;
    if !migrated.status.success() {
        bail!(
            "batchd migrate: {}",
            String::from_utf8_lossy(&migrated.stderr).trim()
        );
    }
    let (_fake, upstream): (Guarded, _) = start_fake(setup.fake_bin, latency, setup.answer_words)?;
    let c = setup.concurrency;
    let mut servers: Vec<Batchd> = Vec::new();
    for i in 0..processes {
        let dir = setup.work.join(format!("pg-{label}-{i}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "concurrency = {c}\n\n[[backends]]\nname = \"fake\"\nkind = \"anthropic\"\n\
                 base_url = \"http://{upstream}\"\nmodels = [\"*\"]\nmax_concurrency = {c}\n"
            ),
        )?;
        let flags = [
            "--config".to_owned(),
            config.to_string_lossy().into_owned(),
            "--database-url".to_owned(),
            url.to_owned(),
        ];
        servers.push(start_batchd(setup.batchd_bin, &dir, setup.key, &flags).await?);
    }
    let api = Api::new(servers[0].addr, setup.key);
    let id = api.create(body).await?;
    let created = std::time::Instant::now();
    let batchd_cpu = || -> Option<f64> { servers.iter().map(|s| cpu_seconds(s.pid())).sum() };
    let (batchd0, postgres0) = (batchd_cpu(), cluster.cpu_seconds());
    let (ended, batch) = api.wait_ended(&id, POLL, DEADLINE).await?;
    let (batchd1, postgres1) = (batchd_cpu(), cluster.cpu_seconds());
    let n = setup.requests as f64;
    let per_1000 = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1000.0 * 1000.0 / n);
    Ok(Measured {
        rate: n / (ended - created).as_secs_f64(),
        batchd_ms: per_1000(batchd0, batchd1),
        postgres_ms: per_1000(postgres0, postgres1),
        succeeded: batch["request_counts"]["succeeded"].as_u64().unwrap_or(0),
    })
}

/// The row of one measurement; `single` is the rate of one process at the same latency, the
/// limit more processes are held against (the target: they add throughput).
pub fn row(
    processes: usize,
    requests: &str,
    latency: &str,
    m: &Measured,
    single: Option<f64>,
) -> Row {
    let name = format!("PostgreSQL: {processes} process(es), {requests} req, {latency} upstream");
    let cpu = |ms: Option<f64>| ms.map_or("?".into(), |ms| format!("{ms:.0} ms"));
    let figure = format!(
        "{:.0} req/s; CPU/1,000 req: batchd {}, PostgreSQL {}",
        m.rate,
        cpu(m.batchd_ms),
        cpu(m.postgres_ms)
    );
    match single {
        Some(one) if processes > 1 => Row::new(
            &name,
            figure,
            format!("1 process {one:.0} req/s"),
            Some(m.rate / one),
            "info",
            Verdict::Info,
        ),
        _ => Row::new(&name, figure, "—".into(), None, "info", Verdict::Info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_a_child_of_its_parent_and_has_cpu() {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        assert!(child_pids(parent).contains(&me));
        assert!(children_cpu(me).is_some());
    }
}
