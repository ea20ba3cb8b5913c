//! canary: automated canary analysis.
//!
//! # Layout
//! - [`domain`]: the vocabulary — analysis profiles, recorded observations, verdicts —
//!   with validating constructors. No I/O.
//! - [`format`](mod@format): the number, percentage, count and duration formatting every reason,
//!   report and log line uses. Pure.
//! - [`stats`]: pure numerics — Mann-Whitney U, Hodges-Lehmann, proportion tests,
//!   quantiles, multiple-testing corrections — checked against scipy and R.
//! - [`import`]: pure — other tools' configurations (Kayenta canary configs) as
//!   profiles.
//! - [`judge`]: pure — classifies each metric and decides promote / hold / rollback,
//!   keeping every number behind the decision.
//! - [`sources`]: where observations come from: the recorded-file readers (CSV and
//!   Prometheus API JSON), the live `MetricSource` trait with its Prometheus
//!   implementation, query templates and baseline/canary series pairing.
//! - [`actuators`]: the `Actuator` trait, the only way the engine changes feature flags.
//! - [`notify`]: tells people on call about rollbacks, holds and promotions (Slack,
//!   signed JSON), rate-limited; never fails the caller.
//! - [`report`]: renders a judgement as a terminal table or JSON.
//! - [`scheduler`]: the rollout runner — fetch → judge → decide → actuate → record for
//!   each analysis interval of a staged rollout; the only caller of actuators — and the
//!   workers that run stored analyses one look at a time under leases.
//! - [`store`]: durable analyses behind the `Store` trait — looks, actuations with
//!   idempotency keys, leases for workers, the audit log — in SQLite or PostgreSQL.
//! - [`api`]: the HTTP API of `canary serve` (axum): submit, inspect, list and long-poll
//!   analyses, audited manual actions, health, metrics, OpenAPI, the Argo Rollouts
//!   verdict; and the typed client `canary submit` / `canary wait` use. Writes requests
//!   to the store; never runs an analysis or calls an actuator.
//! - [`app`]: the composition root: wires files, sources, judge and report for each
//!   command. The only module that names concrete sources.
//! - [`config`]: settings for `canary serve` — a TOML file and `CANARY_*` variables;
//!   named metric sources and actuators.
//! - [`cli`]: the command-line types (clap).
//! - [`signing`]: the HMAC-SHA256 `X-Canary-Signature` that webhook actuations and
//!   notifications carry: `sign`, and `verify` for receivers.
//! - [`telemetry`]: logging set-up and the engine's own Prometheus metrics.
//! - [`tls`]: outgoing HTTPS — the client builder every outgoing client starts from,
//!   and the start-up refusal of `https://` URLs in a build without TLS.
//!
//! Dependencies point inward: `judge` and `stats` know nothing of files, sources or
//! output formats.
#![deny(missing_docs)]

pub mod actuators;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod format;
pub mod import;
pub mod judge;
pub mod notify;
pub mod report;
pub mod scheduler;
pub mod signing;
pub mod simulate;
pub mod sources;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tls;
