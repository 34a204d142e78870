//! GTID sets: the server's text form (`uuid:1-5:7,uuid2[:tag]:1-3`) parsed
//! into sorted, merged intervals, with the set algebra point-in-time
//! recovery needs (union, subtract, contains, subset) and the server's
//! canonical text form back out.
//!
//! One type for the whole agent: the archiver's index, replay's stop
//! targets and the operator's recoverable window all compare GTID sets, so
//! they must agree on what a set is. Hand-made because no maintained crate
//! parses MySQL's set syntax with 8.3+ tags (mysql_common only has the
//! binary `Sid` of the dump protocol).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A source UUID, as the 16 bytes the server stores (and sorts by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl FromStr for Uuid {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, GtidError> {
        let bad = || GtidError::BadUuid(text.to_owned());
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let dashes_ok = text.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| text.as_bytes()[i] == b'-')
            || text.len() == 32;
        if !dashes_ok || hex.len() != 32 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&hex, &mut bytes).map_err(|_| bad())?;
        Ok(Uuid(bytes))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Who numbered a transaction: a source UUID and the optional tag of
/// MySQL 8.3+ (`uuid:tag:5`); the empty tag is the untagged GTID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tsid {
    pub uuid: Uuid,
    /// Lower case (the server folds tags), empty when untagged.
    pub tag: String,
}

impl Tsid {
    pub fn untagged(uuid: Uuid) -> Tsid {
        Tsid {
            uuid,
            tag: String::new(),
        }
    }
}

/// One transaction's GTID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub tsid: Tsid,
    pub gno: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tsid.tag.is_empty() {
            write!(f, "{}:{}", self.tsid.uuid, self.gno)
        } else {
            write!(f, "{}:{}:{}", self.tsid.uuid, self.tsid.tag, self.gno)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("{0:?} is not a server UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    BadUuid(String),
    #[error("{0:?} is not a GTID tag (a letter or _, then up to 31 letters, digits or _)")]
    BadTag(String),
    #[error(
        "{0:?} is not a GTID interval (N or N-M, 1 ≤ N ≤ M < 2^63); a GTID set looks like uuid:1-5:7,uuid2:tag:1-3"
    )]
    BadInterval(String),
}

/// The largest transaction number a server hands out (2^63 - 1).
const GNO_MAX: u64 = i64::MAX as u64;

/// A set of GTIDs: for every TSID, sorted, disjoint, non-adjacent
/// inclusive intervals. Equality is set equality (the form is canonical).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    sets: BTreeMap<Tsid, Vec<(u64, u64)>>,
}

impl GtidSet {
    pub fn new() -> GtidSet {
        GtidSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// How many transactions the set holds.
    pub fn count(&self) -> u64 {
        self.sets
            .values()
            .flatten()
            .map(|(start, end)| end - start + 1)
            .sum()
    }

    pub fn contains(&self, gtid: &Gtid) -> bool {
        self.sets.get(&gtid.tsid).is_some_and(|intervals| {
            intervals
                .iter()
                .any(|&(start, end)| start <= gtid.gno && gtid.gno <= end)
        })
    }

    /// Adds one transaction.
    pub fn insert(&mut self, gtid: &Gtid) {
        self.add_interval(&gtid.tsid, gtid.gno, gtid.gno);
    }

    /// Adds the inclusive interval `start..=end` of `tsid`'s transactions.
    pub fn add_interval(&mut self, tsid: &Tsid, start: u64, end: u64) {
        debug_assert!(start <= end);
        let intervals = self.sets.entry(tsid.clone()).or_default();
        intervals.push((start, end));
        normalise(intervals);
    }

    /// Every GTID in `self` or `other`.
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &GtidSet) {
        for (tsid, theirs) in &other.sets {
            let ours = self.sets.entry(tsid.clone()).or_default();
            ours.extend_from_slice(theirs);
            normalise(ours);
        }
    }

