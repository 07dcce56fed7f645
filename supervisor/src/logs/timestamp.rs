//! RFC 3339 UTC timestamps with milliseconds (`2026-11-29T23:10:25.123Z`), converted by
//! hand from unix time so PID 1 needs no date crate and no time zone database.
//!
//! The day arithmetic is the proleptic Gregorian "civil from days" / "days from civil"
//! pair (Howard Hinnant, *chrono-Compatible Low-Level Date Algorithms*): 400-year eras of
//! 146 097 days, years starting on 1 March so the leap day is the last day of the year.
//! Leap seconds do not exist in unix time, so they are neither produced nor accepted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
/// Days in one 400-year era.
const DAYS_PER_ERA: i64 = 146_097;
const MILLIS_PER_DAY: i64 = 86_400_000;
/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const TIMESTAMP_LEN: usize = 24;

/// A calendar date and time of day in UTC, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    millis_of_day: u32,
}

/// Format `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the timestamp of every log record.
/// Times before 1970 are formatted too (a clock not yet set by NTP must not fail a write).
pub fn format_timestamp(time: SystemTime) -> String {
    let c = civil_from_millis(unix_millis(time));
    let (secs, millis) = (c.millis_of_day / 1000, c.millis_of_day % 1000);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, secs / 3600, secs / 60 % 60, secs % 60, millis)
}

/// Parse what [`format_timestamp`] writes (years 0000–9999). `None` when `text` is not
/// exactly that shape or names an impossible date or time.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != TIMESTAMP_LEN || !separators_ok(b) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> { digits(&b[from..to]) };
    let (year, month, day) = (i64::from(num(0, 4)?), num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, millis) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let date_ok = (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day);
    if !date_ok || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let millis_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    from_unix_millis(days_from_civil(year, month, day) * MILLIS_PER_DAY + i64::from(millis_of_day))
}

/// Whether the fixed punctuation of `YYYY-MM-DDTHH:MM:SS.mmmZ` is in place.
fn separators_ok(b: &[u8]) -> bool {
    [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')].iter().all(|&(i, c)| b[i] == c)
}

/// The value of a run of ASCII digits (no sign, no spaces).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// Milliseconds since the epoch, negative before 1970, saturating far outside ±292 My.
fn unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        // Round towards the past, so 1969-12-31T23:59:59.9995 is .999, not 1970.
        Err(e) => {
            let before = e.duration();
            let ms = i64::try_from(before.as_millis()).unwrap_or(i64::MAX - 1);
            -ms - i64::from(before.subsec_nanos() % 1_000_000 != 0)
        }
    }
}

/// The `SystemTime` `ms` milliseconds after (or before) the epoch.
fn from_unix_millis(ms: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// Split unix milliseconds into a UTC calendar date and the time of day.
fn civil_from_millis(ms: i64) -> Civil {
    let days = ms.div_euclid(MILLIS_PER_DAY);
    // rem_euclid of a positive divisor lies in [0, 86_400_000), which fits a u32.
    let millis_of_day = ms.rem_euclid(MILLIS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil { year, month, day, millis_of_day }
}

/// The (year, month 1–12, day 1–31) that is `days` after 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT_DAYS;
    let era = z.div_euclid(DAYS_PER_ERA);
    let doe = z.rem_euclid(DAYS_PER_ERA); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // month counted from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The number of days from 1970-01-01 to (year, month 1–12, day 1–31); the inverse of
/// [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12); // March = 0 … February = 11
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * DAYS_PER_ERA + doe - EPOCH_SHIFT_DAYS
}

/// Whether `year` has a 29 February.
fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1–12) of `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
