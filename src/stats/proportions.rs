//! TEMPORARY stub until the real implementation lands.
#![allow(missing_docs, unused_variables)]
use super::{Alternative, StatsError};
use serde::Serialize;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub events: u64,
    pub total: u64,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionTest {
    ZTest,
    FisherExact,
}
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProportionComparison {
    pub baseline_rate: f64,
    pub canary_rate: f64,
    pub difference: f64,
    pub difference_ci: (f64, f64),
    pub ratio: Option<f64>,
    pub ratio_ci: Option<(f64, f64)>,
    pub z: Option<f64>,
    pub p_value: f64,
    pub ln_p_value: f64,
    pub test: ProportionTest,
}
pub fn compare_proportions(
    baseline: Counts,
    canary: Counts,
    confidence_level: f64,
    alternative: Alternative,
) -> Result<ProportionComparison, StatsError> {
    unimplemented!()
}
