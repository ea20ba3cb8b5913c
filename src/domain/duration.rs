//! Human-written durations: `90s`, `5m`, `1h30m`, `2d`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A positive duration written the way rollout plans write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// Parses `500ms`, `30s`, `5m`, `1h`, `2d` and sums of them (`1h30m`). Zero is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let allowed =
            "write a number and a unit: ms, s, m, h or d (for example \"30s\", \"5m\", \"1h30m\")";
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(format!("is empty; {allowed}"));
        }
        let mut total_ms: u128 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("{text:?} is not a duration; {allowed}"));
            }
            let number: u128 = rest[..digits]
                .parse()
                .map_err(|_| format!("{text:?} is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_ms: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(format!("{text:?} has a number without a unit; {allowed}")),
                unit => return Err(format!("{text:?} has the unknown unit {unit:?}; {allowed}")),
            };
            rest = &rest[unit_len..];
            total_ms = number
                .checked_mul(unit_ms)
                .and_then(|ms| total_ms.checked_add(ms))
                .filter(|ms| *ms <= u64::MAX as u128)
                .ok_or_else(|| format!("{text:?} is too large"))?;
        }
        if total_ms == 0 {
            return Err(format!("{text:?} is zero; a duration must be positive"));
        }
        Ok(Self(Duration::from_millis(total_ms as u64)))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The duration in seconds.
    pub fn seconds(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        let mut wrote = false;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    /// A string such as `"5s"`, checked like [`HumanDuration::parse`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_style_durations_parse() {
        assert_eq!(HumanDuration::parse("30s").unwrap().seconds(), 30.0);
        assert_eq!(HumanDuration::parse("5m").unwrap().seconds(), 300.0);
        assert_eq!(HumanDuration::parse("1h30m").unwrap().seconds(), 5400.0);
        assert_eq!(HumanDuration::parse("2d").unwrap().seconds(), 172_800.0);
        assert_eq!(
            HumanDuration::parse("250ms").unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(HumanDuration::parse("1h30m").unwrap().to_string(), "1h30m");
    }

    #[test]
    fn malformed_durations_say_what_is_allowed() {
        for text in ["", "5", "m", "5 minutes", "0s", "-5m", "5w"] {
            let error = HumanDuration::parse(text).unwrap_err();
            assert!(!error.is_empty(), "{text}");
        }
        assert!(
            HumanDuration::parse("5w")
                .unwrap_err()
                .contains("unknown unit")
        );
    }
}
