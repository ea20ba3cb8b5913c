//! Faults injected into one track through `POST /fault`: what the body may say, how it
//! is checked, and how an active fault changes a request. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalogue::Gauge;
use crate::traffic::{RequestModel, Track};

/// The body of `POST /fault`. Every field is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The track that misbehaves (default `canary`).
    #[serde(default = "default_track")]
    pub track: Track,
    /// An absolute error rate (0–1) replacing the service's `--error-rate`.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Multiplies the error rate (the absolute one when given), capped at 1.
    #[serde(default)]
    pub error_factor: Option<f64>,
    /// Multiplies the median latency (and the CPU each request costs).
    #[serde(default = "one")]
    pub latency_factor: f64,
    /// Multiplies the latency's log-scale sigma, median unchanged: a tail-only slowdown.
    #[serde(default = "one")]
    pub tail_spread: f64,
    /// An absolute probability (0–1) that a business event fails (a migration fails, a
    /// fund setup fails, a started wizard is not completed), replacing the service's
    /// `--business-failure-rate`.
    #[serde(default)]
    pub business_failure_rate: Option<f64>,
    /// Gauges the track's pods report instead of their healthy level, e.g.
    /// `{"reserve_ratio": 0.95, "resource_utilization_ratio": 0.9, "probe_success": 0}`.
    #[serde(default)]
    pub gauges: BTreeMap<Gauge, f64>,
    /// Seconds from now until the fault starts.
    #[serde(default)]
    pub start_delay_seconds: f64,
    /// How long it lasts; `null` (the default) for ever.
    #[serde(default)]
    pub duration_seconds: Option<f64>,
}

fn default_track() -> Track {
    Track::Canary
}

fn one() -> f64 {
    1.0
}

/// A rejected `POST /fault` body: the field at fault (when one is) and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultError {
    /// The field, e.g. `latency_factor`; `null` when the body as a whole is wrong.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl FaultSpec {
    /// Parses and checks a request body (an empty body is the default fault, which
    /// changes nothing).
    pub fn parse(body: &[u8]) -> Result<Self, FaultError> {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        let whole = |message: String| FaultError {
            field: None,
            message,
        };
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| whole(format!("the body is not JSON: {error}")))?;
        if !value.is_object() {
            return Err(whole("the body must be a JSON object".to_owned()));
        }
        let spec: FaultSpec = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            let message = error.inner().to_string();
            // An unknown field is reported at the object; name the field itself.
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
                .or_else(|| (path != ".").then_some(path));
            FaultError { field, message }
        })?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), FaultError> {
        let bad = |field: &str, message: &str| {
            Err(FaultError {
                field: Some(field.to_owned()),
                message: message.to_owned(),
            })
        };
        if let Some(rate) = self.error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return bad("error_rate", "must be a probability between 0 and 1");
        }
        if let Some(factor) = self.error_factor
            && factor < 0.0
        {
            return bad("error_factor", "must not be negative");
        }
        if self.latency_factor <= 0.0 {
            return bad("latency_factor", "must be positive");
        }
        if self.tail_spread < 0.0 {
            return bad("tail_spread", "must not be negative");
        }
        if let Some(rate) = self.business_failure_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return bad(
                "business_failure_rate",
                "must be a probability between 0 and 1",
            );
        }
        for (gauge, value) in &self.gauges {
            if !gauge.accepts(*value) {
                return bad(&format!("gauges.{}", gauge.name()), gauge.allowed());
            }
        }
        if self.start_delay_seconds < 0.0 {
            return bad("start_delay_seconds", "must not be negative");
        }
        if let Some(duration) = self.duration_seconds
            && duration < 0.0
        {
            return bad("duration_seconds", "must not be negative");
        }
        Ok(())
    }

    /// The request model of the faulty track while the fault is active.
    pub fn apply(&self, normal: RequestModel) -> RequestModel {
        let error_rate = (self.error_rate.unwrap_or(normal.error_rate)
            * self.error_factor.unwrap_or(1.0))
        .clamp(0.0, 1.0);
        RequestModel {
            median_latency: normal.median_latency * self.latency_factor,
            latency_sigma: normal.latency_sigma * self.tail_spread,
            error_rate,
            cpu_factor: normal.cpu_factor * self.latency_factor,
            business_failure_rate: self
                .business_failure_rate
                .unwrap_or(normal.business_failure_rate),
        }
    }
}

/// A fault accepted at some time: its spec and when it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// What the request asked for.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// When it starts, Unix seconds.
    pub onset_at: f64,
}

impl Fault {
    /// A fault asked for at `now` (Unix seconds).
    pub fn new(spec: FaultSpec, now: f64) -> Self {
        let onset_at = now + spec.start_delay_seconds;
        Self { spec, onset_at }
    }

    /// Whether it changes requests at `now`.
    pub fn is_active(&self, now: f64) -> bool {
        now >= self.onset_at
            && self
                .spec
                .duration_seconds
                .is_none_or(|duration| now < self.onset_at + duration)
    }

    /// The model of `track`'s requests at `now`: changed when the fault is active on
    /// that track, `normal` otherwise.
    pub fn model_for(&self, track: Track, normal: RequestModel, now: f64) -> RequestModel {
        if track == self.spec.track && self.is_active(now) {
            self.spec.apply(normal)
        } else {
            normal
        }
    }

