//! The same rollouts on every metric store canary reads: a real Prometheus, a real
//! VictoriaMetrics, a real InfluxDB 1.x and a real graphite-web, each loaded with the
//! same recordings (fixtures/prometheus/rollout-*.om), judged through `canary run` and
//! through `canary serve` with one profile that carries PromQL, InfluxQL and Graphite
//! targets. Then the stores' own
//! ways in: vmauth's bearer tokens handed out by an OAuth2 token endpoint, the tenant
//! and custom headers a multi-tenant gateway reads, InfluxDB's users.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use canary::sources::http::oauth2::OAuth2Config;
use canary::sources::influxdb::InfluxDbConfig;
use canary::sources::prometheus::PrometheusConfig;
use canary::sources::{MetricSource, RangeRequest, Side, SourceError};
use serde_json::Value;

use std::process::Command;

use crate::helpers::{root, spawn_serve};
use crate::kayenta_api::{KayentaMetric, TOKEN, argo_measurement};
use crate::prometheus_harness::start_prometheus;
use crate::store_harness::{
    GraphiteGuard, INFLUX_DATABASE, StoreGuard, start_graphite, start_influxdb,
    start_victoria_metrics, start_vmauth,
};

fn recording(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/prometheus").join(name)).unwrap()
}

const FLAGS: &str = r#"{
  "flags": {
    "checkout-v2": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off"
    }
  }
}
"#;

