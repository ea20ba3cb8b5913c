//! The live test bed: the real `canary-demo-service` following a flagd flag file,
//! scraped every second by a real Prometheus, for tests that roll a flag out on a world
//! that looks like production.
//!
//! `LiveBed::start(BedOptions::default())` writes the flag file into a temporary
//! directory, starts the service on a free loopback port (it prints
//! `listening on http://ADDR`), writes a `prometheus.yml` with a 1 s scrape and
//! evaluation interval and one job (`demo-service`) scraping it, starts the Debian
//! `prometheus` binary on a free loopback port with its own data directory, and waits
//! until the first scrape is visible (`up{job="demo-service"} == 1`; Prometheus 2.42
//! hands new targets to its scraper only every 5 s, so this takes about 6 s). Dropping
//! the bed kills both processes by pid and removes the directory (logs are in it:
//! `service.log`, `prometheus.log`; `LiveBed::logs` returns them for failure messages).
//!
//! Everything is blocking std I/O (a tiny HTTP/1.0 client), so a test needs no runtime;
//! from a `#[tokio::test]`, call the bed through `spawn_blocking` or accept a short block.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::root;
use crate::prometheus_harness::{find_binary, free_loopback_address, ready_status};

/// The scrape job's name in `prometheus.yml`.
pub const JOB: &str = "demo-service";
/// How long the first scrape may take to show (about 6 s is normal).
const FIRST_SCRAPE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the service may take to print its address, and Prometheus to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What bed to start.
#[derive(Debug, Clone)]
pub struct BedOptions {
    /// The flag the service follows.
    pub flag: String,
    /// The whole flag file at start.
    pub initial_flags_json: String,
    /// Requests per second over the whole service.
    pub rps: u32,
    /// Pods in each track.
    pub pods_per_track: u32,
    /// The service's seed.
    pub seed: u64,
    /// More arguments for the service, e.g. `--metric-sets=migration`.
    pub service_args: Vec<String>,
}

impl Default for BedOptions {
    /// `checkout-v2` from `fixtures/flags.json` (enabled, no targeting: 0 %), 4,000
    /// requests a second, 3 pods a track, seed 1.
    fn default() -> Self {
        let initial_flags_json = std::fs::read_to_string(root().join("fixtures/flags.json"))
            .expect("fixtures/flags.json is readable");
        assert!(
            initial_flags_json.contains("\"checkout-v2\""),
            "fixtures/flags.json no longer has checkout-v2; give BedOptions a flag file"
        );
        Self {
            flag: "checkout-v2".to_owned(),
            initial_flags_json,
            rps: 4000,
            pods_per_track: 3,
            seed: 1,
            service_args: Vec::new(),
        }
    }
}

/// A running bed. See the module docs.
pub struct LiveBed {
    /// Prometheus, e.g. `http://127.0.0.1:40123`.
    pub prometheus_url: String,
    /// The demo service, e.g. `http://127.0.0.1:40124`.
    pub service_url: String,
    /// The flag file the service follows (edit it atomically, or with `canary run
    /// --actuator flagd-file=...`).
    pub flags: PathBuf,
    /// The flag the service follows.
    pub flag: String,
    dir: tempfile::TempDir,
    prometheus_address: SocketAddr,
    prometheus_binary: PathBuf,
    /// When Prometheus was last (re)started, Unix seconds.
    prometheus_started_at: f64,
    service: Option<Child>,
    prometheus: Option<Child>,
}

impl LiveBed {
    /// Starts the service and Prometheus and waits for the first scrape; panics with
    /// the logs when something does not come up.
    pub fn start(options: BedOptions) -> LiveBed {
        let prometheus_binary = find_binary("prometheus");
        let dir = tempfile::Builder::new()
            .prefix("canary-live-bed-")
            .tempdir()
            .expect("a temporary directory");
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, &options.initial_flags_json).expect("the flag file is written");