    /// Every GTID in `self` and not in `other`.
    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::new();
        for (tsid, ours) in &self.sets {
            let remaining = match other.sets.get(tsid) {
                None => ours.clone(),
                Some(theirs) => subtract_intervals(ours, theirs),
            };
            if !remaining.is_empty() {
                out.sets.insert(tsid.clone(), remaining);
            }
        }
        out
    }

    /// Every GTID in both.
    pub fn intersection(&self, other: &GtidSet) -> GtidSet {
        self.subtract(&self.subtract(other))
    }

    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.subtract(other).is_empty()
    }

    pub fn intersects(&self, other: &GtidSet) -> bool {
        !self.intersection(other).is_empty()
    }

    /// The TSIDs (source UUID + tag) the set holds transactions of.
    pub fn tsids(&self) -> impl Iterator<Item = &Tsid> {
        self.sets.keys()
    }

    /// The inclusive intervals of one TSID, sorted.
    pub fn intervals(&self, tsid: &Tsid) -> &[(u64, u64)] {
        self.sets.get(tsid).map_or(&[], Vec::as_slice)
    }
}

/// Sorts and merges overlapping or adjacent intervals in place.
fn normalise(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(start, end) in intervals.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *intervals = merged;
}

/// `ours` minus `theirs`, both normalised.
fn subtract_intervals(ours: &[(u64, u64)], theirs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut start, end) in ours {
        for &(cut_start, cut_end) in theirs {
            if cut_end < start || cut_start > end {
                continue;
            }
            if cut_start > start {
                out.push((start, cut_start - 1));
            }
            if cut_end >= end {
                start = end + 1;
                break;
            }
            start = cut_end + 1;
        }
        if start <= end {
            out.push((start, end));
        }
    }
    out
}

fn parse_tag(text: &str) -> Result<String, GtidError> {
    let tag = text.to_ascii_lowercase();
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && tag.len() <= 32 {
        Ok(tag)
    } else {
        Err(GtidError::BadTag(text.to_owned()))
    }
}

fn parse_interval(text: &str) -> Result<(u64, u64), GtidError> {
    let bad = || GtidError::BadInterval(text.to_owned());
    let number = |n: &str| n.parse::<u64>().map_err(|_| bad());
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if start == 0 || start > end || end > GNO_MAX {
        return Err(bad());
    }
    Ok((start, end))
}

impl FromStr for GtidSet {
    type Err = GtidError;

    /// The server's text form: whitespace (the `,\n` of `gtid_executed`)
    /// is ignored, the empty string is the empty set, parts may repeat
    /// and overlap (`uuid:1-3,uuid:2-9`).
    fn from_str(text: &str) -> Result<Self, GtidError> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut set = GtidSet::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut fields = part.split(':');
            let uuid: Uuid = fields.next().unwrap_or_default().parse()?;
            let mut tsid = Tsid::untagged(uuid);
            for field in fields {
                if field.starts_with(|c: char| c.is_ascii_digit()) {
                    let (start, end) = parse_interval(field)?;
                    set.add_interval(&tsid, start, end);
                } else {
                    tsid.tag = parse_tag(field)?;
                }
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    /// The server's canonical form on one line: UUIDs in order, untagged
    /// intervals first, then each tag in order (`u:1-5:a:1-2,u2:7`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut current_uuid: Option<Uuid> = None;
        for (tsid, intervals) in &self.sets {
            if current_uuid != Some(tsid.uuid) {
                if current_uuid.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{}", tsid.uuid)?;
                current_uuid = Some(tsid.uuid);
            }
            if !tsid.tag.is_empty() {
                write!(f, ":{}", tsid.tag)?;
            }
            for &(start, end) in intervals {
                if start == end {
                    write!(f, ":{start}")?;
                } else {
                    write!(f, ":{start}-{end}")?;
                }
            }
        }
        Ok(())
    }
}

