//! TEMPORARY stub until the real implementation lands.
#![allow(missing_docs, unused_variables)]
use super::{Alternative, StatsError};
use serde::Serialize;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MannWhitneyMethod {
    Exact,
    NormalApproximation,
}
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MannWhitney {
    pub baseline_n: usize,
    pub canary_n: usize,
    pub u_canary: f64,
    pub u_baseline: f64,
    pub probability_of_superiority: f64,
    pub z: Option<f64>,
    pub p_value: f64,
    pub ln_p_value: f64,
    pub method: MannWhitneyMethod,
    pub has_ties: bool,
}
pub fn mann_whitney_sorted(
    baseline_sorted: &[f64],
    canary_sorted: &[f64],
    alternative: Alternative,
) -> Result<MannWhitney, StatsError> {
    unimplemented!()
}
