//! The markdown report: one table per scenario, the ratios, the charts and
//! the machine. Pure: renders a [`Results`] to a string.

use std::fmt::Write as _;

use crate::results::{Metric, Results, Subject, Unit};
use crate::stats::Outcome;

pub fn render(r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Innoxide benchmark: {} dataset, {}\n", r.size, r.date);
    let _ = writeln!(
        md,
        "`{}` — {:.0} min in all. Each figure is the **median of {} runs** with min and max, \
         unless its row says otherwise; ratios pair run *i* with run *i*.\n",
        r.command,
        r.total_seconds / 60.0,
        r.repeat
    );
    let d = &r.dataset;
    let _ = writeln!(md, "- **Machine:** {}", r.machine.summary());
    let _ = writeln!(
        md,
        "- **Dataset:** sysbench {} tables × {} rows: {} of tables, a {} datadir (what `cp -a` copies); \
         `sysbench prepare` took {:.0} s.",
        d.plan.tables,
        thousands(d.plan.rows_per_table),
        Unit::Bytes.format(d.sysbench_bytes as f64),
        Unit::Bytes.format(d.datadir_bytes as f64),
        d.prepare_seconds
    );
    let versions: Vec<String> = r
        .versions
        .iter()
        .map(|(k, v)| format!("{k}: `{v}`"))
        .collect();
    let _ = writeln!(md, "- **Versions:** {}", versions.join("; "));
    let settings: Vec<String> = r
        .settings
        .iter()
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    let _ = writeln!(md, "- **Settings:** {}", settings.join(", "));
    let _ = writeln!(
        md,
        "- **Colours:** blue = Innoxide, grey = a yardstick on the same MySQL 9.7 server, \
         orange = mariadb-backup on MariaDB 10.11 (a different server).\n"
    );
    if let Some(summary) = r.charts.iter().find(|c| c.ends_with("summary.png")) {
        let _ = writeln!(md, "![Summary of the ratios]({summary})\n");
    }
    if let Some(goals) = super::goals::render(r) {
        md.push_str(&goals);
    }

    for s in &r.scenarios {
        let _ = writeln!(md, "## {}\n\n{}\n", s.title, s.about);
        table(&mut md, "measurement", &s.metrics);
        if !s.ratios.is_empty() {
            table(&mut md, "ratio", &s.ratios);
        }
        for note in &s.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !s.notes.is_empty() {
            md.push('\n');
        }
        if let Some(chart) = r
            .charts
            .iter()
            .find(|c| c.ends_with(&format!("-{}.png", s.id)))
        {
            let _ = writeln!(md, "![{}]({chart})\n", s.title);
        }
    }

    let _ = writeln!(
        md,
        "## The machine\n\n```\n$ nproc\n{}\n$ free -h\n{}\n$ df -hT <work folder>\n{}\n```",
        r.machine.cores, r.machine.free, r.machine.df
    );
    let _ = writeln!(
        md,
        "\nDisk: {}. CPU: {}.",
        r.machine.disk, r.machine.cpu_model
    );
    md
}

fn table(md: &mut String, first: &str, metrics: &[Metric]) {
    let _ = writeln!(
        md,
        "| {first} | median | min | max | runs |\n|---|---:|---:|---:|---:|"
    );
    for m in metrics {
        let label = match m.subject {
            Subject::Peer => format!("{} *(MariaDB 10.11)*", m.label),
            _ => m.label.clone(),
        };
        let label = label.replace('|', "\\|");
        match &m.outcome {
            Outcome::Measured(s) => {
                let _ = writeln!(
                    md,
                    "| {label} | **{}** | {} | {} | {} |",
                    m.unit.format(s.median),
                    m.unit.format(s.min),
                    m.unit.format(s.max),
                    s.samples.len()
                );
            }
            Outcome::Unavailable { unavailable } => {
                let _ = writeln!(
                    md,
                    "| {label} | unavailable: {} | | | 0 |",
                    cell(unavailable)
                );
            }
        }
        if let Some(note) = &m.note {
            let _ = writeln!(md, "| ↳ *{}* | | | | |", cell(note));
        }
    }
    md.push('\n');
}

/// One line, no pipes, at most 300 characters: an error message in a cell.
fn cell(text: &str) -> String {
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "/");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn rows_show_median_min_max_or_why_not() {
        let mut md = String::new();
        let measured = Metric::new(
            "a",
            "Innoxide backup",
            Unit::Seconds,
            Outcome::Measured(Stats::of(&[2.0, 1.0, 3.0]).unwrap()),
        );
        let missing = Metric::new(
            "b",
            "apply-log",
            Unit::Seconds,
            Outcome::unavailable("innoxide-agent: error: apply-log | not built yet\nsecond line"),
        )
        .peer();
        table(&mut md, "measurement", &[measured, missing]);
        assert!(
            md.contains("| Innoxide backup | **2.00 s** | 1.00 s | 3.00 s | 3 |"),
            "{md}"
        );
        assert!(
            md.contains("| apply-log *(MariaDB 10.11)* | unavailable: innoxide-agent: error: apply-log / not built yet second line | | | 0 |"),
            "{md}"
        );
    }

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(925_000), "925,000");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
    }
}
