//! Standard five-field cron expressions, read in a time zone, with the
//! same meaning as Kubernetes CronJobs (Vixie cron's day rule: when both
//! day-of-month and day-of-week are restricted, either may match). Parsing
//! and the search for the next run are the `croner` crate's (DST-aware:
//! a time a spring-forward gap skips runs right after the gap, a time that
//! happens twice runs once); this module pins the five-field dialect and
//! says in its errors which field is wrong. croner also takes Quartz's
//! `L`, `W` and `#`, which CronJobs do not: a superset, never a different
//! meaning for a CronJob's expression.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron(croner::Cron);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {expression:?}: {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

/// How far ahead a schedule must have a run: one that never runs (the
/// 30th of February) is refused rather than searched for until year 5000.
const HORIZON_YEARS: i16 = 5;

/// Each field's name and values, for errors.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7 or SUN-SAT"),
];

const MACROS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            expression: expression.to_owned(),
            reason,
        };
        let text = match expression.trim() {
            t if t.eq_ignore_ascii_case("@midnight") => "@daily",
            t => t,
        };
        let is_macro = text.starts_with('@');
        if is_macro && !MACROS.iter().any(|m| m.eq_ignore_ascii_case(text)) {
            return Err(err(format!(
                "unknown macro {text}; use @yearly, @monthly, @weekly, @daily or @hourly"
            )));
        }
        let fields = text.split_whitespace().count();
        if !is_macro && fields != 5 {
            return Err(err(format!(
                "{fields} fields; cron has five: minute hour day-of-month month day-of-week (e.g. '0 3 * * *')"
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            // `5/15` means from 5 to the end, every 15, as in CronJobs.
            .sloppy_ranges(true)
            .build();
        parser.parse(text).map(Cron).map_err(|e| {
            let why = e.to_string().replace("Component error: ", "");
            err(match culprit(&parser, text) {
                Some(i) => format!(
                    "{} field {:?}: {why} (allowed: {})",
                    FIELDS[i].0,
                    text.split_whitespace().nth(i).unwrap_or_default(),
                    FIELDS[i].1
                ),
                None => why,
            })
        })
    }

    /// The first time strictly after `after` that matches, read in `tz`.
    /// None if nothing matches within five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone());
        let limit = start.year().saturating_add(HORIZON_YEARS);
        let next = self.0.find_next_occurrence(&start, false).ok()?;
        (next.year() <= limit).then(|| next.timestamp())
    }
}

/// Which of the five fields the parser refuses: each is tried alone, with
/// every other field `*`.
fn culprit(parser: &CronParser, text: &str) -> Option<usize> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    (0..fields.len()).find(|&i| {
        let mut probe = ["*"; 5];
        probe[i] = fields[i];
        parser.parse(&probe.join(" ")).is_err()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(expr: &str, after: &str, zone: &str) -> String {
        let tz = TimeZone::get(zone).unwrap();
        Cron::parse(expr)
            .unwrap()
            .next_after(ts(after), &tz)
            .unwrap()
            .to_string()
    }

    #[test]
    fn daily_at_three_runs_at_three() {
        assert_eq!(
            next("0 3 * * *", "2026-11-21T18:39:12Z", "UTC"),
            "2026-11-22T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * *", "2026-11-21T02:59:59Z", "UTC"),
            "2026-11-21T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * *", "2026-11-21T03:00:00Z", "UTC"),
            "2026-11-22T03:00:00Z",
            "strictly after"
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2026-11-21T18:39:12Z", "UTC"),
            "2026-11-21T18:45:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-21T18:46:00Z", "UTC"),
            "2026-11-21T19:05:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-11-21T14:00:00Z", "UTC"),
            "2026-11-21T17:00:00Z"
        );
        assert_eq!(
            next("30 2 * * MON,fri", "2026-11-21T00:00:00Z", "UTC"),
            "2026-11-23T02:30:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN *", "2026-11-21T00:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-11-21T00:00:00Z", "UTC"),
            "2026-11-22T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-21T00:00:00Z", "UTC"),
            "2026-11-22T00:00:00Z",
            "7 is Sunday"
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 1st of the month or any Monday: Monday 23 comes before Dec 1.
        assert_eq!(
            next("0 0 1 * 1", "2026-11-21T00:00:00Z", "UTC"),
            "2026-11-23T00:00:00Z"
        );
        // Only the day of month restricted: weekday is ignored.
        assert_eq!(
            next("0 0 1 * *", "2026-11-21T00:00:00Z", "UTC"),
            "2026-12-01T00:00:00Z"
        );
    }

    #[test]
    fn schedules_are_read_in_their_time_zone() {
        // 03:00 in Berlin is 02:00 UTC in winter.
        assert_eq!(
            next("0 3 * * *", "2026-11-21T18:00:00Z", "Europe/Berlin"),
            "2026-11-22T02:00:00Z"
        );
    }

    #[test]
    fn a_time_skipped_by_dst_runs_right_after_the_gap() {
        // 2027-03-28: Berlin jumps from 02:00 to 03:00; 02:30 does not
        // exist, so the run is at 03:00 local, the first instant after it.
        assert_eq!(
            next("30 2 * * *", "2027-03-27T12:00:00Z", "Europe/Berlin"),
            "2027-03-28T01:00:00Z"
        );
    }

    #[test]
    fn a_time_that_happens_twice_runs_once() {
        // 2026-10-25: Berlin goes from 03:00 back to 02:00; 02:30 happens twice.
        let first = next("30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin");
        assert_eq!(first, "2026-10-25T00:30:00Z");
        assert_eq!(
            next("30 2 * * *", &first, "Europe/Berlin"),
            "2026-10-26T01:30:00Z"
        );
    }

    #[test]
    fn an_impossible_date_never_runs() {
        let tz = TimeZone::UTC;
        assert_eq!(
            Cron::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z"), &tz),
            None
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let reason = |e: &str| Cron::parse(e).unwrap_err().to_string();
        assert!(reason("0 3 * *").contains("4 fields"));
        assert!(
            reason("61 * * * *").contains("minute field")
                && reason("61 * * * *").contains("(allowed: 0-59)")
        );
        assert!(reason("*/0 * * * *").contains("minute field \"*/0\": Step cannot be zero"));
        assert!(reason("0 5-3 * * *").contains("hour field \"5-3\""));
        assert!(reason("@sometimes").contains("unknown macro"));
        assert!(reason("0 0 * FOO *").contains("month field \"FOO\""));
        assert!(
            reason("0 0 * * * *").contains("6 fields"),
            "no seconds field"
        );
    }
}
