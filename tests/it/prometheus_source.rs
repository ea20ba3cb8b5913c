//! The Prometheus source against a real Prometheus backfilled with
//! `fixtures/prometheus/web.om`, and against wiremock for the faults a real server
//! cannot be made to produce (a 503 followed by a 200, a slow answer, a bearer-token
//! check).
//!
//! Expected values come from the recording itself, read by a small parser here, so a
//! regenerated fixture keeps the tests right.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use canary::domain::{Location, MetricData};
use canary::sources::pairing::pair_series;
use canary::sources::prometheus::{BasicAuth, PrometheusConfig, PrometheusSource};
use canary::sources::query::{render, scope_variables};
use canary::sources::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::root;
use crate::prometheus_harness::{start_prometheus, start_prometheus_with_basic_auth};

/// The first timestamp of the recording.
const START: f64 = 1_700_000_000.0;
/// The last timestamp of the recording (30 minutes later).
const END: f64 = START + 1800.0;

fn recording() -> String {
    std::fs::read_to_string(root().join("fixtures/prometheus/web.om"))
        .expect("fixtures/prometheus/web.om is readable")
}

/// The recorded samples of one series: `(timestamp, value)` in file order.
fn recorded(metric: &str, labels: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{metric}{labels} ");
    recording()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (value, timestamp) = rest.split_once(' ').expect("value and timestamp");
            (timestamp.parse().unwrap(), value.parse().unwrap())
        })
        .collect()
}

fn source(url: &str) -> PrometheusSource {
    let mut config = PrometheusConfig::new(url);
    config.timeout = Duration::from_secs(2);
    config.retry_backoff = Duration::from_millis(50);
    config.build().expect("the config builds")
}

fn request(query: &str, side: Side) -> RangeRequest {
    RangeRequest {
        metric: "latency".into(),
        side,
        query: query.into(),
        start: START,
        end: END,
        step: 15.0,
        raw_samples: false,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(label, value)| (label.to_string(), value.to_string()))
        .collect()
}

fn values(series: &LabeledSeries) -> Vec<(f64, f64)> {
    series
        .samples
        .iter()
        .map(|sample| (sample.timestamp, sample.value))
        .collect()
}

/// Equal, with NaN equal to NaN.
fn assert_same_samples(actual: &[(f64, f64)], expected: &[(f64, f64)]) {
    assert_eq!(actual.len(), expected.len(), "sample counts differ");
    for (got, want) in actual.iter().zip(expected) {
        assert_eq!(got.0, want.0, "timestamps differ");
        assert!(
            got.1 == want.1 || (got.1.is_nan() && want.1.is_nan()),
            "at {}: got {}, recorded {}",
            got.0,
            got.1,
            want.1
        );
    }
}

#[tokio::test]
async fn a_range_query_returns_the_backfilled_series_with_their_recorded_values() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    source
        .healthcheck()
        .await
        .expect("a running Prometheus is healthy");

    let series = source
        .fetch(&request(
            r#"web_request_latency_seconds{track="baseline"}"#,
            Side::Baseline,
        ))
        .await
        .expect("the query runs");

    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0].labels,
        labels(&[
            ("__name__", "web_request_latency_seconds"),
            ("route", "/api"),
            ("track", "baseline")
        ])
    );
    assert_same_samples(
        &values(&series[0]),
        &recorded(
            "web_request_latency_seconds",
            r#"{route="/api",track="baseline"}"#,
        ),
    );
    // This series has a NaN point at START + 300; it comes through as NaN.
    let checkout = values(&series[1]);
    assert_same_samples(
        &checkout,
        &recorded(
            "web_request_latency_seconds",
            r#"{route="/checkout",track="baseline"}"#,
        ),
    );
    assert!(checkout[20].1.is_nan() && checkout[20].0 == START + 300.0);
}

