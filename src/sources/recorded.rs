//! Readers for recorded observations: the `metric,timestamp,value` CSV format and the
//! JSON that Prometheus' `/api/v1/query_range` (or `/api/v1/query`) returns.
//!
//! The readers are strict: a malformed number, an infinity, a negative count, more
//! errors than events or an empty file is an error that names the file and line
//! (for JSON, the line and column serde reports, or the series and timestamp when the
//! problem only shows across series). NaN is accepted and kept: it is how
//! Prometheus marks a missing point, and missing data is the judge's business.
//!
//! CSV rows: `metric,timestamp,value` with an optional header row and `#` comments.
//! A proportion metric is written as two metrics, `NAME:errors` and `NAME:total`,
//! with one row each per timestamp. An optional fourth column, `instance`, names the
//! host or pod a row came from (header `metric,timestamp,value,instance`): every row
//! of a metric names one or none does. Samples of a metric's instances are pooled and
//! kept per instance (`Observations::instances`, label `instance`), so the judge can
//! allow for host differences; counts are summed per timestamp, and a replay serves
//! every instance's series on its own ([`read_file_with_instances`]).
//!
//! Prometheus JSON: either one response whose series carry a `__name__` label, or
//! an object mapping metric names (including `NAME:errors` / `NAME:total`) to
//! responses. Several series for one metric are pooled (samples) or summed per
//! timestamp (counts); when every series of a metric has an `instance` (or `pod`)
//! label, each is also kept as that instance's, as for the CSV's `instance` column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::domain::{InstanceSeries, Location, MetricData, Observations, Sample};

/// A data file that cannot be read as observations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RecordedDataError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line, when the problem sits on one line.
    pub line: Option<usize>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for RecordedDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Per raw metric name (`latency`, `errors:errors`, ...) and instance, the samples a
/// CSV recorded, in time order; empty for files whose rows name no instance.
pub type RecordedInstances = BTreeMap<String, BTreeMap<String, Vec<Sample>>>;

/// Reads observations from a file, choosing the format by extension (`.csv`,
/// `.json`) or, failing that, by whether the content starts with `{`.
pub fn read_file(path: &Path) -> Result<Observations, RecordedDataError> {
    read_file_with_instances(path).map(|(observations, _)| observations)
}

/// [`read_file`], with the series of every instance a CSV's rows or a Prometheus
/// JSON's series labels name, raw names included (what a replay serves per instance).
pub fn read_file_with_instances(
    path: &Path,
) -> Result<(Observations, RecordedInstances), RecordedDataError> {
    let file = path.display().to_string();
    let unreadable = |error: std::io::Error| RecordedDataError {
        file: file.clone(),
        line: None,
        message: format!("cannot read the file: {error}"),
    };
    match path.extension().and_then(|e| e.to_str()) {
        // A CSV is read as it streams in: large recordings are never held as text.
        Some(extension) if extension.eq_ignore_ascii_case("csv") => {
            let input = std::fs::File::open(path).map_err(unreadable)?;
            parse_csv_from(input, &file)
        }
        extension => {
            let text = std::fs::read_to_string(path).map_err(unreadable)?;
            let is_json = match extension {
                Some(extension) => extension.eq_ignore_ascii_case("json"),
                None => text.trim_start().starts_with('{'),
            };
            if is_json {
                parse_prometheus_json_with_instances(&text, &file)
            } else {
                parse_csv_with_instances(&text, &file)
            }
        }
    }
}

/// One value as read, before proportion metrics are paired up.
#[derive(Clone, Copy)]
struct RawPoint<'a> {
    timestamp: f64,
    value: f64,
    line: Option<usize>,
    instance: Option<&'a str>,
}

/// Marks a point that names no instance in [`Series::instances`].
const NO_INSTANCE: u32 = u32::MAX;

/// The points of one raw metric name, as read, in columns: a recording of a million
/// rows costs its samples and four bytes a row for its line, not a record per row.
#[derive(Default)]
struct Series {
    /// Where the name first appeared.
    first_line: Option<usize>,
    samples: Vec<Sample>,
    /// The line of each point, 0 where the format has none.
    lines: Vec<u32>,
    /// The instance of each point ([`Collector::instance_names`], or [`NO_INSTANCE`]);
    /// empty until a point names one.
    instances: Vec<u32>,
}

