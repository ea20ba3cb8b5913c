//! Datadog's metrics query API v1, against a local server that answers as Datadog's
//! API reference documents it (`GET /api/v1/validate`, `GET /api/v1/query`: the
//! `series` with `tag_set`, `scope` and `pointlist` of `[milliseconds, value|null]`;
//! errors as `{"errors": [...]}`; 403 for a bad key; 429 with Datadog's
//! `X-RateLimit-*` headers). A real account cannot be reached from here.
//!
//! The server models the one query shape the profile uses,
//! `AGG:METRIC{TAG:VALUE,...} by {TAG}.rollup(last, N)` (the rollup optional), over the same recordings the
//! other stores are loaded with (last sample of each epoch-aligned N-second bucket, as
//! Datadog's rollup does), so `canary run` can be held to the same verdicts. It models
//! nothing else of Datadog: no other aggregation, no interpolation, no metric types.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use canary::sources::datadog::DatadogConfig;
use canary::sources::{MetricSource, RangeRequest, Side, SourceError};
use serde_json::{Value, json};

use crate::helpers::root;
use crate::metric_stores::{assert_rollout_verdict, run_rollout_summary};

const API_KEY: &str = "dd-api-key-for-tests";
const APP_KEY: &str = "dd-application-key-for-tests";

/// One recorded sample: name, labels, value, Unix seconds.
type Recorded = (String, BTreeMap<String, String>, f64, i64);

fn recorded(name: &str) -> Vec<Recorded> {
    let text = std::fs::read_to_string(root().join("fixtures/prometheus").join(name)).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, rest) = line.rsplit_once('}').unwrap();
            let (metric, labels) = series.split_once('{').unwrap();
            let labels = labels
                .split(',')
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            let mut fields = rest.split_whitespace();
            (
                metric.to_owned(),
                labels,
                fields.next().unwrap().parse().unwrap(),
                fields.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

struct Fake {
    data: Vec<Recorded>,
    /// Requests answered 429 before the next one is served.
    throttle_next: AtomicUsize,
    queries: AtomicUsize,
}

fn errors(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "errors": [message] }))).into_response()
}

fn keys_refused(headers: &HeaderMap, need_application_key: bool) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if header("dd-api-key") != Some(API_KEY)
        || (need_application_key && header("dd-application-key") != Some(APP_KEY))
    {
        return Some(errors(StatusCode::FORBIDDEN, "Forbidden"));
    }
    None
}

/// `AGG:METRIC{FILTERS} by {GROUP}.rollup(last, N)` → (metric, filters, group, N).
fn parse_query(query: &str) -> Option<(String, Vec<String>, Option<String>, i64)> {
    let (_, rest) = query.split_once(':')?;
    let (metric, rest) = rest.split_once('{')?;
    let (filters, rest) = rest.split_once('}')?;
    let filters = filters
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && *tag != "*")
        .map(str::to_owned)
        .collect();
    let (group, rest) = match rest.trim().strip_prefix("by {") {
        Some(after) => {
            let (group, rest) = after.split_once('}')?;
            (Some(group.trim().to_owned()), rest)
        }
        None => (None, rest),
    };
    // Without a rollup Datadog picks the interval from the window; 60 s here.
    let seconds = match rest.trim() {
        "" => 60,
        rollup => rollup
            .strip_prefix(".rollup(last,")?
            .trim()
            .strip_suffix(')')?
            .trim()
            .parse()
            .ok()?,
    };
    Some((metric.trim().to_owned(), filters, group, seconds))
}

fn matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    let (negated, tag) = match filter.strip_prefix('!') {
        Some(tag) => (true, tag),
        None => (false, filter),
    };
    let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
    (labels.get(key).map(String::as_str) == Some(value)) != negated
}

async fn validate(headers: HeaderMap) -> Response {
    if let Some(refused) = keys_refused(&headers, false) {
        return refused;
    }
    axum::Json(json!({ "valid": true })).into_response()
}

