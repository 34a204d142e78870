//! The performance goals (issue #15) against what a run measured: one row
//! per goal with its measured median and whether it is met, and for a goal
//! this run misses, what bounds it and why, with the figure that shows it.
//! Pure: reads a [`Results`].

use std::fmt::Write as _;

use crate::results::{Metric, Results, Unit};

/// A figure of one scenario: `ratio` says which table it is in.
#[derive(Clone, Copy)]
struct Figure {
    scenario: &'static str,
    key: &'static str,
    ratio: bool,
}

const fn metric(scenario: &'static str, key: &'static str) -> Figure {
    Figure {
        scenario,
        key,
        ratio: false,
    }
}

const fn ratio(scenario: &'static str, key: &'static str) -> Figure {
    Figure {
        scenario,
        key,
        ratio: true,
    }
}

#[derive(Clone, Copy)]
/// A goal: the figure at least (`Floor`) or at most (`Ceiling`) a value.
enum Bound {
    Floor(f64),
    Ceiling(f64),
    /// At least another figure of the same run (a peer's).
    AtLeastThat(Figure),
}

struct Goal {
    what: &'static str,
    figure: Figure,
    bound: Bound,
    /// Why the goal can be out of reach on this machine, said when it is
    /// missed, and the figures of the run that show the limit.
    limit: Option<(&'static str, Vec<Figure>)>,
}

/// Any of these over the goal: the agent's peak RSS in every mode.
const RSS_MODES: [&str; 4] = ["backup_main", "backup_small", "apply_log", "copy_back"];

fn goals() -> Vec<Goal> {
    vec![
        Goal {
            what: "server TPS during a default backup ÷ without",
            figure: ratio("under_load", "tps_ratio"),
            bound: Bound::Floor(0.85),
            limit: None,
        },
        Goal {
            what: "idle backup ÷ `cp -a`",
            figure: ratio("idle_backup", "vs_cp"),
            bound: Bound::Ceiling(1.10),
            limit: None,
        },
        Goal {
            what: "idle backup ÷ `CLONE LOCAL`",
            figure: ratio("idle_backup", "vs_clone"),
            bound: Bound::Ceiling(1.0),
            limit: None,
        },
        Goal {
            what: "apply-log redo rate (backups under load)",
            figure: metric("apply_log", "redo_rate"),
            bound: Bound::Floor(25e6),
            limit: Some((
                "apply-log replays the redo with MySQL's own crash recovery (the server's \
                 mysqld on the working copy, for an exact result), so it cannot be faster than \
                 that recovery's redo scan and apply alone, nor than mysqld's whole run with \
                 its start and clean shutdown",
                vec![
                    metric("apply_log", "recovery_rate"),
                    metric("apply_log", "server_rate"),
                ],
            )),
        },
        Goal {
            what: "apply-log redo rate (heavy redo)",
            figure: metric("apply_log", "redo_rate_heavy"),
            bound: Bound::Floor(25e6),
            limit: Some((
                "as above: MySQL's own redo scan and apply of the heavy-redo backups, and \
                 mysqld's whole run on them",
                vec![
                    metric("apply_log", "recovery_rate_heavy"),
                    metric("apply_log", "server_rate_heavy"),
                ],
            )),
        },
        Goal {
            what: "apply-log redo rate ≥ mariadb-backup `--prepare`'s (same load, its own server)",
            figure: metric("apply_log", "redo_rate"),
            bound: Bound::AtLeastThat(metric("peer", "redo_rate")),
            limit: Some((
                "mariadb-backup applies the redo with its own code inside the backup tool; \
                 apply-log uses MySQL's crash recovery, whose rate bounds it",
                vec![metric("apply_log", "recovery_rate")],
            )),
        },
        Goal {
            what: "apply-log fixed overhead (all but redo scan and apply, heavy redo)",
            figure: metric("apply_log", "fixed_heavy"),
            bound: Bound::Ceiling(3.0),
            limit: Some((
                "mysqld's own start and clean shutdown around the recovery take most of what \
                 the goal allows by themselves; and the raw backup is never changed, so \
                 apply-log first copies and checks every data file into a working copy (a \
                 reflink where the file system has them; ext4 has none), which the kernel's \
                 own copy of the datadir shows cannot fit in the rest",
                vec![
                    metric("apply_log", "phase_mysqld_fixed_heavy"),
                    metric("apply_log", "phase_agent_heavy"),
                    metric("idle_backup", "cp"),
                ],
            )),
        },
        Goal {
            what: "zstd, bytes per CPU-second (file://)",
            figure: metric("throughput", "zstd_core"),
            bound: Bound::Floor(300e6),
            limit: Some((
                "zstd's own compressor at the agent's level and chunk size, alone on one core \
                 over the dataset's largest table, bounds what a backup of such tables can do \
                 per CPU-second: at full size they are most of what it compresses, and it also \
                 reads, checks every page and hashes what it stores",
                vec![metric("throughput", "zstd_alone_core")],
            )),
        },
        Goal {
            what: "restore ÷ myloader",
            figure: ratio("restore", "vs_myloader"),
            bound: Bound::Ceiling(0.1),
            limit: None,
        },
    ]
}

/// The markdown section, or None when the run measured none of the goals'
/// figures (a run of other scenarios only).
pub fn render(r: &Results) -> Option<String> {
    let mut rows = String::new();
    let mut limits = String::new();
    let mut any = false;
    for goal in goals() {
        let Some(m) = find(r, goal.figure) else {
            continue;
        };
        any = true;
        let median = m.outcome.median();
        let bound = match goal.bound {
            Bound::AtLeastThat(other) => match find(r, other).and_then(|o| o.outcome.median()) {
                Some(v) => Bound::Floor(v),
                None => continue,
            },
            fixed => fixed,
        };
        let met = median.map(|v| meets(bound, v));
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {} |",
            goal.what,
            bound_text(bound, m.unit),
            median.map_or("not measured".into(), |v| m.unit.format(v)),
            verdict(met)
        );
        if let (Some(false), Some((why, shown_by))) = (met, &goal.limit) {
            let shown = shown_by
                .iter()
                .map(|&figure| {
                    find(r, figure)
                        .and_then(|l| {
                            let value = l.outcome.median()?;
                            // A limit that misses the goal by itself puts
                            // it out of reach, whatever the agent does.
                            let alone = if l.unit == m.unit && !meets(bound, value) {
                                ", short of the goal by itself"
                            } else {
                                ""
                            };
                            Some(format!(
                                "{}: **{}**{alone}",
                                l.label.trim(),
                                l.unit.format(value)
                            ))
                        })
                        .unwrap_or_else(|| format!("{} was not measured", figure.key))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(limits, "- *{}*: {why}. {shown}.", goal.what);
        }
    }
    if let Some((worst, unit)) = worst_rss(r) {
        any = true;
        let met = meets(Bound::Ceiling(200.0 * MIB), worst);
        let _ = writeln!(
            rows,
            "| agent peak RSS, any mode | {} | {} | {} |",
            bound_text(Bound::Ceiling(200.0 * MIB), unit),
            unit.format(worst),
            verdict(Some(met))
        );
    }
    if !any {
        return None;
    }
    let mut md = String::from(
        "## The performance goals\n\nIssue #15's goals against this run's medians (the rows below \
         come from the scenarios' tables).\n\n| figure | goal | this run | met |\n|---|---|---:|---|\n",
    );
    md.push_str(&rows);
    if !limits.is_empty() {
        md.push_str("\nWhat bounds a goal this run missed:\n\n");
        md.push_str(&limits);
    }
    md.push('\n');
    Some(md)
}

const MIB: f64 = (1u64 << 20) as f64;

fn find(r: &Results, f: Figure) -> Option<&Metric> {
    let s = r.scenarios.iter().find(|s| s.id == f.scenario)?;
    let table = if f.ratio { &s.ratios } else { &s.metrics };
    table.iter().find(|m| m.key == f.key)
}

/// The highest median peak RSS of the modes scenario 6 measured.
fn worst_rss(r: &Results) -> Option<(f64, Unit)> {
    RSS_MODES
        .iter()
        .filter_map(|key| find(r, metric("rss", key)))
        .filter_map(|m| Some((m.outcome.median()?, m.unit)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Whether `value` meets a bound already resolved to a number.
fn meets(bound: Bound, value: f64) -> bool {
    match bound {
        Bound::Floor(goal) => value >= goal,
        Bound::Ceiling(goal) => value <= goal,
        Bound::AtLeastThat(_) => false,
    }
}

fn bound_text(bound: Bound, unit: Unit) -> String {
    match bound {
        Bound::Floor(goal) => format!("≥ {}", unit.format(goal)),
        Bound::Ceiling(goal) => format!("≤ {}", unit.format(goal)),
        Bound::AtLeastThat(_) => "≥ the other figure".into(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Scenario;
    use crate::stats::Series;

    /// A metric of one measured value.
    fn one(key: &str, label: &str, unit: Unit, value: f64) -> Metric {
        let mut s = Series::new();
        s.push(value);
        Metric::from_series(key, label, unit, &s)
    }

    fn results(scenarios: Vec<Scenario>) -> Results {
        Results {
            date: "2026-12-07".into(),
            size: "2G".into(),
            started_at: String::new(),
            total_seconds: 0.0,
            command: String::new(),
            repeat: 1,
            machine: crate::machine::Machine {
                cores: 2,
                cpu_model: String::new(),
                memory_bytes: 0,
                kernel: String::new(),
                os: String::new(),
                disk: String::new(),
                free: String::new(),
                df: String::new(),
            },
            versions: Default::default(),
            dataset: crate::results::Dataset {
                plan: crate::plan::DatasetPlan {
                    label: "2G".into(),
                    bytes: 0,
                    tables: 1,
                    rows_per_table: 1,
                },
                sysbench_bytes: 0,
                datadir_bytes: 0,
                prepare_seconds: 0.0,
            },
            settings: Default::default(),
            scenarios,
            charts: vec![],
        }
    }

    #[test]
    fn a_missed_goal_says_what_bounds_it_and_a_met_one_does_not() {
        let mut under = Scenario::new("under_load", "2", "");
        under.push(one("tps_during", "d", Unit::Tps, 900.0));
        under.push(one("tps_without", "w", Unit::Tps, 1000.0));
        under.ratio("tps_ratio", "r", "tps_during", "tps_without");
        let mut apply = Scenario::new("apply_log", "3", "");
        let rate = Unit::BytesPerSecond;
        apply.push(one("redo_rate", "rate", rate, 14e6));
        apply.push(one("recovery_rate", "  of which mysqld's own", rate, 18e6));
        apply.push(one("server_rate", "whole run", rate, 30e6));
        let mut peer = Scenario::new("peer", "7", "");
        peer.push(one("redo_rate", "--prepare", rate, 61e6));
        let md = render(&results(vec![under, apply, peer])).unwrap();
        assert!(
            md.contains("(same load, its own server) | ≥ 61.0 MB/s | 14.0 MB/s | **no** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| server TPS during a default backup ÷ without | ≥ 0.850× | 0.900× | yes |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| apply-log redo rate (backups under load) | ≥ 25.0 MB/s | 14.0 MB/s | **no** |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "of which mysqld's own: **18.0 MB/s**, short of the goal by itself; \
                 whole run: **30.0 MB/s**."
            ),
            "a limit that misses the goal alone says so, one that meets it does not: {md}"
        );
        assert!(
            !md.contains("heavy"),
            "goals not measured are left out: {md}"
        );
    }

    #[test]
    fn a_run_without_any_goal_figure_has_no_section() {
        assert!(render(&results(vec![Scenario::new("replay", "9", "")])).is_none());
    }
}