impl Series {
    fn line(&self, index: usize) -> Option<usize> {
        match self.lines[index] {
            0 => None,
            line => Some(line as usize),
        }
    }

    /// The instance of point `index`, if it names one.
    fn instance(&self, index: usize) -> Option<u32> {
        self.instances
            .get(index)
            .copied()
            .filter(|&instance| instance != NO_INSTANCE)
    }
}

/// Points per raw metric name (`latency`, `errors:errors`, ...), with where each
/// name first appeared.
#[derive(Default)]
struct Collector {
    series: BTreeMap<String, Series>,
    /// Every instance named, once.
    instance_names: Vec<String>,
    instance_ids: std::collections::HashMap<String, u32>,
    /// Prometheus JSON: a metric whose series name an instance only sometimes is
    /// pooled without instances instead of refused (its series come from queries,
    /// not from rows someone wrote).
    lenient_instances: bool,
}

impl Collector {
    fn push(&mut self, name: &str, point: RawPoint<'_>) {
        let instance = point.instance.map(|instance| self.instance_id(instance));
        let series = match self.series.get_mut(name) {
            Some(series) => series,
            None => self
                .series
                .entry(name.to_owned())
                .or_insert_with(|| Series {
                    first_line: point.line,
                    ..Series::default()
                }),
        };
        series.samples.push(Sample {
            timestamp: point.timestamp,
            value: point.value,
        });
        series.lines.push(
            point
                .line
                .map_or(0, |line| u32::try_from(line).unwrap_or(u32::MAX)),
        );
        if let Some(instance) = instance {
            let before = series.samples.len() - 1;
            series.instances.resize(before, NO_INSTANCE);
            series.instances.push(instance);
        } else if !series.instances.is_empty() {
            series.instances.push(NO_INSTANCE);
        }
    }

    fn instance_id(&mut self, instance: &str) -> u32 {
        if let Some(&id) = self.instance_ids.get(instance) {
            return id;
        }
        let id = u32::try_from(self.instance_names.len()).unwrap_or(NO_INSTANCE - 1);
        self.instance_names.push(instance.to_owned());
        self.instance_ids.insert(instance.to_owned(), id);
        id
    }

    /// The series of every instance rows name, per raw metric name; an error when a
    /// metric's rows name an instance only sometimes.
    fn instances(&self, file: &str) -> Result<RecordedInstances, RecordedDataError> {
        let mut recorded = RecordedInstances::new();
        for (name, series) in &self.series {
            let named = series
                .instances
                .iter()
                .filter(|&&instance| instance != NO_INSTANCE)
                .count();
            if named == 0 {
                continue;
            }
            if let Some(unnamed) =
                (0..series.samples.len()).find(|&index| series.instance(index).is_none())
            {
                if self.lenient_instances {
                    continue;
                }
                return Err(RecordedDataError {
                    file: file.to_owned(),
                    line: series.line(unnamed),
                    message: format!(
                        "metric {name:?}: this row names no instance while {named} others do; \
                         every row of a metric names its instance, or none does"
                    ),
                });
            }
            let per_instance = recorded.entry(name.clone()).or_default();
            for (sample, &instance) in series.samples.iter().zip(&series.instances) {
                per_instance
                    .entry(self.instance_names[instance as usize].clone())
                    .or_default()
                    .push(*sample);
            }
            for samples in per_instance.values_mut() {
                samples.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
            }
        }
        Ok(recorded)
    }

