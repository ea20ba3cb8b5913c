//! Issue 13, "bounded everything" and "logs that belong to their analysis": every log
//! line of a worker step carries its own analysis's span and no other's.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary::scheduler::{Clock, CompressedClock, Worker};

use crate::helpers::now;
use crate::worker::{CountingActuator, T0, options, registry, sqlite_file, submit};

/// A `tracing` writer that keeps every line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The analysis ids a log line names in `analysis=` fields (span or event).
fn analyses_named(line: &str) -> Vec<&str> {
    line.match_indices("analysis=")
        .map(|(at, _)| {
            let rest = &line[at + "analysis=".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Issue 13, defect 4: a span entered across an `.await` in the worker made other
/// analyses' steps start inside it, so their lines carried two or more `step{...}`
/// spans and grepping one analysis id returned other analyses' lines.
#[tokio::test]
async fn every_worker_log_line_names_one_analysis_its_own() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test's runtime has one thread, so every step runs under this subscriber.
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock: Arc<dyn Clock> = Arc::new(CompressedClock::new(T0, 60.0));
    let mut ids = Vec::new();
    for index in 0..12 {
        let source = if index % 3 == 0 {
            "regressing"
        } else {
            "healthy"
        };
        ids.push(
            submit(store.as_ref(), source, &format!("flag-{index}"))
                .await
                .id,
        );
    }
    let worker = Worker::new(store.clone(), registry(3, &flags), clock, options("w1", 4));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    // A hang guard, not a speed target: the rollouts take about 5 s at 60× speed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut finished = 0;
        for id in &ids {
            if store
                .get_analysis(*id)
                .await
                .unwrap()
                .unwrap()
                .state
                .is_final()
            {
                finished += 1;
            }
        }
        if finished == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "unfinished after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    store.close().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let mut step_lines = 0;
    for line in text.lines() {
        let named = analyses_named(line);
        if named.is_empty() {
            continue;
        }
        assert!(
            line.matches("step{analysis=").count() <= 1,
            "a line inside more than one step span: {line}"
        );
        assert!(
            named.iter().all(|id| *id == named[0]),
            "a line naming two analyses: {line}"
        );
        assert!(
            ids.iter().any(|id| id.to_string() == named[0]),
            "a line naming an unknown analysis: {line}"
        );
        if line.contains("step{analysis=") {
            step_lines += 1;
        }
    }
    assert!(
        step_lines >= 12,
        "the steps logged inside their spans:\n{text}"
    );
}

/// A good submission, changed by the cases below.
fn submission() -> serde_json::Value {
    serde_json::json!({
        "profile": "web-service",
        "flag": "checkout-v2",
        "source": "prod",
        "actuator": "flags",
        "dry_run": true
    })
}

/// The status and the JSON error of a response, which must be JSON.
async fn json_error(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: not JSON ({content_type:?}): {text:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "{status}: not the error shape: {body}"
    );
    (status, body)
}

/// Issue 13, defect 9: 405, 413, 414 and 431 came without the JSON error body; bad
/// `start_at`, scopes, flag keys, bodies and waits were accepted or named no field.
#[tokio::test]
async fn every_malformed_request_gets_a_json_4xx_naming_the_field() {
    let app = crate::api::spawn_app().await;
    let token = app.token.clone().unwrap();
    let url = |path: &str| format!("{}{path}", app.address);
    let id = app.submit().await;
    let post = |body: String| {
        app.http
            .post(url("/v1/analyses"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut body = submission();
        body[field] = value;
        body.to_string()
    };
    // (case, request, status, code, field)
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            "PUT on an analysis",
            app.http
                .put(url(&format!("/v1/analyses/{id}")))
                .header("content-type", "application/json")
                .body("{}"),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "DELETE on an analysis",
            app.http.delete(url(&format!("/v1/analyses/{id}"))),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "DELETE on the collection",
            app.http.delete(url("/v1/analyses")),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "a 10 MB body",
            post(format!(
                "{{\"flag\": \"{}\"}}",
                "x".repeat(10 * 1024 * 1024)
            )),
            413,
            "body_too_large",
            None,
        ),
        (
            "a long URL",
            app.http
                .get(url(&format!("/v1/analyses?cursor={}", "x".repeat(20_000)))),
            414,
            "uri_too_long",
            None,
        ),
        (
            "long headers",
            app.http
                .get(url("/v1/analyses"))
                .header("x-padding", "x".repeat(40_000)),
            431,
            "headers_too_large",
            None,
        ),
        (
            "text/plain",
            app.http
                .post(url("/v1/analyses"))
                .bearer_auth(&token)
                .header("content-type", "text/plain")
                .body(submission().to_string()),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "unknown route",
            app.http.get(url("/v2/nothing")),
            404,
            "no_such_route",
            None,
        ),
        (
            "zero-width space in the flag",
            post(with("flag", "checkout\u{200B}v2".into())),
            422,
            "invalid_field",
            Some("flag"),
        ),
        (
            "right-to-left override in the flag",
            post(with("flag", "checkout\u{202E}2v".into())),
            422,
            "invalid_field",
            Some("flag"),
        ),
        (
            "byte-order mark in the flag",
            post(with("flag", "\u{FEFF}checkout".into())),
            422,
            "invalid_field",
            Some("flag"),
        ),
        (
            "isolate in the flag",
            post(with("flag", "check\u{2067}out".into())),
            422,
            "invalid_field",
            Some("flag"),
        ),
        (
            "a 5 KiB scope",
            post(with(
                "canary_scope",
                format!("track=\"{}\"", "c".repeat(5 * 1024)).into(),
            )),
            422,
            "invalid_field",
            Some("canary_scope"),
        ),
        (
            "start_at 1e12",
            post(with("start_at", 1e12.into())),
            422,
            "invalid_field",
            Some("start_at"),
        ),
        (
            "start_at 1e16",
            post(with("start_at", 1e16.into())),
            422,
            "invalid_field",
            Some("start_at"),
        ),
        (
            "start_at 1e300",
            post(with("start_at", 1e300.into())),
            422,
            "invalid_field",
            Some("start_at"),
        ),
        (
            "a body of 123",
            post("123".to_owned()),
            422,
            "invalid_body",
            Some("body"),
        ),
        (
            "invalid UTF-8",
            app.http
                .post(url("/v1/analyses"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(b"{\n  \"flag\": \"\xff\"\n}".to_vec()),
            400,
            "malformed_json",
            None,
        ),
        (
            "wait=NaN",
            app.http
                .get(url(&format!("/v1/analyses/{id}/verdict?wait=NaN"))),
            400,
            "invalid_wait",
            Some("wait"),
        ),
        (
            "wait=inf",
            app.http
                .get(url(&format!("/v1/analyses/{id}/verdict?wait=inf"))),
            400,
            "invalid_wait",
            Some("wait"),
        ),
    ];
    for (case, request, status, code, field) in cases {
        let (got, body) = json_error(request.send().await.unwrap()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{case}: {body}"
        );
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{case}: {body}");
        }
    }
    // The messages say what to do.
    let (_, body) = json_error(post("123".to_owned()).send().await.unwrap()).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object, got a number"),
        "{body}"
    );
    let (_, body) = json_error(
        app.http
            .get(url(&format!("/v1/analyses/{id}/verdict?wait=NaN")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("finite number of seconds"),
        "{body}"
    );
    let request = app
        .http
        .post(url("/v1/analyses"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(b"{\n  \"flag\": \"\xff\"\n}".to_vec());
    let (_, body) = json_error(request.send().await.unwrap()).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{body}"
    );
    let response = app
        .http
        .delete(url(&format!("/v1/analyses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["allow"],
        "GET,HEAD",
        "405 keeps its Allow header"
    );
    // A start within the year is still accepted, and nothing else was stored.
    let (status, _) = json_error_or_created(post(with("start_at", (now() + 3600.0).into()))).await;
    assert_eq!(status, 201);
    let page: serde_json::Value = app
        .http
        .get(url("/v1/analyses"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
}

async fn json_error_or_created(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A `canary serve` process; killed when dropped.
type Served = crate::helpers::ServeProcess;

const SERVE_TOKEN: &str = "bounded-token";

/// Starts `canary serve` on `store` with `server` and `store_extra` added to the
/// `[server]` and `[store]` tables.
fn serve(directory: &std::path::Path, store: &str, server: &str, store_extra: &str) -> Served {
    let settings = directory.join("canary.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "{SERVE_TOKEN}"
{server}
[store]
url = "{store}"
{store_extra}
[profiles]
directory = "{profiles}"
[sources.prod]
kind = "replay"
directory = "{replays}/healthy"
[actuators.flags]
kind = "log-only"
[worker]
poll_interval = "100ms"
"#,
            profiles = crate::helpers::root().join("analysis-profiles").display(),
            replays = crate::helpers::root().join("fixtures/replay").display(),
        ),
    )
    .unwrap();
    crate::helpers::spawn_serve(&settings, &[])
}

/// Waits for `child` to exit, at most `guard` (a hang guard, not a speed target).
async fn exit_within(child: &mut std::process::Child, guard: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {guard:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 13, defect 5: with a `verdict?wait=120s` open, SIGTERM took 119 s. Now the
/// long-poll answers with the current state and the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_an_open_long_poll_with_the_current_state_and_exits() {
    let directory = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", directory.path().join("canary.db").display());
    let mut served = serve(directory.path(), &store, "", "");
    let http = reqwest::Client::new();
    // Due in an hour: it stays pending while the poll is open.
    let mut body = submission();
    body["start_at"] = (now() + 3600.0).into();
    let created: serde_json::Value = http
        .post(format!("{}/v1/analyses", served.url))
        .bearer_auth(SERVE_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let poll = tokio::spawn(
        http.get(format!("{}/v1/analyses/{id}/verdict?wait=120s", served.url))
            // A hang guard far below the 120 s wait.
            .timeout(Duration::from_secs(30))
            .send(),
    );
    // Let the poll reach the server (its answer is checked, not this pause).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let response = poll
        .await
        .unwrap()
        .expect("the long-poll is answered at shutdown");
    assert_eq!(response.status().as_u16(), 200);
    let verdict: serde_json::Value = response.json().await.unwrap();
    assert_eq!(verdict["id"], id.as_str());
    assert_eq!(verdict["state"], "pending", "{verdict}");
    assert_eq!(verdict["final"], false, "{verdict}");
    let exit = exit_within(&mut served.child, Duration::from_secs(30)).await;
    assert!(exit.success(), "canary serve exits cleanly: {exit:?}");
}

/// Reads from `stream` until the server closes it or `guard` passes; returns what came.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, guard: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(guard, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the server kept a slow client's connection open for {guard:?}; got {:?}",
        String::from_utf8_lossy(&received)
    );
    String::from_utf8_lossy(&received).into_owned()
}

/// Issue 13, defect 7: 300 half-sent requests were all still open after 40 s. A client
/// that sends half its headers is disconnected after the header read timeout, one that
/// sends half its body gets a JSON 408 after the body read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_disconnected_after_the_configured_timeouts() {
    use tokio::io::AsyncWriteExt;
    let directory = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", directory.path().join("canary.db").display());
    let served = serve(
        directory.path(),
        &store,
        "header_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"",
        "",
    );
    let guard = Duration::from_secs(20);

    let mut half_headers = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(served.address())
            .await
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: canary\r\nX-Slow: ")
            .await
            .unwrap();
        half_headers.push(stream);
    }
    for stream in &mut half_headers {
        let received = read_until_closed(stream, guard).await;
        assert!(
            received.is_empty() || received.starts_with("HTTP/1.1 408"),
            "{received:?}"
        );
    }

    let mut half_body = tokio::net::TcpStream::connect(served.address())
        .await
        .unwrap();
    half_body
        .write_all(
            format!(
                "POST /v1/analyses HTTP/1.1\r\nHost: canary\r\nAuthorization: Bearer {SERVE_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"profile\": "
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let received = read_until_closed(&mut half_body, guard).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received:?}");
    assert!(
        received.contains("application/json") && received.contains("\"request_timeout\""),
        "{received:?}"
    );

    // The server still answers others.
    let ready = reqwest::get(format!("{}/healthz", served.url))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

/// A TCP relay to PostgreSQL that can turn into a black hole: once `cut`, it drops
/// every relayed connection and accepts new ones without ever answering, like a
/// database behind a firewall that drops packets.
struct Relay {
    address: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepting = {
            let cut = Arc::clone(&cut);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        held.push(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let relayed = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(relayed);
                }
            })
        };
        Self {
            address,
            cut,
            connections,
            _accepting: accepting,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// Issue 13, defect 6: with PostgreSQL unreachable, `/readyz`, `/metrics` and submit
/// each hung 30 s (the pool's acquire timeout). Now each is a JSON 503 after
/// `[store] api_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_gets_a_json_503_after_the_store_timeout_and_sigterm_still_stops() {
    crate::store::in_postgres_schema(|schema| async move {
        let url = url_of(&schema.url);
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let relay = Relay::to(upstream).await;
        let mut through_relay = url.clone();
        through_relay.set_host(Some("127.0.0.1")).unwrap();
        through_relay.set_port(Some(relay.address.port())).unwrap();
        let directory = tempfile::tempdir().unwrap();
        // Started off the runtime's threads: it blocks until the server announces its
        // address, and the relay must run meanwhile.
        let path = directory.path().to_owned();
        let served = tokio::task::spawn_blocking(move || {
            serve(&path, through_relay.as_str(), "", "api_timeout = \"1s\"")
        })
        .await
        .unwrap();
        let http = reqwest::Client::builder()
            // A hang guard far below the pool's 30 s acquire timeout.
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let ready = http
            .get(format!("{}/readyz", served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            ready.status().as_u16(),
            200,
            "ready while the database answers"
        );

        relay.cut();
        let requests = [
            ("readyz", http.get(format!("{}/readyz", served.url))),
            ("metrics", http.get(format!("{}/metrics", served.url))),
            (
                "submit",
                http.post(format!("{}/v1/analyses", served.url))
                    .bearer_auth(SERVE_TOKEN)
                    .json(&submission()),
            ),
        ];
        for (path, request) in requests {
            let response = request
                .send()
                .await
                .unwrap_or_else(|error| panic!("{path}: no answer within 10 s: {error}"));
            let (status, body) = json_error(response).await;
            assert_eq!(status, 503, "{path}: {body}");
            assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
        }
        // Shutdown does not wait for the workers' claim, which waits for the store for
        // the pool's whole 30 s acquire timeout (a hang guard of half that).
        let mut served = served;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = exit_within(&mut served.child, Duration::from_secs(15)).await;
        assert!(exit.success(), "canary serve exits cleanly: {exit:?}");
    })
    .await;
}

fn url_of(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).unwrap()
}
