//! Amazon CloudWatch's `GetMetricData`, against moto's CloudWatch server (PyPI `moto`,
//! run as `moto_server` on a loopback port and loaded with `PutMetricData`), which
//! implements `GetMetricData` with `MetricStat` queries over the JSON protocol; then
//! the faults moto cannot be made to show (throttling, refused credentials) from a
//! local server answering as CloudWatch's JSON protocol does.
//!
//! moto does not check signatures; the signature itself is checked against botocore's
//! in `src/sources/http/sigv4.rs`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use canary::sources::cloudwatch::CloudWatchConfig;
use canary::sources::{MetricSource, RangeRequest, Side, SourceError};
use serde_json::{Value, json};

use crate::helpers::root;
use crate::metric_stores::{assert_rollout_verdict, run_rollout_summary};
use crate::prometheus_harness::{find_binary, free_loopback_address};

struct Moto {
    url: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aws_environment(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIDTESTING".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("testing-secret".into()),
        "AWS_REGION" => Some("us-east-1".into()),
        _ => None,
    }
}

async fn put(client: &reqwest::Client, url: &str, target: &str, body: &Value) -> Value {
    let response = client
        .post(url)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("GraniteServiceVersion20100801.{target}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTESTING/20261207/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{target}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Starts moto's server and puts the recording's samples into namespace `Web`, each
/// with its labels as dimensions.
async fn start_moto(recording: &str) -> Moto {
    let binary = find_binary("moto_server");
    let address = free_loopback_address();
    let mut child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &address.port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://{address}/");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{url}moto-api/")).send().await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto_server exited: {status}");
        }
        assert!(Instant::now() < deadline, "moto_server not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(root().join("fixtures/prometheus").join(recording)).unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, rest) = line.rsplit_once('}').unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            let dimensions: Vec<Value> = labels
                .split(',')
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    json!({ "Name": key, "Value": value.trim_matches('"') })
                })
                .collect();
            let mut fields = rest.split_whitespace();
            let value: f64 = fields.next().unwrap().parse().unwrap();
            let timestamp: i64 = fields.next().unwrap().parse().unwrap();
            json!({ "MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp, "Value": value })
        })
        .collect();
    for chunk in data.chunks(1000) {
        put(
            &client,
            &url,
            "PutMetricData",
            &json!({ "Namespace": "Web", "MetricData": chunk }),
        )
        .await;
    }
    Moto { url, child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_run_on_cloudwatch_reaches_the_verdicts_of_the_other_stores() {
    for (recording, verdict) in [
        ("rollout-healthy.om", "promote"),
        ("rollout-regression.om", "rollback"),
    ] {
        let moto = start_moto(recording).await;
        let source = format!("cloudwatch={}", moto.url);
        let summary = tokio::task::block_in_place(|| {
            run_rollout_summary(
                &source,
                0,
                &[
                    ("AWS_ACCESS_KEY_ID", "AKIDTESTING"),
                    ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
                    ("AWS_REGION", "us-east-1"),
                    ("AWS_PROFILE", ""),
                ],
            )
        });
        assert_rollout_verdict(&summary, recording, verdict);
    }
}

fn latency_request() -> RangeRequest {
    let dimensions = r#"{"Name": "track", "Value": "canary"}"#;
    RangeRequest {
        metric: "latency".into(),
        side: Side::Canary,
        query: format!(
            r#"[{{"Id": "api", "MetricStat": {{"Metric": {{"Namespace": "Web", "MetricName": "web_request_latency_seconds", "Dimensions": [{dimensions}, {{"Name": "route", "Value": "/api"}}]}}, "Period": 15, "Stat": "Average"}}}}]"#
        ),
        start: 1_700_001_200.0,
        end: 1_700_001_800.0,
        step: 15.0,
        raw_samples: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_answers_become_series_by_id_and_bad_queries_are_named() {
    let moto = start_moto("rollout-healthy.om").await;
    let mut config = CloudWatchConfig::new();
    config.url = Some(moto.url.clone());
    let source = config.build_with(aws_environment).unwrap();
    source.healthcheck().await.unwrap();
    let series = source.fetch(&latency_request()).await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].labels["id"], "api");
    assert_eq!(series[0].samples.len(), 40, "ten minutes of 15 s periods");

    let mut not_json = latency_request();
    not_json.query = "SELECT AVG(x) FROM y".into();
    let error = source.fetch(&not_json).await.unwrap_err();
    assert!(matches!(error, SourceError::BadQuery { .. }), "{error}");
    assert!(error.to_string().contains("MetricDataQueries"), "{error}");

    let mut invalid = latency_request();
    invalid.query = r#"[{"Id": "api"}]"#.into();
    let error = source.fetch(&invalid).await.unwrap_err();
    assert!(matches!(error, SourceError::BadQuery { .. }), "{error}");
    assert!(error.to_string().contains("ValidationError"), "{error}");

    // No credentials anywhere: refused when the source is built, saying where they go.
    let error = CloudWatchConfig::new()
        .build_with(|name| (name == "AWS_REGION").then(|| "us-east-1".to_owned()))
        .unwrap_err();
    assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
}

/// A server answering as CloudWatch's JSON protocol does when it throttles
/// (`ThrottlingException`, HTTP 400) `throttled` times, then with one result; or, for
/// the key `AKIDREVOKED`, refusing the credentials.
async fn faulty_cloudwatch(throttled: usize) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let calls = seen.clone();
        async move {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(
                header("x-amz-target"),
                "GraniteServiceVersion20100801.GetMetricData"
            );
            assert!(header("authorization").starts_with("AWS4-HMAC-SHA256 Credential="));
            if header("authorization").contains("AKIDREVOKED") {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "com.amazon.coral.service#UnrecognizedClientException", "message": "The security token included in the request is invalid."}).to_string(),
                )
                    .into_response();
            }
            if call < throttled {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"}).to_string(),
                )
                    .into_response();
            }
            (
                StatusCode::OK,
                json!({"MetricDataResults": [{"Id": "api", "Label": "web_request_latency_seconds", "Timestamps": [1700001215, 1700001230], "Values": [0.12, 0.13], "StatusCode": "Complete"}], "Messages": []}).to_string(),
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_refused_credentials_are_not() {
    let (url, calls) = faulty_cloudwatch(2).await;
    let mut config = CloudWatchConfig::new();
    config.url = Some(url.clone());
    let source = config.build_with(aws_environment).unwrap();
    let series = source.fetch(&latency_request()).await.unwrap();
    assert_eq!(series[0].samples.len(), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two throttled, one answered"
    );

    let (url, calls) = faulty_cloudwatch(100).await;
    config.url = Some(url);
    let error = config
        .build_with(aws_environment)
        .unwrap()
        .fetch(&latency_request())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("ThrottlingException"), "{error}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the configured two retries"
    );

    let (url, calls) = faulty_cloudwatch(0).await;
    config.url = Some(url);
    config.access_key = Some("AKIDREVOKED".into());
    config.secret_key = Some("revoked-secret".into());
    let error = config
        .build_with(aws_environment)
        .unwrap()
        .fetch(&latency_request())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");
    assert!(
        error.to_string().contains("UnrecognizedClientException"),
        "{error}"
    );
    assert!(!error.to_string().contains("revoked-secret"), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried");
}
