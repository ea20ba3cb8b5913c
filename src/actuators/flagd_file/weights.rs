//! Percentages ↔ fractional weights. Pure arithmetic, no JSON and no I/O.
//!
//! flagd's `fractional` rule gives each variant an integer weight. Old flagd reads the
//! weights as percentages that must sum to 100; new flagd reads them as relative
//! weights (share = weight / sum). An integer percentage `p` is written as `p` and
//! `100 - p`, which both read the same way. A fractional percentage (0.1 % for a dark
//! launch) cannot be written as integer percentages, so it is scaled by the smallest
//! power of ten that makes it whole (0.1 % → 1 of 1,000): only a flagd that reads
//! relative weights understands that.

use crate::domain::Percentage;

/// The largest power of ten a percentage is scaled by: six decimal places, a total
/// weight of 10^8, well under flagd's limit of `i32::MAX` for the sum of weights.
/// Percentages finer than that are rounded to six decimal places.
const MAX_DECIMAL_PLACES: i32 = 6;

/// The weights for the new variant and for the whole rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Weights {
    /// The new variant's weight.
    pub(super) new_variant: u64,
    /// The sum of all weights; the fallback gets `total - new_variant`.
    pub(super) total: u64,
}

impl Weights {
    /// The fallback variant's weight.
    pub(super) fn fallback(self) -> u64 {
        self.total - self.new_variant
    }
}

/// The weights that give `rollout` to the new variant: integer percentages out of 100,
/// anything finer out of 100 × 10^k with the smallest k that represents it exactly
/// (at most six decimal places).
pub(super) fn weights_for(rollout: Percentage) -> Weights {
    let value = rollout.value();
    for decimal_places in 0..=MAX_DECIMAL_PLACES {
        let scale = 10f64.powi(decimal_places);
        let scaled = (value * scale).round();
        if scaled / scale == value || decimal_places == MAX_DECIMAL_PLACES {
            // Both values are whole numbers of at most 10^8, so the casts are exact.
            return Weights {
                new_variant: scaled as u64,
                total: (100.0 * scale) as u64,
            };
        }
    }
    unreachable!("the loop returns at the last decimal place")
}

/// The share in percent that `new_variant` out of `total` gives, or `None` when the
/// total is zero (flagd then matches no bucket and serves the default variant).
pub(super) fn percent_of(new_variant: u64, total: u64) -> Option<f64> {
    // Dividing last keeps decimal values exact: 100 / 1000 is the f64 nearest 0.1,
    // the same number the user typed, so 0.1 % reads back as 0.1 %.
    (total > 0).then(|| (new_variant as f64 * 100.0) / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(value: f64) -> Weights {
        weights_for(Percentage::parse(value).unwrap())
    }

    #[test]
    fn integer_percentages_are_weights_out_of_one_hundred() {
        for value in [0.0, 1.0, 5.0, 25.0, 50.0, 100.0] {
            let written = weights(value);
            assert_eq!(written.new_variant, value as u64);
            assert_eq!(written.total, 100);
        }
        assert_eq!(weights(100.0).fallback(), 0);
        assert_eq!(weights(0.0).fallback(), 100);
    }

    #[test]
    fn a_tenth_of_a_percent_is_one_in_a_thousand() {
        let written = weights(0.1);
        assert_eq!((written.new_variant, written.fallback()), (1, 999));
    }

    #[test]
    fn decimal_percentages_use_the_smallest_exact_scale() {
        assert_eq!(
            weights(12.34),
            Weights {
                new_variant: 1234,
                total: 10_000
            }
        );
        assert_eq!(
            weights(0.005),
            Weights {
                new_variant: 5,
                total: 100_000
            }
        );
    }

    #[test]
    fn percentages_finer_than_six_decimals_are_rounded() {
        let written = weights(100.0 / 3.0);
        assert_eq!(written.total, 100_000_000);
        assert_eq!(written.new_variant, 33_333_333);
    }

    #[test]
    fn written_weights_read_back_as_the_same_percentage() {
        for value in [0.0, 0.1, 0.5, 1.0, 2.5, 12.34, 25.0, 99.9, 100.0] {
            let written = weights(value);
            assert_eq!(percent_of(written.new_variant, written.total), Some(value));
        }
    }

    #[test]
    fn relative_weights_read_as_their_share() {
        assert_eq!(percent_of(1, 3), Some(100.0 / 3.0));
        assert_eq!(percent_of(1, 4), Some(25.0));
        assert_eq!(percent_of(0, 0), None);
    }
}