    /// Pairs `NAME:errors` with `NAME:total` and checks the counts, keeping the
    /// instances rows name (the samples of plain metrics per instance in the
    /// observations too).
    fn finish(self, file: &str) -> Result<(Observations, RecordedInstances), RecordedDataError> {
        let error = |line: Option<usize>, message: String| RecordedDataError {
            file: file.to_owned(),
            line,
            message,
        };
        if self.series.is_empty() {
            return Err(error(None, "the file holds no observations".to_owned()));
        }
        let recorded = self.instances(file)?;
        let mut plain = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut totals = BTreeMap::new();
        for (name, series) in self.series {
            match name.split_once(':') {
                None => {
                    plain.insert(name, series);
                }
                Some((base, "errors")) if !base.is_empty() => {
                    errors.insert(base.to_owned(), series);
                }
                Some((base, "total")) if !base.is_empty() => {
                    totals.insert(base.to_owned(), series);
                }
                Some(_) => {
                    return Err(error(
                        series.first_line,
                        format!(
                            "metric {name:?}: the only suffixes allowed are `:errors` and `:total` \
                             (the two rows of a proportion metric)"
                        ),
                    ));
                }
            }
        }

        let mut observations = Observations::default();
        for (name, series) in plain {
            if errors.contains_key(&name) || totals.contains_key(&name) {
                return Err(error(
                    series.first_line,
                    format!(
                        "metric {name:?} has both plain rows and `{name}:errors`/`{name}:total` rows; \
                         a metric is either samples or counts"
                    ),
                ));
            }
            let origin = Location {
                file: file.to_owned(),
                line: series.first_line.unwrap_or(1),
            };
            let mut samples = series.samples;
            // Kept for the whole analysis: without the slack of the last doubling.
            samples.shrink_to_fit();
            if let Some(per_instance) = recorded.get(&name) {
                observations.instances.insert(
                    name.clone(),
                    per_instance
                        .iter()
                        .map(|(instance, samples)| InstanceSeries {
                            instance: format!("instance={instance:?}"),
                            samples: samples.clone(),
                        })
                        .collect(),
                );
            }
            observations
                .metrics
                .insert(name, MetricData::Samples { samples, origin });
        }

        for (name, error_series) in errors {
            let errors_line = error_series.first_line;
            let Some(total_series) = totals.remove(&name) else {
                return Err(error(
                    errors_line,
                    format!(
                        "`{name}:errors` has no matching `{name}:total` rows; a proportion metric needs both"
                    ),
                ));
            };
            let data = pair_counts(file, &name, errors_line, &error_series, &total_series)?;
            observations.metrics.insert(name, data);
        }
        if let Some((name, total_series)) = totals.into_iter().next() {
            return Err(error(
                total_series.first_line,
                format!(
                    "`{name}:total` has no matching `{name}:errors` rows; a proportion metric needs both"
                ),
            ));
        }
        Ok((observations, recorded))
    }
}

/// Per timestamp: the timestamp, summed errors, summed total, and the line to blame.
type PairedCounts = (f64, Option<f64>, Option<f64>, Option<usize>);

