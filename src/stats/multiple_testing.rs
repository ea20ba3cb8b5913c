//! TEMPORARY stub until the real implementation lands.
#![allow(missing_docs, unused_variables)]
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    Holm,
    Bonferroni,
    None,
}
pub fn adjust_p_values(p_values: &[f64], correction: Correction) -> Vec<f64> {
    unimplemented!()
}
