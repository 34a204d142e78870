//! Writing a run's results: `<date>-<size>.json`, `.md`, the charts, and
//! `LATEST.md` (a copy of the newest run's markdown report).

pub mod charts;
pub mod goals;
pub mod markdown;
pub mod text;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::results::Results;

/// Writes every output into `dir`; returns the JSON's and the markdown's
/// paths. `LATEST.md` only follows a new run, not a re-render of an old one.
pub fn write_all(
    results: &mut Results,
    dir: &Path,
    newest_run: bool,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("{}-{}", results.date, results.size);
    match charts::render_all(results, dir, &stem) {
        Ok(names) => results.charts = names,
        Err(e) => {
            tracing::error!("charts not drawn: {e:#}");
            results.charts.clear();
        }
    }
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let text = markdown::render(results);
    let md = dir.join(format!("{stem}.md"));
    std::fs::write(&md, &text).with_context(|| format!("writing {}", md.display()))?;
    if newest_run {
        std::fs::write(dir.join("LATEST.md"), &text).context("writing LATEST.md")?;
    }
    Ok((json, md))
}

/// Re-renders the markdown and charts of a JSON written earlier (after a
/// change to the report code, without running the bench again).
pub fn rerender(json: &Path) -> Result<(PathBuf, PathBuf)> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let mut results: Results =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let dir = json.parent().unwrap_or(Path::new("."));
    write_all(&mut results, dir, false)
}
