//! The dataset a run loads: the size named on the command line (`smoke`,
//! `2G`, `500M`) as sysbench tables × rows. Pure.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// On-disk bytes of one sysbench row with its secondary index, measured on
/// this test bed: 4 × 451,000 rows made 448 MiB of `.ibd` files.
pub const BYTES_PER_ROW: u64 = 260;

/// The smoke size: enough rows for every code path, small enough for a
/// quick end-to-end check.
pub const SMOKE_BYTES: u64 = 50 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPlan {
    /// As given: `smoke`, `2G`, ... (also the results' file name part).
    pub label: String,
    /// The sysbench data wanted, in bytes.
    pub bytes: u64,
    pub tables: u32,
    pub rows_per_table: u64,
}

impl DatasetPlan {
    /// `smoke`, or a size with an optional K/M/G suffix (binary units).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("smoke") {
            return Ok(Self::for_bytes("smoke", SMOKE_BYTES));
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let Ok(number) = number.parse::<f64>() else {
            bail!("--size {text:?}: give `smoke` or a size like 2G, 500M");
        };
        let scale = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1u64,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            other => bail!("--size {text:?}: unknown unit {other:?}, use K, M or G"),
        };
        let bytes = (number * scale as f64) as u64;
        if bytes < (1 << 20) {
            bail!("--size {text:?}: at least 1M, or `smoke`");
        }
        Ok(Self::for_bytes(text, bytes))
    }

    /// Eight tables from 1 GiB up (sysbench prepares two at a time and the
    /// backup copies files in parallel: several files matter), four below.
    pub fn for_bytes(label: &str, bytes: u64) -> Self {
        let tables: u32 = if bytes >= 1 << 30 { 8 } else { 4 };
        let rows_per_table = (bytes / BYTES_PER_ROW / u64::from(tables)).max(1_000);
        Self {
            label: label.to_string(),
            bytes,
            tables,
            rows_per_table,
        }
    }

    /// The second, smaller dataset of the peak-RSS scenario.
    pub fn smaller(&self, divisor: u64) -> Self {
        let bytes = (self.bytes / divisor).max(4 << 20);
        Self::for_bytes(&human_bytes_label(bytes), bytes)
    }

    pub fn rows(&self) -> u64 {
        self.rows_per_table * u64::from(self.tables)
    }
}

/// `6.2M`, `256M`, `2G`: a short size label.
pub fn human_bytes_label(bytes: u64) -> String {
    let (value, unit) = if bytes >= 1 << 30 {
        (bytes as f64 / (1u64 << 30) as f64, "G")
    } else {
        (bytes as f64 / (1u64 << 20) as f64, "M")
    };
    if (value - value.round()).abs() < 0.05 {
        format!("{}{unit}", value.round() as u64)
    } else {
        format!("{value:.1}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_become_tables_and_rows() {
        let p = DatasetPlan::parse("2G").unwrap();
        assert_eq!((p.label.as_str(), p.tables), ("2G", 8));
        assert_eq!(p.rows_per_table, (2u64 << 30) / BYTES_PER_ROW / 8);
        let s = DatasetPlan::parse("smoke").unwrap();
        assert_eq!(
            (s.label.as_str(), s.tables, s.bytes),
            ("smoke", 4, 50 << 20)
        );
        assert_eq!(DatasetPlan::parse("1.5G").unwrap().bytes, 3 << 29);
        assert_eq!(DatasetPlan::parse("500m").unwrap().tables, 4);
    }

    #[test]
    fn bad_sizes_say_what_is_expected() {
        assert!(
            DatasetPlan::parse("lots")
                .unwrap_err()
                .to_string()
                .contains("smoke")
        );
        assert!(
            DatasetPlan::parse("2X")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert!(DatasetPlan::parse("10K").is_err());
    }

    #[test]
    fn the_smaller_dataset_has_a_readable_label() {
        let p = DatasetPlan::parse("2G").unwrap().smaller(8);
        assert_eq!(p.label, "256M");
        assert_eq!(human_bytes_label(6_553_600), "6.2M");
        assert_eq!(
            DatasetPlan::parse("smoke").unwrap().smaller(8).label,
            "6.2M"
        );
    }
}