        let (service, service_address) = start_service(&options, &flags, dir.path());
        let prometheus_address = free_loopback_address();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            prometheus_config(service_address),
        )
        .expect("the Prometheus config is written");

        let mut bed = LiveBed {
            prometheus_url: format!("http://{prometheus_address}"),
            service_url: format!("http://{service_address}"),
            flags,
            flag: options.flag,
            dir,
            prometheus_address,
            prometheus_binary,
            prometheus_started_at: 0.0,
            service: Some(service),
            prometheus: None,
        };
        bed.restart_prometheus();
        bed.wait_for_first_scrape();
        bed
    }

    /// `POST /fault` with `json`; panics unless the service accepts it. Returns the
    /// fault as the service recorded it (with `onset_at`, Unix seconds).
    pub fn fault(&self, json: Value) -> Value {
        let (status, body) = self.try_fault(&json.to_string());
        assert_eq!(status, 200, "the service refused the fault {json}: {body}");
        body
    }

    /// `POST /fault` with a raw body: the status and the JSON answer.
    pub fn try_fault(&self, body: &str) -> (u16, Value) {
        let (status, text) = http(&self.service_url, "POST", "/fault", Some(body));
        (status, parse_json(&text))
    }

    /// `DELETE /fault`.
    pub fn clear_fault(&self) {
        let (status, text) = http(&self.service_url, "DELETE", "/fault", None);
        assert_eq!(status, 200, "DELETE /fault: {text}");
    }

    /// `GET /state` of the service.
    pub fn state(&self) -> Value {
        let (status, text) = http(&self.service_url, "GET", "/state", None);
        assert_eq!(status, 200, "GET /state: {text}");
        parse_json(&text)
    }

    /// An instant query: `data.result` of `/api/v1/query` (an array for a vector).
    /// Panics when Prometheus answers with an error.
    pub fn query(&self, promql: &str) -> Value {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, text) = http(&self.prometheus_url, "GET", &path, None);
        let answer = parse_json(&text);
        assert!(
            status == 200 && answer["status"] == "success",
            "Prometheus refused {promql}: {status} {text}"
        );
        answer["data"]["result"].clone()
    }

    /// The value of the first sample of an instant query, `None` when the result is
    /// empty (NaN comes back as NaN).
    pub fn query_value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let value = result.get(0)?.get("value")?.get(1)?.as_str()?;
        Some(value.parse().expect("Prometheus sample values are numbers"))
    }

    /// Stops Prometheus, keeping its port and data: SIGTERM by pid, so it writes out
    /// its write-ahead log (a SIGKILL loses the last seconds of samples), and SIGKILL
    /// when it has not exited after 5 s.
    pub fn stop_prometheus(&mut self) {
        if let Some(mut child) = self.prometheus.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exited = wait_until(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts Prometheus again (or the first time) on the same port and data directory
    /// and waits until it is ready. Its first scrape comes about 5 s later; call
    /// [`Self::wait_for_first_scrape`] to wait for it.
    pub fn restart_prometheus(&mut self) {
        self.stop_prometheus();
        self.prometheus_started_at = unix_now();
        let root = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("prometheus.log"))
            .expect("a log file");
        let child = Command::new(&self.prometheus_binary)
            .arg(format!(
                "--config.file={}",
                root.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={}", self.prometheus_address))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        self.prometheus = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while ready_status(self.prometheus_address).is_none() {
            if let Some(status) = self
                .prometheus
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("prometheus exited with {status}; logs:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready after {START_TIMEOUT:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until Prometheus has scraped the service since it was last (re)started:
    /// `up{job="demo-service"} == 1` with a sample timestamp after the start (bounded,
    /// about 6 s after a start). The timestamp matters after a restart: Prometheus writes
    /// no staleness markers when it stops, so the last sample before the stop answers
    /// `up` for five more minutes.
    pub fn wait_for_first_scrape(&self) {
        // `timestamp()` gives the sample's time only on a plain selector (on any other
        // expression it gives the evaluation time), hence two queries.
        let up = format!("up{{job=\"{JOB}\"}}");
        let scraped = wait_until(FIRST_SCRAPE_TIMEOUT, || {
            self.query_value(&format!("timestamp({up})"))
                .is_some_and(|scraped_at| scraped_at >= self.prometheus_started_at)
                && self.query_value(&up) == Some(1.0)
        });
        assert!(
            scraped,
            "Prometheus did not scrape the service within {FIRST_SCRAPE_TIMEOUT:?}; logs:\n{}",
            self.logs()
        );
    }

    /// The flag file as it is now.
    pub fn flag_file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.flags).expect("the flag file is readable")
    }

    /// Replaces the flag file atomically (a temporary file renamed over it).
    pub fn write_flags(&self, contents: &str) {
        let temporary = self.dir.path().join("flags.json.tmp");
        std::fs::write(&temporary, contents).expect("the temporary flag file is written");
        std::fs::rename(&temporary, &self.flags).expect("the flag file is replaced");
    }

    /// Sets the bed's flag to `state` (`"ENABLED"` / `"DISABLED"`) with a fractional
    /// split of `on_percent` : `100 − on_percent`, keeping every other flag and key.
    pub fn set_flag(&self, state: &str, on_percent: u32) {
        let mut document: Value =
            serde_json::from_slice(&self.flag_file_bytes()).expect("the flag file is JSON");
        let flag = &mut document["flags"][self.flag.as_str()];
        flag["state"] = json!(state);
        flag["targeting"] = json!({"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
            ["on", on_percent], ["off", 100 - on_percent]
        ]});
        self.write_flags(&serde_json::to_string_pretty(&document).unwrap());
    }

    /// The service's and Prometheus's logs so far, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- service.log\n{}--- prometheus.log\n{}",
            read("service.log"),
            read("prometheus.log")
        )
    }
}

