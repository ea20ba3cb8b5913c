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

/// The Python that ships with Debian's graphite-web (its `whisper` and Django).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A running graphite-web, and how far its data was moved forward in time.
pub struct GraphiteGuard {
    /// The render API's base URL.
    pub url: String,
    /// Seconds added to every timestamp of the recording: whisper keeps points only
    /// within its retention of now, so the 2023 recording is moved to end five minutes
    /// ago (a multiple of 15 s, so steps fall on the same samples).
    pub offset: i64,
    _server: StoreGuard,
}

/// Starts graphite-web (Debian's `graphite-web`, served by Django's own server) over
/// whisper files holding `openmetrics`: each series as the plain path
/// `web.TRACK.ROUTE.NAME` (`route="/api"` becomes `api`) at 5-second resolution. The
/// files are written with the `whisper` library, as carbon-cache writes them; carbon
/// itself is not run (it would only relay the same points into the same files).
pub async fn start_graphite(openmetrics: &str) -> GraphiteGuard {
    assert!(
        std::path::Path::new("/usr/bin/graphite-manage").exists(),
        "graphite-web is not installed: run scripts/test.sh, which installs the Debian package graphite-web"
    );
    let directory = tempfile::Builder::new()
        .prefix("canary-graphite-")
        .tempdir()
        .unwrap();
    let root = directory.path();
    let storage = root.join("storage");
    std::fs::create_dir_all(storage.join("whisper")).unwrap();
    std::fs::create_dir_all(root.join("log")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let recorded = samples(openmetrics);
    let last = recorded
        .iter()
        .map(|sample| sample.timestamp.parse::<i64>().unwrap())
        .max()
        .unwrap();
    let offset = (now - 300 - last).div_euclid(15) * 15;
    let mut points = String::new();
    for sample in &recorded {
        let label = |key: &str| {
            sample
                .labels
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.trim_matches('/').replace('/', "_"))
                .unwrap()
        };
        points.push_str(&format!(
            "web.{}.{}.{} {} {}\n",
            label("track"),
            label("route"),
            sample.name,
            sample.value,
            sample.timestamp.parse::<i64>().unwrap() + offset
        ));
    }
    std::fs::write(root.join("points.txt"), points).unwrap();
    std::fs::write(
        root.join("canary_graphite_local.py"),
        format!(
            "SECRET_KEY = 'canary-tests'\nSTORAGE_DIR = '{storage}'\nWHISPER_DIR = '{storage}/whisper'\n\
             LOG_DIR = '{root}/log'\nINDEX_FILE = '{storage}/index'\nALLOWED_HOSTS = ['*']\n\
             DATABASES = {{'default': {{'NAME': '{storage}/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}}}\n",
            storage = storage.display(),
            root = root.display()
        ),
    )
    .unwrap();
    let write = std::process::Command::new(SYSTEM_PYTHON)
        .arg("-c")
        .arg(
            "import collections, os, sys, whisper\n\
             series = collections.defaultdict(list)\n\
             for line in open(sys.argv[1]):\n\
             \x20   path, value, timestamp = line.split()\n\
             \x20   series[path].append((int(timestamp), float(value)))\n\
             for path, points in series.items():\n\
             \x20   file = os.path.join(sys.argv[2], *path.split('.')) + '.wsp'\n\
             \x20   os.makedirs(os.path.dirname(file), exist_ok=True)\n\
             \x20   whisper.create(file, [(5, 3 * 720)], xFilesFactor=0, aggregationMethod='last')\n\
             \x20   whisper.update_many(file, points)\n",
        )
        .arg(root.join("points.txt"))
        .arg(storage.join("whisper"))
        .output()
        .unwrap();
    assert!(
        write.status.success(),
        "whisper files: {}",
        String::from_utf8_lossy(&write.stderr)
    );
    let django = |command: &mut Command| {
        command
            .env("PYTHONPATH", root)
            .env("GRAPHITE_SETTINGS_MODULE", "canary_graphite_local")
            .env("DJANGO_SETTINGS_MODULE", "graphite.settings");
    };
    let mut migrate = Command::new(SYSTEM_PYTHON);
    migrate.args(["-m", "django", "migrate", "-v0"]);
    django(&mut migrate);
    let migrated = migrate.output().unwrap();
    assert!(
        migrated.status.success(),
        "graphite-web's database: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let address = free_loopback_address();
    let mut server = Command::new(SYSTEM_PYTHON);
    server.args([
        "-m",
        "django",
        "runserver",
        "--noreload",
        &address.to_string(),
    ]);
    django(&mut server);
    let mut child = spawn(&mut server, "graphite-web");
    let url = format!("http://{address}");
    wait_until_ready(
        &format!("{url}/render?target=constantLine(1)&format=json"),
        "graphite-web",
        &mut child,
    )
    .await;
    GraphiteGuard {
        url: url.clone(),
        offset,
        _server: StoreGuard {
            url,
            child,
            _directory: directory,
        },
    }
}
