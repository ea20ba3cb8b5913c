//! The HTTP API in process: `spawn_app()` serves the real router on 127.0.0.1:0 with a
//! SQLite store on a temporary file and a temporary profiles directory (the repository's
//! `analysis-profiles/` plus one profile without a rollout plan). Tests play the worker
//! by writing final states through the store, then check the API, the Argo document and
//! the `canary submit` / `canary wait` commands of the real binary against it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary::api::{ApiState, router, routes};
use canary::config::Settings;
use canary::store::{AnalysisState, LookRecord, LookUpdate, SqliteStore, Store};
use canary::telemetry::EngineMetrics;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{now, root};

const TOKEN: &str = "s3cret-token";
const WORKER: &str = "test-worker";

/// A running API.
#[derive(Clone)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The store behind it, to play the worker.
    pub store: Arc<dyn Store>,
    /// The metrics behind it, to play the worker's hooks.
    pub metrics: Arc<EngineMetrics>,
    pub http: reqwest::Client,
    /// The bearer token `post` and `submit` send, if any.
    pub token: Option<String>,
    _directory: Arc<tempfile::TempDir>,
}

/// Serves the router with the token `TOKEN`.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_token(Some(TOKEN)).await
}

/// Serves the router; `token` is `server.auth_token`, and `post` sends it.
pub async fn spawn_app_with_token(token: Option<&str>) -> TestApp {
    let server = token
        .map(|token| format!("[server]\nauth_token = {token:?}\n"))
        .unwrap_or_default();
    let mut app = spawn_app_with_settings(&server).await;
    app.token = token.map(str::to_owned);
    app
}

/// Serves the router with `server` (TOML: `[server]` and `[[server.tokens]]`) added to
/// the settings; `post` sends no token until one is set.
pub async fn spawn_app_with_settings(server: &str) -> TestApp {
    let directory = tempfile::tempdir().unwrap();
    let profiles = directory.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    for entry in std::fs::read_dir(root().join("analysis-profiles")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, profiles.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(profiles.join("no-plan.toml"), profile_without_plan()).unwrap();

    let database = directory.path().join("canary.db");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&format!("sqlite:{}", database.display()))
            .await
            .unwrap(),
    );
    let mut settings_text = format!(
        "[profiles]\ndirectory = {:?}\n[sources.prod]\nkind = \"replay\"\ndirectory = \"fixtures/replay/healthy\"\n[actuators.flags]\nkind = \"log-only\"\n[actuators.dry]\nkind = \"log-only\"\n",
        profiles.display().to_string()
    );
    settings_text.push_str(server);
    let settings_file = directory.path().join("canary.toml");
    std::fs::write(&settings_file, settings_text).unwrap();
    let settings = Settings::load_from(Some(&settings_file), Some(Default::default())).unwrap();

    let metrics = Arc::new(EngineMetrics::new());
    let mut state = ApiState::new(Arc::clone(&store), &settings, Arc::clone(&metrics)).unwrap();
    state.poll_interval = Duration::from_millis(50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    TestApp {
        address,
        store,
        metrics,
        http: reqwest::Client::new(),
        token: None,
        _directory: Arc::new(directory),
    }
}

/// web-service.toml without its `[rollout]`, `[[stages]]` and `[[triggers]]`.
fn profile_without_plan() -> String {
    let text = std::fs::read_to_string(root().join("analysis-profiles/web-service.toml")).unwrap();
    let rollout = text.find("[rollout]").unwrap();
    let metrics = text.find("[[metrics]]").unwrap();
    let without = format!("{}{}", &text[..rollout], &text[metrics..])
        .replace("name = \"web-service\"", "name = \"no-plan\"");
    let profile = canary::domain::Profile::parse(&without, "no-plan.toml").unwrap();
    assert!(profile.plan.is_none());
    without
}