#[tokio::test]
async fn a_template_rendered_for_each_side_selects_different_series() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let template = "sum by (route, track) (rate(web_request_errors_total{ {{scope}} }[1m]))";

    let mut results = Vec::new();
    for (side, scope) in [
        (Side::Baseline, r#"track="baseline""#),
        (Side::Canary, r#"track="canary""#),
    ] {
        let query = render(template, &scope_variables(scope)).expect("the template renders");
        let series = source.fetch(&request(&query, side)).await.expect("runs");
        assert_eq!(series.len(), 2, "two routes on {side:?}");
        assert!(
            series
                .iter()
                .all(|one| one.labels["track"] == side.as_str()),
            "every {side:?} series has track={}",
            side.as_str()
        );
        results.push(series);
    }
    assert_ne!(results[0], results[1]);
}

#[tokio::test]
async fn pairing_by_labels_pairs_the_routes_and_reports_the_canary_only_route() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let template = "web_request_latency_seconds{ {{scope}} }";
    let baseline = source
        .fetch(&request(
            &render(template, &scope_variables(r#"track="baseline""#)).unwrap(),
            Side::Baseline,
        ))
        .await
        .unwrap();
    let canary = source
        .fetch(&request(
            &render(template, &scope_variables(r#"track="canary""#)).unwrap(),
            Side::Canary,
        ))
        .await
        .unwrap();

    let scope_labels = vec!["track".to_string()];
    let pairing = pair_series(baseline, canary, &scope_labels);

    let paired_routes: Vec<&str> = pairing
        .pairs
        .iter()
        .map(|(baseline, canary)| {
            assert_eq!(baseline.labels["route"], canary.labels["route"]);
            baseline.labels["route"].as_str()
        })
        .collect();
    assert_eq!(paired_routes, ["/api", "/checkout"]);
    assert!(pairing.unpaired_baseline.is_empty());
    assert_eq!(pairing.unpaired_canary.len(), 1);

    let pooled = pairing.pooled_samples(
        &scope_labels,
        Location {
            file: "profile.toml".into(),
            line: 1,
        },
    );
    assert_eq!(
        pooled.notes,
        [r#"canary series web_request_latency_seconds{route="/beta"} has no baseline counterpart"#]
    );
    let MetricData::Samples { samples, .. } = &pooled.canary else {
        panic!("pooled samples expected");
    };
    assert_eq!(
        samples.len(),
        2 * 121,
        "both paired canary routes, 121 steps each"
    );
}

#[tokio::test]
async fn raw_samples_are_the_recorded_samples_of_the_window() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let window_start = START + 600.0;
    let window_end = START + 1200.0;

    let series = source
        .fetch(&RangeRequest {
            start: window_start,
            end: window_end,
            raw_samples: true,
            ..request(
                r#"web_request_latency_seconds{track="canary", route="/api"}"#,
                Side::Canary,
            )
        })
        .await
        .expect("the raw-samples query runs");

    assert_eq!(series.len(), 1);
    // Prometheus 2.x range selectors include both ends of the window (3.x excludes
    // the start); either way the samples are exactly the recorded ones.
    let expected: Vec<(f64, f64)> = recorded(
        "web_request_latency_seconds",
        r#"{route="/api",track="canary"}"#,
    )
    .into_iter()
    .filter(|(timestamp, _)| *timestamp >= window_start && *timestamp <= window_end)
    .collect();
    let actual = values(&series[0]);
    let skip = actual.len().abs_diff(expected.len());
    assert!(
        skip <= 1,
        "{} samples against {} recorded",
        actual.len(),
        expected.len()
    );
    assert_same_samples(&actual, &expected[skip..]);
}

#[tokio::test]
async fn a_query_matching_nothing_is_an_empty_result() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let series = source
        .fetch(&request(
            r#"web_request_latency_seconds{track="shadow"}"#,
            Side::Canary,
        ))
        .await;
    assert_eq!(series, Ok(vec![]));
}

#[tokio::test]
async fn a_malformed_query_is_a_bad_query_with_the_message_from_prometheus() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let started = Instant::now();
    let error = source
        .fetch(&request("rate(", Side::Canary))
        .await
        .expect_err("rate( does not parse");
    let SourceError::BadQuery { query, message, .. } = &error else {
        panic!("expected BadQuery, got {error:?}");
    };
    assert_eq!(query, "rate(");
    assert!(message.contains("parse error"), "{message}");
    // A rejected query is not retried.
    assert!(started.elapsed() < Duration::from_millis(50 + 100));
}

#[tokio::test]
async fn a_misspelled_metric_name_is_an_empty_result_that_the_caller_reports_as_no_data() {
    let prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    // Prometheus cannot tell a typo from a metric that has no samples yet, so this is
    // not an error: the source returns nothing, pooling gives a side with no samples,
    // and the judge calls the metric inconclusive for lack of data.
    let baseline = source
        .fetch(&request(
            r#"web_request_latncy_seconds{track="baseline"}"#,
            Side::Baseline,
        ))
        .await
        .expect("a misspelled name is not a query error");
    assert!(baseline.is_empty());
    let pooled = pair_series(baseline, vec![], &["track".to_string()]).pooled_samples(
        &["track".to_string()],
        Location {
            file: "profile.toml".into(),
            line: 1,
        },
    );
    assert!(
        matches!(pooled.baseline, MetricData::Samples { ref samples, .. } if samples.is_empty())
    );
}

#[tokio::test]
async fn a_stopped_prometheus_is_unreachable_after_the_bounded_retries_and_answers_again_after_restart()
 {
    let mut prometheus = start_prometheus(&recording());
    let source = source(&prometheus.url);
    let query = request(r#"web_requests_total{track="canary"}"#, Side::Canary);
    let before = source.fetch(&query).await.expect("answers while running");

    prometheus.stop();
    let started = Instant::now();
    let error = source.fetch(&query).await.expect_err("nothing listens");
    let elapsed = started.elapsed();
    let SourceError::Unreachable { message, .. } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    // Two pauses of 50 ms and 100 ms between three attempts, and no more than that
    // plus a little: a refused connection fails at once.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    prometheus.restart();
    let after = source.fetch(&query).await.expect("answers after restart");
    assert_eq!(before, after);
}

/// bcrypt (cost 4) of `canary-test-password`, made with Python's `bcrypt` package:
/// `bcrypt.hashpw(b"canary-test-password", bcrypt.gensalt(rounds=4))`.
const PASSWORD_HASH: &str = "$2b$04$IIbuS6RM.ZcgUHUTF6gMpeG1r9bRmqiMwgcmy3Tu11wUKtrkkOEsW";

#[tokio::test]
async fn basic_auth_is_accepted_by_a_protected_prometheus_and_its_absence_is_unauthorized() {
    let prometheus = start_prometheus_with_basic_auth(&recording(), "canary", PASSWORD_HASH);

    let mut with_credentials = PrometheusConfig::new(&prometheus.url);
    with_credentials.basic_auth = Some(BasicAuth {
        username: "canary".into(),
        password: "canary-test-password".into(),
    });
    let series = with_credentials
        .build()
        .unwrap()
        .fetch(&request(
            r#"web_requests_total{track="baseline"}"#,
            Side::Baseline,
        ))
        .await
        .expect("the right password is accepted");
    assert_eq!(series.len(), 2);

    let started = Instant::now();
    let error = source(&prometheus.url)
        .healthcheck()
        .await
        .expect_err("no credentials");
    assert!(
        matches!(error, SourceError::Unauthorized { ref message, .. } if message.contains("401")),
        "{error:?}"
    );
    // Refused credentials are not retried.
    assert!(started.elapsed() < Duration::from_millis(50));

    let mut wrong = PrometheusConfig::new(&prometheus.url);
    wrong.basic_auth = Some(BasicAuth {
        username: "canary".into(),
        password: "guess".into(),
    });
    let error = wrong.build().unwrap().healthcheck().await.unwrap_err();
    assert!(
        matches!(error, SourceError::Unauthorized { .. }),
        "{error:?}"
    );
}

fn matrix_body() -> serde_json::Value {
    serde_json::json!({
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{
                "metric": {"route": "/api", "track": "canary"},
                "values": [[START, "0.5"], [START + 15.0, "NaN"]]
            }]
        }
    })
}

#[tokio::test]
async fn a_bearer_token_is_sent_with_every_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .and(header("authorization", "Bearer s3cret-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(matrix_body()))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_string("Unauthorized"))
        .with_priority(2)
        .mount(&server)
        .await;

    let mut config = PrometheusConfig::new(server.uri());
    config.bearer_token = Some("s3cret-token".into());
    let series = config
        .build()
        .unwrap()
        .fetch(&request("up", Side::Canary))
        .await
        .expect("the token is accepted");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].samples[0].value, 0.5);
    assert!(series[0].samples[1].value.is_nan(), "NaN passes through");

    let error = source(&server.uri())
        .fetch(&request("up", Side::Canary))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::Unauthorized { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_503_followed_by_a_200_is_retried_into_success() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(matrix_body()))
        .with_priority(2)
        .mount(&server)
        .await;

    let series = source(&server.uri())
        .fetch(&request("up", Side::Canary))
        .await
        .expect("the retry succeeds");
    assert_eq!(series.len(), 1);
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2, "one 503, one retry");
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_unreachable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(matrix_body())
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;

    let mut config = PrometheusConfig::new(server.uri());
    config.timeout = Duration::from_millis(200);
    config.retries = 1;
    config.retry_backoff = Duration::from_millis(10);
    let error = config
        .build()
        .unwrap()
        .fetch(&request("up", Side::Canary))
        .await
        .unwrap_err();
    let SourceError::Unreachable { message, .. } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert!(message.contains("no answer within 0.2 s"), "{message}");
    assert!(message.contains("gave up after 2 attempts"), "{message}");
}
