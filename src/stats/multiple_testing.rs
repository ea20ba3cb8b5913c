//! Multiple-testing corrections of p-values.
//!
//! This file owns the family-wise error control applied when one verdict rests on
//! several metrics at once. Holm's step-down procedure is the default because it
//! controls the family-wise error rate under any dependence between the metrics,
//! exactly like Bonferroni, while never being less powerful. Results equal R's
//! `p.adjust(p, "holm")` and `p.adjust(p, "bonferroni")`, including their handling
//! of missing values: NaN p-values stay NaN and do not count towards the number of
//! tests, as `NA` does in R.

use serde::{Deserialize, Serialize};

/// Which multiple-testing correction to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down procedure (family-wise error rate, any dependence).
    Holm,
    /// Bonferroni: every p-value multiplied by the number of tests.
    Bonferroni,
    /// No correction: p-values are returned unchanged.
    None,
}

/// Adjusts `p_values` for multiple testing; the result is in input order.
///
/// Adjusted values are capped at 1. Holm's adjusted values are the running
/// maximum of `(m - i + 1) p_(i)` over the ascending p-values, so they are
/// monotone in the raw p-values; ties get equal adjusted values whatever their
/// order. NaN entries stay NaN and are not counted in `m`.
pub fn adjust_p_values(p_values: &[f64], correction: Correction) -> Vec<f64> {
    let present: Vec<usize> = (0..p_values.len())
        .filter(|&index| !p_values[index].is_nan())
        .collect();
    let number_of_tests = present.len() as f64;
    match correction {
        Correction::None => p_values.to_vec(),
        Correction::Bonferroni => p_values
            .iter()
            .map(|&p| {
                if p.is_nan() {
                    p
                } else {
                    (number_of_tests * p).min(1.0)
                }
            })
            .collect(),
        Correction::Holm => {
            let mut ascending = present;
            // A stable sort, like R's `order`; the running maximum makes the
            // result independent of how ties are ordered anyway.
            ascending.sort_by(|&left, &right| p_values[left].total_cmp(&p_values[right]));
            let mut adjusted = p_values.to_vec();
            let mut running_maximum = f64::NEG_INFINITY;
            for (rank, &index) in ascending.iter().enumerate() {
                let multiplier = number_of_tests - rank as f64;
                running_maximum = running_maximum.max(multiplier * p_values[index]);
                adjusted[index] = running_maximum.min(1.0);
            }
            adjusted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_a_hand_computed_step_down() {
        // Sorted: 0.01 * 4 = 0.04, 0.02 * 3 = 0.06, 0.03 * 2 = 0.06, 0.5 * 1 = 0.5.
        let adjusted = adjust_p_values(&[0.5, 0.03, 0.01, 0.02], Correction::Holm);
        let expected = [0.5, 0.06, 0.04, 0.06];
        for (got, want) in adjusted.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{adjusted:?}");
        }
    }

    #[test]
    fn bonferroni_is_capped_at_one() {
        assert_eq!(
            adjust_p_values(&[0.2, 0.5], Correction::Bonferroni),
            vec![0.4, 1.0]
        );
    }

    #[test]
    fn no_correction_returns_the_input() {
        assert_eq!(
            adjust_p_values(&[0.2, 0.5], Correction::None),
            vec![0.2, 0.5]
        );
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert!(adjust_p_values(&[], Correction::Holm).is_empty());
    }

    #[test]
    fn missing_values_stay_missing_and_do_not_count() {
        let adjusted = adjust_p_values(&[0.01, f64::NAN, 0.04], Correction::Bonferroni);
        assert_eq!(adjusted[0], 0.02);
        assert!(adjusted[1].is_nan());
        assert_eq!(adjusted[2], 0.08);
        let holm = adjust_p_values(&[f64::NAN, 0.04, 0.01], Correction::Holm);
        assert!(holm[0].is_nan());
        assert_eq!((holm[1], holm[2]), (0.04, 0.02));
    }

    #[test]
    fn corrections_deserialize_from_snake_case() {
        let parsed: Vec<Correction> =
            serde_json::from_str(r#"["holm", "bonferroni", "none"]"#).unwrap();
        assert_eq!(
            parsed,
            vec![Correction::Holm, Correction::Bonferroni, Correction::None]
        );
    }
}

/// Agreement with statsmodels' `multipletests` (R's `p.adjust`), via
/// `fixtures/reference/proportions.json` (produced by
/// `fixtures/reference/proportions.py`).
#[cfg(test)]
mod reference_tests {
    use super::*;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/reference/proportions.json"
    ));

    /// Relative tolerance; both sides compute the same products, so in practice
    /// they agree exactly.
    const RELATIVE_TOLERANCE: f64 = 1e-9;

    fn floats(value: &Value) -> Vec<f64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }

    #[test]
    fn holm_and_bonferroni_match_the_reference() {
        let reference: Value = serde_json::from_str(REFERENCE).expect("the reference JSON parses");
        let cases = reference["adjustments"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for case in cases {
            let p_values = floats(&case["p_values"]);
            for (correction, field) in [
                (Correction::Holm, "holm"),
                (Correction::Bonferroni, "bonferroni"),
            ] {
                let adjusted = adjust_p_values(&p_values, correction);
                let expected = floats(&case[field]);
                assert_eq!(adjusted.len(), expected.len());
                for (actual, wanted) in adjusted.iter().zip(&expected) {
                    assert!(
                        (actual - wanted).abs() <= RELATIVE_TOLERANCE * wanted.abs(),
                        "{field} of {p_values:?}: got {adjusted:?}, reference {expected:?}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn holm_lies_between_the_raw_and_the_bonferroni_p_values(p_values in prop::collection::vec(0.0_f64..=1.0, 0..30)) {
            let holm = adjust_p_values(&p_values, Correction::Holm);
            let bonferroni = adjust_p_values(&p_values, Correction::Bonferroni);
            prop_assert_eq!(adjust_p_values(&p_values, Correction::None), p_values.clone());
            for ((raw, holm), bonferroni) in p_values.iter().zip(&holm).zip(&bonferroni) {
                prop_assert!(raw <= holm && holm <= bonferroni && *bonferroni <= 1.0);
            }
        }

        #[test]
        fn holm_preserves_the_order_of_the_raw_p_values(p_values in prop::collection::vec(0.0_f64..=1.0, 0..30)) {
            let holm = adjust_p_values(&p_values, Correction::Holm);
            for i in 0..p_values.len() {
                for j in 0..p_values.len() {
                    if p_values[i] <= p_values[j] {
                        prop_assert!(holm[i] <= holm[j]);
                    }
                }
            }
        }
    }
}