/// Sums counts per timestamp (several series may report the same instant) and checks
/// that every timestamp has both counts and that errors never exceed the total.
fn pair_counts(
    file: &str,
    name: &str,
    errors_line: Option<usize>,
    error_series: &Series,
    total_series: &Series,
) -> Result<MetricData, RecordedDataError> {
    let error = |line: Option<usize>, message: String| RecordedDataError {
        file: file.to_owned(),
        line,
        message,
    };
    // Millisecond keys: Prometheus timestamps have millisecond resolution.
    let key = |timestamp: f64| (timestamp * 1000.0).round() as i64;
    let mut by_time: BTreeMap<i64, PairedCounts> = BTreeMap::new();
    for (series, is_errors) in [(error_series, true), (total_series, false)] {
        for (index, sample) in series.samples.iter().enumerate() {
            let point = RawPoint {
                timestamp: sample.timestamp,
                value: sample.value,
                line: series.line(index),
                instance: None,
            };
            if point.value < 0.0 {
                return Err(error(
                    point.line,
                    format!(
                        "`{name}:{}` at timestamp {}: counts cannot be negative, got {}",
                        if is_errors { "errors" } else { "total" },
                        point.timestamp,
                        point.value
                    ),
                ));
            }
            let entry = by_time.entry(key(point.timestamp)).or_insert((
                point.timestamp,
                None,
                None,
                point.line,
            ));
            let slot = if is_errors {
                &mut entry.1
            } else {
                &mut entry.2
            };
            *slot = Some(slot.unwrap_or(0.0) + point.value);
            if is_errors {
                entry.3 = point.line.or(entry.3);
            }
        }
    }
    let mut errors = Vec::with_capacity(by_time.len());
    let mut total = Vec::with_capacity(by_time.len());
    for (timestamp, error_count, total_count, line) in by_time.into_values() {
        let (Some(error_count), Some(total_count)) = (error_count, total_count) else {
            let missing = if error_count.is_none() {
                "errors"
            } else {
                "total"
            };
            return Err(error(
                line,
                format!(
                    "`{name}` at timestamp {timestamp}: there is no `{name}:{missing}` value for this \
                     timestamp (write NaN for a missing point)"
                ),
            ));
        };
        // A relative tolerance absorbs the rounding of `increase()` results.
        if error_count > total_count * (1.0 + 1e-9) + 1e-9 {
            return Err(error(
                line,
                format!(
                    "`{name}` at timestamp {timestamp}: errors ({error_count}) exceed total ({total_count})"
                ),
            ));
        }
        errors.push(Sample {
            timestamp,
            value: error_count,
        });
        total.push(Sample {
            timestamp,
            value: total_count,
        });
    }
    Ok(MetricData::Counts {
        errors,
        total,
        origin: Location {
            file: file.to_owned(),
            line: errors_line.unwrap_or(1),
        },
    })
}

/// Parses a number the way both formats write them; NaN is a missing point.
fn parse_value(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the value is empty; write NaN for a missing point".to_owned());
    }
    match trimmed.parse::<f64>() {
        Ok(value) if value.is_nan() => Ok(f64::NAN),
        Ok(value) if value.is_infinite() => Err(format!(
            "the value {trimmed:?} is not finite; only finite numbers and NaN (missing) are allowed"
        )),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("the value {trimmed:?} is not a number")),
    }
}

fn parse_timestamp(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(timestamp) if timestamp.is_finite() && timestamp >= 0.0 => Ok(timestamp),
        _ => Err(format!(
            "the timestamp {:?} is not a Unix time in seconds (a number at least 0)",
            text.trim()
        )),
    }
}

/// Parses the `metric,timestamp,value` CSV format. `file` is only used in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<Observations, RecordedDataError> {
    parse_csv_with_instances(text, file).map(|(observations, _)| observations)
}

/// [`parse_csv`], with the series of every instance the rows name.
pub fn parse_csv_with_instances(
    text: &str,
    file: &str,
) -> Result<(Observations, RecordedInstances), RecordedDataError> {
    parse_csv_from(text.as_bytes(), file)
}

/// Reads bytes through, noting whether any of them is not ASCII whitespace (a file
/// with none is empty, whatever its length).
struct Sniffed<R> {
    inner: R,
    content: bool,
}

impl<R: std::io::Read> std::io::Read for Sniffed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        if !self.content {
            self.content = buf[..read].iter().any(|byte| !byte.is_ascii_whitespace());
        }
        Ok(read)
    }
}

