//! Counting transactions in a GTID set.

use anyhow::{Context, Result, bail};

/// Number of transactions in a GTID set as MySQL prints it, e.g.
/// `3E11FA47-...:1-5:11-18,4F22...:1` → 13. Tagged GTIDs (`uuid:tag:1-5`, 8.4+)
/// are counted too; whitespace and newlines (MySQL wraps long sets) are ignored.
pub fn gtid_count(set: &str) -> Result<u64> {
    let compact: String = set.chars().filter(|c| !c.is_whitespace()).collect();
    let mut total = 0u64;
    for member in compact.split(',').filter(|m| !m.is_empty()) {
        let mut parts = member.split(':');
        let uuid = parts.next().unwrap_or_default();
        if uuid.len() != 36 {
            bail!("GTID set member {member:?} does not start with a server UUID");
        }
        for part in parts {
            if part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                continue; // a tag; the intervals after it belong to it
            }
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let first: u64 = first
                .parse()
                .with_context(|| format!("bad interval {part:?} in GTID set member {member:?}"))?;
            let last: u64 = last
                .parse()
                .with_context(|| format!("bad interval {part:?} in GTID set member {member:?}"))?;
            if last < first {
                bail!("empty interval {part:?} in GTID set member {member:?}");
            }
            total += last - first + 1;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::gtid_count;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4f22fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn empty_set_has_no_transactions() {
        assert_eq!(gtid_count("").unwrap(), 0);
    }

    #[test]
    fn counts_intervals_and_single_numbers() {
        assert_eq!(gtid_count(&format!("{A}:1-5:11-18")).unwrap(), 13);
        assert_eq!(gtid_count(&format!("{A}:7")).unwrap(), 1);
    }

    #[test]
    fn counts_every_server_and_ignores_line_wraps() {
        assert_eq!(gtid_count(&format!("{A}:1-100,\n{B}:1-5")).unwrap(), 105);
    }

    #[test]
    fn counts_tagged_intervals() {
        assert_eq!(gtid_count(&format!("{A}:1-3:backup:1-2")).unwrap(), 5);
    }

    #[test]
    fn rejects_garbage() {
        assert!(gtid_count("not-a-gtid-set").is_err());
        assert!(gtid_count(&format!("{A}:5-1")).is_err());
    }
}
