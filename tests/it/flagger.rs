//! Flagger's webhooks on a real `canary serve`: the payloads as Flagger's
//! `pkg/controller/webhook.go` sends them (`CanaryWebhookPayload` marshalled by Go: name,
//! namespace, phase, checksum, metadata; `Content-Type: application/json`; the token as
//! the URL's user information, which Go sends as Basic credentials), and the statuses
//! Flagger acts on (above 202 is an error). The judged windows here are empty (the
//! Prometheus holds old recordings), so a judged hook must not pass: missing data never
//! lets Flagger advance. The live bed's traffic is judged in `live_rollouts.rs`.

use serde_json::{Value, json};

use crate::helpers::{ServeProcess, root, spawn_serve};
use crate::prometheus_harness::{PrometheusGuard, start_prometheus};

pub(crate) const TOKEN: &str = "flagger-test-token";

struct Bed {
    _prometheus: PrometheusGuard,
    _directory: tempfile::TempDir,
    server: ServeProcess,
}

fn bed() -> Bed {
    let prometheus = start_prometheus(
        &std::fs::read_to_string(root().join("fixtures/prometheus/rollout-healthy.om")).unwrap(),
    );
    let directory = tempfile::tempdir().unwrap();
    let settings = directory.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "{TOKEN}"
[store]
url = "sqlite:{store}"
[profiles]
directory = "{profiles}"
[sources.prod]
kind = "prometheus"
url = "{prometheus}"
[worker]
poll_interval = "100ms"
"#,
            store = directory.path().join("canary.db").display(),
            profiles = root().join("fixtures/prometheus").display(),
            prometheus = prometheus.url,
        ),
    )
    .unwrap();
    // fixtures/prometheus holds rollout-profile.toml (canary's judge).
    let server = spawn_serve(&settings, &[]);
    Bed {
        _prometheus: prometheus,
        _directory: directory,
        server,
    }
}

