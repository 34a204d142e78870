//! What one `make bench` run found: the JSON written to
//! `bench/results/<date>-<size>.json`, from which the markdown table and the
//! charts are rendered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::plan::DatasetPlan;
use crate::stats::{Outcome, paired_ratio};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `YYYY-MM-DD` (UTC), the first part of the file names.
    pub date: String,
    /// The `--size` label: the second part of the file names.
    pub size: String,
    pub started_at: String,
    pub total_seconds: f64,
    pub command: String,
    pub repeat: u32,
    pub machine: Machine,
    /// Tool name → version line.
    pub versions: BTreeMap<String, String>,
    pub dataset: Dataset,
    /// Server and tool settings every scenario used.
    pub settings: BTreeMap<String, String>,
    pub scenarios: Vec<Scenario>,
    /// Charts written next to the JSON (file names).
    #[serde(default)]
    pub charts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub plan: DatasetPlan,
    /// Sum of the sysbench tables' `.ibd` files.
    pub sysbench_bytes: u64,
    /// Every file of the (idle) source datadir: what `cp -a` copies.
    pub datadir_bytes: u64,
    pub prepare_seconds: f64,
}

/// One numbered scenario of the issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    /// How it is measured, in a sentence or two.
    pub about: String,
    pub metrics: Vec<Metric>,
    pub ratios: Vec<Metric>,
    pub notes: Vec<String>,
}

impl Scenario {
    pub fn new(id: &str, title: &str, about: &str) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            about: about.into(),
            metrics: Vec::new(),
            ratios: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn metric(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }

    pub fn push(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }

    /// Adds `numerator / denominator` (by key) paired run by run; returns
    /// it to set its subject or direction.
    pub fn ratio(
        &mut self,
        key: &str,
        label: &str,
        numerator: &str,
        denominator: &str,
    ) -> &mut Metric {
        let outcome = match (self.metric(numerator), self.metric(denominator)) {
            (Some(a), Some(b)) => paired_ratio(&a.outcome, &b.outcome),
            _ => Outcome::unavailable(format!("no measurement {numerator} or {denominator}")),
        };
        self.ratios
            .push(Metric::new(key, label, Unit::Ratio, outcome));
        self.ratios.last_mut().expect("just pushed")
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Seconds,
    /// Transactions per second.
    Tps,
    /// Bytes per second (charts and tables show MB/s).
    BytesPerSecond,
    /// Bytes per CPU-second: throughput per core.
    BytesPerCpuSecond,
    Bytes,
    Ratio,
    /// A plain number of things (apply batches).
    Count,
}

impl Unit {
    /// The value as a table cell: `12.3 s`, `215 TPS`, `143 MB/s`, `0.93×`.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{} s", sig3(value)),
            Unit::Tps => format!("{} TPS", sig3(value)),
            Unit::BytesPerSecond => format!("{} MB/s", sig3(value / 1e6)),
            Unit::BytesPerCpuSecond => format!("{} MB/CPU-s", sig3(value / 1e6)),
            Unit::Bytes => format!("{} MiB", sig3(value / (1u64 << 20) as f64)),
            Unit::Ratio => format!("{}×", sig3(value)),
            Unit::Count => sig3(value),
        }
    }

    /// The number in the chart's unit (MB for byte rates, MiB for sizes).
    pub fn chart_value(self, value: f64) -> f64 {
        match self {
            Unit::BytesPerSecond | Unit::BytesPerCpuSecond => value / 1e6,
            Unit::Bytes => value / (1u64 << 20) as f64,
            _ => value,
        }
    }

    pub fn chart_axis(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Tps => "transactions per second",
            Unit::BytesPerSecond => "MB/s",
            Unit::BytesPerCpuSecond => "MB per CPU-second",
            Unit::Bytes => "MiB",
            Unit::Ratio => "ratio",
            Unit::Count => "count",
        }
    }
}

/// Three significant digits, without an exponent: 1234 → "1234", 12.34 → "12.3", 0.01234 → "0.0123".
pub fn sig3(value: f64) -> String {
    let abs = value.abs();
    let decimals = if abs >= 100.0 || abs == 0.0 {
        0
    } else if abs >= 10.0 {
        1
    } else if abs >= 1.0 {
        2
    } else {
        (2.0 - abs.log10().floor()) as usize
    };
    format!("{value:.decimals$}")
}

/// Whose number it is: the colour of its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Innoxide,
    /// A yardstick on the same MySQL 9.7 server: cp -a, CLONE, a logical
    /// reload, the server without a backup.
    Anchor,
    /// mariadb-backup on MariaDB 10.11: a different server.
    Peer,
}

/// One line of a table / one bar of a chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    /// Stable identifier within its scenario (ratios refer to it).
    pub key: String,
    pub label: String,
    pub unit: Unit,
    pub subject: Subject,
    /// For ratios and throughputs; times and sizes are better lower.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub higher_is_better: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Metric {
    pub fn new(key: &str, label: &str, unit: Unit, outcome: Outcome) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            unit,
            subject: Subject::Innoxide,
            higher_is_better: matches!(
                unit,
                Unit::Tps | Unit::BytesPerSecond | Unit::BytesPerCpuSecond
            ),
            outcome,
            note: None,
        }
    }

    pub fn from_series(key: &str, label: &str, unit: Unit, series: &crate::stats::Series) -> Self {
        let mut m = Self::new(key, label, unit, series.outcome());
        m.note = series.partial_failure_note();
        m
    }

    pub fn subject(mut self, subject: Subject) -> Self {
        self.subject = subject;
        self
    }

    pub fn anchor(self) -> Self {
        self.subject(Subject::Anchor)
    }

    pub fn peer(self) -> Self {
        self.subject(Subject::Peer)
    }

    pub fn higher_is_better(mut self) -> Self {
        self.higher_is_better = true;
        self
    }

    pub fn with_note(mut self, note: Option<String>) -> Self {
        if note.is_some() {
            self.note = note;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn values_read_naturally() {
        assert_eq!(Unit::Seconds.format(12.345), "12.3 s");
        assert_eq!(Unit::Tps.format(215.4), "215 TPS");
        assert_eq!(Unit::BytesPerSecond.format(143.2e6), "143 MB/s");
        assert_eq!(Unit::Ratio.format(0.934), "0.934×");
        assert_eq!(Unit::Ratio.format(1.5), "1.50×");
        assert_eq!(Unit::Bytes.format(50.0 * 1048576.0), "50.0 MiB");
        assert_eq!(sig3(0.01234), "0.0123");
    }

    #[test]
    fn ratios_refer_to_metrics_by_key() {
        let mut s = Scenario::new("idle_backup", "t", "a");
        let m = |k: &str, v: &[f64]| {
            Metric::new(
                k,
                k,
                Unit::Seconds,
                Outcome::Measured(Stats::of(v).unwrap()),
            )
        };
        s.push(m("innoxide", &[4.0, 6.0]));
        s.push(m("cp", &[2.0, 3.0]));
        s.ratio("r", "Innoxide ÷ cp -a", "innoxide", "cp");
        assert_eq!(s.ratios[0].outcome.median(), Some(2.0));
        s.ratio("x", "missing", "innoxide", "clone");
        assert!(s.ratios[1].outcome.median().is_none());
        let json = serde_json::to_value(&s.ratios[0]).unwrap();
        assert_eq!(json["median"], 2.0);
        assert_eq!(json["unit"], "ratio");
    }
}
