//! Where observations come from.
//!
//! Today: [`recorded`], readers for recorded baseline and canary files (CSV and
//! Prometheus API JSON). Live metric sources (Prometheus, replay) will sit beside it
//! behind a `MetricSource` trait; only `app` names a concrete source.

pub mod recorded;