async fn query(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = keys_refused(&headers, true) {
        return refused;
    }
    fake.queries.fetch_add(1, Ordering::SeqCst);
    if fake
        .throttle_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        let mut response = errors(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        for (name, value) in [
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-period", "10"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1"),
            ("x-ratelimit-name", "query_timeseries"),
        ] {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        return response;
    }
    let (Some(text), Some(from), Some(to)) = (
        params.get("query"),
        params.get("from").and_then(|v| v.parse::<i64>().ok()),
        params.get("to").and_then(|v| v.parse::<i64>().ok()),
    ) else {
        return errors(StatusCode::BAD_REQUEST, "from, to and query are required");
    };
    let Some((metric, filters, group, rollup)) = parse_query(text) else {
        return errors(
            StatusCode::BAD_REQUEST,
            &format!("Error parsing query: unable to parse {text}: Rule 'scope_expr' didn't match"),
        );
    };
    let mut groups: BTreeMap<Option<String>, BTreeMap<i64, f64>> = BTreeMap::new();
    for (name, labels, value, timestamp) in &fake.data {
        if *name != metric
            || *timestamp <= from
            || *timestamp > to
            || !filters.iter().all(|filter| matches(labels, filter))
        {
            continue;
        }
        let key = group
            .as_ref()
            .map(|tag| labels.get(tag).cloned().unwrap_or_default());
        // The last sample of each epoch-aligned bucket.
        groups
            .entry(key)
            .or_default()
            .insert(timestamp - timestamp.rem_euclid(rollup), *value);
    }
    let series: Vec<Value> = groups
        .into_iter()
        .map(|(key, points)| {
            let tag_set: Vec<String> = match (&group, &key) {
                (Some(tag), Some(value)) => vec![format!("{tag}:{value}")],
                _ => Vec::new(),
            };
            let mut scope: Vec<String> = filters.clone();
            scope.extend(tag_set.iter().cloned());
            let pointlist: Vec<Value> = points
                .iter()
                .map(|(bucket, value)| json!([*bucket as f64 * 1000.0, value]))
                .collect();
            json!({
                "aggr": "avg",
                "display_name": metric,
                "end": to * 1000,
                "expression": text,
                "interval": rollup,
                "length": pointlist.len(),
                "metric": metric,
                "pointlist": pointlist,
                "query_index": 0,
                "scope": if scope.is_empty() { "*".to_owned() } else { scope.join(",") },
                "start": from * 1000,
                "tag_set": tag_set,
                "unit": null
            })
        })
        .collect();
    axum::Json(json!({
        "status": "ok",
        "res_type": "time_series",
        "resp_version": 1,
        "query": text,
        "from_date": from * 1000,
        "to_date": to * 1000,
        "series": series,
        "message": "",
        "group_by": group.into_iter().collect::<Vec<_>>()
    }))
    .into_response()
}

/// Starts the fake Datadog over `recording`; its base URL and its state.
async fn fake_datadog(recording: &str) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        data: recorded(recording),
        throttle_next: AtomicUsize::new(0),
        queries: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/api/v1/validate", axum::routing::get(validate))
        .route("/api/v1/query", axum::routing::get(query))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), fake)
}

fn keys(name: &str) -> Option<String> {
    match name {
        "DD_API_KEY" => Some(API_KEY.to_owned()),
        "DD_APP_KEY" => Some(APP_KEY.to_owned()),
        _ => None,
    }
}

fn source(url: &str, variable: impl Fn(&str) -> Option<String>) -> impl MetricSource {
    let mut config = DatadogConfig::new();
    config.url = Some(url.to_owned());
    config.build_with(variable).unwrap()
}

fn latency_request(query: &str) -> RangeRequest {
    RangeRequest {
        metric: "latency".into(),
        side: Side::Canary,
        query: query.into(),
        start: 1_700_001_200.0,
        end: 1_700_001_800.0,
        step: 15.0,
        raw_samples: false,
    }
}