impl Drop for LiveBed {
    fn drop(&mut self) {
        // Before the fields drop, so both processes are gone before the directory is.
        // SIGKILL by pid: nothing of theirs needs to outlive the bed.
        for mut child in [self.prometheus.take(), self.service.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the demo service on port 0 and reads its address from its one line of stdout.
fn start_service(
    options: &BedOptions,
    flags: &std::path::Path,
    dir: &std::path::Path,
) -> (Child, SocketAddr) {
    let log = std::fs::File::create(dir.join("service.log")).expect("a log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_canary-demo-service"))
        .arg("--listen=127.0.0.1:0")
        .arg(format!("--flags={}", flags.display()))
        .arg(format!("--flag={}", options.flag))
        .arg(format!("--rps={}", options.rps))
        .arg(format!("--pods-per-track={}", options.pods_per_track))
        .arg(format!("--seed={}", options.seed))
        .args(&options.service_args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("canary-demo-service starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|address| address.parse().ok());
    match address {
        Some(address) => (child, address),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "canary-demo-service did not print `listening on http://ADDR` (got {line:?}); its log:\n{}",
                std::fs::read_to_string(dir.join("service.log")).unwrap_or_default()
            );
        }
    }
}

fn prometheus_config(service: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{service}']\n"
    )
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Polls `condition` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 request (the server closes the connection after answering, so the
/// body is everything after the headers): the status and the body.
fn http(base_url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let address: SocketAddr = base_url
        .strip_prefix("http://")
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("not an http://IP:PORT URL: {base_url}"));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|error| panic!("{method} {path} to {address}: {error}"));
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|error| panic!("{method} {path} to {address}: {error}"));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path} to {address}: no HTTP answer: {answer:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path} to {address}: no status in {head:?}"));
    (status, body.to_owned())
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Polls the service until `/state` shows `percent` (and `state`), within `timeout`.
fn wait_for_flag(bed: &LiveBed, percent: f64, state: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let seen = wait_until(timeout, || {
        last = bed.state();
        last["canary_percent"].as_f64() == Some(percent) && last["flag_state"] == state
    });
    assert!(
        seen,
        "the service did not see {percent} % {state} within {timeout:?}: {last}"
    );
    last
}

fn share_of(bed: &LiveBed, track: &str) -> f64 {
    let promql = format!(
        "sum(rate(http_requests_total{{track=\"{track}\"}}[3s])) / sum(rate(http_requests_total[3s]))"
    );
    bed.query_value(&promql)
        .unwrap_or_else(|| panic!("no answer to {promql}"))
}

