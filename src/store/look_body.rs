//! How a look's body is kept: compactly, and read back exactly as it was written.
//!
//! A look body (`scheduler::Look` as JSON) is mostly the judge's numbers and
//! the chart points of [`crate::domain::look_series::LookSeries`]: about 17 KB of JSON
//! text for a web-service look. Stored, it is smaller twice over, without losing a digit:
//!
//! 1. **Nothing derivable is kept.** A side's `ranks` (the distribution chart's values)
//!    are dropped when they are exactly its points' values sorted (a look with no more
//!    points than [`DISTRIBUTION_RANKS`](crate::domain::look_series::DISTRIBUTION_RANKS)
//!    and [`MAX_POINTS_PER_LOOK`](crate::domain::look_series::MAX_POINTS_PER_LOOK));
//!    evenly spaced point times become a first time and a step; a metric whose series
//!    equal an earlier metric's (two metrics on one query) name it (`same_as`).
//! 2. **The rest is deflated** (zlib, with its checksum).
//!
//! [`encode`] rebuilds the original from the compacted body before it keeps it, so
//! [`decode`] always returns the body as written (the same JSON value); a body that
//! does not rebuild (not the usual shape) is only deflated. The bytes start with their
//! format number ([`DEFLATED`] or [`COMPACTED`]), so a later format can be told apart;
//! looks written before these formats are JSON in the `body` column and are read as they
//! are. Pure: no I/O.

use serde_json::{Map, Value};

use super::model::StoreError;
use crate::scheduler::records::{self, Look};

/// Format 1: the body's JSON, zlib-deflated.
pub const DEFLATED: u8 = 1;
/// Format 2: the compacted body's JSON, zlib-deflated.
pub const COMPACTED: u8 = 2;

/// The largest body [`decode`] inflates, so a corrupt row cannot exhaust memory.
const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// The deflate level: 6, zlib's default (9 saves under 2 % more here, at twice the time).
const LEVEL: u8 = 6;

/// The stored bytes of `look`: its versioned record, compacted and deflated.
pub fn encode_look(look: &Look) -> Result<Vec<u8>, StoreError> {
    let value = records::write_record(look)
        .map_err(|error| StoreError::Invalid(format!("look: {error}")))?;
    encode(&value)
}

/// The look [`encode_look`] was given.
pub fn decode_look(bytes: &[u8]) -> Result<Look, StoreError> {
    read_look(decode(bytes)?)
}

/// A look from its stored JSON (a body of any format once decoded).
pub fn read_look(value: Value) -> Result<Look, StoreError> {
    records::read_look(&value).map_err(|error| StoreError::Corrupt(format!("look body: {error}")))
}

/// The stored bytes of a look body.
pub fn encode(body: &Value) -> Result<Vec<u8>, StoreError> {
    let compacted = compact(body);
    let (format, kept) = if expand(compacted.clone()).as_ref() == Some(body) {
        (COMPACTED, &compacted)
    } else {
        (DEFLATED, body)
    };
    let json = serde_json::to_vec(kept)
        .map_err(|error| StoreError::Invalid(format!("look body: {error}")))?;
    let mut bytes = vec![format];
    bytes.extend(miniz_oxide::deflate::compress_to_vec_zlib(&json, LEVEL));
    Ok(bytes)
}

/// The look body [`encode`] was given.
pub fn decode(bytes: &[u8]) -> Result<Value, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("look body: {why}"));
    let (&format, deflated) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty".to_owned()))?;
    if format != DEFLATED && format != COMPACTED {
        return Err(corrupt(format!(
            "unknown format {format} (written by a newer version?)"
        )));
    }
    let json =
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(deflated, MAX_INFLATED_BYTES)
            .map_err(|error| corrupt(format!("cannot inflate: {error}")))?;
    let stored: Value =
        serde_json::from_slice(&json).map_err(|error| corrupt(format!("not JSON: {error}")))?;
    if format == DEFLATED {
        return Ok(stored);
    }
    expand(stored).ok_or_else(|| corrupt("a compacted series is malformed".to_owned()))
}

