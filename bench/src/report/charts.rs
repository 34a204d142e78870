//! PNG charts: one horizontal bar chart per scenario and a summary of every
//! ratio. Each bar is a median with a min–max whisker and its value written
//! beside it; a measurement that could not be taken is a row that says why.
//!
//! Shapes are drawn with plotters' bitmap backend, text with [`super::text`].

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use super::text::{self, Align, Style};
use crate::results::{Results, Scenario, Subject, Unit};
use crate::stats::Outcome;

const WIDTH: u32 = 1250;
const LABEL_RIGHT: i32 = 470;
const PLOT_LEFT: i32 = 485;
const PLOT_RIGHT: i32 = WIDTH as i32 - 180;
const TOP: i32 = 100;
const ROW: i32 = 46;
const BAR_HALF: i32 = 13;

const INNOXIDE: RGBColor = RGBColor(31, 119, 180);
const ANCHOR: RGBColor = RGBColor(150, 150, 150);
const PEER: RGBColor = RGBColor(255, 127, 14);
const GRID: RGBColor = RGBColor(225, 225, 225);
const MUTED: RGBColor = RGBColor(110, 110, 110);
const REFERENCE: RGBColor = RGBColor(200, 30, 30);

/// One bar.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub outcome: Outcome,
    pub unit: Unit,
    pub subject: Subject,
}

/// One PNG.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `<stem>-<name>.png`.
    pub name: String,
    pub title: String,
    pub subtitle: String,
    pub axis: String,
    /// `None`: the bars differ, each label carries ↓ or ↑.
    pub higher_is_better: Option<bool>,
    pub bars: Vec<Bar>,
    /// A vertical line (1.0 on a ratio chart).
    pub reference: Option<(f64, String)>,
}

/// The charts of a run: the ratio summary, then one per scenario, each
/// showing the peer's comparable bars next to Innoxide's.
pub fn charts_of(r: &Results) -> Vec<Chart> {
    let peer = r.scenarios.iter().find(|s| s.id == "peer");
    let runs = format!("median of {} runs, whiskers min–max", r.repeat);
    let mut charts = Vec::new();

    let mut ratios: Vec<Bar> = r
        .scenarios
        .iter()
        .flat_map(|s| &s.ratios)
        .map(|m| Bar {
            label: format!(
                "{}  {}",
                m.label,
                if m.higher_is_better { "↑" } else { "↓" }
            ),
            outcome: m.outcome.clone(),
            unit: m.unit,
            subject: m.subject,
        })
        .collect();
    // The peer's ratios are of another server: last, under their own
    // heading, whatever scenarios come after the peer's.
    ratios.sort_by_key(|bar| bar.subject == Subject::Peer);
    if !ratios.is_empty() {
        charts.push(Chart {
            name: "summary".into(),
            title: format!("Innoxide at a glance — {} dataset", r.size),
            subtitle: format!("ratios to the yardsticks (1.0 = the same); {runs}"),
            axis: "ratio".into(),
            higher_is_better: None,
            bars: ratios,
            reference: Some((1.0, "1.0".into())),
        });
    }

    let mut add = |id: &str, keys: &[&str], peer_keys: &[&str], title: &str, higher: bool| {
        let Some(s) = r.scenarios.iter().find(|s| s.id == id) else {
            return;
        };
        let mut bars = bars_of(s, keys);
        if let Some(p) = peer {
            bars.extend(bars_of(p, peer_keys));
        }
        let Some(unit) = bars.first().map(|b| b.unit) else {
            return;
        };
        let axis = if id == "throughput" {
            "MB/s (wall)  ·  MB per CPU-second (per core)".to_string()
        } else {
            unit.chart_axis().to_string()
        };
        charts.push(Chart {
            name: id.into(),
            title: format!("{title} — {} dataset", r.size),
            subtitle: format!(
                "{runs}; {}",
                if higher {
                    "higher is better"
                } else {
                    "lower is better"
                }
            ),
            axis,
            higher_is_better: Some(higher),
            bars,
            reference: None,
        });
    };
    add(
        "idle_backup",
        &["innoxide", "clone", "cp"],
        &["idle", "cp"],
        "1. Idle full backup: wall time",
        false,
    );
    add(
        "under_load",
        &[
            "tps_without",
            "tps_during",
            "tps_without_off",
            "tps_during_off",
            "tps_without_t",
            "tps_during_t",
        ],
        &["tps_without", "tps_during"],
        "2. Server throughput during a backup",
        true,
    );
    add(
        "apply_log",
        &[
            "apply_time",
            "phase_agent",
            "phase_start",
            "phase_redo",
            "phase_to_ready",
            "phase_rollback",
            "phase_shutdown",
            "apply_time_heavy",
            "phase_agent_heavy",
            "phase_redo_heavy",
            "phase_shutdown_heavy",
        ],
        &["prepare"],
        "3. Apply-log (prepare): wall time",
        false,
    );
    add(
        "restore",
        &["restore", "copy_back", "start", "myloader", "mysqldump"],
        &[],
        "4. Restore: wall time",
        false,
    );
    add(
        "throughput",
        &[
            "plain_wall",
            "plain_core",
            "zstd_wall",
            "zstd_core",
            "s3_wall",
            "s3_core",
            "s3_zstd_wall",
            "s3_zstd_core",
        ],
        &[],
        "5. Backup throughput by storage",
        true,
    );
    add(
        "rss",
        &["backup_main", "backup_small", "apply_log", "copy_back"],
        &["rss"],
        "6. Peak RSS",
        false,
    );
    add(
        "incremental",
        &[
            "full",
            "page_track",
            "full_scan",
            "restore_full",
            "restore_chain",
        ],
        &[],
        "8. Incremental after a 1% change, and a chain's restore: wall time",
        false,
    );
    charts
}

