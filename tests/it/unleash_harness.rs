//! A real unleash-server for tests: 7.4.1 from `tests/unleash`'s lock file, on a free
//! loopback port, over a database of its own, stopped and cleaned up on drop.
//!
//! `UnleashServer::start()` creates `canary_unleash_<uuid>` on the machine's PostgreSQL
//! (127.0.0.1:5432 with trust auth, through database `test`, or `DATABASE_URL`), starts
//! `node tests/unleash/server.mjs` with an admin token it knows, and waits until
//! `/health` answers. Dropping it kills the process and drops the database. A start
//! costs a few seconds (Unleash migrates its fresh database), so each test starts one
//! server and gives its flags unique names. When `node` or `tests/unleash/node_modules`
//! is missing, `start()` prints a notice and returns `None` (`scripts/test.sh` installs
//! them with `npm ci`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

use crate::helpers::root;

/// Unleash migrates a fresh database before it listens: about 7 s here, more when
/// several servers start at once on two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The admin token the server is started with (Unleash wants `*:*.SECRET` for admin
/// tokens).
pub const ADMIN_TOKEN: &str = "*:*.canary-harness-admin-token";

/// A running unleash-server. Dropping it kills the process and drops its database.
pub struct UnleashServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    http: reqwest::Client,
    child: Option<Child>,
    admin_database_url: String,
    database: String,
    directory: tempfile::TempDir,
}

impl UnleashServer {
    /// Starts a server on a fresh database, or returns `None` after printing why when
    /// node or the npm packages are missing.
    pub fn start() -> Option<Self> {
        let script_directory = root().join("tests/unleash");
        match Command::new("node").arg("--version").output() {
            Ok(output) if output.status.success() => {}
            _ => {
                eprintln!(
                    "SKIPPED: `node` is not installed, so the Unleash actuator is not tested against a real unleash-server"
                );
                return None;
            }
        }
        if !script_directory
            .join("node_modules/unleash-server")
            .is_dir()
        {
            eprintln!(
                "SKIPPED: unleash-server is not installed: run `npm ci` in {} (scripts/test.sh does)",
                script_directory.display()
            );
            return None;
        }

        let admin_database_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let database = format!("canary_unleash_{}", uuid::Uuid::new_v4().simple());
        run_sql(&admin_database_url, format!("CREATE DATABASE {database}"));
        let mut database_url =
            reqwest::Url::parse(&admin_database_url).expect("DATABASE_URL is a URL");
        database_url.set_path(&database);

        let directory = tempfile::Builder::new()
            .prefix("canary-unleash-")
            .tempdir()
            .expect("a temporary directory");
        let address = free_loopback_address();
        let log = std::fs::File::create(directory.path().join("unleash.log")).expect("a log file");
        let child = Command::new("node")
            .arg(script_directory.join("server.mjs"))
            .current_dir(&script_directory)
            .env("UNLEASH_TEST_DATABASE_URL", database_url.as_str())
            .env("UNLEASH_TEST_PORT", address.port().to_string())
            .env("UNLEASH_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NODE_NO_WARNINGS", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file twice"))
            .stderr(log)
            .spawn()
            .expect("node starts");
        let mut server = UnleashServer {
            url: format!("http://{address}"),
            http: reqwest::Client::new(),
            child: Some(child),
            admin_database_url,
            database,
            directory,
        };
        let started = Instant::now();
        server.wait_until_ready(address);
        eprintln!(
            "unleash-server ready at {} after {:.1} s",
            server.url,
            started.elapsed().as_secs_f64()
        );
        Some(server)
    }

    fn wait_until_ready(&mut self, address: SocketAddr) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "unleash-server exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if health_is_ok(address) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "unleash-server at {} was not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.url,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("unleash.log")).unwrap_or_default()
    }

    /// One admin API call with the harness's token; panics unless it succeeds.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.admin_call(method.clone(), path, body).await;
        assert!(
            status.is_success(),
            "{method} {path} answered {status}: {answer}"
        );
        answer
    }

    /// One admin API call with the harness's token: the status and the JSON answer
    /// (`null` for an empty body).
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("unleash-server answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Creates a release flag in the `default` project; every environment starts off
    /// with no strategies.
    pub async fn create_flag(&self, name: &str) {
        self.admin(
            Method::POST,
            "/api/admin/projects/default/features",
            Some(json!({"name": name, "type": "release"})),
        )
        .await;
    }

    /// The flag's environment as the admin API reports it, read independently of the
    /// actuator: `enabled` and the strategies.
    pub async fn environment(&self, flag: &str, environment: &str) -> Value {
        self.admin(
            Method::GET,
            &format!("/api/admin/projects/default/features/{flag}/environments/{environment}"),
            None,
        )
        .await
    }

    /// The number of events Unleash logged for the flag: every change adds one.
    pub async fn event_count(&self, flag: &str) -> u64 {
        let answer = self
            .admin(
                Method::GET,
                &format!("/api/admin/search/events?feature=IS:{flag}&limit=1000"),
                None,
            )
            .await;
        answer["events"]
            .as_array()
            .map(|events| events.len() as u64)
            .expect("an events list")
    }
}

impl Drop for UnleashServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // WITH (FORCE) ends any connection a killed server left behind (PostgreSQL 13+).
        run_sql(
            &self.admin_database_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
}

/// Runs one statement on its own thread and runtime, so it works from async tests and
/// from `Drop` alike.
fn run_sql(url: &str, statement: String) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|error| panic!("PostgreSQL at {url} (set DATABASE_URL): {error}"));
            sqlx::query(AssertSqlSafe(statement.clone()))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
            let _ = connection.close().await;
        });
    })
    .join()
    .expect("the SQL thread finishes");
}

/// `GET /health` answers 200. A tiny HTTP/1.0 client, so waiting needs no runtime.
fn health_is_ok(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1) == Some("200")
}

/// A free port on the loopback interface.
fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("the bound address")
}
