//! A traffic share in percent, validated once.

use std::fmt;

use serde::Serialize;

/// A share of traffic from 0 to 100 percent (fractions allowed: 0.1 % for a dark launch).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Percentage(f64);

impl Percentage {
    /// No traffic.
    pub const ZERO: Percentage = Percentage(0.0);
    /// All traffic.
    pub const FULL: Percentage = Percentage(100.0);

    /// Validates a percentage in `[0, 100]`.
    pub fn parse(value: f64) -> Result<Self, String> {
        if value.is_finite() && (0.0..=100.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("must be a percentage from 0 to 100, got {value}"))
        }
    }

    /// The value in percent, e.g. `25.0`.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl<'de> serde::Deserialize<'de> for Percentage {
    /// A number from 0 to 100, checked like [`Percentage::parse`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Percentage::parse(value).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", crate::format::number(self.0))
    }
}
