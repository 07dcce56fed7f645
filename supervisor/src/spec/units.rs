//! Values users write as text in container declarations: durations ("1m30s", "500ms"),
//! byte sizes ("256M", "1G"), signals ("SIGTERM", "TERM", "15").
//!
//! Every arithmetic step is checked: a value too large for its type is an error naming
//! the text, never a panic (a panic here would take the containers boot step with it).

use std::time::Duration;
use thiserror::Error;

/// Why a duration or a size written in a declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// Nothing was written.
    #[error("empty duration")]
    EmptyDuration,
    /// Digits at the end of a multi-part duration, without a unit.
    #[error("{0:?}: a number needs a unit (ms, s, m, h)")]
    MissingUnit(String),
    /// A unit with no number in front of it.
    #[error("{0:?}: expected a number before the unit")]
    MissingNumber(String),
    /// A unit other than ms, s, m, h.
    #[error("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")]
    UnknownUnit {
        /// The whole duration as written.
        text: String,
        /// The unit that is not known.
        unit: String,
    },
    /// A number, a number times its unit, or the sum of the parts does not fit, or the
    /// total is beyond [`MAX_DURATION`].
    #[error("{0:?}: duration too large (at most 8760h, one year)")]
    DurationTooLarge(String),
    /// Not a number with an optional K, M, G or T suffix.
    #[error("{0:?}: expected a size such as 512M or 1G")]
    BadSize(String),
    /// The number times its suffix does not fit in 64 bits.
    #[error("{0:?}: size too large")]
    SizeTooLarge(String),
}

/// The longest duration a declaration may give. The supervisor adds declared durations
/// to the clock (`now + stop_timeout`, `now + interval`); with this bound that sum can
/// never overflow, where `u64::MAX` seconds would panic PID 1 when the container stops.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parse a duration such as `30s`, `1m30s`, `500ms`, `2h` or a bare number of seconds,
/// at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let duration = parse_unbounded_duration(text)?;
    if duration > MAX_DURATION {
        return Err(UnitError::DurationTooLarge(text.trim().into()));
    }
    Ok(duration)
}

/// [`parse_duration`] before the bound: every step checked.
fn parse_unbounded_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    let too_large = || UnitError::DurationTooLarge(text.into());
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(Duration::from_secs).map_err(|_| too_large());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| UnitError::MissingUnit(text.into()))?;
        if digits == 0 {
            return Err(UnitError::MissingNumber(text.into()));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            other => return Err(UnitError::UnknownUnit { text: text.into(), unit: other.into() }),
        };
        total = part.and_then(|part| total.checked_add(part)).ok_or_else(too_large)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parse a byte size: a number with an optional K, M, G or T suffix (powers of 1024; a
/// trailing `B`/`iB` is accepted).
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let upper = text.trim().to_ascii_uppercase();
    let trimmed = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match trimmed.chars().last() {
        Some('K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('G') => (&trimmed[..trimmed.len() - 1], 30),
        Some('T') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnitError::BadSize(text.into()));
    }
    let number: u64 = digits.parse().map_err(|_| UnitError::SizeTooLarge(text.into()))?;
    number.checked_mul(1u64 << shift).ok_or_else(|| UnitError::SizeTooLarge(text.into()))
}

/// Signal names and numbers that make sense to stop a container with.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("WINCH", 28),
    ("PWR", 30),
    ("STOP", 19),
    ("CONT", 18),
];

/// Parse `SIGTERM`, `TERM` or `15` into a signal number.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return if (1..=64).contains(&number) { Ok(number) } else { Err(format!("{number} is not a signal number (1-64)")) };
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, number)| *number).ok_or_else(|| format!("unknown signal {trimmed:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10x").unwrap_err(), UnitError::UnknownUnit { text: "10x".into(), unit: "x".into() });
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2k").unwrap(), 2048);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations_too_large_are_errors_not_panics() {
        let max = u64::MAX;
        for text in [
            // one number too large for u64, bare or with a unit
            "18446744073709551616".to_string(),
            "99999999999999999999999s".to_string(),
            // the sum of the parts overflows (the shape of issue 12)
            format!("{max}s1s"),
            format!("{max}s{max}s"),
            format!("{max}s1000ms"),
            // a unit multiplier that overflows u64 seconds
            format!("{}m", max / 60 + 1),
            format!("{}h", max / 3600 + 1),
            format!("{max}h"),
        ] {
            assert_eq!(parse_duration(&text), Err(UnitError::DurationTooLarge(text.clone())), "{text}");
            assert_eq!(parse_duration(&text).unwrap_err().to_string(), format!("{text:?}: duration too large (at most 8760h, one year)"));
        }
        // without the one-year bound, the largest values that fit are accepted...
        assert_eq!(parse_unbounded_duration(&format!("{max}")).unwrap(), Duration::from_secs(max));
        assert_eq!(parse_unbounded_duration(&format!("{max}s999ms")).unwrap(), Duration::new(max, 999_000_000));
        assert_eq!(parse_unbounded_duration(&format!("{}h", max / 3600)).unwrap(), Duration::from_secs(max / 3600 * 3600));
        // ...and the bound refuses them, so that `Instant::now() + d` cannot panic later.
        for text in [format!("{max}"), "8760h1ms".to_string(), "525601m".to_string()] {
            assert_eq!(parse_duration(&text), Err(UnitError::DurationTooLarge(text.clone())), "{text}");
        }
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        let now = std::time::Instant::now();
        assert!(now.checked_add(MAX_DURATION + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn sizes_too_large_are_errors_not_panics() {
        for text in
            ["99999999999999999999G", "99999999999999999999", "18446744073709551616", "16777216T", "17179869184G", "18014398509481984K"]
        {
            assert_eq!(parse_bytes(text), Err(UnitError::SizeTooLarge(text.into())), "{text}");
            assert_eq!(parse_bytes(text).unwrap_err().to_string(), format!("{text:?}: size too large"));
        }
        assert_eq!(parse_bytes("16777215T").unwrap(), 16777215u64 << 40);
        assert_eq!(parse_bytes("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_bytes("G"), Err(UnitError::BadSize("G".into())));
        assert_eq!(parse_bytes("-1G"), Err(UnitError::BadSize("-1G".into())));
    }

    /// A deterministic generator (xorshift) of strings built from digits, units and
    /// separators, long runs of digits included: no input may panic either parser.
    #[test]
    fn generated_strings_never_panic() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "60",
            "3600",
            "18446744073709551615",
            "99999999999999999999",
            "ms",
            "s",
            "m",
            "h",
            "K",
            "M",
            "G",
            "T",
            "iB",
            "B",
            " ",
            "x",
            "-",
            "+",
            ".",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 8) as usize;
            let text: String = (0..len).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
            let _ = parse_duration(&text);
            let _ = parse_bytes(&text);
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("int").unwrap(), 2);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