/// Flagger's payload as Go marshals it (struct field order; `metadata` omitted when
/// empty).
pub(crate) fn payload(phase: &str, checksum: &str, metadata: &Value) -> String {
    let mut text = format!(
        r#"{{"name":"podinfo","namespace":"test","phase":"{phase}","checksum":"{checksum}""#
    );
    if metadata.as_object().is_some_and(|m| !m.is_empty()) {
        text.push_str(&format!(r#","metadata":{metadata}"#));
    }
    text.push('}');
    text
}

/// One webhook call as Flagger's `callWebhook` makes it; the status and the body.
pub(crate) async fn call(
    http: &reqwest::Client,
    server: &str,
    hook: &str,
    body: String,
) -> (u16, Value) {
    let response = http
        .post(format!("{server}/v1/flagger/{hook}"))
        .basic_auth("flagger", Some(TOKEN))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn metadata() -> Value {
    json!({
        "profile": "rollout-profile",
        "source": "prod",
        "baseline_scope": "track=\"baseline\"",
        "canary_scope": "track=\"canary\"",
        "window": "1m",
        "step": "5s",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagger_hooks_gate_on_canarys_judgement_and_never_pass_without_data() {
    let bed = bed();
    let http = reqwest::Client::new();
    let url = bed.server.url.clone();

    let (status, body) = call(
        &http,
        &url,
        "pre-rollout",
        payload("Progressing", "6d8b8c4b5f", &metadata()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("flagger/test/podinfo/6d8b8c4b5f")
    );

    // The rollback hook before any judgement: not signalling a rollback.
    let (status, body) = call(
        &http,
        &url,
        "rollback",
        payload("Progressing", "6d8b8c4b5f", &metadata()),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_rolling_back");

    // An analysis iteration over a window without data: a failed check, never a pass.
    for hook in ["rollout", "confirm-promotion"] {
        let (status, body) = call(
            &http,
            &url,
            hook,
            payload("Progressing", "6d8b8c4b5f", &metadata()),
        )
        .await;
        assert_eq!(status, 412, "{hook}: {body}");
        assert_eq!(body["error"]["code"], "canary_not_passing");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("canary's verdict is hold"), "{message}");
    }
    // A hold is no rollback.
    let (status, _) = call(
        &http,
        &url,
        "rollback",
        payload("Progressing", "6d8b8c4b5f", &metadata()),
    )
    .await;
    assert_eq!(status, 409);

    // Hooks that judge nothing pass.
    for hook in ["confirm-rollout", "post-rollout", "event"] {
        let (status, body) = call(
            &http,
            &url,
            hook,
            payload("Succeeded", "6d8b8c4b5f", &json!({})),
        )
        .await;
        assert_eq!(status, 200, "{hook}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_and_hostile_flagger_calls_are_refused_with_the_key_named() {
    let bed = bed();
    let http = reqwest::Client::new();
    let url = bed.server.url.clone();
    let with = |key: &str, value: Value| {
        let mut metadata = metadata();
        metadata[key] = value;
        metadata
    };
    let without = |key: &str| {
        let mut metadata = metadata();
        metadata.as_object_mut().unwrap().remove(key);
        metadata
    };
    for (metadata, field) in [
        (without("profile"), "metadata.profile"),
        (
            with("profile", json!("../../etc/passwd")),
            "metadata.profile",
        ),
        (with("source", json!("datadog")), "metadata.source"),
        (without("canary_scope"), "metadata.canary_scope"),
        (
            with("canary_scope", json!("track=\"baseline\"")),
            "metadata.canary_scope",
        ),
        (
            with("canary_scope", json!("x\"}) or vector(1)")),
            "metadata.canary_scope",
        ),
        (with("window", json!("forever")), "metadata.window"),
        (with("window", json!("30d")), "metadata.window"),
        (with("step", json!("1ms")), "metadata.step"),
        (with("timeout", json!("10m")), "metadata.timeout"),
    ] {
        let (status, body) = call(
            &http,
            &url,
            "rollout",
            payload("Progressing", "abc", &metadata),
        )
        .await;
        assert_eq!(status, 422, "{metadata}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let bad_names = [
        (
            r#"{"name":"Pod Info","namespace":"test","phase":"Progressing","checksum":"abc"}"#,
            "name",
        ),
        (
            r#"{"name":"podinfo","namespace":"../x","phase":"Progressing","checksum":"abc"}"#,
            "namespace",
        ),
        (
            r#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"a/b"}"#,
            "checksum",
        ),
    ];
    for (body, field) in bad_names {
        let (status, answer) = call(&http, &url, "rollout", body.to_owned()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field);
    }
    let (status, answer) = call(
        &http,
        &url,
        "rollout",
        r#"{"name":"podinfo","namespace":"test"}"#.to_owned(),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "checksum");
    let (status, _) = call(
        &http,
        &url,
        "launch-missiles",
        payload("Progressing", "abc", &metadata()),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&http, &url, "rollout", "not json".to_owned()).await;
    assert_eq!(status, 400);
    // No token, a wrong token, a web page's form post.
    let body = payload("Progressing", "abc", &metadata());
    let anonymous = http
        .post(format!("{url}/v1/flagger/rollout"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .post(format!("{url}/v1/flagger/rollback"))
        .basic_auth("flagger", Some("guessed"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let form = http
        .post(format!("{url}/v1/flagger/rollout"))
        .basic_auth("flagger", Some(TOKEN))
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

/// The first ```LANGUAGE block of docs/flagger.md.
fn documented_block(language: &str) -> String {
    let text = std::fs::read_to_string(root().join("docs/flagger.md")).unwrap();
    let opening = format!("```{language}\n");
    let start = text.find(&opening).expect("the block") + opening.len();
    text[start..][..text[start..].find("```").unwrap()].to_owned()
}

/// docs/flagger.md's example: its settings (with this machine's store, profiles and
/// Prometheus put in) and the Canary's webhook URLs and metadata, as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_canary_and_settings_work_as_written() {
    let settings = documented_block("toml");
    let canary = documented_block("yaml");
    let prometheus = start_prometheus(
        &std::fs::read_to_string(root().join("fixtures/prometheus/rollout-healthy.om")).unwrap(),
    );
    let directory = tempfile::tempdir().unwrap();
    let profiles = directory.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    // The metadata's profile, shipped.
    let metadata: serde_json::Map<String, Value> = canary
        .lines()
        .skip_while(|line| !line.contains("metadata: &judge"))
        .skip(1)
        .take_while(|line| line.starts_with("          "))
        .map(|line| {
            let (key, value) = line.trim().split_once(": ").unwrap();
            (
                key.to_owned(),
                Value::from(value.trim().trim_matches('\'').to_owned()),
            )
        })
        .collect();
    let profile = metadata["profile"].as_str().unwrap();
    std::fs::copy(
        root().join(format!("analysis-profiles/{profile}.toml")),
        profiles.join(format!("{profile}.toml")),
    )
    .unwrap();
    let mut written = settings.clone();
    for (old, new) in [
        ("0.0.0.0:8080", "127.0.0.1:0".to_owned()),
        (
            "postgres://canary@db/canary",
            format!("sqlite:{}", directory.path().join("canary.db").display()),
        ),
        ("/etc/canary/profiles", profiles.display().to_string()),
        ("http://prometheus.monitoring:9090", prometheus.url.clone()),
    ] {
        assert!(written.contains(old), "{old} in the documented settings");
        written = written.replace(old, &new);
    }
    let path = directory.path().join("settings.toml");
    std::fs::write(&path, written).unwrap();
    let server = spawn_serve(&path, &[("CANARY_FLAGGER_TOKEN", "from-the-secret")]);
    let http = reqwest::Client::new();
    let url_of = |hook: &str| {
        let line = canary
            .lines()
            .find(|line| line.trim().starts_with("url:") && line.ends_with(&format!("/{hook}")))
            .unwrap_or_else(|| panic!("the {hook} webhook's url"));
        let url = line.trim().trim_start_matches("url:").trim().to_owned();
        let url = url
            .replace("CANARY_FLAGGER_TOKEN", "from-the-secret")
            .replace("canary.canary-system:8080", server.address());
        // As Go sends it: the user information as Basic credentials.
        let mut parsed = reqwest::Url::parse(&url).unwrap();
        let password = parsed.password().unwrap().to_owned();
        parsed.set_password(None).unwrap();
        parsed.set_username("").unwrap();
        (parsed, password)
    };
    let metadata = Value::Object(metadata);
    for (hook, expected) in [
        ("pre-rollout", 200),
        ("rollout", 412),
        ("rollback", 409),
        ("confirm-promotion", 412),
    ] {
        let (url, password) = url_of(hook);
        let response = http
            .post(url)
            .basic_auth("flagger", Some(password))
            .header("Content-Type", "application/json")
            .body(payload("Progressing", "5d9b7c6a4f", &metadata))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, expected, "{hook}: {body}");
    }
}
