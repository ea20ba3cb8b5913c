//! The one integration-test binary. Every test here runs the real `canary` binary or
//! the library's public API against the files in `fixtures/` and `analysis-profiles/`,
//! or against a real Prometheus that `prometheus_harness` starts (installed by
//! `scripts/test.sh`); `store` runs the store contract on SQLite and on the machine's
//! PostgreSQL; `worker` runs analyses through workers on those stores; `api` serves the
//! HTTP API in process and drives `canary submit` and `canary wait` against it; `unleash`
//! moves flags in a real unleash-server that `unleash_harness` starts; `live_bed` runs
//! the `canary-demo-service` binary scraped live by a real Prometheus; `ownership` checks
//! one owner per flag, adopting a flag and holding on a flag changed by someone else;
//! `two_instances` is issue 13's target run (two `canary serve` on one PostgreSQL and one
//! flag file, SIGKILL mid-way).

mod analyze;
mod api;
mod argo_template;
mod bad_input;
mod bounded;
mod browser;
mod cloudwatch;
mod console;
mod datadog;
mod flagd;
mod flagger;
mod helpers;
mod import;
mod kayenta_api;
mod live_bed;
mod live_rollouts;
mod metric_stores;
mod notify;
mod ownership;
mod profiles;
mod prometheus_harness;
mod prometheus_source;
mod records;
mod report;
mod retention;
mod rollout_prometheus;
mod rollouts;
mod run_cli;
mod serve;
mod simulate;
mod store;
mod store_harness;
#[cfg(feature = "rustls")]
mod tls;
mod two_instances;
mod unleash;
mod unleash_harness;
mod webhook;
mod worker;