fn submission() -> Value {
    json!({
        "profile": "web-service",
        "baseline_scope": "track=\"baseline\"",
        "canary_scope": "track=\"canary\"",
        "flag": "checkout-v2",
        "source": "prod",
        "actuator": "flags",
        "dry_run": true
    })
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub(crate) async fn submit(&self) -> Uuid {
        let (status, body) = self.post("/v1/analyses", &submission().to_string()).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    async fn action(&self, id: Uuid, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/analyses/{id}/actions")))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Plays the worker: claims the analysis and records one look that leaves it in
    /// `state` with `verdict`.
    /// Records look `number` of `id` with the judgement of the latency-regression
    /// recordings, at stage 2 and 25 % traffic, leaving the analysis in `state`.
    pub(crate) async fn record_judged_look(&self, id: Uuid, state: AnalysisState, number: u64) {
        let judgement = crate::report::judged("latency-regression");
        let at = now();
        self.store
            .claim_due(WORKER, at, Duration::from_secs(30), 1)
            .await
            .unwrap();
        let analysis = self.store.get_analysis(id).await.unwrap().unwrap();
        let mut body = crate::helpers::sample_look(number, at);
        body.verdict = judgement.verdict;
        body.judgement = judgement;
        self.store
            .record_look(
                id,
                WORKER,
                analysis.version,
                at,
                LookUpdate {
                    look: Some(LookRecord::of(id, &body)),
                    state,
                    current_stage: Some(2),
                    traffic: Some(25.0),
                    latest_verdict: Some(body.verdict),
                    reasons: Vec::new(),
                    runner_state: canary::store::Snapshot::None,
                    next_look_at: Some(at + 3600.0),
                },
            )
            .await
            .unwrap();
    }

    pub(crate) async fn finish(&self, id: Uuid, state: AnalysisState, verdict: &str) {
        let at = now();
        // Claiming takes every due analysis; one claimed by an earlier call is still ours.
        self.store
            .claim_due(WORKER, at, Duration::from_secs(30), 1000)
            .await
            .unwrap();
        let analysis = self.store.get_analysis(id).await.unwrap().unwrap();
        assert!(analysis.is_leased_by(WORKER, at), "the analysis is due");
        self.store
            .record_look(
                id,
                WORKER,
                analysis.version,
                at,
                LookUpdate {
                    look: Some(LookRecord {
                        analysis_id: id,
                        look: 1,
                        at,
                        stage_index: 0,
                        verdict: verdict.parse().expect("a verdict"),
                        decision: verdict.to_owned(),
                        body: crate::helpers::sample_look(1, at),
                    }),
                    state,
                    current_stage: Some(0),
                    traffic: Some(1.0),
                    latest_verdict: Some(verdict.parse().expect("a verdict")),
                    reasons: vec![format!("the test worker said {verdict}")],
                    runner_state: canary::store::Snapshot::None,
                    next_look_at: None,
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_submitted_analysis_can_be_read_back_and_listed_page_by_page() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/v1/analyses"))
        .bearer_auth(TOKEN)
        .json(&submission())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/analyses/{id}"));
    assert_eq!(created["state"], "pending");
    assert_eq!(created["final"], false);

    let (status, detail) = app.get(&location).await;
    assert_eq!(status, 200);
    for (field, value) in [
        ("profile", json!("web-service")),
        ("flag", json!("checkout-v2")),
        ("source", json!("prod")),
        ("actuator", json!("flags")),
        ("dry_run", json!(true)),
        ("state", json!("pending")),
        ("stage", Value::Null),
        ("latest_verdict", Value::Null),
        ("history", json!([])),
        ("actuations", json!([])),
        ("audit", json!([])),
    ] {
        assert_eq!(detail[field], value, "{field} in {detail}");
    }

    // After a look, the detail shows the stage (named from the profile snapshot), the
    // traffic, the verdict and the per-interval history.
    app.finish(id.parse().unwrap(), AnalysisState::Running, "hold")
        .await;
    let (_, detail) = app.get(&location).await;
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["stage"], json!({"index": 0, "name": "1%", "of": 5}));
    assert_eq!(detail["traffic"], 1.0);
    assert_eq!(detail["latest_verdict"], "hold");
    assert_eq!(detail["history"][0]["verdict"], "hold");
    assert_eq!(detail["reasons"][0], "the test worker said hold");

    let mut ids = vec![id.to_owned()];
    for _ in 0..4 {
        ids.push(app.submit().await.to_string());
    }
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/analyses?limit=2&cursor={cursor}"),
            None => "/v1/analyses?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        listed.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every analysis once, oldest first");
    assert!(pages >= 3);

    let (_, running) = app.get("/v1/analyses?state=running").await;
    assert_eq!(running["items"].as_array().unwrap().len(), 1);
    assert_eq!(running["items"][0]["id"], id);
    let (_, pending) = app.get("/v1/analyses?state=pending&limit=50").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn every_invalid_submission_gets_a_4xx_naming_the_field() {
    let app = spawn_app().await;
    let with = |field: &str, value: Value| {
        let mut body = submission();
        body[field] = value;
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = submission();
        body.as_object_mut().unwrap().remove(field);
        body.to_string()
    };
    let cases: Vec<(&str, String, u16, &str, Option<&str>)> = vec![
        (
            "bad JSON",
            "{\"profile\": \"web-service\",".to_owned(),
            400,
            "malformed_json",
            None,
        ),
        (
            "not an object",
            "[1, 2]".to_owned(),
            422,
            "invalid_body",
            Some("body"),
        ),
        (
            "missing flag",
            without("flag"),
            422,
            "missing_field",
            Some("flag"),
        ),
        (
            "missing profile",
            without("profile"),
            422,
            "missing_field",
            Some("profile"),
        ),
        (
            "missing source",
            without("source"),
            422,
            "missing_field",
            Some("source"),
        ),
        (
            "missing actuator",
            without("actuator"),
            422,
            "missing_field",
            Some("actuator"),
        ),
        (
            "empty flag",
            with("flag", json!("  ")),
            422,
            "empty_field",
            Some("flag"),
        ),
        (
            "unknown profile",
            with("profile", json!("nope")),
            422,
            "unknown_profile",
            Some("profile"),
        ),
        (
            "path in profile",
            with("profile", json!("../secrets")),
            422,
            "unknown_profile",
            Some("profile"),
        ),
        (
            "profile without a plan",
            with("profile", json!("no-plan")),
            422,
            "profile_without_rollout_plan",
            Some("profile"),
        ),
        (
            "unknown source",
            with("source", json!("staging")),
            422,
            "unknown_source",
            Some("source"),
        ),
        (
            "unknown actuator",
            with("actuator", json!("unleash")),
            422,
            "unknown_actuator",
            Some("actuator"),
        ),
        (
            "wrong type",
            with("dry_run", json!("yes")),
            422,
            "invalid_field",
            Some("dry_run"),
        ),
        (
            "unknown field",
            with("flagg", json!("x")),
            422,
            "unknown_field",
            Some("flagg"),
        ),
        (
            "scope with braces",
            with("canary_scope", json!("} or vector(1)")),
            422,
            "invalid_field",
            Some("canary_scope"),
        ),
        (
            "same scopes",
            with("canary_scope", json!("track=\"baseline\"")),
            422,
            "invalid_field",
            Some("canary_scope"),
        ),
        (
            "bad start",
            with("start_at", json!(-5)),
            422,
            "invalid_field",
            Some("start_at"),
        ),
    ];
    for (case, body, status, code, field) in cases {
        let (got, error) = app.post("/v1/analyses", &body).await;
        assert_eq!(got, status, "{case}: {error}");
        assert_eq!(error["error"]["code"], code, "{case}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{case}: {error}");
        }
    }
    // Malformed JSON keeps serde's position; unknown names list the known ones.
    let (_, error) = app.post("/v1/analyses", "{\"profile\": }").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column 13"),
        "{error}"
    );
    let (_, error) = app
        .post("/v1/analyses", &with("source", json!("staging")))
        .await;
    assert_eq!(error["error"]["allowed"], json!(["prod"]));
    let (_, error) = app
        .post("/v1/analyses", &with("actuator", json!("x")))
        .await;
    assert_eq!(error["error"]["allowed"], json!(["dry", "flags"]));
    let (_, error) = app
        .post("/v1/analyses", &with("profile", json!("nope")))
        .await;
    let allowed = error["error"]["allowed"].as_array().unwrap();
    assert!(allowed.contains(&json!("web-service")) && allowed.contains(&json!("staged-ga")));
    // Nothing was stored.
    let (_, page) = app.get("/v1/analyses").await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_and_parameters_are_400() {
    let app = spawn_app().await;
    let unknown = Uuid::new_v4();
    for path in [
        format!("/v1/analyses/{unknown}"),
        format!("/v1/analyses/{unknown}/verdict"),
        format!("/v1/analyses/{unknown}/argo"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    for path in [
        "/v1/analyses/not-a-uuid",
        "/v1/analyses/123/verdict",
        "/v1/analyses/xyz/argo",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "malformed_id");
        assert_eq!(body["error"]["field"], "id");
    }
    for (path, field) in [
        ("/v1/analyses?state=done", "state"),
        ("/v1/analyses?limit=0", "limit"),
        ("/v1/analyses?limit=5000", "limit"),
        ("/v1/analyses?cursor=garbage", "cursor"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    let id = app.submit().await;
    let (status, body) = app
        .get(&format!("/v1/analyses/{id}/verdict?wait=soon"))
        .await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("wait")));
    let (status, body) = app.get("/v1/nothing-here").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("no_such_route"))
    );
}

#[tokio::test]
async fn the_verdict_long_poll_returns_at_once_for_a_final_analysis() {
    let app = spawn_app().await;
    let id = app.submit().await;
    app.finish(id, AnalysisState::Promoted, "promote").await;
    let started = Instant::now();
    let (status, verdict) = app.get(&format!("/v1/analyses/{id}/verdict?wait=2m")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(verdict["final"], true);
    assert_eq!(verdict["state"], "promoted");
    assert_eq!(verdict["verdict"], "promote");
    assert_eq!(verdict["reasons"][0], "the test worker said promote");
}

#[tokio::test]
async fn the_verdict_long_poll_returns_the_current_state_when_the_wait_runs_out() {
    let app = spawn_app().await;
    let id = app.submit().await;
    let started = Instant::now();
    let (status, verdict) = app.get(&format!("/v1/analyses/{id}/verdict?wait=1")).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(status, 200);
    assert_eq!(verdict["final"], false);
    assert_eq!(verdict["state"], "pending");
    assert_eq!(verdict["verdict"], Value::Null);
    // Without `wait` it answers at once.
    let started = Instant::now();
    let (_, verdict) = app.get(&format!("/v1/analyses/{id}/verdict")).await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(verdict["final"], false);
}

#[tokio::test]
async fn the_verdict_long_poll_answers_as_soon_as_a_worker_makes_the_analysis_final() {
    let app = spawn_app().await;
    let id = app.submit().await;
    let finisher = {
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            app.finish(id, AnalysisState::RolledBack, "rollback").await;
        })
    };
    let started = Instant::now();
    let (_, verdict) = app
        .get(&format!("/v1/analyses/{id}/verdict?wait=60s"))
        .await;
    let elapsed = started.elapsed();
    finisher.await.unwrap();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(verdict["final"], true);
    assert_eq!(verdict["verdict"], "rollback");
}

#[tokio::test]
async fn actions_need_the_bearer_token_and_are_audited() {
    let app = spawn_app().await;
    let id = app.submit().await;
    let pause = json!({"action": "pause", "reason": "investigating an alert"});

    let response = app.action(id, None, pause.clone()).await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let response = app.action(id, Some("wrong-token"), pause.clone()).await;
    assert_eq!(response.status().as_u16(), 401);
    let response = app
        .action(id, Some(&format!("{TOKEN}x")), pause.clone())
        .await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(app.store.audit_log(id).await.unwrap().is_empty());

    let response = app.action(id, Some(TOKEN), pause).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["analysis"]["state"], "paused");
    assert_eq!(body["audit"]["actor"], "api-token");
    assert_eq!(body["audit"]["action"], "pause");
    assert_eq!(body["audit"]["from_state"], "pending");
    assert_eq!(body["audit"]["to_state"], "paused");
    let audit = app.store.audit_log(id).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].reason, "investigating an alert");

    // A rollback is recorded for the workers to carry out: the analysis is claimable
    // again and shows the pending action until a worker writes it.
    let response = app
        .action(
            id,
            Some(TOKEN),
            json!({"action": "rollback", "reason": "errors in the logs"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["analysis"]["state"], "running");
    assert_eq!(body["pending_action"], "rollback");
    let (_, detail) = app.get(&format!("/v1/analyses/{id}")).await;
    assert_eq!(detail["pending_action"], "rollback");
    assert_eq!(detail["audit"].as_array().unwrap().len(), 2);
    app.finish(id, AnalysisState::RolledBack, "rollback").await;
    let (_, detail) = app.get(&format!("/v1/analyses/{id}")).await;
    assert_eq!(detail["pending_action"], Value::Null);

    // Malformed action bodies name the field.
    let response = app
        .action(id, Some(TOKEN), json!({"action": "restart", "reason": "x"}))
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "action");
    let response = app
        .action(id, Some(TOKEN), json!({"action": "pause"}))
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let response = app
        .action(
            Uuid::new_v4(),
            Some(TOKEN),
            json!({"action": "pause", "reason": "x"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn an_action_not_allowed_from_the_state_or_on_a_moved_version_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.submit().await;
    let response = app
        .action(id, Some(TOKEN), json!({"action": "resume", "reason": "x"}))
        .await;
    assert_eq!(response.status().as_u16(), 409, "resume a pending analysis");

    let response = app
        .action(
            id,
            Some(TOKEN),
            json!({"action": "pause", "reason": "x", "expected_version": 7}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 409, "stale version");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");

    app.finish(id, AnalysisState::Promoted, "promote").await;
    for action in ["resume", "pause", "promote", "rollback"] {
        let response = app
            .action(id, Some(TOKEN), json!({"action": action, "reason": "x"}))
            .await;
        assert_eq!(
            response.status().as_u16(),
            409,
            "{action} a promoted analysis"
        );
    }
    assert!(app.store.audit_log(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn actions_are_refused_when_the_server_has_no_token() {
    let app = spawn_app_with_token(None).await;
    let id = app.submit().await;
    let response = app
        .action(
            id,
            Some("anything"),
            json!({"action": "pause", "reason": "x"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth_token")
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(app.get("/readyz").await, (200, json!({"status": "ready"})));
    let first = app.submit().await;
    app.submit().await;
    app.finish(first, AnalysisState::Running, "hold").await;
    let _ = app.get("/v1/analyses/not-a-uuid").await;
    // The hooks the workers call, through the same registry the API encodes.
    app.metrics.record_verdict("rollback");
    app.metrics.observe_interval_lateness(0.25);
    app.metrics
        .observe_source_request("prod", 0.1, Some("no_data"));
    app.metrics.observe_actuation("flags", 0.01, false);

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        "canary_analyses{state=\"pending\"} 1",
        "canary_analyses{state=\"running\"} 1",
        "canary_analyses{state=\"promoted\"} 0",
        "canary_http_requests_total{method=\"POST\",route=\"/v1/analyses\",status=\"201\"} 2",
        "canary_http_requests_total{method=\"GET\",route=\"/v1/analyses/{id}\",status=\"400\"} 1",
        "canary_verdicts_total{outcome=\"rollback\"} 1",
        "canary_interval_lateness_seconds_count 1",
        "canary_source_errors_total{source=\"prod\",kind=\"no_data\"} 1",
        "canary_actuator_request_duration_seconds_count{actuator=\"flags\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }

    // A store that no longer answers makes the instance unready, not dead.
    app.store.close().await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn the_openapi_document_parses_and_every_route_in_it_is_served() {
    let app = spawn_app().await;
    let (status, document) = app.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let id = app.submit().await;
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"].is_object(), "{method} {path}");
            documented.push((method.to_uppercase(), path.clone()));
            let url = app.url(
                &path
                    .replace("{id}", &id.to_string())
                    .replace("{namespace}", "shop")
                    .replace("{rollout}", "checkout")
                    .replace("{revision}", "6d4b9f7c5"),
            );
            let request = match method.as_str() {
                "get" => app.http.get(url),
                // No token and no JSON content type: the first check answers.
                "post" => app.http.post(url).body("{}"),
                "put" => app.http.put(url).body("{}"),
                other => panic!("unexpected method {other}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(!body.contains("no_such_route"), "{method} {path}: {body}");
            assert!(
                operation["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
        }
    }
    documented.sort();
    assert_eq!(documented, routes());
}

/// The first yaml block of `markdown`.
fn first_yaml_block(markdown: &str) -> &str {
    markdown
        .split("```yaml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block")
}

/// The value of the first `key:` line of `yaml`, unquoted.
fn yaml_value(yaml: &str, key: &str) -> String {
    yaml.lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in the template"))
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// The `successCondition`, `failureCondition` and URL of the template in the docs.
fn documented_template() -> (String, String, String, String) {
    let text = std::fs::read_to_string(root().join("docs/argo-rollouts.md")).unwrap();
    let yaml = first_yaml_block(&text);
    (
        yaml_value(yaml, "successCondition"),
        yaml_value(yaml, "failureCondition"),
        yaml_value(yaml, "url"),
        yaml_value(yaml, "jsonPath"),
    )
}

/// Evaluates `result.FIELD == true|false` against the endpoint's answer.
fn evaluate(condition: &str, result: &Value) -> bool {
    let (left, right) = condition.split_once("==").expect("a comparison");
    let field = left.trim().strip_prefix("result.").expect("result.FIELD");
    let expected: bool = right.trim().parse().expect("true or false");
    let actual = result
        .get(field)
        .unwrap_or_else(|| panic!("the endpoint has no field {field}: {result}"));
    actual.as_bool().expect("a boolean field") == expected
}

#[tokio::test]
async fn the_argo_endpoint_satisfies_the_documented_template() {
    let (success, failure, url, json_path) = documented_template();
    assert_eq!(success, "result.successful == true");
    assert_eq!(failure, "result.failed == true");
    assert_eq!(json_path, "{$}", "the whole object is the result");
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    assert_eq!(path, "/v1/analyses/{{args.analysis-id}}/argo");

    let app = spawn_app().await;
    let promoted = app.submit().await;
    let rolled_back = app.submit().await;
    let running = app.submit().await;
    app.finish(promoted, AnalysisState::Promoted, "promote")
        .await;
    app.finish(rolled_back, AnalysisState::RolledBack, "rollback")
        .await;
    app.finish(running, AnalysisState::Running, "promote").await;
    for (id, succeeds, fails) in [
        (promoted, true, false),
        (rolled_back, false, true),
        (running, false, false),
    ] {
        // The documented query string (a short wait here) is accepted as is.
        let query = query.replace("25s", "0");
        let (status, result) = app.get(&format!("/v1/analyses/{id}/argo?{query}")).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(evaluate(&success, &result), succeeds, "{result}");
        assert_eq!(evaluate(&failure, &result), fails, "{result}");
        assert_eq!(result["inconclusive"], !(succeeds || fails));
        assert_eq!(result["final"], succeeds || fails);
    }
    let (_, result) = app.get(&format!("/v1/analyses/{promoted}/argo")).await;
    assert_eq!(
        result,
        json!({"verdict": "promote", "state": "promoted", "successful": true, "failed": false, "inconclusive": false, "final": true})
    );
}

/// The second template of `docs/argo-rollouts.md` (submit-or-get): its method, URL,
/// `jsonBody` (as JSON, with `{{args.flag}}` filled in) and conditions.
fn documented_submit_template(flag: &str) -> (String, String, Value, String, String) {
    let text = std::fs::read_to_string(root().join("docs/argo-rollouts.md")).unwrap();
    let (_, section) = text
        .split_once("## Without a separate submit")
        .expect("the submit-or-get section");
    let yaml = first_yaml_block(section);
    let value = |key: &str| yaml_value(yaml, key);
    // The jsonBody block: the lines indented below `jsonBody:`.
    let mut body = serde_json::Map::new();
    let mut lines = yaml.lines().skip_while(|line| line.trim() != "jsonBody:");
    let indent = |line: &str| line.len() - line.trim_start().len();
    let head = lines.next().expect("jsonBody in the template");
    for line in lines.take_while(|line| indent(line) > indent(head)) {
        let (key, raw) = line.trim().split_once(':').unwrap();
        let raw = raw.trim();
        let unquoted = raw
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .or_else(|| raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
            .unwrap_or(raw);
        body.insert(
            key.to_owned(),
            Value::String(unquoted.replace("{{args.flag}}", flag)),
        );
    }
    (
        value("method"),
        value("url"),
        Value::Object(body),
        value("successCondition"),
        value("failureCondition"),
    )
}

impl TestApp {
    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut request = self.http.put(self.url(path)).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn the_argo_submit_or_get_endpoint_starts_one_analysis_per_revision_as_documented() {
    let (method, url, documented_body, success, failure) =
        documented_submit_template("checkout-v2");
    assert_eq!(method, "PUT");
    assert_eq!(success, "result.successful == true");
    assert_eq!(failure, "result.failed == true");
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    assert_eq!(
        path,
        "/v1/argo/rollouts/{{args.namespace}}/{{args.rollout}}/{{args.revision}}"
    );
    let query = query.replace("25s", "0");
    let rollout_path = |revision: &str| {
        format!(
            "{}?{query}",
            path.replace("{{args.namespace}}", "shop")
                .replace("{{args.rollout}}", "checkout")
                .replace("{{args.revision}}", revision)
        )
    };
    // The documented body names the profile, source and actuator the test server has;
    // a dry run here, so that revisions do not contend for the flag.
    let mut body = documented_body.clone();
    body["dry_run"] = json!(true);
    for key in [
        "profile",
        "flag",
        "source",
        "actuator",
        "baseline_scope",
        "canary_scope",
    ] {
        assert_eq!(body[key], submission()[key], "jsonBody.{key}");
    }

    let app = spawn_app().await;
    let (status, first) = app.put(&rollout_path("6d4b9f7c5"), &body).await;
    assert_eq!(status, 201, "{first}");
    let id: Uuid = first["analysis_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(first["state"], "pending");
    assert!(
        !evaluate(&success, &first) && !evaluate(&failure, &first),
        "{first}"
    );
    assert_eq!(first["inconclusive"], true);
    // Later measurements read the same analysis.
    for _ in 0..3 {
        let (status, again) = app.put(&rollout_path("6d4b9f7c5"), &body).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["analysis_id"], first["analysis_id"]);
    }
    let (_, stored) = app.get(&format!("/v1/analyses/{id}")).await;
    assert_eq!(stored["flag"], "checkout-v2", "{stored}");

    // Eight concurrent first calls for a new revision store exactly one analysis.
    let second_path = rollout_path("7f8e9a0b1");
    let calls = (0..8).map(|_| app.put(&second_path, &body));
    let answers = futures::future::join_all(calls).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == 200 || *status == 201)
    );
    let second_id = &answers[0].1["analysis_id"];
    assert!(
        answers
            .iter()
            .all(|(_, answer)| &answer["analysis_id"] == second_id)
    );
    assert_ne!(
        second_id, &first["analysis_id"],
        "a new revision, a new analysis"
    );

    // Another body under a key already taken is refused, never answered with the
    // other analysis's verdict.
    let mut other = body.clone();
    other["flag"] = json!("search-v3");
    let (status, refused) = app.put(&rollout_path("6d4b9f7c5"), &other).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "submit_key_conflict");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id.to_string())
    );

    // Malformed names and bodies are 4xx naming what is wrong, and store nothing.
    let before = app.get("/v1/analyses?limit=100").await.1["items"]
        .as_array()
        .unwrap()
        .len();
    for (bad_path, field) in [
        ("/v1/argo/rollouts/Shop/checkout/6d4b9f7c5", "namespace"),
        ("/v1/argo/rollouts/shop/-checkout/6d4b9f7c5", "rollout"),
        ("/v1/argo/rollouts/shop/checkout/6d4b-9f7c5", "revision"),
    ] {
        let (status, error) = app.put(bad_path, &body).await;
        assert_eq!(status, 400, "{bad_path}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("flag");
    let (status, error) = app.put(&rollout_path("1a2b3c4d5"), &missing).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "flag");
    // Without the token, or not as JSON, nothing is stored either.
    let anonymous = app
        .http
        .put(app.url(&rollout_path("2b3c4d5e6")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let as_text = app
        .http
        .put(app.url(&rollout_path("2b3c4d5e6")))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(as_text.status().as_u16(), 415);
    let after = app.get("/v1/analyses?limit=100").await.1["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);

    // The conditions read the end of the analysis as the verdict template does.
    app.finish(id, AnalysisState::Promoted, "promote").await;
    let (status, promoted) = app.put(&rollout_path("6d4b9f7c5"), &body).await;
    assert_eq!(status, 200);
    assert!(
        evaluate(&success, &promoted) && !evaluate(&failure, &promoted),
        "{promoted}"
    );
    let second: Uuid = second_id.as_str().unwrap().parse().unwrap();
    app.finish(second, AnalysisState::RolledBack, "rollback")
        .await;
    let (_, rolled_back) = app.put(&rollout_path("7f8e9a0b1"), &body).await;
    assert!(
        !evaluate(&success, &rolled_back) && evaluate(&failure, &rolled_back),
        "{rolled_back}"
    );
    assert_eq!(rolled_back["verdict"], "rollback");
}

async fn canary_command(args: Vec<String>) -> crate::helpers::Run {
    canary_command_with_env(args, &[]).await
}

/// [`canary_command`] with the variables `env` set (CANARY_TOKEN is removed unless given).
async fn canary_command_with_env(args: Vec<String>, env: &[(&str, &str)]) -> crate::helpers::Run {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("CANARY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the canary binary runs")
        .into()
}

fn submit_args(app: &TestApp, extra: &[&str]) -> Vec<String> {
    submit_args_with_source(app, "prod", extra)
}

fn submit_args_with_source(app: &TestApp, source: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "submit",
        "--server",
        &app.address,
        "--profile",
        "web-service",
        "--flag",
        "checkout-v2",
        "--source",
        source,
        "--actuator",
        "flags",
        "--dry-run",
        "--token",
        TOKEN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_submit_and_wait_exit_0_2_3_by_the_final_state() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let submitted = canary_command(submit_args(&app, &[])).await;
        assert_eq!(submitted.code, 0, "{}", submitted.stderr);
        let id: Uuid = submitted
            .stdout
            .trim()
            .parse()
            .expect("only the id on stdout");
        ids.push(id);
    }
    app.finish(ids[0], AnalysisState::Promoted, "promote").await;
    app.finish(ids[1], AnalysisState::RolledBack, "rollback")
        .await;
    app.finish(ids[2], AnalysisState::Failed, "hold").await;
    let wait = |id: Uuid, timeout: &str| {
        vec![
            "wait".to_owned(),
            id.to_string(),
            "--server".to_owned(),
            app.address.clone(),
            "--timeout".to_owned(),
            timeout.to_owned(),
        ]
    };
    let promoted = canary_command(wait(ids[0], "30s")).await;
    assert_eq!(promoted.code, 0, "{}{}", promoted.stdout, promoted.stderr);
    assert!(
        promoted.stdout.starts_with("verdict: PROMOTE"),
        "{}",
        promoted.stdout
    );
    assert!(promoted.stdout.contains("the test worker said promote"));
    let rolled_back = canary_command(wait(ids[1], "30s")).await;
    assert_eq!(
        rolled_back.code, 3,
        "{}{}",
        rolled_back.stdout, rolled_back.stderr
    );
    assert!(rolled_back.stdout.starts_with("verdict: ROLLBACK"));
    let failed = canary_command(wait(ids[2], "30s")).await;
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);

    let started = Instant::now();
    let pending = canary_command(wait(ids[3], "1s")).await;
    assert_eq!(pending.code, 2, "{}{}", pending.stdout, pending.stderr);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(pending.stdout.contains("not final"), "{}", pending.stdout);

    // submit --wait: the id first, then the verdict once a worker decides.
    let finisher = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (_, page) = app.get("/v1/analyses?state=pending").await;
                if let Some(id) = page["items"].as_array().unwrap().iter().find_map(|item| {
                    let id: Uuid = item["id"].as_str().unwrap().parse().unwrap();
                    (id != ids[3]).then_some(id)
                }) {
                    app.finish(id, AnalysisState::Promoted, "promote").await;
                    return id;
                }
            }
            panic!("the submitted analysis never appeared");
        })
    };
    let submitted = canary_command(submit_args(&app, &["--wait", "30s"])).await;
    let finished = finisher.await.unwrap();
    assert_eq!(
        submitted.code, 0,
        "{}{}",
        submitted.stdout, submitted.stderr
    );
    let mut lines = submitted.stdout.lines();
    assert_eq!(lines.next().unwrap(), finished.to_string());
    assert!(lines.next().unwrap().starts_with("verdict: PROMOTE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_submit_and_wait_exit_1_for_refusals_unknown_ids_and_unreachable_servers() {
    let app = spawn_app().await;
    let refused = canary_command(submit_args_with_source(&app, "staging", &[])).await;
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("field source"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("prod"), "{}", refused.stderr);
    assert!(refused.stdout.is_empty());

    let unknown = canary_command(vec![
        "wait".into(),
        Uuid::new_v4().to_string(),
        "--server".into(),
        app.address.clone(),
    ])
    .await;
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("404"), "{}", unknown.stderr);

    let malformed = canary_command(vec![
        "wait".into(),
        "not-an-id".into(),
        "--server".into(),
        app.address.clone(),
    ])
    .await;
    assert_eq!(malformed.code, 1);

    // A port nothing listens on: bind one, note it, close it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = canary_command(vec![
        "wait".into(),
        Uuid::new_v4().to_string(),
        "--server".into(),
        format!("http://{closed}"),
        "--timeout".into(),
        "5s".into(),
    ])
    .await;
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );
}

/// A server with `server.auth_token` and three named tokens of different scopes (tokens
/// from `token_env` are checked in `config.rs` and through the binary below).
const SCOPED_TOKENS: &str = r#"
[server]
auth_token = "legacy-token"
[[server.tokens]]
name = "dashboard"
scopes = ["read"]
token = "dashboard-token"
[[server.tokens]]
name = "pipeline"
scopes = ["submit", "read"]
token = "pipeline-token"
[[server.tokens]]
name = "oncall"
scopes = ["act"]
token = "oncall-token"
"#;

impl TestApp {
    /// `POST path` with `body`, `content_type` and `token` as given.
    async fn send(
        &self,
        path: &str,
        content_type: Option<&str>,
        token: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// How many analyses the store holds.
    async fn stored(&self) -> usize {
        self.store
            .list_analyses(None, 1000, None)
            .await
            .unwrap()
            .items
            .len()
    }
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn submitting_needs_a_known_token_with_scope_submit_when_the_server_has_tokens() {
    let app = spawn_app_with_settings(SCOPED_TOKENS).await;
    let body = submission().to_string();
    let json = Some("application/json");

    let response = app.send("/v1/analyses", json, None, &body).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"canary\""
    );
    assert_eq!(
        status_and_code(response).await,
        (401, "unauthorized".into())
    );
    for wrong in [
        "pipeline-toke",
        "pipeline-tokenx",
        "PIPELINE-TOKEN",
        "s3cret-token",
    ] {
        let response = app.send("/v1/analyses", json, Some(wrong), &body).await;
        assert_eq!(status_and_code(response).await.0, 401, "{wrong}");
    }
    for lacking in ["dashboard-token", "oncall-token"] {
        let response = app.send("/v1/analyses", json, Some(lacking), &body).await;
        assert_eq!(
            status_and_code(response).await,
            (403, "forbidden".into()),
            "{lacking}"
        );
    }
    assert_eq!(app.stored().await, 0, "nothing stored before a good token");

    // Every configured token is found, wherever it stands in the list.
    for good in ["pipeline-token", "legacy-token"] {
        let response = app.send("/v1/analyses", json, Some(good), &body).await;
        assert_eq!(response.status().as_u16(), 201, "{good}");
    }
    assert_eq!(app.stored().await, 2);

    // Manual actions need scope `act`; the audit log names the token.
    let id = app.store.list_analyses(None, 1, None).await.unwrap().items[0].id;
    let pause = json!({"action": "pause", "reason": "looking"});
    let response = app.action(id, Some("pipeline-token"), pause.clone()).await;
    assert_eq!(status_and_code(response).await.0, 403);
    let response = app.action(id, Some("oncall-token"), pause).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["audit"]["actor"], "api-token:oncall");

    // Reads stay open by default.
    assert_eq!(app.get("/v1/analyses").await.0, 200);
}

#[tokio::test]
async fn bodies_not_sent_as_json_are_415_and_store_nothing_even_with_a_good_token() {
    let app = spawn_app().await;
    let id = app.submit().await;
    let body = submission().to_string();
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let response = app
            .send("/v1/analyses", content_type, Some(TOKEN), &body)
            .await;
        assert_eq!(
            status_and_code(response).await,
            (415, "unsupported_media_type".into()),
            "{content_type:?}"
        );
        let response = app
            .send(
                &format!("/v1/analyses/{id}/actions"),
                content_type,
                Some(TOKEN),
                r#"{"action": "rollback", "reason": "x"}"#,
            )
            .await;
        assert_eq!(status_and_code(response).await.0, 415, "{content_type:?}");
    }
    let response = app
        .send("/v1/analyses", Some("text/plain"), Some(TOKEN), &body)
        .await;
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{error}"
    );
    assert_eq!(app.stored().await, 1, "only the JSON submission");
    assert!(app.store.audit_log(id).await.unwrap().is_empty());
    let response = app
        .send(
            "/v1/analyses",
            Some("application/json; charset=utf-8"),
            Some(TOKEN),
            &body,
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test]
async fn a_server_without_tokens_takes_submissions_from_anyone_but_still_only_json() {
    let app = spawn_app_with_token(None).await;
    let response = app
        .send(
            "/v1/analyses",
            Some("application/json"),
            None,
            &submission().to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let response = app
        .send(
            "/v1/analyses",
            Some("text/plain"),
            None,
            &submission().to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 415);
    assert_eq!(app.stored().await, 1);
}

#[tokio::test]
async fn with_require_token_for_reads_every_analysis_route_needs_scope_read() {
    let app = spawn_app_with_settings(
        &SCOPED_TOKENS.replace("[server]\n", "[server]\nrequire_token_for_reads = true\n"),
    )
    .await;
    let response = app
        .send(
            "/v1/analyses",
            Some("application/json"),
            Some("pipeline-token"),
            &submission().to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let id = app.store.list_analyses(None, 1, None).await.unwrap().items[0].id;
    for (method, path) in routes().iter().filter(|(method, _)| method == "GET") {
        let url = app.url(&path.replace("{id}", &id.to_string()));
        let get = |token: Option<&str>| {
            let request = app.http.get(url.clone());
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        };
        let open = get(None).send().await.unwrap().status().as_u16();
        if path.starts_with("/v1/analyses") || path.starts_with("/kayenta/") {
            assert_eq!(open, 401, "{method} {path}");
            let status = get(Some("oncall-token")).send().await.unwrap().status();
            assert_eq!(
                status.as_u16(),
                403,
                "{method} {path} with an act-only token"
            );
            // An analysis id names no Kayenta execution: found nothing, but allowed.
            let allowed = if path == "/kayenta/canary/{id}" {
                404
            } else {
                200
            };
            for reader in ["dashboard-token", "pipeline-token", "legacy-token"] {
                let status = get(Some(reader)).send().await.unwrap().status();
                assert_eq!(status.as_u16(), allowed, "{method} {path} with {reader}");
            }
        } else if path.starts_with("/v1/action-links/") {
            // Signed links, not tokens (tests/it/worker.rs); off on this server.
            assert_eq!(open, 404, "{method} {path}");
        } else {
            assert_eq!(
                open, 200,
                "{method} {path} stays open for probes and scrapers"
            );
        }
    }
    // /metrics stays open, but its per-analysis series (flags, profiles) need `read`.
    let scrape = |token: Option<&'static str>| {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let anonymous = scrape(None).await;
    assert!(
        anonymous.contains("canary_analyses{state=\"pending\"} 1"),
        "{anonymous}"
    );
    assert!(!anonymous.contains("canary_analysis_state{"), "{anonymous}");
    let reader = scrape(Some("dashboard-token")).await;
    assert!(
        reader.contains(&format!("canary_analysis_state{{analysis=\"{id}\"")),
        "{reader}"
    );
}

#[tokio::test]
async fn an_empty_or_missing_token_is_refused_at_start_up_naming_the_setting() {
    let directory = tempfile::tempdir().unwrap();
    let settings = directory.path().join("canary.toml");
    std::fs::write(
        &settings,
        "[server]\nauth_token = \"\"\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let error = Settings::load_from(Some(&settings), Some(Default::default())).unwrap_err();
    assert!(error.0.contains("server.auth_token"), "{error}");
    let served = canary_command(vec![
        "serve".into(),
        "--config".into(),
        settings.display().to_string(),
    ])
    .await;
    assert_eq!(served.code, 1, "{}{}", served.stdout, served.stderr);
    assert!(
        served.stderr.contains("server.auth_token"),
        "{}",
        served.stderr
    );
    assert!(!served.stdout.contains("listening"), "{}", served.stdout);

    std::fs::write(
        &settings,
        "[server]\nbind = \"127.0.0.1:0\"\n[[server.tokens]]\nname = \"pipeline\"\nscopes = [\"submit\"]\ntoken_env = \"CANARY_TEST_UNSET_PIPELINE_TOKEN\"\n",
    )
    .unwrap();
    let served = canary_command(vec![
        "serve".into(),
        "--config".into(),
        settings.display().to_string(),
    ])
    .await;
    assert_eq!(served.code, 1, "{}{}", served.stdout, served.stderr);
    assert!(
        served.stderr.contains("CANARY_TEST_UNSET_PIPELINE_TOKEN"),
        "{}",
        served.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_submit_sends_its_token_from_the_flag_or_canary_token() {
    let app = spawn_app().await;
    let without: Vec<String> = submit_args(&app, &[])
        .into_iter()
        .filter(|arg| arg != "--token" && arg != TOKEN)
        .collect();
    let refused = canary_command(without.clone()).await;
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let wrong = canary_command_with_env(without.clone(), &[("CANARY_TOKEN", "nope")]).await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert_eq!(app.stored().await, 0);

    let flag = canary_command(submit_args(&app, &[])).await;
    assert_eq!(flag.code, 0, "{}", flag.stderr);
    let from_env = canary_command_with_env(without, &[("CANARY_TOKEN", TOKEN)]).await;
    assert_eq!(from_env.code, 0, "{}", from_env.stderr);
    assert_eq!(app.stored().await, 2);
}

/// `/metrics` reports each active analysis's state, verdict, score, traffic, stage and
/// per-metric classification and effect from its latest look, with the analysis, flag
/// and profile as labels; an analysis that finished leaves at the next scrape.
#[tokio::test]
async fn each_active_analysis_is_reported_from_its_latest_look_and_leaves_when_done() {
    let app = spawn_app().await;
    let looked = app.submit().await;
    let waiting: Uuid = {
        let mut body = submission();
        body["flag"] = json!("checkout-v3");
        let (status, created) = app.post("/v1/analyses", &body.to_string()).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().parse().unwrap()
    };
    let judgement = crate::report::judged("latency-regression");
    let record = |state: AnalysisState, number: u64| app.record_judged_look(looked, state, number);
    record(AnalysisState::Running, 1).await;
    let scrape = || async {
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = scrape().await;
    let labels = format!("analysis=\"{looked}\",flag=\"checkout-v2\",profile=\"web-service\"");
    for line in [
        format!("canary_analysis_state{{{labels},value=\"running\"}} 1"),
        format!(
            "canary_analysis_verdict{{{labels},value=\"{}\"}} 1",
            judgement.verdict
        ),
        format!("canary_analysis_traffic_percent{{{labels}}} 25.0"),
        format!("canary_analysis_stage{{{labels}}} 2"),
        format!(
            "canary_analysis_state{{analysis=\"{waiting}\",flag=\"checkout-v3\",profile=\"web-service\",value=\"pending\"}} 1"
        ),
    ] {
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    if let Some(score) = judgement.score {
        assert!(
            text.contains(&format!("canary_analysis_score{{{labels}}} {score}")),
            "{text}"
        );
    }
    for metric in &judgement.metrics {
        let classification = serde_json::to_value(metric.classification).unwrap();
        let line = format!(
            "canary_analysis_metric_classification{{{labels},metric=\"{}\",classification=\"{}\"}} 1",
            metric.name,
            classification.as_str().unwrap()
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
        if let Some(shift) = metric.shift_estimate {
            let line = format!(
                "canary_analysis_metric_effect{{{labels},metric=\"{}\"}} {shift}",
                metric.name
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
    assert!(
        judgement
            .metrics
            .iter()
            .any(|m| m.classification == canary::judge::Classification::Fail),
        "the regression fails a metric"
    );
    assert!(!text.contains(&format!("canary_analysis_verdict{{analysis=\"{waiting}\"")));

    // Done: the analysis leaves, the waiting one stays.
    record(AnalysisState::Promoted, 2).await;
    let text = scrape().await;
    assert!(!text.contains(&looked.to_string()), "{text}");
    assert!(text.contains(&waiting.to_string()), "{text}");
}

/// The Grafana dashboard in docs/grafana: valid JSON, every query accepted by a real
/// Prometheus, and every metric it names one that `canary serve` exports.
#[tokio::test]
async fn the_grafana_dashboard_queries_parse_and_name_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/grafana/canary-analyses.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    // A scrape with every family holding a series: an active analysis with a look, and
    // the hooks workers and executors call.
    let app = spawn_app().await;
    let id = app.submit().await;
    app.record_judged_look(id, AnalysisState::Running, 1).await;
    app.metrics.record_verdict("hold");
    app.metrics.observe_execution("succeeded");
    app.metrics
        .observe_source_request("prod", 0.1, Some("unreachable"));
    let scrape = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: Vec<String> = scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect();
    let prometheus = crate::prometheus_harness::start_prometheus("# EOF\n");
    let http = reqwest::Client::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$flag", ".*");
            let answer: Value = http
                .get(format!("{}/api/v1/query", prometheus.url))
                .query(&[("query", expr.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("canary_"))
            {
                let family = name.strip_suffix("_total").unwrap_or(name);
                assert!(
                    exported.iter().any(|known| known == family),
                    "{name} in {expr} is not exported ({exported:?})"
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries}");
}
