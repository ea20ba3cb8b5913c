//! TEMPORARY stub until the real implementation lands.
#![allow(missing_docs, unused_variables)]
use super::StatsError;
use serde::Serialize;
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftInterval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub confidence_level: f64,
    pub achieved_confidence: f64,
}
pub fn hodges_lehmann_sorted(
    baseline_sorted: &[f64],
    canary_sorted: &[f64],
    confidence_level: f64,
) -> Result<ShiftInterval, StatsError> {
    unimplemented!()
}
