//! A description of the machine a run happened on, so figures in BENCHMARKS.md can be judged
//! (and compared only with runs on similar hardware).

use std::path::Path;
use std::process::Command;

fn first_match(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `(label, value)` pairs describing CPU, memory, disk, kernel, toolchain, load and date.
pub fn describe(work_dir: &Path) -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ram = first_match(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let dir = work_dir.to_string_lossy();
    let disk = command("df", &["-hT", &dir])
        .and_then(|t| t.lines().nth(1).map(str::to_owned))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} ({}), {} total, {} free",
                f.first().unwrap_or(&"?"),
                f.get(1).unwrap_or(&"?"),
                f.get(2).unwrap_or(&"?"),
                f.get(4).unwrap_or(&"?")
            )
        })
        .unwrap_or_else(|| "unknown".into());
    let device = command("lsblk", &["-dno", "NAME,ROTA,SIZE"])
        .map(|t| {
            t.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .map(|t| {
            format!(
                "{t} (ROTA 1 = rotational as reported by the kernel; virtual disks often report 1)"
            )
        })
        .unwrap_or_default();
    vec![
        (
            "CPU",
            first_match(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        ),
        ("Cores", format!("{cores} available to this process")),
        ("RAM", ram),
        ("Disk / filesystem of the data dir", disk),
        ("Block devices", device),
        ("Kernel", command("uname", &["-sr"]).unwrap_or_default()),
        (
            "rustc",
            command("rustc", &["--version"]).unwrap_or_default(),
        ),
        (
            "Load average at start",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "Date",
            command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        ),
    ]
}
