//! Kayenta's REST API on real `canary serve` processes: Argo Rollouts' `kayenta` metric
//! provider's exchange, as its code makes it (argo-rollouts
//! `metricproviders/kayenta/kayenta.go`: the config lookup by name, the job POST with
//! its query parameters and its JSON body, the score GET, and its `evaluateResult`),
//! against two instances on one PostgreSQL database that read a real Prometheus
//! backfilled with the rollout recordings (`fixtures/prometheus/rollout-*.om`). The
//! execution is posted to one instance and read from the other.
//!
//! Both judges are driven: a profile in Kayenta's mode and one with canary's own judge.
//! A healthy canary ends Successful, the recorded latency regression Failed; careless
//! and hostile requests get the errors they should.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ServeProcess, root, spawn_serve};
use crate::prometheus_harness::{PrometheusGuard, start_prometheus};

/// Minutes 20 to 30 of the recordings: the regression (canary latency +40 %) runs from
/// minute 19 on.
const WINDOW_START: &str = "2023-11-14T22:33:20Z";
const WINDOW_END: &str = "2023-11-14T22:43:20Z";
pub(crate) const TOKEN: &str = "kayenta-test-token";

const KAYENTA_PROFILE: &str = r#"
name = "kayenta-latency"
[judge]
algorithm = "kayenta"
pass_score = 95
marginal_score = 75

[[metrics]]
name = "latency"
kind = "continuous"
direction = "increase"
group = "latency"
critical = true
query = 'web_request_latency_seconds{ {{scope}} }'
[metrics.kayenta]
allowed_increase = 1.1
"#;

struct Bed {
    _healthy: PrometheusGuard,
    _regression: PrometheusGuard,
    _directory: tempfile::TempDir,
    first: ServeProcess,
    second: ServeProcess,
}

fn recording(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/prometheus").join(name)).unwrap()
}

fn write_settings(
    directory: &Path,
    name: &str,
    store: &str,
    (healthy, regression): (&str, &str),
    extra: &str,
) {
    let profiles = directory.join("profiles");
    std::fs::write(
        directory.join(name),
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "{TOKEN}"
kayenta_scope_label = "track"
[store]
url = "{store}"
[profiles]
directory = "{profiles}"
[sources.healthy]
kind = "prometheus"
url = "{healthy}"
[sources.regression]
kind = "prometheus"
url = "{regression}"
[actuators.log]
kind = "log-only"
[worker]
poll_interval = "100ms"
lease = "10s"
"#,
            profiles = profiles.display(),
        )
        .replace("[server]\n", &format!("[server]\n{extra}")),
    )
    .unwrap();
}

async fn bed(schema: &crate::store::PostgresSchema) -> Bed {
    bed_with(schema, "").await
}

/// [`bed`] with `extra` lines in both instances' `[server]` settings.
async fn bed_with(schema: &crate::store::PostgresSchema, extra: &str) -> Bed {
    let healthy = start_prometheus(&recording("rollout-healthy.om"));
    let regression = start_prometheus(&recording("rollout-regression.om"));
    let directory = tempfile::tempdir().unwrap();
    let profiles = directory.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(profiles.join("kayenta-latency.toml"), KAYENTA_PROFILE).unwrap();
    std::fs::copy(
        root().join("fixtures/prometheus/rollout-profile.toml"),
        profiles.join("prometheus-rollout.toml"),
    )
    .unwrap();
    std::fs::write(profiles.join("broken.toml"), "name = ").unwrap();
    for name in ["first.toml", "second.toml"] {
        write_settings(
            directory.path(),
            name,
            &schema.url,
            (&healthy.url, &regression.url),
            extra,
        );
    }
    let first = spawn_serve(&directory.path().join("first.toml"), &[]);
    let second = spawn_serve(&directory.path().join("second.toml"), &[]);
    Bed {
        _healthy: healthy,
        _regression: regression,
        _directory: directory,
        first,
        second,
    }
}

