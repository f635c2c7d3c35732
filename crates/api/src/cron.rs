//! CronJob schedules in the syntax upstream accepts (robfig/cron v3's `ParseStandard`): five
//! fields (minute, hour, day of month, month, day of week) of `*`, `?`, numbers, names
//! (`jan`–`dec`, `sun`–`sat`), ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the
//! end), and lists; the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly` and `@every <duration>`. As robfig's, a day matches when both day
//! fields match if either starts with `*`, else when either does.
//!
//! A small parser of our own rather than a crate: the crates on crates.io each differ from
//! robfig's syntax somewhere (seconds fields, `L`/`W`/`#`, Quartz day numbering), and what
//! upstream accepts is the contract here; this is short and tested against robfig's rules.
//! Times are computed in a time zone read from the system's zoneinfo (as Go's `LoadLocation`).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        /// Whether either day field started with `*` or `?` (then both must match).
        star_day: bool,
    },
    /// `@every`: a constant delay in whole seconds.
    Every(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The number of the first name.
    first_name: u32,
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: MONTHS,
    first_name: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: DAYS,
    first_name: 0,
};

impl Schedule {
    /// Parses `text` as upstream's `cron.ParseStandard` does.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScheduleError("empty spec string".into()));
        }
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            let rest = text.split_once(' ').map(|(_, r)| r).unwrap_or_default();
            return Self::parse(rest);
        }
        if let Some(descriptor) = text.strip_prefix('@') {
            let fields = match descriptor {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                other => {
                    if let Some(duration) = other.strip_prefix("every ") {
                        let seconds = go_duration_seconds(duration.trim()).ok_or_else(|| {
                            ScheduleError(format!(
                                "failed to parse duration {text}: time: invalid duration \"{}\"",
                                duration.trim()
                            ))
                        })?;
                        return Ok(Schedule::Every(seconds.max(1)));
                    }
                    return Err(ScheduleError(format!("unrecognized descriptor: {text}")));
                }
            };
            return Self::parse(fields);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            )));
        }
        let (dom, dom_star) = field(fields[2], &DOM)?;
        let (dow, dow_star) = field(fields[4], &DOW)?;
        Ok(Schedule::Fields {
            minute: field(fields[0], &MINUTE)?.0,
            hour: field(fields[1], &HOUR)?.0,
            dom,
            month: field(fields[3], &MONTH)?.0,
            dow,
            star_day: dom_star || dow_star,
        })
    }

    /// The first time strictly after `after` this schedule fires, in `zone`; `None` when
    /// there is none within five years (such as `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow, star_day) = match self {
            Schedule::Every(seconds) => {
                let whole = after.as_second();
                return Timestamp::from_second(whole.checked_add(*seconds)?).ok();
            }
            Schedule::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
                star_day,
            } => (*minute, *hour, *dom, *month, *dow, *star_day),
        };
        let bit = |set: u64, n: i8| n >= 0 && set & (1 << n) != 0;
        // The next whole minute after `after`, in the zone's civil time.
        let start = Timestamp::from_second(after.as_second() - after.as_second().rem_euclid(60))
            .ok()?
            .checked_add(60.seconds())
            .ok()?;
        let mut t: DateTime = start.to_zoned(zone.clone()).datetime();
        let limit = t.year() + 5;
        while t.year() <= limit {
            if !bit(month, t.month()) {
                let first: Date = t.date().first_of_month();
                t = first.checked_add(1.month()).ok()?.at(0, 0, 0, 0);
                continue;
            }
            let day_matches = {
                let d = bit(dom, t.day());
                let w = bit(dow, t.weekday().to_sunday_zero_offset());
                if star_day { d && w } else { d || w }
            };
            if !day_matches {
                t = t.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !bit(hour, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !bit(minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = zone.to_ambiguous_timestamp(t).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// One field: its bit set, and whether it started with `*` or `?`.
fn field(text: &str, bounds: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        let (mut low, mut high, mut is_star) = if range == "*" || range == "?" {
            (bounds.min, bounds.max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, bounds)?, number(b, bounds)?, false)
        } else {
            let n = number(range, bounds)?;
            (n, n, false)
        };
        let step = match step {
            None => 1,
            Some(step) => {
                let step: u32 = step.parse().map_err(|_| {
                    ScheduleError(format!("failed to parse int from {step}: strconv.Atoi: parsing {step:?}: invalid syntax"))
                })?;
                if step == 0 {
                    return Err(ScheduleError(format!(
                        "step of range should be a positive number: {part}"
                    )));
                }
                if !range.contains('-') && !is_star {
                    high = bounds.max;
                }
                if step > 1 {
                    is_star = false;
                }
                step
            }
        };
        if low < bounds.min {
            return Err(ScheduleError(format!(
                "beginning of range ({low}) below minimum ({}): {part}",
                bounds.min
            )));
        }
        if high > bounds.max {
            return Err(ScheduleError(format!(
                "end of range ({high}) above maximum ({}): {part}",
                bounds.max
            )));
        }
        if low > high {
            return Err(ScheduleError(format!(
                "beginning of range ({low}) beyond end of range ({high}): {part}"
            )));
        }
        while low <= high {
            bits |= 1 << low;
            low += step;
        }
        star |= is_star;
    }
    Ok((bits, star))
}

fn number(text: &str, bounds: &Bounds) -> Result<u32, ScheduleError> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = bounds.names.iter().position(|n| *n == lower) {
        return Ok(index as u32 + bounds.first_name);
    }
    text.parse().map_err(|_| {
        ScheduleError(format!(
            "failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax"
        ))
    })
}

/// A Go duration of hours, minutes and seconds (`1h30m`, `90s`), in whole seconds.
fn go_duration_seconds(text: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        total += value
            * match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return None,
            };
        any = true;
    }
    (number.is_empty() && any).then_some(total as i64)
}

