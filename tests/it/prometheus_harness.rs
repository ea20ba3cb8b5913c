//! A real Prometheus for tests: backfilled from an OpenMetrics recording, on a free
//! loopback port, in its own temporary directory, stopped and cleaned up on drop.
//!
//! `start_prometheus(text)` writes the recording, backfills it with
//! `promtool tsdb create-blocks-from openmetrics`, writes a config with no scrape
//! targets (so the data stays exactly what was recorded), starts `prometheus` on
//! `127.0.0.1:PORT` and waits for `/-/ready`. The binaries come from the Debian package
//! `prometheus`, which `scripts/test.sh` installs when they are missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Prometheus may take to become ready (it takes about 0.1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Prometheus. Dropping it kills the process and removes its directory.
pub struct PrometheusGuard {
    /// Base URL, e.g. `http://127.0.0.1:40123` (`https://localhost:40123` with TLS).
    pub url: String,
    address: SocketAddr,
    prometheus: PathBuf,
    directory: tempfile::TempDir,
    web_config: Option<PathBuf>,
    /// With TLS: how the readiness check trusts the server's certificate.
    tls_client: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    child: Option<Child>,
}

/// The certificate Prometheus serves with TLS, and how a client trusts it.
pub struct ServerTls {
    /// PEM file of the server certificate (for `localhost` and `127.0.0.1`).
    pub cert_file: PathBuf,
    /// PEM file of its private key.
    pub key_file: PathBuf,
    /// A client configuration that trusts the certificate's CA.
    pub client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
}

/// Starts a Prometheus holding the samples of `openmetrics` and no scrape targets.
pub fn start_prometheus(openmetrics: &str) -> PrometheusGuard {
    start(openmetrics, None, None)
}

/// Like [`start_prometheus`], serving HTTPS only (`tls_server_config` in its web
/// config) at `https://localhost:PORT`.
#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
pub fn start_prometheus_with_tls(openmetrics: &str, tls: &ServerTls) -> PrometheusGuard {
    start(openmetrics, None, Some(tls))
}

/// Like [`start_prometheus`], but requiring HTTP basic authentication from
/// `username` with the password whose bcrypt hash is `bcrypt_hash`.
pub fn start_prometheus_with_basic_auth(
    openmetrics: &str,
    username: &str,
    bcrypt_hash: &str,
) -> PrometheusGuard {
    start(openmetrics, Some((username, bcrypt_hash)), None)
}

fn start(
    openmetrics: &str,
    basic_auth: Option<(&str, &str)>,
    tls: Option<&ServerTls>,
) -> PrometheusGuard {
    let prometheus = find_binary("prometheus");
    let promtool = find_binary("promtool");
    let directory = tempfile::Builder::new()
        .prefix("canary-prometheus-")
        .tempdir()
        .expect("a temporary directory");
    let root = directory.path();

    let recording = root.join("recording.om");
    std::fs::write(&recording, openmetrics).expect("the recording is written");
    let backfill = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&recording)
        .arg(root.join("data"))
        .output()
        .expect("promtool runs");
    assert!(
        backfill.status.success(),
        "promtool could not backfill the recording:\n{}{}",
        String::from_utf8_lossy(&backfill.stdout),
        String::from_utf8_lossy(&backfill.stderr)
    );

    std::fs::write(
        root.join("prometheus.yml"),
        "global:\n  evaluation_interval: 1m\nscrape_configs: []\n",
    )
    .expect("the config is written");
    let mut web = String::new();
    if let Some((username, hash)) = basic_auth {
        web.push_str(&format!("basic_auth_users:\n  {username}: '{hash}'\n"));
    }
    if let Some(tls) = tls {
        web.push_str(&format!(
            "tls_server_config:\n  cert_file: {:?}\n  key_file: {:?}\n",
            tls.cert_file.display().to_string(),
            tls.key_file.display().to_string()
        ));
    }
    let web_config = (!web.is_empty()).then(|| {
        let path = root.join("web.yml");
        std::fs::write(&path, web).expect("the web config is written");
        path
    });

    let address = free_loopback_address();
    let url = match tls {
        Some(_) => format!("https://localhost:{}", address.port()),
        None => format!("http://{address}"),
    };
    let mut guard = PrometheusGuard {
        url,
        address,
        prometheus,
        directory,
        web_config,
        tls_client: tls.map(|tls| tls.client.clone()),
        child: None,
    };
    guard.restart();
    guard
}

impl PrometheusGuard {
    /// Stops Prometheus (kill and wait), keeping its port and data for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Prometheus again (or the first time) on the same port and data
    /// directory, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        let root = self.directory.path();
        let log = std::fs::File::create(root.join("prometheus.log")).expect("a log file");
        let mut command = Command::new(&self.prometheus);
        command
            .arg(format!(
                "--config.file={}",
                root.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={}", self.address));
        if let Some(web_config) = &self.web_config {
            command.arg(format!("--web.config.file={}", web_config.display()));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// The data directory, for tests that look at it.
    #[allow(dead_code)]
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "prometheus exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            let ready = match &self.tls_client {
                Some(client) => ready_over_tls(self.address, client.clone()),
                None => ready_status(self.address).is_some(),
            };
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "prometheus at {} was not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.url,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        // Runs before the fields drop, so the process is gone before its directory is removed.
        self.stop();
    }
}

/// `Some(status)` once `GET /-/ready` answers 200, or 401 when basic auth is on (an
/// answer that checked credentials means the server is up). A tiny HTTP/1.0 client,
/// so the harness needs no async runtime.
pub(crate) fn ready_status(address: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status: u16 = answer.split_whitespace().nth(1)?.parse().ok()?;
    matches!(status, 200 | 401).then_some(status)
}

/// `GET /-/ready` answers 200 over TLS, the server's certificate checked for
/// `localhost` against `client`'s roots. Blocking, like [`ready_status`].
fn ready_over_tls(
    address: SocketAddr,
    client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
) -> bool {
    use tokio_rustls::rustls::{ClientConnection, StreamOwned, pki_types::ServerName};
    let attempt = || -> Option<bool> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let connection = ClientConnection::new(client, name).ok()?;
        let mut tls = StreamOwned::new(connection, stream);
        tls.write_all(b"GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut answer = Vec::new();
        // Go closes without a TLS close_notify alert sometimes; what was read counts.
        let _ = tls.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        Some(answer.split_whitespace().nth(1) == Some("200"))
    };
    attempt().unwrap_or(false)
}

/// Binds port 0 on the loopback interface and gives the port back for Prometheus.
pub(crate) fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("the bound address")
}

pub(crate) fn find_binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|path| path.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (looked on PATH and in /usr/bin). Run scripts/test.sh, \
                 which installs the Debian package `prometheus` (it ships both prometheus and promtool)."
            )
        })
}