    /// The level `gauge` of `track`'s pods has at `now` when the fault sets it.
    pub fn gauge_for(&self, track: Track, gauge: Gauge, now: f64) -> Option<f64> {
        (track == self.spec.track && self.is_active(now))
            .then(|| self.spec.gauges.get(&gauge).copied())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: RequestModel = RequestModel {
        median_latency: 0.12,
        latency_sigma: 0.4,
        error_rate: 0.002,
        cpu_factor: 1.0,
        business_failure_rate: 0.01,
    };

    #[test]
    fn an_empty_body_is_a_fault_on_the_canary_that_changes_nothing() {
        let spec = FaultSpec::parse(b"").unwrap();
        assert_eq!(spec.track, Track::Canary);
        assert_eq!(spec.apply(NORMAL), NORMAL);
    }

    #[test]
    fn factors_scale_the_latency_errors_and_cpu() {
        let spec =
            FaultSpec::parse(br#"{"latency_factor": 1.5, "error_factor": 10, "tail_spread": 2}"#)
                .unwrap();
        let faulty = spec.apply(NORMAL);
        assert!((faulty.median_latency - 0.18).abs() < 1e-12);
        assert!((faulty.latency_sigma - 0.8).abs() < 1e-12);
        assert!((faulty.error_rate - 0.02).abs() < 1e-12);
        assert!((faulty.cpu_factor - 1.5).abs() < 1e-12);
    }

    #[test]
    fn an_absolute_error_rate_replaces_the_normal_one_and_rates_cap_at_one() {
        let absolute = FaultSpec::parse(br#"{"error_rate": 0.05}"#).unwrap();
        assert_eq!(absolute.apply(NORMAL).error_rate, 0.05);
        let huge = FaultSpec::parse(br#"{"error_rate": 0.5, "error_factor": 4}"#).unwrap();
        assert_eq!(huge.apply(NORMAL).error_rate, 1.0);
    }

    #[test]
    fn business_failures_and_gauges_are_set_on_the_faulty_track_only() {
        let spec = FaultSpec::parse(
            br#"{"business_failure_rate": 0.2, "gauges": {"reserve_ratio": 0.95, "probe_success": 0}}"#,
        )
        .unwrap();
        assert_eq!(spec.apply(NORMAL).business_failure_rate, 0.2);
        let fault = Fault::new(spec, 10.0);
        assert_eq!(
            fault.gauge_for(Track::Canary, Gauge::ReserveRatio, 10.0),
            Some(0.95)
        );
        assert_eq!(
            fault.gauge_for(Track::Canary, Gauge::ProbeSuccess, 10.0),
            Some(0.0)
        );
        assert_eq!(
            fault.gauge_for(Track::Canary, Gauge::ResourceUtilizationRatio, 10.0),
            None
        );
        assert_eq!(
            fault.gauge_for(Track::Baseline, Gauge::ReserveRatio, 10.0),
            None
        );
        assert_eq!(
            fault.gauge_for(Track::Canary, Gauge::ReserveRatio, 9.0),
            None
        );
    }

    #[test]
    fn a_fault_acts_only_on_its_track_and_within_its_window() {
        let spec = FaultSpec::parse(
            br#"{"track": "baseline", "error_factor": 10, "start_delay_seconds": 5, "duration_seconds": 10}"#,
        )
        .unwrap();
        let fault = Fault::new(spec, 1000.0);
        assert_eq!(fault.onset_at, 1005.0);
        let errors = |track, now| fault.model_for(track, NORMAL, now).error_rate;
        assert_eq!(errors(Track::Baseline, 1004.9), 0.002);
        assert!((errors(Track::Baseline, 1005.0) - 0.02).abs() < 1e-12);
        assert_eq!(errors(Track::Canary, 1006.0), 0.002);
        assert_eq!(errors(Track::Baseline, 1015.0), 0.002);
    }

    #[test]
    fn bad_input_names_the_field() {
        let field = |body: &[u8]| FaultSpec::parse(body).unwrap_err().field;
        assert_eq!(
            field(br#"{"latency_factor": "slow"}"#).as_deref(),
            Some("latency_factor")
        );
        assert_eq!(
            field(br#"{"error_factor": -1}"#).as_deref(),
            Some("error_factor")
        );
        assert_eq!(field(br#"{"track": "blue"}"#).as_deref(), Some("track"));
        assert_eq!(
            field(br#"{"error_rate": 2}"#).as_deref(),
            Some("error_rate")
        );
        assert_eq!(
            field(br#"{"latency_factr": 2}"#).as_deref(),
            Some("latency_factr")
        );
        assert_eq!(
            field(br#"{"tail_spread": -0.5}"#).as_deref(),
            Some("tail_spread")
        );
        assert_eq!(
            field(br#"{"business_failure_rate": 1.5}"#).as_deref(),
            Some("business_failure_rate")
        );
        assert_eq!(
            field(br#"{"gauges": {"probe_success": 0.5}}"#).as_deref(),
            Some("gauges.probe_success")
        );
        assert_eq!(
            field(br#"{"gauges": {"reserve_ratio": -1}}"#).as_deref(),
            Some("gauges.reserve_ratio")
        );
        assert!(
            field(br#"{"gauges": {"temperature": 1}}"#)
                .is_some_and(|field| field.starts_with("gauges"))
        );
        assert_eq!(field(b"[1, 2]"), None);
        assert_eq!(field(b"not json"), None);
    }
}
