//! Reading back numbers JSON cannot hold. serde_json writes NaN and ±∞ as `null`; the
//! record types (looks, judgements, snapshots) read such a `null` back as NaN with these
//! (`#[serde(deserialize_with = "...")]`), so a record that held one still loads.

use serde::{Deserialize, Deserializer};

/// A number, or NaN for `null`.
pub fn f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Two numbers (an interval), each NaN for `null`.
pub fn pair<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[f64; 2], D::Error> {
    let [low, high] = <[Option<f64>; 2]>::deserialize(deserializer)?;
    Ok([low.unwrap_or(f64::NAN), high.unwrap_or(f64::NAN)])
}

/// An optional interval whose ends may be `null` (NaN).
pub fn optional_pair<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<[f64; 2]>, D::Error> {
    Ok(Option::<[Option<f64>; 2]>::deserialize(deserializer)?
        .map(|[low, high]| [low.unwrap_or(f64::NAN), high.unwrap_or(f64::NAN)]))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        #[serde(deserialize_with = "super::f64")]
        value: f64,
        #[serde(deserialize_with = "super::pair")]
        interval: [f64; 2],
        #[serde(default, deserialize_with = "super::optional_pair")]
        maybe: Option<[f64; 2]>,
    }

    #[test]
    fn non_finite_numbers_written_as_null_read_back_as_nan() {
        let written = Record {
            value: f64::INFINITY,
            interval: [f64::NAN, 1.5],
            maybe: Some([f64::NEG_INFINITY, 2.0]),
        };
        let json = serde_json::to_string(&written).unwrap();
        assert_eq!(
            json,
            r#"{"value":null,"interval":[null,1.5],"maybe":[null,2.0]}"#
        );
        let read: Record = serde_json::from_str(&json).unwrap();
        assert!(read.value.is_nan());
        assert!(read.interval[0].is_nan() && read.interval[1] == 1.5);
        assert!(read.maybe.unwrap()[0].is_nan());
        let absent: Record = serde_json::from_str(r#"{"value":1,"interval":[1,2]}"#).unwrap();
        assert_eq!(absent.maybe, None);
    }
}