/// The template's `provider.kayenta` fields that the exchange uses.
pub(crate) struct KayentaMetric<'a> {
    /// `address`, with the token as the URL's password (Go's client sends it as Basic
    /// credentials).
    pub(crate) address: String,
    pub(crate) application: &'a str,
    pub(crate) canary_config_name: &'a str,
    pub(crate) metrics_account_name: &'a str,
    pub(crate) configuration_account_name: &'a str,
    pub(crate) storage_account_name: &'a str,
    pub(crate) pass: i64,
    pub(crate) marginal: i64,
    pub(crate) step: i64,
    pub(crate) control_scope: &'a str,
    pub(crate) experiment_scope: &'a str,
    /// `start` and `end` (RFC 3339).
    pub(crate) window: (&'a str, &'a str),
}

/// What Go's `http.Client` does with `http://user:password@host/...`: strips the user
/// information from the URL and sends it as Basic credentials.
fn go_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    let user = parsed.username().to_owned();
    let password = parsed.password().map(str::to_owned);
    parsed.set_username("").unwrap();
    parsed.set_password(None).unwrap();
    let request = http.request(method, parsed);
    if user.is_empty() && password.is_none() {
        request
    } else {
        request.basic_auth(user, password)
    }
}

/// Argo's measurement phase for a score (`evaluateResult`).
fn evaluate_result(score: i64, pass: i64, marginal: i64) -> &'static str {
    if score >= pass {
        "Successful"
    } else if score >= marginal {
        "Inconclusive"
    } else {
        "Failed"
    }
}

