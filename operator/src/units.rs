//! Quantities and durations as users write them, and sizes as they read
//! them.

use std::time::Duration;

/// A Kubernetes quantity as bytes: `200Mi`, `1G`, `500000`, `1.5Gi`.
pub fn parse_quantity_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use a number with k, M, G, T, Ki, Mi, Gi or Ti (e.g. 200Mi)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity; write e.g. 200Mi or 1G"))?;
    let bytes = value * multiplier;
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{text:?} is out of range: at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// `30d`, `12h`, `1w2d`: a number and a unit (s m h d w), repeated.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?}: write a number and a unit (s, m, h, d, w), e.g. 30d or 12h");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Bytes the way `kubectl` shows quantities: `512`, `12.5Ki`, `1.5Gi`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let text = format!("{value:.1}");
    format!("{}{unit}", text.trim_end_matches(".0"))
}

/// Done of total as a whole percentage, capped at 100 (a backup also copies
/// what was written while it ran, so done may pass total).
pub fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "0%".into();
    }
    let p = (u128::from(done) * 100 / u128::from(total)).min(100);
    format!("{p}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_like_kubernetes_ones() {
        assert_eq!(parse_quantity_bytes("200Mi"), Ok(200 << 20));
        assert_eq!(parse_quantity_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_quantity_bytes("4096"), Ok(4096));
        assert!(
            parse_quantity_bytes("10MB")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_quantity_bytes("0").is_err());
        assert!(parse_quantity_bytes("fast").is_err());
    }

    #[test]
    fn ages_add_up_their_parts() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("1w2d"), Ok(Duration::from_secs(9 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "30", "d", "3x", "0d"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_and_percentages_read_well() {
        assert_eq!(format_bytes(512), "512");
        assert_eq!(format_bytes(2048), "2Ki");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
        assert_eq!(percent(42, 100), "42%");
        assert_eq!(percent(130, 100), "100%");
        assert_eq!(percent(5, 0), "0%");
    }
}