impl serde::Serialize for GtidSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "6f1c1a2e-0000-11ef-9d2f-0242ac120002";

    fn set(text: &str) -> GtidSet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_what_the_server_prints_and_prints_it_back() {
        let text = format!("{A}:1-5:7:9-12,\n{B}:1-3");
        assert_eq!(set(&text).to_string(), format!("{A}:1-5:7:9-12,{B}:1-3"));
        assert_eq!(set("").to_string(), "");
        assert!(set(" \n").is_empty());
    }

    #[test]
    fn merges_overlaps_adjacent_intervals_and_repeated_uuids() {
        let text = format!("{B}:4-6,{A}:3-4:1-2,{B}:1-3:10");
        assert_eq!(set(&text).to_string(), format!("{A}:1-4,{B}:1-6:10"));
        assert_eq!(set(&text).count(), 4 + 7);
    }

    #[test]
    fn tags_follow_the_untagged_intervals_in_order_and_fold_to_lower_case() {
        let text = format!("{A}:Zeta:1-2:alpha:5:1-3");
        // `1-3` after `alpha:5` belongs to alpha, as the server reads it.
        assert_eq!(set(&text).to_string(), format!("{A}:alpha:1-3:5:zeta:1-2"));
        let text = format!("{A}:1-3:beta:4,{A}:9");
        assert_eq!(set(&text).to_string(), format!("{A}:1-3:9:beta:4"));
    }

    #[test]
    fn set_algebra() {
        let big = set(&format!("{A}:1-10,{B}:1-5"));
        let small = set(&format!("{A}:3-4:8,{B}:5"));
        assert_eq!(
            big.subtract(&small).to_string(),
            format!("{A}:1-2:5-7:9-10,{B}:1-4")
        );
        assert!(small.is_subset(&big));
        assert!(!big.is_subset(&small));
        assert_eq!(big.intersection(&small), small);
        assert_eq!(big.union(&small), big);
        assert!(big.subtract(&big).is_empty());
        let a5 = Gtid {
            tsid: Tsid::untagged(A.parse().unwrap()),
            gno: 5,
        };
        assert!(big.contains(&a5) && !small.contains(&a5));
        assert_eq!(a5.to_string(), format!("{A}:5"));
    }

    #[test]
    fn bad_input_is_named() {
        for (text, needle) in [
            ("not-a-uuid:1-3", "not a server UUID"),
            (&format!("{A}:0-3") as &str, "not a GTID interval"),
            (&format!("{A}:5-3"), "not a GTID interval"),
            (&format!("{A}:1-x"), "not a GTID interval"),
            (&format!("{A}:9tag"), "not a GTID interval"),
            (&format!("{A}:ta-g:1"), "not a GTID tag"),
        ] {
            let err = text.parse::<GtidSet>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn serialises_as_its_text() {
        let s = set(&format!("{A}:1-3"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{A}:1-3\""));
        assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), s);
    }

    fn arb_set() -> impl Strategy<Value = GtidSet> {
        prop::collection::vec((0..2usize, 1u64..40, 0u64..5), 0..8).prop_map(|parts| {
            let mut s = GtidSet::new();
            for (u, start, len) in parts {
                let uuid = [A, B][u].parse().unwrap();
                s.add_interval(&Tsid::untagged(uuid), start, start + len);
            }
            s
        })
    }

    fn members(s: &GtidSet) -> std::collections::BTreeSet<Gtid> {
        let mut out = std::collections::BTreeSet::new();
        for tsid in s.tsids() {
            for &(a, b) in s.intervals(tsid) {
                for gno in a..=b {
                    out.insert(Gtid {
                        tsid: tsid.clone(),
                        gno,
                    });
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn algebra_matches_plain_sets(x in arb_set(), y in arb_set()) {
            let (mx, my) = (members(&x), members(&y));
            prop_assert_eq!(members(&x.union(&y)), &mx | &my);
            prop_assert_eq!(members(&x.subtract(&y)), &mx - &my);
            prop_assert_eq!(members(&x.intersection(&y)), &mx & &my);
            prop_assert_eq!(x.is_subset(&y), mx.is_subset(&my));
            prop_assert_eq!(x.to_string().parse::<GtidSet>().unwrap(), x.clone());
            prop_assert_eq!(x.count() as usize, mx.len());
        }
    }
}
