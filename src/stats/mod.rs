//! Pure numerics: rank tests, shift estimates, proportion tests, quantiles and
//! multiple-testing corrections.
//!
//! Everything here is a function of slices and numbers. Nothing in this module
//! does I/O, logs, or knows what a metric, a profile or a verdict is; the judge
//! turns these numbers into classifications. Every routine is checked against
//! reference values from an independent implementation (scipy, R) kept in
//! `fixtures/reference/` together with the script that produced them.
//!
//! Sides are always named `baseline` and `canary`, and every directional
//! quantity reads "canary compared with baseline": a positive shift means the
//! canary is larger, [`Alternative::Greater`] means "canary tends to be larger".

pub mod hodges_lehmann;
pub mod kayenta;
pub mod mann_whitney;
pub mod multiple_testing;
pub mod proportions;
pub mod quantiles;
pub mod sequential;
pub mod sort;

use serde::Serialize;

/// The alternative hypothesis of a test, read as "canary compared with baseline".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// The canary differs from the baseline in either direction.
    TwoSided,
    /// The canary tends to be larger than the baseline.
    Greater,
    /// The canary tends to be smaller than the baseline.
    Less,
}

/// Input a statistical routine cannot work with.
///
/// The judge validates data before calling into this module, so in practice these
/// are programming errors or data that slipped through; they become an `error`
/// classification, never a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// One side has no observations.
    #[error("the {side} sample is empty")]
    EmptySample {
        /// `"baseline"` or `"canary"`.
        side: &'static str,
    },
    /// One side contains NaN or an infinity.
    #[error("the {side} sample contains a non-finite value")]
    NonFinite {
        /// `"baseline"` or `"canary"`.
        side: &'static str,
    },
    /// A sample larger than a routine can index (more than 4,294,967,295 baseline
    /// values for the Hodges-Lehmann interval).
    #[error("the {side} sample has {len} values, more than the {limit} this routine can index")]
    SampleTooLarge {
        /// `"baseline"` or `"canary"`.
        side: &'static str,
        /// Its length.
        len: usize,
        /// The most it may have.
        limit: usize,
    },
    /// A confidence level outside the open interval (0, 1).
    #[error("confidence level {0} is outside the open interval (0, 1)")]
    InvalidConfidenceLevel(f64),
    /// Every observation of both sides is tied, so a rank statistic has no spread.
    #[error("every observation is tied, so the rank statistic has no spread")]
    AllTied,
    /// Counts that cannot describe a proportion (for example more events than trials).
    #[error("invalid counts: {0}")]
    InvalidCounts(String),
}