/// The CSV format read as it streams in, one reused record at a time: no row is
/// kept as text, and only a new metric name or instance is allocated.
fn parse_csv_from(
    input: impl std::io::Read,
    file: &str,
) -> Result<(Observations, RecordedInstances), RecordedDataError> {
    let error = |line: Option<usize>, message: String| RecordedDataError {
        file: file.to_owned(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .buffer_capacity(1 << 16)
        .from_reader(Sniffed {
            inner: input,
            content: false,
        });
    let mut collector = Collector::default();
    let mut first_record = true;
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(csv_error) => {
                let line = csv_error.position().map(|p| p.line() as usize);
                return Err(match csv_error.kind() {
                    csv::ErrorKind::Io(io) => error(None, format!("cannot read the file: {io}")),
                    _ => error(line, format!("malformed CSV: {csv_error}")),
                });
            }
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        let fields = CsvFields::of(&record, line).map_err(|m| error(Some(line), m))?;
        if fields.len() == 1 && fields.get(0).is_some_and(str::is_empty) {
            continue;
        }
        if first_record {
            first_record = false;
            if fields.is_header() {
                if fields.len() == 4 && !fields[3].eq_ignore_ascii_case("instance") {
                    return Err(error(
                        Some(line),
                        format!(
                            "the fourth column of the header must be `instance`, found {:?}",
                            &fields[3]
                        ),
                    ));
                }
                continue;
            }
        }
        if fields.len() != 3 && fields.len() != 4 {
            return Err(error(
                Some(line),
                format!(
                    "expected 3 fields `metric,timestamp,value` (or 4, with `instance`), found {}",
                    fields.len()
                ),
            ));
        }
        let instance = match fields.get(3) {
            Some("") => {
                return Err(error(
                    Some(line),
                    "the instance is empty; name the host or pod, or leave the column out"
                        .to_owned(),
                ));
            }
            other => other,
        };
        let name = &fields[0];
        if name.is_empty() {
            return Err(error(Some(line), "the metric name is empty".to_owned()));
        }
        let timestamp = parse_timestamp(&fields[1]).map_err(|m| error(Some(line), m))?;
        let value = parse_value(&fields[2]).map_err(|m| error(Some(line), m))?;
        collector.push(
            name,
            RawPoint {
                timestamp,
                value,
                line: Some(line),
                instance,
            },
        );
    }
    if !reader.get_ref().content {
        return Err(error(None, "the file is empty".to_owned()));
    }
    collector.finish(file)
}

/// The fields of one CSV row as text (at most the four the format has; more only
/// count), without leading or trailing ASCII whitespace, checked to be UTF-8. (The
/// fields are trimmed here, as slices: the CSV reader's own trimming copies every
/// record.)
struct CsvFields<'a> {
    fields: [&'a str; 4],
    len: usize,
}

impl<'a> CsvFields<'a> {
    fn of(record: &'a csv::ByteRecord, line: usize) -> Result<Self, String> {
        let mut fields = [""; 4];
        for (index, field) in record.iter().take(4).enumerate() {
            fields[index] = std::str::from_utf8(field.trim_ascii()).map_err(|utf8| {
                format!(
                    "malformed CSV: field {} of line {line} is not UTF-8 ({utf8})",
                    index + 1
                )
            })?;
        }
        Ok(Self {
            fields,
            len: record.len(),
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Option<&'a str> {
        (index < self.len.min(4)).then(|| self.fields[index])
    }

    /// `metric,timestamp,value[,instance]`.
    fn is_header(&self) -> bool {
        (self.len == 3 || self.len == 4)
            && self.fields[0].eq_ignore_ascii_case("metric")
            && self.fields[1].eq_ignore_ascii_case("timestamp")
    }
}

impl std::ops::Index<usize> for CsvFields<'_> {
    type Output = str;

    fn index(&self, index: usize) -> &str {
        self.fields[index]
    }
}

/// A Prometheus API response (`query_range` or `query`).
#[derive(Deserialize)]
struct PrometheusResponse {
    status: String,
    data: Option<PrometheusData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum PrometheusData {
    Matrix(Vec<MatrixSeries>),
    Vector(Vec<VectorSample>),
    Scalar(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<PrometheusPoint>,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: PrometheusPoint,
}

/// `[timestamp, "value"]`, validated while parsing so serde reports the line.
struct PrometheusPoint {
    timestamp: f64,
    value: f64,
}

impl<'de> Deserialize<'de> for PrometheusPoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (timestamp, value): (f64, String) = Deserialize::deserialize(deserializer)?;
        if !(timestamp.is_finite() && timestamp >= 0.0) {
            return Err(de::Error::custom(format!(
                "the timestamp {timestamp} is not a Unix time in seconds"
            )));
        }
        let value = parse_value(&value).map_err(de::Error::custom)?;
        Ok(PrometheusPoint { timestamp, value })
    }
}

/// Either one response or an object of responses keyed by metric name.
#[derive(Deserialize)]
#[serde(untagged)]
enum PrometheusDocument {
    Single(PrometheusResponse),
    Keyed(BTreeMap<String, PrometheusResponse>),
}

/// Parses Prometheus API JSON. `file` is only used in errors.
pub fn parse_prometheus_json(text: &str, file: &str) -> Result<Observations, RecordedDataError> {
    parse_prometheus_json_with_instances(text, file).map(|(observations, _)| observations)
}

/// [`parse_prometheus_json`], with the series of every instance: a series labelled
/// `instance` (or, without it, `pod`) is that instance's, when every series of its
/// metric is labelled so; otherwise the metric is pooled as before.
pub fn parse_prometheus_json_with_instances(
    text: &str,
    file: &str,
) -> Result<(Observations, RecordedInstances), RecordedDataError> {
    let error = |line: Option<usize>, message: String| RecordedDataError {
        file: file.to_owned(),
        line,
        message,
    };
    if text.trim().is_empty() {
        return Err(error(None, "the file is empty".to_owned()));
    }
    // `untagged` would hide serde's line and column, so try the two shapes one by
    // one and report the error of the shape the document claims to be.
    let looks_single = serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| error(Some(e.line()), format!("malformed JSON: {e}")))?
        .get("status")
        .is_some();
    let document = if looks_single {
        serde_json::from_str(text).map(PrometheusDocument::Single)
    } else {
        serde_json::from_str(text).map(PrometheusDocument::Keyed)
    }
    .map_err(|e| {
        error(
            Some(e.line()),
            format!("not a Prometheus API response: {e}"),
        )
    })?;

    let mut collector = Collector {
        lenient_instances: true,
        ..Collector::default()
    };
    let mut add_response = |key: Option<&str>, response: PrometheusResponse| {
        let context = key.map_or_else(String::new, |k| format!("{k:?}: "));
        if response.status != "success" {
            return Err(error(
                None,
                format!(
                    "{context}the response has status {:?} ({}: {})",
                    response.status,
                    response.error_type.unwrap_or_default(),
                    response.error.unwrap_or_default()
                ),
            ));
        }
        let series: Vec<(BTreeMap<String, String>, Vec<PrometheusPoint>)> = match response.data {
            Some(PrometheusData::Matrix(series)) => {
                series.into_iter().map(|s| (s.metric, s.values)).collect()
            }
            Some(PrometheusData::Vector(samples)) => samples
                .into_iter()
                .map(|s| (s.metric, vec![s.value]))
                .collect(),
            Some(_) | None => {
                return Err(error(
                    None,
                    format!("{context}expected a \"matrix\" or \"vector\" result"),
                ));
            }
        };
        for (index, (labels, points)) in series.into_iter().enumerate() {
            let name = match (key, labels.get("__name__")) {
                (Some(key), _) => key.to_owned(),
                (None, Some(name)) => name.clone(),
                (None, None) => {
                    return Err(error(
                        None,
                        format!(
                            "series {} has no `__name__` label, so its metric is unknown; wrap responses \
                             in an object keyed by metric name: {{\"latency_p95\": {{\"status\": ...}}}}",
                            index + 1
                        ),
                    ));
                }
            };
            for point in points {
                collector.push(
                    &name,
                    RawPoint {
                        timestamp: point.timestamp,
                        value: point.value,
                        line: None,
                        instance: labels
                            .get("instance")
                            .or_else(|| labels.get("pod"))
                            .map(String::as_str),
                    },
                );
            }
        }
        Ok(())
    };
    match document {
        PrometheusDocument::Single(response) => add_response(None, response)?,
        PrometheusDocument::Keyed(responses) => {
            for (key, response) in responses {
                add_response(Some(&key), response)?;
            }
        }
    }
    collector.finish(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(observations: &Observations, name: &str) -> Vec<f64> {
        match &observations.metrics[name] {
            MetricData::Samples { samples, .. } => samples.iter().map(|s| s.value).collect(),
            MetricData::Counts { .. } => panic!("{name} holds counts"),
        }
    }

    #[test]
    fn csv_rows_may_name_their_instance_and_samples_are_kept_per_instance() {
        let text = "metric,timestamp,value,instance\n\
                    latency,1,0.10,web-1\nlatency,1,0.12,web-2\nlatency,2,0.11,web-1\n\
                    latency,2,NaN,web-2\n\
                    errors:errors,1,1,web-1\nerrors:total,1,100,web-1\n\
                    errors:errors,1,2,web-2\nerrors:total,1,50,web-2\n";
        let (observations, recorded) = parse_csv_with_instances(text, "i.csv").unwrap();
        // Pooled as before: four latency points, counts summed per timestamp.
        assert_eq!(observations.points("latency"), 3);
        match &observations.metrics["errors"] {
            MetricData::Counts { errors, total, .. } => {
                assert_eq!((errors[0].value, total[0].value), (3.0, 150.0));
            }
            other => panic!("{other:?}"),
        }
        let instances = &observations.instances["latency"];
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].instance, "instance=\"web-1\"");
        assert_eq!(instances[1].samples.len(), 2);
        assert_eq!(observations.instance_count("latency"), Some(2));
        // Every raw name per instance, for replays.
        assert_eq!(recorded["errors:total"]["web-2"][0].value, 50.0);
        assert_eq!(recorded["latency"].len(), 2);
        // Three-field files name none.
        let (plain, none) = parse_csv_with_instances("latency,1,0.1\n", "p.csv").unwrap();
        assert!(none.is_empty() && plain.instances.is_empty());
    }

    #[test]
    fn prometheus_json_series_labelled_by_instance_are_kept_per_instance() {
        let series = |labels: &str, value: &str| {
            format!(r#"{{"metric": {{{labels}}}, "values": [[10, "{value}"], [20, "{value}"]]}}"#)
        };
        let response = |series: Vec<String>| {
            format!(
                r#"{{"status": "success", "data": {{"resultType": "matrix", "result": [{}]}}}}"#,
                series.join(", ")
            )
        };
        let text = format!(
            r#"{{"latency": {}, "cpu": {}}}"#,
            response(vec![
                series(r#""instance": "web-1""#, "0.1"),
                series(r#""instance": "web-2""#, "0.2"),
            ]),
            // One of cpu's series names no instance: pooled as before, no instances.
            response(vec![series(r#""pod": "web-1""#, "0.5"), series("", "0.6")]),
        );
        let (observations, recorded) =
            parse_prometheus_json_with_instances(&text, "i.json").unwrap();
        assert_eq!(observations.points("latency"), 4);
        assert_eq!(observations.instance_count("latency"), Some(2));
        assert_eq!(recorded["latency"]["web-2"][0].value, 0.2);
        assert_eq!(observations.points("cpu"), 4);
        assert!(!observations.instances.contains_key("cpu"));
        assert!(!recorded.contains_key("cpu"));
    }

    #[test]
    fn an_instance_named_only_sometimes_or_empty_or_a_wrong_header_is_an_error() {
        let mixed = parse_csv("latency,1,0.1,web-1\nlatency,2,0.1\n", "m.csv").unwrap_err();
        assert_eq!(mixed.line, Some(2));
        assert!(
            mixed
                .message
                .contains("names no instance while 1 others do"),
            "{mixed}"
        );
        let empty = parse_csv("latency,1,0.1,\n", "e.csv").unwrap_err();
        assert_eq!(empty.line, Some(1));
        assert!(empty.message.contains("the instance is empty"), "{empty}");
        let header =
            parse_csv("metric,timestamp,value,host\nlatency,1,0.1,a\n", "h.csv").unwrap_err();
        assert!(header.message.contains("must be `instance`"), "{header}");
        let five = parse_csv("latency,1,0.1,a,b\n", "f.csv").unwrap_err();
        assert!(
            five.message.contains("(or 4, with `instance`), found 5"),
            "{five}"
        );
    }

    #[test]
    fn csv_with_header_comments_and_counts_is_read() {
        let text = "metric,timestamp,value\n# recorded by hand\nlatency,1,0.1\nlatency,2,NaN\n\
                    errors:errors,1,2\nerrors:total,1,100\nerrors:errors,2,0\nerrors:total,2,90\n";
        let observations = parse_csv(text, "b.csv").unwrap();
        let latency = samples(&observations, "latency");
        assert_eq!(latency[0], 0.1);
        assert!(latency[1].is_nan());
        let MetricData::Counts {
            errors,
            total,
            origin,
        } = &observations.metrics["errors"]
        else {
            panic!("errors should be counts");
        };
        assert_eq!(errors.iter().map(|s| s.value).sum::<f64>(), 2.0);
        assert_eq!(total.iter().map(|s| s.value).sum::<f64>(), 190.0);
        assert_eq!(origin.line, 5);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let cases = [
            ("latency,1,abc\n", 1, "not a number"),
            ("latency,1,0.1\nlatency,2,inf\n", 2, "not finite"),
            ("latency,1\n", 1, "3 fields"),
            ("latency,x,1\n", 1, "timestamp"),
            ("e:errors,1,-1\ne:total,1,5\n", 1, "negative"),
            ("e:errors,1,6\ne:total,1,5\n", 1, "exceed"),
            ("e:errors,1,1\n", 1, "no matching"),
            (
                "e:total,1,1\ne:total,2,1\ne:errors,1,0\n",
                2,
                "no `e:errors` value",
            ),
            ("latency:p95,1,1\n", 1, "suffixes"),
            ("latency,1,\n", 1, "empty"),
        ];
        for (text, line, needle) in cases {
            let error = parse_csv(text, "data.csv").unwrap_err();
            assert_eq!(error.line, Some(line), "{text:?}: {error}");
            assert!(error.message.contains(needle), "{text:?}: {error}");
            assert!(error.to_string().starts_with("data.csv:"), "{error}");
        }
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(
            parse_csv("", "e.csv")
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(parse_csv("metric,timestamp,value\n", "e.csv").is_err());
        assert!(parse_prometheus_json(" ", "e.json").is_err());
    }

    #[test]
    fn a_prometheus_range_response_with_names_is_read() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"latency","pod":"a"},"values":[[1,"0.1"],[2,"NaN"]]},
            {"metric":{"__name__":"latency","pod":"b"},"values":[[1,"0.3"]]}]}}"#;
        let observations = parse_prometheus_json(text, "p.json").unwrap();
        assert_eq!(samples(&observations, "latency").len(), 3);
    }

    #[test]
    fn a_keyed_object_of_responses_is_read_and_counts_are_summed_per_timestamp() {
        let response = |values: &str| {
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[
                {{"metric":{{"pod":"a"}},"values":{values}}},
                {{"metric":{{"pod":"b"}},"values":{values}}}]}}}}"#
            )
        };
        let text = format!(
            r#"{{"req:errors": {}, "req:total": {}}}"#,
            response(r#"[[10,"1"],[20,"0"]]"#),
            response(r#"[[10,"50"],[20,"60"]]"#)
        );
        let observations = parse_prometheus_json(&text, "p.json").unwrap();
        let MetricData::Counts { errors, total, .. } = &observations.metrics["req"] else {
            panic!("req should be counts");
        };
        assert_eq!(errors[0].value, 2.0);
        assert_eq!(total[1].value, 120.0);
    }

    #[test]
    fn prometheus_json_errors_are_clear() {
        let bad_value = "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[\n{\"metric\":{\"__name__\":\"x\"},\"values\":[[1,\"+Inf\"]]}]}}";
        let error = parse_prometheus_json(bad_value, "p.json").unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
        assert!(error.message.contains("not finite"), "{error}");

        let unnamed = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        assert!(
            parse_prometheus_json(unnamed, "p.json")
                .unwrap_err()
                .message
                .contains("__name__")
        );
        let failed = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            parse_prometheus_json(failed, "p.json")
                .unwrap_err()
                .message
                .contains("bad_data")
        );
        let broken = "{\"status\":\n";
        assert!(
            parse_prometheus_json(broken, "p.json")
                .unwrap_err()
                .message
                .contains("malformed JSON")
        );
    }
}
