//! Repeated measurements and what the report says about them: median, min and
//! max of the samples, or why there are none. Pure: no I/O.

use serde::{Deserialize, Serialize};

/// The samples of one measurement and their median/min/max.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// `None` for no samples. NaN samples are dropped (a ratio over zero).
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }
}

/// A measurement as the report shows it: numbers, or the reason there are none
/// (a command that is not built yet, a tool that is missing, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    Measured(Stats),
    Unavailable { unavailable: String },
}

impl Outcome {
    pub fn unavailable(why: impl Into<String>) -> Self {
        Outcome::Unavailable {
            unavailable: why.into(),
        }
    }

    pub fn stats(&self) -> Option<&Stats> {
        match self {
            Outcome::Measured(s) => Some(s),
            Outcome::Unavailable { .. } => None,
        }
    }

    pub fn median(&self) -> Option<f64> {
        self.stats().map(|s| s.median)
    }
}

/// Collects the runs of one measurement, successful or not.
#[derive(Debug, Clone, Default)]
pub struct Series {
    values: Vec<f64>,
    failures: Vec<String>,
}

impl Series {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    /// Records a run's value, or its error.
    pub fn record(&mut self, result: anyhow::Result<f64>) {
        match result {
            Ok(v) => self.push(v),
            Err(e) => self.fail(format!("{e:#}")),
        }
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Measured when at least one run gave a value; otherwise unavailable with
    /// the first failure (all runs usually fail the same way).
    pub fn outcome(&self) -> Outcome {
        match Stats::of(&self.values) {
            Some(s) => Outcome::Measured(s),
            None => Outcome::unavailable(
                self.failures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "not run".into()),
            ),
        }
    }

    /// "2 of 3 runs failed: ..." when some, but not all, runs failed.
    pub fn partial_failure_note(&self) -> Option<String> {
        if self.values.is_empty() || self.failures.is_empty() {
            return None;
        }
        Some(format!(
            "{} of {} runs failed: {}",
            self.failures.len(),
            self.failures.len() + self.values.len(),
            self.failures[0]
        ))
    }
}

/// `a[i] / b[i]` for the runs both have, as median/min/max: the runs of the
/// two sides were taken in turns, so pairing them by index cancels slow drift
/// of the machine (page cache, other work). Unavailable when either side is.
pub fn paired_ratio(a: &Outcome, b: &Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Measured(a), Outcome::Measured(b)) => {
            let ratios: Vec<f64> = a
                .samples
                .iter()
                .zip(&b.samples)
                .map(|(x, y)| if *y == 0.0 { f64::NAN } else { x / y })
                .collect();
            Stats::of(&ratios)
                .map(Outcome::Measured)
                .unwrap_or_else(|| Outcome::unavailable("no pair of runs with a non-zero divisor"))
        }
        (Outcome::Unavailable { unavailable }, _) | (_, Outcome::Unavailable { unavailable }) => {
            Outcome::unavailable(unavailable.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0], "samples keep run order");
        assert_eq!(Stats::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn a_series_without_values_is_unavailable_with_its_first_error() {
        let mut s = Series::new();
        s.record(Err(anyhow::anyhow!("apply-log is not built yet")));
        s.record(Err(anyhow::anyhow!("second")));
        assert_eq!(
            s.outcome(),
            Outcome::unavailable("apply-log is not built yet")
        );
        assert_eq!(s.partial_failure_note(), None);
    }

    #[test]
    fn a_partly_failed_series_is_measured_and_says_so() {
        let mut s = Series::new();
        s.push(1.0);
        s.fail("boom");
        assert_eq!(s.outcome().median(), Some(1.0));
        assert_eq!(
            s.partial_failure_note().unwrap(),
            "1 of 2 runs failed: boom"
        );
    }

    #[test]
    fn ratios_pair_runs_by_index() {
        let a = Outcome::Measured(Stats::of(&[10.0, 20.0, 30.0]).unwrap());
        let b = Outcome::Measured(Stats::of(&[5.0, 10.0]).unwrap());
        let r = paired_ratio(&a, &b);
        assert_eq!(r.stats().unwrap().samples, vec![2.0, 2.0]);
        let none = Outcome::unavailable("no clone plugin");
        assert_eq!(paired_ratio(&a, &none), none);
    }

    #[test]
    fn outcomes_serialize_as_numbers_or_a_reason() {
        let m = Outcome::Measured(Stats::of(&[1.0]).unwrap());
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"median":1.0,"min":1.0,"max":1.0,"samples":[1.0]}"#
        );
        let u = Outcome::unavailable("x");
        assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"unavailable":"x"}"#);
        let back: Outcome = serde_json::from_str(r#"{"unavailable":"x"}"#).unwrap();
        assert_eq!(back, u);
    }
}