fn bars_of(s: &Scenario, keys: &[&str]) -> Vec<Bar> {
    keys.iter()
        .filter_map(|k| s.metric(k))
        .map(|m| Bar {
            label: match m.subject {
                Subject::Peer if !m.label.starts_with("MariaDB") => format!("MariaDB: {}", m.label),
                _ => m.label.trim().to_string(),
            },
            outcome: m.outcome.clone(),
            unit: m.unit,
            subject: m.subject,
        })
        .collect()
}

/// Writes every chart as `dir/<stem>-<name>.png`; returns the file names.
pub fn render_all(r: &Results, dir: &Path, stem: &str) -> Result<Vec<String>> {
    text::ready()?;
    let mut names = Vec::new();
    for chart in charts_of(r) {
        let name = format!("{stem}-{}.png", chart.name);
        render(&chart, &dir.join(&name)).with_context(|| format!("drawing {name}"))?;
        names.push(name);
    }
    Ok(names)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("{e:?}")
}

pub fn render(chart: &Chart, path: &Path) -> Result<()> {
    let rows = chart.bars.len().max(1) as i32;
    let plot_bottom = TOP + rows * ROW;
    let height = (plot_bottom + 75) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let write = |s: &str, style: Style, at: (i32, i32)| text::draw(&root, s, &style, at);
    write(&chart.title, Style::new(26.0, BLACK).bold(), (20, 16))?;
    write(&chart.subtitle, Style::new(17.0, MUTED), (20, 54))?;

    let max = chart
        .bars
        .iter()
        .filter_map(|b| b.outcome.stats().map(|s| b.unit.chart_value(s.max)))
        .chain(chart.reference.iter().map(|(v, _)| *v))
        .fold(0.0_f64, f64::max);
    let (axis_max, step) = nice_axis(max);
    let x_of = |v: f64| {
        PLOT_LEFT + ((v / axis_max).clamp(0.0, 1.0) * f64::from(PLOT_RIGHT - PLOT_LEFT)) as i32
    };

    // Grid and tick labels.
    let mut tick = 0.0;
    while tick <= axis_max * 1.0001 {
        let x = x_of(tick);
        root.draw(&PathElement::new(
            vec![(x, TOP - 6), (x, plot_bottom)],
            GRID.stroke_width(1),
        ))
        .map_err(draw_err)?;
        write(
            &tick_label(tick, step),
            Style::new(14.0, MUTED).align(Align::Middle, Align::Start),
            (x, plot_bottom + 6),
        )?;
        tick += step;
    }
    let better = match chart.higher_is_better {
        Some(true) => "higher is better →",
        Some(false) => "← lower is better",
        None => "↓ lower is better, ↑ higher is better",
    };
    write(
        &format!("{}   ({better})", chart.axis),
        Style::new(15.0, BLACK).align(Align::Middle, Align::Start),
        ((PLOT_LEFT + PLOT_RIGHT) / 2, plot_bottom + 30),
    )?;

    if let Some((value, label)) = &chart.reference {
        let x = x_of(*value);
        let mut y = TOP - 10;
        while y < plot_bottom {
            root.draw(&PathElement::new(
                vec![(x, y), (x, (y + 8).min(plot_bottom))],
                REFERENCE.stroke_width(2),
            ))
            .map_err(draw_err)?;
            y += 14;
        }
        write(
            label,
            Style::new(14.0, REFERENCE)
                .bold()
                .align(Align::Middle, Align::End),
            (x, TOP - 12),
        )?;
    }
    for (i, bar) in chart.bars.iter().enumerate() {
        let y = TOP + i as i32 * ROW + ROW / 2;
        // The peer's bars are a different server: set them apart.
        if bar.subject == Subject::Peer && i > 0 && chart.bars[i - 1].subject != Subject::Peer {
            let line = TOP + i as i32 * ROW;
            root.draw(&PathElement::new(
                vec![(20, line), (WIDTH as i32 - 20, line)],
                MUTED.stroke_width(1),
            ))
            .map_err(draw_err)?;
            write(
                "MariaDB 10.11 + mariadb-backup: a different server",
                Style::new(12.0, PEER)
                    .bold()
                    .align(Align::Start, Align::Start),
                (22, line + 3),
            )?;
        }
        let color = match bar.subject {
            Subject::Innoxide => INNOXIDE,
            Subject::Anchor => ANCHOR,
            Subject::Peer => PEER,
        };
        write(
            &fit(&bar.label, 52),
            Style::new(16.0, BLACK).align(Align::End, Align::Middle),
            (LABEL_RIGHT, y),
        )?;
        match &bar.outcome {
            Outcome::Measured(s) => {
                let value = |v: f64| bar.unit.chart_value(v);
                let end = x_of(value(s.median)).max(PLOT_LEFT + 2);
                root.draw(&Rectangle::new(
                    [(PLOT_LEFT, y - BAR_HALF), (end, y + BAR_HALF)],
                    color.filled(),
                ))
                .map_err(draw_err)?;
                let (xl, xh) = (x_of(value(s.min)), x_of(value(s.max)));
                if s.samples.len() > 1 {
                    let whisker = BLACK.stroke_width(2);
                    root.draw(&PathElement::new(vec![(xl, y), (xh, y)], whisker))
                        .map_err(draw_err)?;
                    for x in [xl, xh] {
                        root.draw(&PathElement::new(vec![(x, y - 7), (x, y + 7)], whisker))
                            .map_err(draw_err)?;
                    }
                }
                write(
                    &bar.unit.format(s.median),
                    Style::new(16.0, BLACK)
                        .bold()
                        .align(Align::Start, Align::Middle),
                    (end.max(xh) + 10, y),
                )?;
            }
            Outcome::Unavailable { unavailable } => {
                write(
                    &fit(
                        &format!("unavailable: {}", strip_tool_prefix(unavailable)),
                        95,
                    ),
                    Style::new(14.0, MUTED).align(Align::Start, Align::Middle),
                    (PLOT_LEFT + 6, y),
                )?;
            }
        }
    }

    root.present().map_err(draw_err)?;
    Ok(())
}

/// The axis end and tick step: 1, 2, 2.5 or 5 × a power of ten, five or so ticks.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let raw = max * 1.05 / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max * 1.05 / step).ceil() * step, step)
}

fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 {
        return format!("{value:.0}");
    }
    let mut decimals = (-step.log10()).ceil() as i32;
    if (step * 10f64.powi(decimals)).fract().abs() > 1e-9 {
        decimals += 1;
    }
    format!("{value:.*}", decimals as usize)
}

/// The agent's `innoxide-agent: error:` prefix says nothing on a chart.
fn strip_tool_prefix(text: &str) -> &str {
    text.strip_prefix("innoxide-agent: error: ").unwrap_or(text)
}

/// At most `chars` characters, with an ellipsis when cut.
fn fit(text: &str, chars: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_axis(9.3), (10.0, 2.0));
        assert_eq!(nice_axis(1.02), (1.25, 0.25));
        assert_eq!(nice_axis(230.0), (250.0, 50.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(tick_label(0.75, 0.25), "0.75");
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(150.0, 50.0), "150");
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(fit("abcdef", 4), "abcd…");
        assert_eq!(fit("a\n b", 10), "a b");
        assert_eq!(strip_tool_prefix("innoxide-agent: error: x"), "x");
    }
}
