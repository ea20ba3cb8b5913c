//! Real metric stores besides Prometheus, for tests: VictoriaMetrics (and vmauth in
//! front of it) and InfluxDB 1.x, each on a free loopback port in its own temporary
//! directory, loaded with an OpenMetrics recording, stopped and removed on drop.
//!
//! The binaries come from the Debian packages `victoria-metrics` (`victoria-metrics`,
//! `vmauth`) and `influxdb` (`influxd`), which `scripts/test.sh` installs when they are
//! missing. VictoriaMetrics gets the recording through its Prometheus-text import API
//! (timestamps in milliseconds); InfluxDB through its line-protocol write API (each
//! series a measurement with its labels as tags and its value as the field `value`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::prometheus_harness::{find_binary, free_loopback_address};

/// How long a store may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running store. Dropping it kills the process and removes its directory.
pub struct StoreGuard {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    child: Child,
    _directory: tempfile::TempDir,
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of an OpenMetrics recording.
struct RecordedSample {
    name: String,
    labels: Vec<(String, String)>,
    value: String,
    /// Unix seconds, as the recording writes them.
    timestamp: String,
}

/// The samples of an OpenMetrics text (`name{a="b",...} value timestamp` lines).
fn samples(openmetrics: &str) -> Vec<RecordedSample> {
    openmetrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, rest) = line.rsplit_once('}').expect("a labelled sample");
            let (name, labels) = series.split_once('{').expect("labels");
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            let mut fields = rest.split_whitespace();
            RecordedSample {
                name: name.to_owned(),
                labels,
                value: fields.next().expect("a value").to_owned(),
                timestamp: fields.next().expect("a timestamp").to_owned(),
            }
        })
        .collect()
}

fn spawn(command: &mut Command, what: &str) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} starts: {error}"))
}

/// Waits until `url` answers with a success status.
async fn wait_until_ready(url: &str, what: &str, child: &mut Child) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not ready at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a VictoriaMetrics single node holding the samples of `openmetrics`.
pub async fn start_victoria_metrics(openmetrics: &str) -> StoreGuard {
    let binary = find_binary("victoria-metrics");
    let directory = tempfile::Builder::new()
        .prefix("canary-victoria-")
        .tempdir()
        .unwrap();
    let address = free_loopback_address();
    let mut child = spawn(
        Command::new(binary)
            .arg(format!(
                "-storageDataPath={}",
                directory.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr={address}"))
            // The recordings are from 2023: keep them.
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache")
            .arg("-loggerLevel=ERROR"),
        "victoria-metrics",
    );
    let url = format!("http://{address}");
    wait_until_ready(&format!("{url}/health"), "victoria-metrics", &mut child).await;
    let body: String = samples(openmetrics)
        .iter()
        .map(|sample| {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{value}\""))
                .collect();
            format!(
                "{}{{{}}} {} {}000\n",
                sample.name,
                labels.join(","),
                sample.value,
                sample.timestamp
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{url}/api/v1/import/prometheus"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let response = client
        .get(format!("{url}/internal/force_flush"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    StoreGuard {
        url,
        child,
        _directory: directory,
    }
}

/// Starts vmauth in front of `backend`, letting through only requests that carry
/// `Authorization: Bearer TOKEN`.
pub async fn start_vmauth(backend: &str, token: &str) -> StoreGuard {
    let binary = find_binary("vmauth");
    let directory = tempfile::Builder::new()
        .prefix("canary-vmauth-")
        .tempdir()
        .unwrap();
    let config = directory.path().join("auth.yml");
    std::fs::write(
        &config,
        format!("users:\n  - bearer_token: \"{token}\"\n    url_prefix: \"{backend}\"\n"),
    )
    .unwrap();
    let address = free_loopback_address();
    let mut child = spawn(
        Command::new(binary)
            .arg(format!("-auth.config={}", config.display()))
            .arg(format!("-httpListenAddr={address}"))
            .arg("-loggerLevel=ERROR"),
        "vmauth",
    );
    let url = format!("http://{address}");
    wait_until_ready(&format!("{url}/health"), "vmauth", &mut child).await;
    StoreGuard {
        url,
        child,
        _directory: directory,
    }
}

/// The database the InfluxDB harness writes into.
pub const INFLUX_DATABASE: &str = "canary";

/// Starts an InfluxDB 1.x holding the samples of `openmetrics` in [`INFLUX_DATABASE`],
/// with authentication on when `admin` (user, password) is given.
pub async fn start_influxdb(openmetrics: &str, admin: Option<(&str, &str)>) -> StoreGuard {
    let binary = find_binary("influxd");
    let directory = tempfile::Builder::new()
        .prefix("canary-influxdb-")
        .tempdir()
        .unwrap();
    let root = directory.path();
    let http = free_loopback_address();
    let rpc = free_loopback_address();
    let config = root.join("influxdb.conf");
    std::fs::write(
        &config,
        format!(
            r#"reporting-disabled = true
bind-address = "{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "{http}"
  auth-enabled = {auth}
  log-enabled = false
[monitor]
  store-enabled = false
"#,
            root = root.display(),
            auth = admin.is_some(),
        ),
    )
    .unwrap();
    let mut child = spawn(Command::new(binary).arg("-config").arg(&config), "influxd");
    let url = format!("http://{http}");
    wait_until_ready(&format!("{url}/ping"), "influxd", &mut child).await;
    let client = reqwest::Client::new();
    let mut statements = vec![format!("CREATE DATABASE \"{INFLUX_DATABASE}\"")];
    if let Some((user, password)) = admin {
        statements.insert(
            0,
            format!("CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"),
        );
    }
    for statement in statements {
        let mut request = client
            .post(format!("{url}/query"))
            .form(&[("q", statement.as_str())]);
        if let Some((user, password)) = admin
            && !statement.starts_with("CREATE USER")
        {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "{statement}: {:?}",
            response.text().await
        );
    }
    let lines: Vec<String> = samples(openmetrics)
        .iter()
        .map(|sample| {
            let tags: String = sample
                .labels
                .iter()
                .map(|(key, value)| format!(",{key}={}", value.replace(' ', "\\ ")))
                .collect();
            format!(
                "{}{tags} value={} {}",
                sample.name, sample.value, sample.timestamp
            )
        })
        .collect();
    for chunk in lines.chunks(5000) {
        let mut request = client
            .post(format!("{url}/write?db={INFLUX_DATABASE}&precision=s"))
            .body(chunk.join("\n"));
        if let Some((user, password)) = admin {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status, 204, "{:?}", response.text().await);
    }
    StoreGuard {
        url,
        child,
        _directory: directory,
    }
}