const LATENCY: &str = "avg:web_request_latency_seconds{track:canary} by {route}.rollup(last, 15)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_run_on_datadog_reaches_the_verdicts_of_the_other_stores() {
    for (recording, verdict) in [
        ("rollout-healthy.om", "promote"),
        ("rollout-regression.om", "rollback"),
    ] {
        let (url, _fake) = fake_datadog(recording).await;
        let source = format!("datadog={url}");
        let summary = tokio::task::block_in_place(|| {
            run_rollout_summary(
                &source,
                0,
                &[("DD_API_KEY", API_KEY), ("DD_APP_KEY", APP_KEY)],
            )
        });
        assert_rollout_verdict(&summary, recording, verdict);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_answers_become_labelled_series_and_the_preflight_checks_both_keys() {
    let (url, _fake) = fake_datadog("rollout-healthy.om").await;
    let datadog = source(&url, keys);
    datadog.healthcheck().await.unwrap();
    assert_eq!(
        datadog.render_scope(r#"track="canary""#).unwrap(),
        "track:canary"
    );
    let series = datadog.fetch(&latency_request(LATENCY)).await.unwrap();
    let routes: Vec<&str> = series.iter().map(|s| s.labels["route"].as_str()).collect();
    assert_eq!(routes, ["/api", "/checkout"]);
    assert_eq!(series[0].samples.len(), 40);

    // A wrong application key: the preflight's query is refused (403), never retried.
    let wrong_application_key = source(&url, |name| match name {
        "DD_APP_KEY" => Some("wrong".to_owned()),
        other => keys(other),
    });
    let error = wrong_application_key.healthcheck().await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");
    assert!(error.to_string().contains("Forbidden"), "{error}");
    assert!(
        !error.to_string().contains("wrong"),
        "no key in errors: {error}"
    );
    // A wrong API key fails at /validate.
    let wrong_api_key = source(&url, |name| match name {
        "DD_API_KEY" => Some("nope".to_owned()),
        other => keys(other),
    });
    let error = wrong_api_key.healthcheck().await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");

    // Keys missing from the environment: refused when the source is built, by name.
    let mut config = DatadogConfig::new();
    config.url = Some(url.clone());
    let error = config.build_with(|_| None).unwrap_err();
    assert!(error.to_string().contains("DD_API_KEY"), "{error}");

    // A query Datadog cannot parse: 400 with its message, never retried.
    let error = datadog
        .fetch(&latency_request(
            "avg:web_request_latency_seconds{track:canary",
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::BadQuery { .. }), "{error}");
    assert!(error.to_string().contains("Error parsing query"), "{error}");

    // A regular expression in the scope is refused with the way out.
    let error = datadog.render_scope(r#"pod=~"web-.*""#).unwrap_err();
    assert!(error.contains("wildcard"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_as_datadog_asks_then_reported_once_spent() {
    let (url, fake) = fake_datadog("rollout-healthy.om").await;
    let datadog = source(&url, keys);
    // One 429 (X-RateLimit-Reset: 1): the retry waits the second Datadog asked for,
    // not the 200 ms backoff, and succeeds.
    fake.throttle_next.store(1, Ordering::SeqCst);
    let started = Instant::now();
    let series = datadog.fetch(&latency_request(LATENCY)).await.unwrap();
    assert_eq!(series.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    // Throttled on every attempt: reported unreachable for this interval, with the
    // reason, after the configured retries (2 → three attempts).
    fake.throttle_next.store(10, Ordering::SeqCst);
    let before = fake.queries.load(Ordering::SeqCst);
    let error = datadog.fetch(&latency_request(LATENCY)).await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("429"), "{error}");
    assert_eq!(fake.queries.load(Ordering::SeqCst) - before, 3);
}