#[test]
fn the_service_follows_the_flag_and_prometheus_sees_the_split() {
    let bed = LiveBed::start(BedOptions::default());
    assert_eq!(bed.state()["canary_percent"], 0.0);

    bed.set_flag("ENABLED", 25);
    wait_for_flag(&bed, 25.0, "ENABLED", Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(6));
    let (canary, baseline) = (share_of(&bed, "canary"), share_of(&bed, "baseline"));
    assert!((canary - 0.25).abs() <= 0.05, "canary share {canary}");
    assert!((baseline - 0.25).abs() <= 0.05, "baseline share {baseline}");
    assert!(bed.query_value("demo_flag_canary_percent") == Some(25.0));

    bed.set_flag("DISABLED", 25);
    wait_for_flag(&bed, 0.0, "DISABLED", Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(5));
    let canary_rate = bed.query_value(r#"sum(rate(http_requests_total{track="canary"}[3s]))"#);
    assert_eq!(canary_rate, Some(0.0), "the canary still gets traffic");
    let total_rate = bed
        .query_value("sum(rate(http_requests_total[3s]))")
        .unwrap();
    assert!(
        (total_rate / 4000.0 - 1.0).abs() < 0.1,
        "{total_rate} req/s"
    );
}

#[test]
fn an_error_fault_on_the_canary_raises_its_error_ratio_about_tenfold() {
    let bed = LiveBed::start(BedOptions::default());
    bed.set_flag("ENABLED", 25);
    wait_for_flag(&bed, 25.0, "ENABLED", Duration::from_secs(2));
    let fault = bed.fault(json!({"error_factor": 10}));
    assert_eq!(fault["track"], "canary");
    assert!(fault["onset_at"].as_f64().is_some(), "{fault}");
    std::thread::sleep(Duration::from_secs(12));

    let ratio = |matcher: &str| {
        let promql = format!(
            "sum(increase(http_requests_total{{{matcher},code=\"500\"}}[10s])) \
             / sum(increase(http_requests_total{{{matcher}}}[10s]))"
        );
        bed.query_value(&promql)
            .unwrap_or_else(|| panic!("no answer to {promql}"))
    };
    let canary = ratio(r#"track="canary""#);
    let others = ratio(r#"track!="canary""#);
    assert!(
        (0.0005..0.005).contains(&others),
        "others' error ratio {others}"
    );
    let factor = canary / others;
    assert!(
        (6.0..16.0).contains(&factor),
        "canary {canary} vs others {others}: ×{factor}"
    );
}

#[test]
fn the_state_records_flag_changes_and_the_time_from_fault_to_flag_off() {
    let bed = LiveBed::start(BedOptions::default());
    let (status, refused) = bed.try_fault(r#"{"latency_factor": -2}"#);
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["field"], "latency_factor");

    bed.set_flag("ENABLED", 25);
    wait_for_flag(&bed, 25.0, "ENABLED", Duration::from_secs(2));
    let fault = bed.fault(json!({"latency_factor": 1.5, "error_factor": 10}));
    let onset = fault["onset_at"].as_f64().unwrap();
    assert_eq!(bed.state()["fault_onset_to_flag_off_seconds"], Value::Null);
    std::thread::sleep(Duration::from_millis(500));
    bed.set_flag("DISABLED", 0);
    let state = wait_for_flag(&bed, 0.0, "DISABLED", Duration::from_secs(2));

    let changes = state["changes"].as_array().unwrap();
    let summary: Vec<(f64, &str)> = changes
        .iter()
        .map(|change| {
            (
                change["canary_percent"].as_f64().unwrap(),
                change["flag_state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(0.0, "ENABLED"), (25.0, "ENABLED"), (0.0, "DISABLED")]
    );
    let off_at = changes[2]["at"].as_f64().unwrap();
    let seconds = state["fault_onset_to_flag_off_seconds"].as_f64().unwrap();
    assert!((seconds - (off_at - onset)).abs() < 1e-6, "{state}");
    assert!(
        (0.4..1.5).contains(&seconds),
        "{seconds} s from fault to flag off"
    );
    assert_eq!(state["fault"]["active"], true);
    assert!(state["requests"]["canary"]["total"].as_u64().unwrap() > 0);

    bed.clear_fault();
    let state = bed.state();
    assert_eq!(state["fault"], Value::Null);
    assert_eq!(
        state["fault_onset_to_flag_off_seconds"], seconds,
        "kept for the last fault"
    );
}

#[test]
fn prometheus_restarts_on_the_same_port_with_its_data() {
    let mut bed = LiveBed::start(BedOptions {
        rps: 400,
        pods_per_track: 1,
        ..BedOptions::default()
    });
    let url = bed.prometheus_url.clone();
    bed.stop_prometheus();
    bed.restart_prometheus();
    assert_eq!(bed.prometheus_url, url);
    bed.wait_for_first_scrape();
    // Samples from before the restart are still there: the gap shows as a missing
    // scrape, not as a new series.
    let samples = bed
        .query_value(&format!("count_over_time(up{{job=\"{JOB}\"}}[1m])"))
        .unwrap();
    assert!(
        samples >= 2.0,
        "{samples} samples of up: {} (restarted at {}, now {})\n{}",
        bed.query(&format!("up{{job=\"{JOB}\"}}[1m]")),
        bed.prometheus_started_at,
        unix_now(),
        bed.logs()
    );
}
