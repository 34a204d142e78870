//! Standard five-field cron expressions, read in a time zone: pure, with
//! the same meaning as Kubernetes CronJobs (Vixie cron's day rule: when
//! both day-of-month and day-of-week are restricted, either may match).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: a day matches if either matches.
    either_day: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {expression:?}: {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    // 7 is Sunday too.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            expression: expression.to_owned(),
            reason,
        };
        let text = expression.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(err(format!(
                    "unknown macro {other}; use @yearly, @monthly, @weekly, @daily or @hourly"
                )));
            }
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(err(format!(
                "{} fields; cron has five: minute hour day-of-month month day-of-week (e.g. '0 3 * * *')",
                parts.len()
            )));
        }
        let mut sets = [0u64; 5];
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            sets[i] = parse_field(part, field)
                .map_err(|e| err(format!("{} field {part:?}: {e}", field.name)))?;
        }
        // Sunday is 0 and 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] |= 1;
        }
        let restricted = |p: &str| !(p.starts_with('*') || p.starts_with('?'));
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            either_day: restricted(parts[2]) && restricted(parts[4]),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time strictly after `after` that matches, read in `tz`.
    /// A time a DST change skips runs at the first instant after the gap;
    /// a time that occurs twice runs once, at its first occurrence. None if
    /// nothing matches within five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let limit = start.year().saturating_add(5);
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = first_of_next_month(t)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::time(0, 0, 0, 0));
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let candidate = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if candidate > after {
                return Some(candidate);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn first_of_next_month(t: DateTime) -> Option<DateTime> {
    let first = t.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::time(0, 0, 0, 0)))
}

fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field)?, value(b, field)?)
        } else {
            let v = value(range, field)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if item.contains('/') { field.max } else { v })
        };
        if low > high {
            return Err(format!("range {low}-{high} runs backwards"));
        }
        for v in (low..=high).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        let first = if field.min == 1 { 1 } else { 0 };
        return Ok(i as u32 + first);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if v < field.min || v > field.max {
        return Err(format!("{v} is out of range {}-{}", field.min, field.max));
    }
    Ok(v)
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
        // 2027-03-28: Berlin jumps from 02:00 to 03:00; 02:30 does not exist.
        assert_eq!(
            next("30 2 * * *", "2027-03-27T12:00:00Z", "Europe/Berlin"),
            "2027-03-28T01:30:00Z"
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
                && reason("61 * * * *").contains("out of range 0-59")
        );
        assert!(reason("*/0 * * * *").contains("step of 0"));
        assert!(reason("0 5-3 * * *").contains("backwards"));
        assert!(reason("@sometimes").contains("unknown macro"));
        assert!(reason("0 0 * FOO *").contains("not a number"));
    }
}
