//! The engine's vocabulary: analysis profiles, recorded observations and verdicts.
//!
//! Everything here is plain data with `parse()`-style constructors that validate
//! once, so the rest of the engine works with values that are already known to be
//! sound (a confidence level in range, a metric whose kind-specific keys make
//! sense). This module never does I/O: callers hand it text and a file name for
//! error messages.

mod duration;
mod location;
pub mod look_series;
pub mod non_finite;
pub mod observations;
mod percentage;
pub mod plan;
pub mod profile;
mod validate;
pub mod verdict;

pub use duration::HumanDuration;
pub use location::{Location, line_and_column};
pub use observations::{
    DataMismatch, InstanceCounts, InstanceSeries, MetricData, Observations, Sample,
};
pub use percentage::Percentage;
pub use profile::{
    ConfidenceLevel, ContinuousKind, Direction, EffectMeasure, JudgeAlgorithm, JudgeMode,
    JudgeSettings, KayentaMetric, KayentaNanStrategy, MetricKind, MetricQueries, MetricSpec,
    NanPolicy, OutlierPolicy, Profile, ProfileError, ProportionKind, QueryLanguage, QuerySet,
    Score, Severity, ThresholdKind, ThresholdStatistic,
};
pub use verdict::Verdict;