/// `canary run` of the rollout profile against `source` with `environment`, from
/// minute 6 of the recording (moved by `offset` seconds) at 3000× speed: its JSON
/// summary.
pub(crate) fn run_rollout_summary(
    source: &str,
    offset: i64,
    environment: &[(&str, &str)],
) -> Value {
    let directory = tempfile::tempdir().unwrap();
    let flags = directory.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args([
            "run",
            "--profile",
            "fixtures/prometheus/rollout-profile.toml",
            "--source",
            source,
            "--flag",
            "checkout-v2",
            "--actuator",
            &format!("flagd-file={}", flags.display()),
            "--start",
            &(1_700_000_360 + offset).to_string(),
            "--speed",
            "3000",
            "--format",
            "json",
        ])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .envs(environment.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "{source}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A stores' test's expectation of a `canary run` summary on `recording`: `verdict`;
/// a healthy rollout through all five stages; a regression (it starts at the 25 %
/// stage) stopped there or one look later, at 50 %, as the bucketing stores may (see
/// `canary_run_reaches_the_same_verdicts_…`).
pub(crate) fn assert_rollout_verdict(summary: &Value, recording: &str, verdict: &str) {
    assert_eq!(
        summary["verdict"], verdict,
        "{recording}: {:#}",
        summary["reasons"]
    );
    let passed = summary["stages_passed"].as_array().unwrap().len();
    if verdict == "rollback" {
        assert!(
            (2..=3).contains(&passed),
            "{recording}: {passed} stages passed"
        );
    } else {
        assert_eq!(passed, 5, "{recording}");
    }
}

/// [`run_rollout_summary`] without environment: (verdict, status, stages passed, first
/// reason).
fn run_rollout(source: &str, offset: i64) -> (String, String, Vec<String>, String) {
    let summary = run_rollout_summary(source, offset, &[]);
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    (
        text(&summary["verdict"]),
        text(&summary["status"]),
        summary["stages_passed"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect(),
        summary["reasons"].get(0).map(text).unwrap_or_default(),
    )
}

struct Stores {
    prometheus: crate::prometheus_harness::PrometheusGuard,
    victoria: StoreGuard,
    influx: StoreGuard,
    graphite: GraphiteGuard,
}

async fn stores(name: &str) -> Stores {
    let text = recording(name);
    Stores {
        prometheus: start_prometheus(&text),
        victoria: start_victoria_metrics(&text).await,
        influx: start_influxdb(&text, None).await,
        graphite: start_graphite(&text).await,
    }
}

impl Stores {
    /// Each store as `canary run --source` names it, with the offset of its data.
    fn sources(&self) -> [(&'static str, String, i64); 4] {
        [
            (
                "prometheus",
                format!("prometheus={}", self.prometheus.url),
                0,
            ),
            (
                "victoriametrics",
                format!("prometheus={}", self.victoria.url),
                0,
            ),
            (
                "influxdb",
                format!("influxdb={}?db={INFLUX_DATABASE}", self.influx.url),
                0,
            ),
            (
                "graphite",
                format!("graphite={}", self.graphite.url),
                self.graphite.offset,
            ),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_run_reaches_the_same_verdicts_on_prometheus_victoriametrics_influxdb_and_graphite()
{
    let healthy = stores("rollout-healthy.om").await;
    let regression = stores("rollout-regression.om").await;
    for (store, source, offset) in healthy.sources() {
        let (verdict, status, stages, reason) =
            tokio::task::block_in_place(|| run_rollout(&source, offset));
        assert_eq!(
            (verdict.as_str(), status.as_str(), stages.len()),
            ("promote", "promoted", 5),
            "{store}: {reason}"
        );
    }
    for (store, source, offset) in regression.sources() {
        let (verdict, status, stages, reason) =
            tokio::task::block_in_place(|| run_rollout(&source, offset));
        assert_eq!(
            (verdict.as_str(), status.as_str()),
            ("rollback", "rolled_back"),
            "{store}: {reason}"
        );
        // The canary slows during the 25 % stage. PromQL's range query reads the
        // sample at each 15 s instant; InfluxDB's GROUP BY time(15s) and Graphite's
        // summarize the last sample of each epoch-aligned bucket: a third of the same
        // points each, but not the same third, so a borderline look (e = 62 against 40
        // here on Prometheus) can fall one look later. Every store stops the rollout
        // before it leaves 50 %.
        let caught_at_25 = stages == ["1%", "5%"];
        let caught_at_50 = stages == ["1%", "5%", "25%"];
        assert!(
            caught_at_25 || (matches!(store, "influxdb" | "graphite") && caught_at_50),
            "{store}: passed {stages:?}: {reason}"
        );
        assert!(
            reason.starts_with("latency (critical) failed"),
            "{store}: {reason}"
        );
    }
}

/// `canary serve` judging the regression's window through Kayenta's API (what Argo
/// Rollouts' `kayenta` provider calls), with each store as the metrics account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_serve_reaches_the_same_verdicts_on_every_store() {
    let healthy = stores("rollout-healthy.om").await;
    let regression = stores("rollout-regression.om").await;
    let directory = tempfile::tempdir().unwrap();
    let profiles = directory.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::copy(
        root().join("fixtures/prometheus/rollout-profile.toml"),
        profiles.join("prometheus-rollout.toml"),
    )
    .unwrap();
    let mut sources = String::new();
    for (scenario, stores) in [("healthy", &healthy), ("regression", &regression)] {
        sources.push_str(&format!(
            "[sources.prometheus-{scenario}]\nkind = \"prometheus\"\nurl = \"{}\"\n\
             [sources.victoriametrics-{scenario}]\nkind = \"prometheus\"\nurl = \"{}\"\n\
             [sources.influxdb-{scenario}]\nkind = \"influxdb\"\nurl = \"{}\"\ndatabase = \"{INFLUX_DATABASE}\"\n\
             [sources.graphite-{scenario}]\nkind = \"graphite\"\nurl = \"{}\"\n",
            stores.prometheus.url, stores.victoria.url, stores.influx.url, stores.graphite.url
        ));
    }
    let settings = directory.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nauth_token = \"{TOKEN}\"\nkayenta_scope_label = \"track\"\n\
             [store]\nurl = \"sqlite:{}\"\n[profiles]\ndirectory = \"{}\"\n{sources}\
             [actuators.log]\nkind = \"log-only\"\n[worker]\npoll_interval = \"100ms\"\n",
            directory.path().join("canary.db").display(),
            profiles.display()
        ),
    )
    .unwrap();
    let server = spawn_serve(&settings, &[]);
    let http = reqwest::Client::new();
    for store in ["prometheus", "victoriametrics", "influxdb", "graphite"] {
        for (scenario, expected) in [("healthy", "Successful"), ("regression", "Failed")] {
            let account = format!("{store}-{scenario}");
            // Minutes 20 to 30: the regression runs from minute 19 on.
            let offset = match (store, scenario) {
                ("graphite", "healthy") => healthy.graphite.offset,
                ("graphite", _) => regression.graphite.offset,
                _ => 0,
            };
            let window = |seconds: i64| {
                time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds + offset)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            };
            let (start, end) = (window(1200), window(1800));
            let metric = KayentaMetric {
                address: format!("http://argo:{TOKEN}@ADDRESS/kayenta"),
                application: "checkout",
                canary_config_name: "prometheus-rollout",
                metrics_account_name: &account,
                configuration_account_name: "configs",
                storage_account_name: "storage",
                pass: 95,
                marginal: 75,
                step: 15,
                control_scope: "baseline",
                experiment_scope: "canary",
                window: (&start, &end),
            };
            let (phase, status) =
                argo_measurement(&http, &metric, server.address(), server.address()).await;
            assert_eq!(phase, expected, "{account}: {status:#}");
        }
    }
}

/// A token endpoint (RFC 6749 client credentials) handing out `token` to `client` with
/// `secret`, counting the tokens it issued.
async fn token_endpoint(
    client: &'static str,
    secret: &'static str,
    token: &'static str,
) -> (String, Arc<AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let app = axum::Router::new().route(
        "/oauth2/token",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let counter = counter.clone();
            async move {
                let expected = format!(
                    "Basic {}",
                    base64_encode(&format!("{client}:{secret}"))
                );
                let form: BTreeMap<String, String> =
                    url_decoded_pairs(&body).into_iter().collect();
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(expected.as_str())
                {
                    return (
                        StatusCode::UNAUTHORIZED,
                        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
                            .to_owned(),
                    );
                }
                if form.get("grant_type").map(String::as_str) != Some("client_credentials")
                    || form.get("scope").map(String::as_str) != Some("metrics.read")
                {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"invalid_request"}"#.to_owned(),
                    );
                }
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#
                    ),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/oauth2/token"), issued)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn url_decoded_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn latency_request() -> RangeRequest {
    RangeRequest {
        metric: "latency".into(),
        side: Side::Canary,
        query: r#"web_request_latency_seconds{track="canary"}"#.into(),
        start: 1_700_001_200.0,
        end: 1_700_001_800.0,
        step: 15.0,
        raw_samples: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoriametrics_behind_vmauth_is_read_with_an_oauth2_token_fetched_once() {
    let victoria = start_victoria_metrics(&recording("rollout-healthy.om")).await;
    let gateway = start_vmauth(&victoria.url, "issued-token-1").await;
    let (token_url, issued) = token_endpoint("canary", "client-secret", "issued-token-1").await;

    let mut config = PrometheusConfig::new(gateway.url.clone());
    config.oauth2 = Some(OAuth2Config {
        token_url: token_url.clone(),
        client_id: "canary".into(),
        client_secret: Some("client-secret".into()),
        client_secret_file: None,
        scopes: vec!["metrics.read".into()],
        endpoint_params: BTreeMap::new(),
    });
    let source = config.build().unwrap();
    source.healthcheck().await.unwrap();
    for _ in 0..5 {
        let series = source.fetch(&latency_request()).await.unwrap();
        assert_eq!(series.len(), 2, "two routes");
        assert!(series.iter().all(|one| one.samples.len() > 30));
    }
    assert_eq!(
        issued.load(Ordering::SeqCst),
        1,
        "one token for six requests"
    );
    // A fresh source asked eight times at once (a look's concurrent requests) fetches
    // one token: the others wait for it.
    let concurrent = config.build().unwrap();
    let request = latency_request();
    let answers = futures::future::join_all((0..8).map(|_| concurrent.fetch(&request))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one more token for eight at once"
    );

    // Without credentials vmauth refuses; with a wrong client secret the token
    // endpoint does, and the error names it without the secret.
    let error = PrometheusConfig::new(gateway.url.clone())
        .build()
        .unwrap()
        .fetch(&latency_request())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");
    config.oauth2.as_mut().unwrap().client_secret = Some("wrong-secret".into());
    let error = config
        .build()
        .unwrap()
        .fetch(&latency_request())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("invalid_client") && text.contains(&token_url),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
}

/// What a multi-tenant gateway (Mimir's, Cortex's) reads: the tenant header and the
/// custom headers, checked here by a gateway that forwards to VictoriaMetrics only
/// what carries them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_and_custom_headers_reach_a_multi_tenant_gateway() {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let victoria = start_victoria_metrics(&recording("rollout-healthy.om")).await;
    let backend = victoria.url.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_gateway = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri, body: String| {
        let backend = backend.clone();
        let seen = seen_by_gateway.clone();
        async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            seen.lock()
                .unwrap()
                .push((header("x-scope-orgid"), header("x-api-key")));
            if header("x-scope-orgid").as_deref() != Some("team-a")
                || header("x-api-key").as_deref() != Some("gateway-key")
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    [("content-type", "text/plain")],
                    "no tenant".to_owned(),
                );
            }
            let url = format!("{backend}{}", uri.path_and_query().unwrap());
            let client = reqwest::Client::new();
            let response = if body.is_empty() {
                client.get(url).send().await.unwrap()
            } else {
                client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            };
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                response.text().await.unwrap(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("source.toml");
    std::fs::write(
        &file,
        format!(
            "kind = \"prometheus\"\nurl = \"http://{address}\"\ntenant = \"team-a\"\n[headers]\nX-Api-Key = \"gateway-key\"\n"
        ),
    )
    .unwrap();
    let config: canary::sources::config::SourceConfig =
        format!("file={}", file.display()).parse().unwrap();
    let source = config.build().unwrap();
    let series = source.fetch(&latency_request()).await.unwrap();
    assert_eq!(series.len(), 2);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(tenant, key)| tenant.as_deref() == Some("team-a")
                && key.as_deref() == Some("gateway-key"))
    );
    let error = PrometheusConfig::new(format!("http://{address}"))
        .build()
        .unwrap()
        .fetch(&latency_request())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_with_authentication_takes_its_users_and_names_what_is_wrong() {
    let influx = start_influxdb(&recording("rollout-healthy.om"), Some(("admin", "pa55"))).await;
    let mut config = InfluxDbConfig::new(influx.url.clone(), INFLUX_DATABASE);
    config.username = Some("admin".into());
    config.password = Some("pa55".into());
    let source = config.build().unwrap();
    source.healthcheck().await.unwrap();
    let condition = source.render_scope(r#"track="canary""#).unwrap();
    let filter = &source.query_variables(1_700_001_200.0, 1_700_001_800.0)[0].1;
    let request = RangeRequest {
        query: format!(
            r#"SELECT last("value") FROM "web_request_latency_seconds" WHERE {condition} AND {filter} GROUP BY time(15s), "route""#
        ),
        ..latency_request()
    };
    let series = source.fetch(&request).await.unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].labels["route"], "/api");
    assert_eq!(
        series[0].samples.len(),
        41,
        "ten minutes of 15 s buckets, the window's ends straddling two"
    );

    config.password = Some("wrong".into());
    let error = config.build().unwrap().fetch(&request).await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized { .. }), "{error}");
    assert!(!error.to_string().contains("wrong"), "{error}");

    let mut missing = InfluxDbConfig::new(influx.url.clone(), "nope");
    missing.username = Some("admin".into());
    missing.password = Some("pa55".into());
    let error = missing.build().unwrap().healthcheck().await.unwrap_err();
    assert!(error.to_string().contains("database not found"), "{error}");

    let mut bad = request.clone();
    bad.query = "SELEKT 1".into();
    let error = source.fetch(&bad).await.unwrap_err();
    assert!(matches!(error, SourceError::BadQuery { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_names_a_rejected_target_and_an_unreachable_server() {
    use canary::sources::graphite::GraphiteConfig;
    let graphite = start_graphite(&recording("rollout-healthy.om")).await;
    let source = GraphiteConfig::new(graphite.url.clone()).build().unwrap();
    source.healthcheck().await.unwrap();
    let end = 1_700_001_800 + graphite.offset;
    let request = RangeRequest {
        query: "aliasByNode(web.canary.*.web_request_latency_seconds, 2)".into(),
        start: (end - 600) as f64,
        end: end as f64,
        ..latency_request()
    };
    let series = source.fetch(&request).await.unwrap();
    let routes: Vec<&str> = series.iter().map(|s| s.labels["target"].as_str()).collect();
    assert_eq!(routes, ["api", "checkout"]);
    assert_eq!(series[0].samples.len(), 120, "ten minutes of 5 s points");

    let bad = RangeRequest {
        query: "nope(web.canary.*.web_request_latency_seconds)".into(),
        ..request.clone()
    };
    let error = source.fetch(&bad).await.unwrap_err();
    assert!(matches!(error, SourceError::BadQuery { .. }), "{error}");
    assert!(error.to_string().contains("unknown function"), "{error}");

    drop(graphite);
    let error = source.fetch(&request).await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");
}

/// The shipped multi-source profile renders for every source kind with the scopes a
/// submission would give it (every template variable known, every scope writable).
#[test]
fn the_shipped_any_source_profile_renders_for_every_source() {
    use canary::domain::Profile;
    use canary::scheduler::{Scopes, check_queries};
    use canary::sources::cloudwatch::CloudWatchConfig;
    use canary::sources::datadog::DatadogConfig;
    use canary::sources::graphite::GraphiteConfig;
    let text =
        std::fs::read_to_string(root().join("analysis-profiles/web-service-any-source.toml"))
            .unwrap();
    let profile = Profile::parse(&text, "web-service-any-source.toml").unwrap();
    let environment = |name: &str| match name {
        "DD_API_KEY" | "DD_APP_KEY" | "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => {
            Some("x".to_owned())
        }
        "AWS_REGION" => Some("eu-west-1".to_owned()),
        _ => None,
    };
    let sources: Vec<(Box<dyn MetricSource>, Scopes)> = vec![
        (
            Box::new(PrometheusConfig::new("http://127.0.0.1:9").build().unwrap()),
            Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        ),
        (
            Box::new(
                InfluxDbConfig::new("http://127.0.0.1:9", "m")
                    .build()
                    .unwrap(),
            ),
            Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        ),
        (
            Box::new(GraphiteConfig::new("http://127.0.0.1:9").build().unwrap()),
            Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        ),
        (
            Box::new(DatadogConfig::new().build_with(environment).unwrap()),
            Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        ),
        (
            Box::new(CloudWatchConfig::new().build_with(environment).unwrap()),
            Scopes::from_matchers(
                r#"TargetGroup="targetgroup/web-baseline/1""#,
                r#"TargetGroup="targetgroup/web-canary/2""#,
            ),
        ),
    ];
    for (source, scopes) in &sources {
        check_queries(source.as_ref(), &profile, scopes)
            .unwrap_or_else(|error| panic!("{}: {error}", source.describe()));
    }
    // A scope the language cannot write is refused by name.
    let error = check_queries(
        sources[3].0.as_ref(),
        &profile,
        &Scopes::from_matchers(r#"track="baseline""#, r#"track=~"canary|v2""#),
    )
    .unwrap_err();
    assert!(error.to_string().contains("regular expressions"), "{error}");
}
