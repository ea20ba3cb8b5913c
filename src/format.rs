//! Number formatting for reasons and tables: short, unambiguous, and honest about
//! p-values too small for `f64`.

/// A number with about four significant digits, without trailing zeros.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "n/a".to_owned()
        } else if value > 0.0 {
            "∞".to_owned()
        } else {
            "-∞".to_owned()
        };
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs();
    if !(1e-4..1e6).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A signed number: `+0.021`, `-3`.
pub fn signed(value: f64) -> String {
    if value > 0.0 {
        format!("+{}", number(value))
    } else {
        number(value)
    }
}

/// A share as a percentage: `2.3%`.
pub fn percent(fraction: f64) -> String {
    format!("{}%", number(fraction * 100.0))
}

/// A signed relative change as a percentage: `+23.1%`.
pub fn signed_percent(fraction: f64) -> String {
    format!("{}%", signed(fraction * 100.0))
}

/// A p-value; when `p` underflowed, its order of magnitude from `ln p`.
pub fn p_value(p: f64, ln_p: Option<f64>) -> String {
    if p >= 1e-4 {
        return number(p);
    }
    if p > 0.0 {
        return format!("{p:.2e}");
    }
    match ln_p {
        Some(ln_p) if ln_p.is_finite() => {
            format!("1e{:.0}", (ln_p / std::f64::consts::LN_10).floor())
        }
        _ => "< 1e-300".to_owned(),
    }
}

/// A confidence level as a percentage with as many decimals as it takes to tell it
/// from 100: `95`, `99.6`, `99.9995`.
pub fn confidence_percent(level: f64) -> String {
    let alpha = (1.0 - level).max(f64::MIN_POSITIVE);
    let decimals = ((-alpha.log10()).ceil() as i64 - 2).clamp(0, 12) as usize;
    let text = format!("{:.decimals$}", level * 100.0);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A whole count with thousands separators: `1,000`.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in seconds in natural units, the way a person would say it: `0.5 s`,
/// `10 s`, `1 min 30 s`, `2 h 5 min`, `3 d 4 h`. Each form keeps its two largest units
/// and rounds the rest away (seconds below an hour, minutes below a day, hours above).
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return format!("{} s", number(seconds));
    }
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    let two_units = |large: f64, large_unit: &str, small: f64, small_unit: &str| {
        if small == 0.0 {
            format!("{large} {large_unit}")
        } else {
            format!("{large} {large_unit} {small} {small_unit}")
        }
    };
    if seconds < 1.0 {
        return format!("{} s", number(seconds));
    }
    let whole_seconds = seconds.round();
    if whole_seconds < 60.0 {
        return format!("{whole_seconds} s");
    }
    if whole_seconds < 3600.0 {
        return two_units(
            (whole_seconds / 60.0).floor(),
            "min",
            whole_seconds % 60.0,
            "s",
        );
    }
    let whole_minutes = (seconds / 60.0).round();
    if whole_minutes < 1440.0 {
        return two_units(
            (whole_minutes / 60.0).floor(),
            "h",
            whole_minutes % 60.0,
            "min",
        );
    }
    let whole_hours = (seconds / 3600.0).round();
    two_units((whole_hours / 24.0).floor(), "d", whole_hours % 24.0, "h")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_natural_units() {
        assert_eq!(duration(0.0), "0 s");
        assert_eq!(duration(0.5), "0.5 s");
        assert_eq!(duration(10.0), "10 s");
        assert_eq!(duration(10.2), "10 s");
        assert_eq!(duration(60.0), "1 min");
        assert_eq!(duration(90.0), "1 min 30 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(3599.6), "1 h");
        assert_eq!(duration(2.0 * 3600.0 + 5.0 * 60.0 + 10.0), "2 h 5 min");
        assert_eq!(duration(86_399.0), "1 d");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(duration(-90.0), "-1 min 30 s");
        assert_eq!(duration(f64::NAN), "n/a s");
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(1234.5), "1234");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.00001234), "1.234e-5");
        assert_eq!(signed(0.5), "+0.5");
        assert_eq!(percent(0.023), "2.3%");
    }

    #[test]
    fn underflowed_p_values_show_their_magnitude() {
        assert_eq!(p_value(0.0, Some(-800.0)), "1e-348");
        assert_eq!(p_value(0.0123, None), "0.0123");
        assert_eq!(p_value(3.2e-12, None), "3.20e-12");
    }

    #[test]
    fn confidence_levels_keep_the_digits_that_matter() {
        assert_eq!(confidence_percent(0.95), "95");
        assert_eq!(confidence_percent(0.99), "99");
        assert_eq!(confidence_percent(0.996), "99.6");
        assert_eq!(confidence_percent(0.9999954), "99.9995");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(312), "312");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }
}