/// The time zone `name` from the system's zoneinfo, as Go's `time.LoadLocation` finds it
/// (`UTC` and the empty name are UTC); the error is Go's.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    let name = match name {
        None | Some("" | "UTC") => return Ok(TimeZone::UTC),
        Some(name) => name,
    };
    let unknown = || ScheduleError(format!("unknown time zone {name}"));
    if name.contains("..") || name.starts_with('/') {
        return Err(unknown());
    }
    let data = std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(name))
        .map_err(|_| unknown())?;
    TimeZone::tzif(name, &data).map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .expect("parses")
            .next(at(after), &TimeZone::UTC)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn fields_ranges_steps_and_names() {
        assert_eq!(
            next("*/1 * * * *", "2026-01-01T00:00:30Z"),
            "2026-01-01T00:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:01:00Z"),
            "2026-01-01T00:15:00Z"
        );
        assert_eq!(
            next("5 4 * * *", "2026-01-01T04:05:00Z"),
            "2026-01-02T04:05:00Z"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-03-01T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-01-02T10:00:00Z"),
            "2026-01-05T09:00:00Z"
        );
        assert_eq!(
            next("10-20/5 * * * *", "2026-01-01T00:16:00Z"),
            "2026-01-01T00:20:00Z"
        );
        assert_eq!(
            next("50/5 * * * *", "2026-01-01T00:51:00Z"),
            "2026-01-01T00:55:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-01-01T00:00:00Z"),
            "2026-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2026-01-01T00:00:00Z"),
            "2026-01-01T00:01:30Z"
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 13th or any Friday: 2026-02-06 is a Friday before the 13th.
        assert_eq!(
            next("0 0 13 * 5", "2026-02-01T00:00:00Z"),
            "2026-02-06T00:00:00Z"
        );
        // With a star day of month, only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-02-06T00:00:00Z"),
            "2026-02-13T00:00:00Z"
        );
    }

    #[test]
    fn an_impossible_date_has_no_next_time() {
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), "");
    }

    #[test]
    fn bad_schedules_are_refused_as_robfig_words_them() {
        for (text, message) in [
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("x * * * *", "failed to parse int from x"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
        ] {
            let error = Schedule::parse(text).expect_err(text);
            assert!(error.0.starts_with(message), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_time_zones_are_refused_with_gos_message() {
        assert_eq!(
            time_zone(Some("Mars/Olympus")).expect_err("unknown").0,
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone(None).is_ok());
    }
}