/// The body with its series compacted; anything unexpected is left as it is.
fn compact(body: &Value) -> Value {
    let mut body = body.clone();
    let Some(metrics) = body
        .get_mut("series")
        .and_then(|series| series.get_mut("metrics"))
        .and_then(Value::as_object_mut)
    else {
        return body;
    };
    let mut compacted = Map::new();
    for (name, series) in metrics.iter() {
        let earlier = metrics
            .iter()
            .take_while(|(other, _)| *other != name)
            .find(|(_, other)| *other == series);
        let stored = match earlier {
            Some((other, _)) => serde_json::json!({ "same_as": other }),
            None => compact_metric(series),
        };
        compacted.insert(name.clone(), stored);
    }
    *metrics = compacted;
    body
}

fn compact_metric(series: &Value) -> Value {
    let Some(sides) = series.as_object() else {
        return series.clone();
    };
    let mut compacted = Map::new();
    for (side_name, side) in sides {
        let shortened = compact_side(side);
        // Kept only when it rebuilds the original exactly.
        let stored = match &shortened {
            Some(short) if expand_side(short.clone()).as_ref() == Some(side) => short.clone(),
            _ => side.clone(),
        };
        compacted.insert(side_name.clone(), stored);
    }
    Value::Object(compacted)
}

/// `{n, points: [[t, v], ...], ranks}` → `{n, t0, dt, values}` (and `ranks` when they
/// are not the sorted values).
fn compact_side(side: &Value) -> Option<Value> {
    let mut side = side.as_object()?.clone();
    let points = side.get("points")?.as_array()?;
    let mut times = Vec::with_capacity(points.len());
    let mut values = Vec::with_capacity(points.len());
    for point in points {
        let [time, value] = point.as_array()?.as_slice() else {
            return None;
        };
        times.push(time.as_f64()?);
        values.push(value.clone());
    }
    let (first, step) = match times.as_slice() {
        [] => return None,
        [only] => (*only, 0.0),
        [first, second, ..] => (*first, second - first),
    };
    if side.get("ranks") == Some(&sorted(&values)?) {
        side.remove("ranks");
    }
    side.remove("points");
    side.insert("t0".to_owned(), Value::from(first));
    side.insert("dt".to_owned(), Value::from(step));
    side.insert("values".to_owned(), Value::Array(values));
    Some(Value::Object(side))
}

/// The values sorted as `LookSeries` sorts its ranks; `None` unless all are numbers.
fn sorted(values: &[Value]) -> Option<Value> {
    let mut numbers = values
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<f64>>>()?;
    numbers.sort_by(f64::total_cmp);
    Some(Value::Array(numbers.into_iter().map(Value::from).collect()))
}

/// The body as it was before [`compact`]; `None` for a malformed compacted series.
fn expand(mut body: Value) -> Option<Value> {
    let Some(metrics) = body
        .get_mut("series")
        .and_then(|series| series.get_mut("metrics"))
        .and_then(Value::as_object_mut)
    else {
        return Some(body);
    };
    let mut expanded = Map::new();
    for (name, series) in std::mem::take(metrics) {
        let full = match series.get("same_as") {
            Some(other) => expanded.get(other.as_str()?)?.clone(),
            None => expand_metric(series)?,
        };
        expanded.insert(name, full);
    }
    *metrics = expanded;
    Some(body)
}

fn expand_metric(series: Value) -> Option<Value> {
    let Value::Object(sides) = series else {
        return Some(series);
    };
    let mut expanded = Map::new();
    for (side_name, side) in sides {
        expanded.insert(side_name, expand_side(side)?);
    }
    Some(Value::Object(expanded))
}

