//! TEMPORARY stub until the real implementation lands.
#![allow(missing_docs, unused_variables)]
use serde::Serialize;
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    unimplemented!()
}
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std_dev: f64,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}
pub fn summarize_sorted(sorted: &[f64]) -> Option<Summary> {
    unimplemented!()
}
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierRemoval {
    pub kept: Vec<f64>,
    pub removed: usize,
    pub lower_fence: f64,
    pub upper_fence: f64,
}
pub fn remove_outliers_iqr(values: &[f64], multiplier: f64) -> OutlierRemoval {
    unimplemented!()
}
