//! Go-style duration strings (`"300ms"`, `"1m30s"`, `"2h"`), which upstream manifests use for timeouts,
//! backoff and rate limits. Parsed here, with no I/O, so `validate` and the runtimes agree.

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// The text is empty.
    #[error("empty duration")]
    Empty,
    /// The text is not a sequence of `<number><unit>`.
    #[error("invalid duration {0:?}: expected e.g. \"10s\", \"1m30s\", \"500ms\"")]
    Invalid(String),
    /// A unit other than ns, us, µs, ms, s, m, h.
    #[error("unknown unit {unit:?} in duration {text:?}: use ns, us, ms, s, m or h")]
    UnknownUnit { text: String, unit: String },
    /// A negative duration where only positive ones make sense.
    #[error("negative duration {0:?}")]
    Negative(String),
}

/// Parses a Go duration string. A bare `0` is zero; negative durations are rejected.
pub fn parse_go_duration(text: &str) -> Result<Duration, ParseDurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(ParseDurationError::Negative(text.to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(ParseDurationError::Invalid(text.to_string()));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| ParseDurationError::Invalid(text.to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(ParseDurationError::Invalid(text.to_string())),
            other => {
                return Err(ParseDurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        total += number * scale;
    }
    if !total.is_finite() || total > 1.0e12 {
        return Err(ParseDurationError::Invalid(text.to_string()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(parse_go_duration(""), Err(ParseDurationError::Empty));
        assert!(matches!(
            parse_go_duration("10"),
            Err(ParseDurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("10x"),
            Err(ParseDurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("-1s"),
            Err(ParseDurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("s"),
            Err(ParseDurationError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,20}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn seconds_round_trip(n in 0u32..100_000) {
            prop_assert_eq!(parse_go_duration(&format!("{n}s")), Ok(Duration::from_secs(u64::from(n))));
        }
    }
}