/// `{n, t0, dt, values}` → `{n, points, ranks}`, keys in `LookSeries`'s order; a side
/// without `values` was stored as it was.
fn expand_side(side: Value) -> Option<Value> {
    let Value::Object(mut side) = side else {
        return Some(side);
    };
    let Some(values) = side.remove("values") else {
        return Some(Value::Object(side));
    };
    let values = values.as_array()?.clone();
    let first = side.remove("t0")?.as_f64()?;
    let step = side.remove("dt")?.as_f64()?;
    let ranks = match side.remove("ranks") {
        Some(ranks) => ranks,
        None => sorted(&values)?,
    };
    let points = values
        .into_iter()
        .enumerate()
        .map(|(index, value)| Value::Array(vec![Value::from(first + step * index as f64), value]))
        .collect();
    let mut full = Map::new();
    if let Some(n) = side.remove("n") {
        full.insert("n".to_owned(), n);
    }
    full.insert("points".to_owned(), Value::Array(points));
    full.insert("ranks".to_owned(), ranks);
    full.extend(side);
    Some(Value::Object(full))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn side(points: &[(f64, f64)], ranks: &[f64]) -> Value {
        json!({"n": points.len(), "points": points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(), "ranks": ranks})
    }

    fn body() -> Value {
        let even = side(&[(5.0, 0.3), (10.0, 0.1), (15.0, 0.2)], &[0.1, 0.2, 0.3]);
        // Downsampled: times not evenly spaced and ranks not the points' values.
        let uneven = json!({"n": 500, "points": [[5.0, 0.1], [7.5, 0.9], [20.0, 0.4]], "ranks": [0.05, 0.4, 0.95]});
        json!({
            "look": 3,
            "at": 1_700_000_540.0,
            "judgement": {"score": 100.0, "metrics": [{"name": "latency_p95", "p_value": 0.7438580717627676}]},
            "series": {"from": 1_700_000_360.0, "metrics": {
                "latency_p95": {"baseline": even.clone(), "canary": uneven.clone()},
                "p95_slo": {"baseline": even.clone(), "canary": uneven.clone()},
                "error_rate": {"baseline": side(&[(5.0, 0.0)], &[0.0]), "canary": {"n": 0, "points": [], "ranks": []}},
            }},
        })
    }

    #[test]
    fn a_body_reads_back_exactly_as_written() {
        let body = body();
        let stored = encode(&body).unwrap();
        assert_eq!(stored[0], COMPACTED);
        assert_eq!(decode(&stored).unwrap(), body);
        // Key order too, since the API serves the body as stored.
        assert_eq!(
            serde_json::to_string(&decode(&stored).unwrap()).unwrap(),
            serde_json::to_string(&body).unwrap()
        );
    }

    #[test]
    fn derivable_series_are_not_kept() {
        let compacted = compact(&body());
        let metrics = &compacted["series"]["metrics"];
        assert_eq!(metrics["p95_slo"], json!({"same_as": "latency_p95"}));
        let even = &metrics["latency_p95"]["baseline"];
        assert_eq!(
            even,
            &json!({"n": 3, "t0": 5.0, "dt": 5.0, "values": [0.3, 0.1, 0.2]})
        );
        // A downsampled side keeps its points and ranks as they are.
        assert!(metrics["latency_p95"]["canary"].get("points").is_some());
    }

    #[test]
    fn bodies_of_any_other_shape_read_back_too() {
        // Shapes the compaction would misread on the way back are only deflated.
        let looks_compacted = json!({"series": {"metrics": {"a": {"same_as": "b"}, "b": {"baseline": {"values": [1.0]}}}}});
        assert_eq!(encode(&looks_compacted).unwrap()[0], DEFLATED);
        for body in [
            looks_compacted,
            json!({"look": 1}),
            json!({"series": {"metrics": {"m": {"baseline": {"points": [[1.0, "x"]]}}}}}),
            json!({"series": {"metrics": {"m": {"baseline": {"points": [[0.1, 1.0], [0.2, 2.0], [0.30000000000000004, 3.0]], "ranks": [1.0, 2.0, 3.0]}}}}}),
            json!({"series": {"metrics": {"m": {"baseline": {"points": [[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]], "ranks": [1.0, 2.0, 3.0]}}}}}),
            json!(null),
        ] {
            assert_eq!(decode(&encode(&body).unwrap()).unwrap(), body, "{body}");
        }
    }

    #[test]
    fn corrupt_or_unknown_bytes_are_corrupt_not_a_panic() {
        let stored = encode(&body()).unwrap();
        for bad in [
            vec![],
            vec![COMPACTED],
            vec![3, 1, 2, 3],
            stored[..stored.len() - 3].to_vec(),
        ] {
            assert!(
                matches!(decode(&bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
