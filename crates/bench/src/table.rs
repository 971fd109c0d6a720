//! The result table: one row per figure, with the limit measured in the same run, the ratio
//! to it, its target and whether it was met. Rendered as aligned text for the
//! terminal and as Markdown for BENCHMARKS.md.

use std::fmt::Write;

/// Whether a row met its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// No target: the figure is recorded for comparison between runs.
    Info,
    /// Not measured in this run, and why.
    NotRun(String),
}

impl Verdict {
    pub fn label(&self) -> String {
        match self {
            Self::Pass => "pass".into(),
            Self::Miss => "MISS".into(),
            Self::Info => "info".into(),
            Self::NotRun(why) => format!("not run: {why}"),
        }
    }

    /// Pass when `ok`, else miss.
    pub fn check(ok: bool) -> Self {
        if ok { Self::Pass } else { Self::Miss }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub batchd: String,
    pub limit: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(
        name: &str,
        batchd: String,
        limit: String,
        ratio: Option<f64>,
        target: &str,
        verdict: Verdict,
    ) -> Self {
        Self {
            name: name.into(),
            batchd,
            limit,
            ratio: ratio.map_or("—".into(), |r| format!("{r:.2}")),
            target: target.into(),
            verdict,
        }
    }

    pub fn not_run(name: &str, target: &str, why: &str) -> Self {
        Self::new(
            name,
            "—".into(),
            "—".into(),
            None,
            target,
            Verdict::NotRun(why.into()),
        )
    }
}

const HEADERS: [&str; 6] = [
    "row",
    "batchd",
    "limit (same run)",
    "ratio",
    "target",
    "result",
];

fn cells(row: &Row) -> [String; 6] {
    [
        row.name.clone(),
        row.batchd.clone(),
        row.limit.clone(),
        row.ratio.clone(),
        row.target.clone(),
        row.verdict.label(),
    ]
}

/// Aligned columns for a terminal.
pub fn text(rows: &[Row]) -> String {
    let all: Vec<[String; 6]> = std::iter::once(HEADERS.map(String::from))
        .chain(rows.iter().map(cells))
        .collect();
    let mut widths = [0usize; 6];
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(out, "{}", widths.map(|w| "-".repeat(w)).join("  "));
        }
    }
    out
}

/// A Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n|{}\n", HEADERS.join(" | "), "---|".repeat(6));
    for row in rows {
        let c = cells(row).map(|c| escape(&c));
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_markdown() {
        let rows = vec![
            Row::new(
                "Ingest",
                "80 MB/s".into(),
                "disk 200 MB/s".into(),
                Some(0.4),
                "≥ 0.5",
                Verdict::check(false),
            ),
            Row::not_run("Dispatch | 0 ms", "≥ 0.9", "no backends"),
        ];
        let t = text(&rows);
        assert!(t.lines().nth(2).unwrap().contains("0.40"));
        assert!(t.contains("MISS"));
        let m = markdown(&rows);
        assert!(m.starts_with("| row | batchd |"));
        assert!(m.contains("Dispatch \\| 0 ms"));
        assert!(m.contains("not run: no backends"));
        assert_eq!(m.lines().count(), 4);
    }
}