/// Argo's `Run` against `run_on`, then `Resume` against `resume_on` (every 0.2 s instead
/// of Argo's 15 s) until complete: the phase and the whole status response.
pub(crate) async fn argo_measurement(
    http: &reqwest::Client,
    metric: &KayentaMetric<'_>,
    run_on: &str,
    resume_on: &str,
) -> (&'static str, Value) {
    // getCanaryConfigId: configIdLookupURLFormat (Argo passes the storage account as
    // configurationAccountName here, as its code does).
    let lookup = format!(
        "{}/canaryConfig?application={}&configurationAccountName={}",
        metric.address.replace("ADDRESS", run_on),
        metric.application,
        metric.storage_account_name
    );
    let response = go_request(http, reqwest::Method::GET, &lookup)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let configs: Vec<Value> = response.json().await.unwrap();
    let id = configs
        .iter()
        .find(|config| config["name"] == metric.canary_config_name)
        .unwrap_or_else(|| panic!("Canary config not found in {configs:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = format!(
        "{}/canary/{id}?application={}&metricsAccountName={}&configurationAccountName={}&storageAccountName={}",
        metric.address.replace("ADDRESS", run_on),
        metric.application,
        metric.metrics_account_name,
        metric.configuration_account_name,
        metric.storage_account_name
    );
    // json.Marshal of AnalysisRequest: struct field order, `location` always present,
    // `start` and `end` omitted when empty.
    let (start, end) = metric.window;
    let step = metric.step;
    let body = format!(
        r#"{{"scopes":{{"default":{{"controlScope":{{"scope":{},"location":"","step":{step},"start":"{start}","end":"{end}"}},"experimentScope":{{"scope":{},"location":"","step":{step},"start":"{start}","end":"{end}"}}}}}},"thresholds":{{"pass":{},"marginal":{}}}}}"#,
        Value::from(metric.control_scope),
        Value::from(metric.experiment_scope),
        metric.pass,
        metric.marginal
    );
    let response = go_request(http, reqwest::Method::POST, &job)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "Argo needs exactly 200: {created}");
    let execution = created["canaryExecutionId"].as_str().unwrap().to_owned();
    assert!(!execution.is_empty());
    let score_url = format!(
        "{}/canary/{execution}",
        metric.address.replace("ADDRESS", resume_on)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = go_request(http, reqwest::Method::GET, &score_url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status: Value = response.json().await.unwrap();
        let complete = status["complete"]
            .as_bool()
            .expect("Missing Complete Status");
        if complete {
            let score = status["result"]["judgeResult"]["score"]["score"]
                .as_f64()
                .unwrap_or_else(|| panic!("Missing Score: {status:#}"));
            let phase = evaluate_result(score as i64, metric.pass, metric.marginal);
            return (phase, status);
        }
        assert!(Instant::now() < deadline, "never complete: {status:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric<'a>(
    config: &'a str,
    account: &'a str,
    control: &'a str,
    experiment: &'a str,
) -> KayentaMetric<'a> {
    KayentaMetric {
        address: format!("http://argo:{TOKEN}@ADDRESS/kayenta"),
        application: "checkout",
        canary_config_name: config,
        metrics_account_name: account,
        configuration_account_name: "configs",
        storage_account_name: "storage",
        pass: 95,
        marginal: 75,
        step: 15,
        control_scope: control,
        experiment_scope: experiment,
        window: (WINDOW_START, WINDOW_END),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_kayenta_provider_gets_successful_for_a_healthy_canary_and_failed_for_a_regression() {
    crate::store::in_postgres_schema(|schema| async move {
        let bed = bed(&schema).await;
        let http = reqwest::Client::new();
        let first = bed.first.address().to_owned();
        let second = bed.second.address().to_owned();
        for (config, name) in [
            ("kayenta-latency", "Kayenta's judge"),
            ("prometheus-rollout", "canary's judge"),
        ] {
            // Matchers as the scope on one, bare values (server.kayenta_scope_label =
            // "track") on the other.
            let healthy = metric(
                config,
                "healthy",
                r#"track="baseline""#,
                r#"track="canary""#,
            );
            let (phase, status) = argo_measurement(&http, &healthy, &first, &second).await;
            assert_eq!(phase, "Successful", "{name}, healthy: {status:#}");
            assert_eq!(status["status"], "succeeded");
            assert_eq!(status["canaryConfigId"], config);
            assert_eq!(status["metricsAccountName"], "healthy");
            assert_eq!(status["application"], "checkout");
            assert_eq!(
                status["canaryExecutionRequest"]["thresholds"],
                json!({"pass": 95, "marginal": 75})
            );
            let results = status["result"]["judgeResult"]["results"]
                .as_array()
                .unwrap();
            let latency = results.iter().find(|r| r["name"] == "latency").unwrap();
            assert_eq!(latency["classification"], "Pass", "{name}: {latency:#}");
            assert!(
                latency["experimentMetadata"]["stats"]["count"]
                    .as_u64()
                    .unwrap()
                    >= 40
            );

            let regression = metric(config, "regression", "baseline", "canary");
            let (phase, status) = argo_measurement(&http, &regression, &second, &first).await;
            assert_eq!(phase, "Failed", "{name}, regression: {status:#}");
            let results = status["result"]["judgeResult"]["results"]
                .as_array()
                .unwrap();
            let latency = results.iter().find(|r| r["name"] == "latency").unwrap();
            assert_eq!(latency["classification"], "High", "{name}: {latency:#}");
            assert_eq!(status["canary"]["verdict"], "rollback");
            assert_eq!(
                status["result"]["judgeResult"]["score"]["classification"],
                "Fail"
            );
        }
        let kayenta_judge = {
            let healthy = metric("kayenta-latency", "healthy", "baseline", "canary");
            argo_measurement(&http, &healthy, &first, &first).await.1
        };
        assert_eq!(
            kayenta_judge["result"]["judgeResult"]["judgeName"],
            "NetflixACAJudge-v1.0"
        );
        assert_eq!(
            kayenta_judge["result"]["judgeResult"]["groupScores"],
            json!([{"name": "latency", "score": 100.0, "classification": ""}])
        );
        drop(bed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_and_hostile_kayenta_requests_get_clear_errors_and_store_nothing() {
    crate::store::in_postgres_schema(|schema| async move {
        let bed = bed(&schema).await;
        let http = reqwest::Client::new();
        let base = format!("{}/kayenta", bed.first.url);
        let body = |scopes: Value, thresholds: Value| {
            json!({"scopes": scopes, "thresholds": thresholds})
        };
        let pair = json!({"default": {
            "controlScope": {"scope": "baseline", "start": WINDOW_START, "end": WINDOW_END, "step": 15},
            "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END, "step": 15},
        }});
        let thresholds = json!({"pass": 95, "marginal": 75});
        let post = |url: String, body: Value| {
            http.post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
        };
        let error_field = |body: &Value| body["error"]["field"].as_str().map(str::to_owned);

        // No token, a wrong token, and a read-only caller cannot start an execution.
        let url = format!("{base}/canary/kayenta-latency?metricsAccountName=healthy");
        let anonymous = http
            .post(&url)
            .json(&body(pair.clone(), thresholds.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
        let wrong = http
            .post(&url)
            .basic_auth("argo", Some("not-the-token"))
            .json(&body(pair.clone(), thresholds.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        // A web page's form post (no JSON content type).
        let form = http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("scopes=x")
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), 415);

        let cases: Vec<(String, Value, u16, Option<&str>)> = vec![
            (
                format!("{base}/canary/no-such-config?metricsAccountName=healthy"),
                body(pair.clone(), thresholds.clone()),
                404,
                None,
            ),
            (
                format!("{base}/canary/broken?metricsAccountName=healthy"),
                body(pair.clone(), thresholds.clone()),
                422,
                Some("configId"),
            ),
            (
                format!("{base}/canary/kayenta-latency"),
                body(pair.clone(), thresholds.clone()),
                422,
                Some("metricsAccountName"),
            ),
            (
                format!("{base}/canary/kayenta-latency?metricsAccountName=datadog"),
                body(pair.clone(), thresholds.clone()),
                422,
                Some("metricsAccountName"),
            ),
            (
                url.clone(),
                json!({"thresholds": thresholds}),
                422,
                Some("scopes"),
            ),
            (
                url.clone(),
                body(
                    json!({"a": pair["default"], "b": pair["default"]}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes"),
            ),
            (
                url.clone(),
                body(pair.clone(), json!({"pass": 95, "marginal": 0})),
                422,
                Some("thresholds.marginal"),
            ),
            (
                url.clone(),
                body(pair.clone(), json!({"pass": 195, "marginal": 75})),
                422,
                Some("thresholds.pass"),
            ),
            (
                url.clone(),
                body(
                    json!({"default": {
                        "controlScope": {"scope": "baseline", "start": "yesterday", "end": WINDOW_END},
                        "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END},
                    }}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes.default.controlScope.start"),
            ),
            (
                url.clone(),
                body(
                    json!({"default": {
                        "controlScope": {"scope": "baseline", "start": WINDOW_START, "end": WINDOW_END},
                        "experimentScope": {"scope": "canary", "start": "2023-11-14T22:00:00Z", "end": WINDOW_END},
                    }}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes.default.experimentScope.start"),
            ),
            (
                url.clone(),
                body(
                    json!({"default": {
                        "controlScope": {"scope": "baseline", "start": WINDOW_START, "end": WINDOW_END, "step": 0.01},
                        "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END, "step": 0.01},
                    }}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes.default.controlScope.step"),
            ),
            (
                url.clone(),
                body(
                    json!({"default": {
                        "controlScope": {"scope": "track=\"baseline\"}) or vector(1", "start": WINDOW_START, "end": WINDOW_END},
                        "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END},
                    }}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes.default.controlScope.scope"),
            ),
            (
                url.clone(),
                body(
                    json!({"default": {
                        "controlScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END},
                        "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END},
                    }}),
                    thresholds.clone(),
                ),
                422,
                Some("scopes.default.experimentScope.scope"),
            ),
        ];
        for (url, request, status, field) in cases {
            let response = post(url.clone(), request.clone()).await.unwrap();
            let got = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(got, status, "{url} {request}: {answer}");
            assert_eq!(error_field(&answer).as_deref(), field, "{answer}");
        }
        // A body over the 64 KiB bound is refused, not read (80 KiB: small enough for the
        // socket buffers to take it whole, so the client sees the answer).
        let huge = "x".repeat(80 << 10);
        let response = post(url.clone(), json!({"scopes": huge})).await.unwrap();
        assert_eq!(response.status(), 413);
        // Nothing was stored by any of them.
        let store = canary::store::StoreConfig {
            url: schema.url.clone(),
            max_connections: Some(1),
        }
        .build()
        .await
        .unwrap();
        assert_eq!(
            store
                .claim_execution("probe", 4e9, Duration::from_secs(1))
                .await
                .unwrap(),
            None
        );
        store.close().await;

        // Reads: an unknown or malformed execution id.
        let unknown = http
            .get(format!("{base}/canary/{}", uuid::Uuid::new_v4()))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        let malformed = http
            .get(format!("{base}/canary/..%2F..%2Fetc"))
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400);
        // The broken profile is left out of the index, the others listed.
        let configs: Vec<Value> = http
            .get(format!("{base}/canaryConfig"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = configs.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["kayenta-latency", "prometheus-rollout"]);
        drop(bed);
    })
    .await;
}

/// The text of the first ```LANGUAGE block after `heading` in docs/kayenta.md.
fn documented_block(heading: &str, language: &str) -> String {
    let text = std::fs::read_to_string(root().join("docs/kayenta.md")).unwrap();
    let section = &text[text.find(heading).expect("the heading")..];
    let opening = format!("```{language}\n");
    let start = section.find(&opening).expect("the block") + opening.len();
    section[start..][..section[start..].find("```").unwrap()].to_owned()
}

/// The value of `key: value` in the template (quotes removed).
fn yaml_value(template: &str, key: &str) -> String {
    let prefix = format!("{key}:");
    template
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{key} in the template"))
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// docs/kayenta.md's example: its settings (with this machine's store, profiles and
/// Prometheus put in) serve the exchange its template makes, with the bare pod-template
/// hashes as scopes. The recording is relabelled so the hashes select the tracks, and a
/// latency-only Kayenta profile stands in for kayenta-web-service.toml, whose CPU and
/// memory series the recording lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_argo_template_and_settings_work_as_written() {
    crate::store::in_postgres_schema(|schema| async move {
        let settings = documented_block("### A complete Argo Rollouts example", "toml");
        let template = documented_block("### A complete Argo Rollouts example", "yaml");
        let prometheus = start_prometheus(
            &recording("rollout-regression.om").replace("track=", "rollouts_pod_template_hash="),
        );
        let directory = tempfile::tempdir().unwrap();
        let profiles = directory.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let config_name = yaml_value(&template, "canaryConfigName");
        assert!(
            root()
                .join(format!("analysis-profiles/{config_name}.toml"))
                .exists(),
            "the template names a shipped profile"
        );
        std::fs::write(
            profiles.join(format!("{config_name}.toml")),
            KAYENTA_PROFILE
                .replace("kayenta-latency", &config_name)
                .replace("track", "rollouts_pod_template_hash"),
        )
        .unwrap();
        let replaced = |text: &str, old: &str, new: &str| {
            assert!(text.contains(old), "{old} in the documented settings");
            text.replace(old, new)
        };
        let mut written = replaced(&settings, "0.0.0.0:8080", "127.0.0.1:0");
        written = replaced(&written, "postgres://canary@db/canary", &schema.url);
        written = replaced(&written, "/etc/canary/profiles", profiles.to_str().unwrap());
        written = replaced(
            &written,
            "http://prometheus.monitoring:9090",
            &prometheus.url,
        );
        let path = directory.path().join("settings.toml");
        std::fs::write(&path, written).unwrap();
        let server = spawn_serve(&path, &[("CANARY_ARGO_TOKEN", "from-the-secret")]);

        let address = yaml_value(&template, "address")
            .replace("{{args.canary-token}}", "from-the-secret")
            .replace("canary.canary-system.svc:8080", "ADDRESS");
        let number = |key: &str| yaml_value(&template, key).parse::<i64>().unwrap();
        assert_eq!(
            yaml_value(&template, "scope"),
            "{{args.stable-hash}}",
            "bare hashes, matched with kayenta_scope_label"
        );
        let metric = |window| KayentaMetric {
            address: address.clone(),
            application: "checkout",
            canary_config_name: &config_name,
            metrics_account_name: "prometheus",
            configuration_account_name: "unused",
            storage_account_name: "unused",
            pass: number("pass"),
            marginal: number("marginal"),
            step: number("step"),
            control_scope: "baseline",
            experiment_scope: "canary",
            window,
        };
        assert_eq!(yaml_value(&template, "metricsAccountName"), "prometheus");
        let http = reqwest::Client::new();
        // Minutes 5 to 15: before the regression.
        let before = metric(("2023-11-14T22:18:20Z", "2023-11-14T22:28:20Z"));
        let (phase, status) =
            argo_measurement(&http, &before, server.address(), server.address()).await;
        assert_eq!(phase, "Successful", "{status:#}");
        let during = metric((WINDOW_START, WINDOW_END));
        let (phase, status) =
            argo_measurement(&http, &during, server.address(), server.address()).await;
        assert_eq!(phase, "Failed", "{status:#}");
        // The token is the one the Secret holds, nothing else.
        let wrong = metric((WINDOW_START, WINDOW_END));
        let response = go_request(
            &http,
            reqwest::Method::POST,
            &format!(
                "{}/canary/{config_name}",
                wrong
                    .address
                    .replace("from-the-secret", "guessed")
                    .replace("ADDRESS", server.address())
            ),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 401);
        drop(server);
    })
    .await;
}

/// Spinnaker's canary stage, as Orca makes the exchange (spinnaker/orca
/// `orca-kayenta`: `KayentaService.create` with its query parameters and the body its
/// Jackson mapper writes — ISO instants, `location`, `step`, `extendedScopeParams`,
/// `siteLocal` — then `getCanaryResults` with `storageAccountName`, read as
/// `CanaryResults` and judged by `MonitorKayentaCanaryTask`: the status must name an
/// Orca `ExecutionStatus`, every result needs `controlMetadata.stats.count`, and a
/// score at or below `marginal` fails the stage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinnakers_canary_stage_reads_a_pass_for_a_healthy_canary_and_a_failure_for_a_regression()
{
    crate::store::in_postgres_schema(|schema| async move {
        // Orca's HTTP client sends no credentials.
        let bed = bed_with(&schema, "kayenta_without_token = true\n").await;
        let http = reqwest::Client::new();
        // The rest of the API still needs its token.
        let analyses = http
            .post(format!("{}/v1/analyses", bed.first.url))
            .json(&json!({"profile": "kayenta-latency"}))
            .send()
            .await
            .unwrap();
        assert_eq!(analyses.status(), 401);
        // Orca's Instant.toString(): milliseconds only when there are some.
        let body = |pass: i64, marginal: i64| {
            json!({
                "scopes": {"canary": {
                    "controlScope": {"scope": "baseline", "location": "us-west-2",
                        "start": "2023-11-14T22:33:20Z", "end": "2023-11-14T22:43:20.500Z",
                        "step": 60, "extendedScopeParams": {}},
                    "experimentScope": {"scope": "canary", "location": "us-west-2",
                        "start": "2023-11-14T22:33:20Z", "end": "2023-11-14T22:43:20.500Z",
                        "step": 60, "extendedScopeParams": {}},
                }},
                "thresholds": {"pass": pass, "marginal": marginal},
                "siteLocal": {},
            })
        };
        for (account, expected) in [("healthy", "SUCCEEDED"), ("regression", "TERMINAL")] {
            let created: Value = http
                .post(format!(
                    "{}/kayenta/canary/kayenta-latency?application=checkout&parentPipelineExecutionId=01HXYZ&metricsAccountName={account}&configurationAccountName=configs&storageAccountName=gcs",
                    bed.first.url
                ))
                .json(&body(90, 75))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = created["canaryExecutionId"].as_str().unwrap().to_owned();
            let deadline = Instant::now() + Duration::from_secs(60);
            let results = loop {
                let results: Value = http
                    .get(format!(
                        "{}/kayenta/canary/{id}?storageAccountName=gcs",
                        bed.second.url
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                // ExecutionStatus.valueOf(status.toUpperCase())
                let status = results["status"].as_str().unwrap().to_uppercase();
                assert!(
                    ["NOT_STARTED", "RUNNING", "SUCCEEDED", "TERMINAL"].contains(&status.as_str()),
                    "{status}"
                );
                if status == "SUCCEEDED" {
                    break results;
                }
                assert!(Instant::now() < deadline, "{results:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(results["application"], "checkout");
            assert!(results["buildTimeIso"].as_str().unwrap().ends_with('Z'));
            assert!(results["endTimeIso"].as_str().is_some());
            assert!(results["result"]["canaryDuration"].as_str().unwrap().starts_with("PT"));
            for entry in results["result"]["judgeResult"]["results"].as_array().unwrap() {
                assert!(
                    entry["controlMetadata"]["stats"]["count"].is_u64(),
                    "{entry:#}"
                );
            }
            // MonitorKayentaCanaryTask: the score as an Int, at or below marginal fails.
            let score = results["result"]["judgeResult"]["score"]["score"]
                .as_f64()
                .unwrap() as i64;
            let outcome = if score <= 75 { "TERMINAL" } else { "SUCCEEDED" };
            assert_eq!(outcome, expected, "{account}: {results:#}");
        }
        drop(bed);
    })
    .await;
}

/// Twelve executions posted at once, half to each instance: every one completes, each
/// judged by exactly one executor on its first claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executions_on_two_instances_are_each_judged_once() {
    crate::store::in_postgres_schema(|schema| async move {
        let bed = bed(&schema).await;
        let http = reqwest::Client::new();
        let body = json!({
            "scopes": {"default": {
                "controlScope": {"scope": "baseline", "start": WINDOW_START, "end": WINDOW_END, "step": 15},
                "experimentScope": {"scope": "canary", "start": WINDOW_START, "end": WINDOW_END, "step": 15},
            }},
            "thresholds": {"pass": 95, "marginal": 75},
        });
        let posts = (0..12).map(|index| {
            let server = if index % 2 == 0 { &bed.first } else { &bed.second };
            http.post(format!(
                "{}/kayenta/canary/kayenta-latency?metricsAccountName=healthy",
                server.url
            ))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
        });
        let mut ids = Vec::new();
        for response in futures::future::join_all(posts).await {
            let created: Value = response.unwrap().json().await.unwrap();
            ids.push(uuid::Uuid::parse_str(created["canaryExecutionId"].as_str().unwrap()).unwrap());
        }
        let store = canary::store::StoreConfig {
            url: schema.url.clone(),
            max_connections: Some(1),
        }
        .build()
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for id in ids {
            loop {
                let execution = store.get_execution(id).await.unwrap().unwrap();
                if execution.state.is_finished() {
                    assert_eq!(execution.state, canary::store::ExecutionState::Succeeded);
                    assert_eq!(execution.attempts, 1, "{execution:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "{execution:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        store.close().await;
        drop(bed);
    })
    .await;
}
