//! A real browser for the console tests: Debian's Chromium driven by its ChromeDriver
//! over the W3C WebDriver protocol (plain JSON over HTTP, spoken here with reqwest), so
//! pages run their script, keep cookies and submit forms as a person's browser does.
//! `scripts/test.sh` installs `chromium` and `chromium-driver`; without them the tests
//! that need a browser say so and skip.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key WebDriver names elements by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver is killed when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a fresh profile, or `None` (with
    /// a notice) when they are not installed.
    pub async fn start() -> Option<Browser> {
        let (chromium, driver) = (
            Path::new("/usr/bin/chromium"),
            Path::new("/usr/bin/chromedriver"),
        );
        if !chromium.exists() || !driver.exists() {
            println!(
                "NOTICE: /usr/bin/chromium or /usr/bin/chromedriver is missing; skipping the browser checks (scripts/test.sh installs them)"
            );
            return None;
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        // Its own process group, so that Chromium's processes can be killed with it.
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .filter(|response| response.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut browser = Browser {
            driver: child,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {created}"))
            .to_owned();
        Some(browser)
    }

    /// One WebDriver command; panics with the driver's message on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"))
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.expect("chromedriver answers");
        let ok = response.status().is_success();
        let answer: Value = response.json().await.expect("WebDriver JSON");
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if ok { Ok(value) } else { Err(value) }
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// The page's URL now.
    pub async fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        self.try_call(
            "POST",
            &self.at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .ok()
        .and_then(|value| value[ELEMENT].as_str().map(|id| Element(id.to_owned())))
    }

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                "POST",
                &self.at("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|value| value[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for an element matching `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} within {timeout:?} on {}:\n{}",
                self.url().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The rendered text of the first element matching `css` (empty when none does).
    pub async fn text(&self, css: &str) -> String {
        match self.find(css).await {
            Some(element) => self.element_text(&element).await,
            None => String::new(),
        }
    }

    /// The rendered text of `element`.
    pub async fn element_text(&self, element: &Element) -> String {
        self.call(
            "GET",
            &self.at(&format!("/element/{}/text", element.0)),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// An attribute of `element`.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.call(
            "GET",
            &self.at(&format!("/element/{}/attribute/{name}", element.0)),
            None,
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Clicks `element` (the real pointer path: scrolled into view, hit-tested).
    pub async fn click(&self, element: &Element) {
        self.call(
            "POST",
            &self.at(&format!("/element/{}/click", element.0)),
            None,
        )
        .await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{}/value", element.0)),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Presses keys in the focused element (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                [
                    json!({"type": "keyDown", "value": key.to_string()}),
                    json!({"type": "keyUp", "value": key.to_string()}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.at("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` as an async function body (it calls
    /// `arguments[arguments.length - 1]` with the result) and returns that result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.at("/execute/async"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The WCAG 2 A and AA violations axe-core finds on the current page (colour
    /// contrast, labels, names, landmarks, ...), each as `rule: nodes`. `None` when
    /// axe-core is not installed (`scripts/test.sh` runs `npm ci` in `tests/console`).
    pub async fn accessibility_violations(&self) -> Option<Vec<String>> {
        let path = crate::helpers::root().join("tests/console/node_modules/axe-core/axe.min.js");
        let Ok(axe) = std::fs::read_to_string(&path) else {
            println!(
                "NOTICE: {} is missing; skipping the accessibility checks (scripts/test.sh installs it)",
                path.display()
            );
            return None;
        };
        self.execute(&format!("{axe}\n;return true;"), json!([]))
            .await;
        let found = self
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
                   .then(r => done(r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))) \
                   .catch(e => done(['axe failed: ' + e]));",
                json!([]),
            )
            .await;
        Some(
            found
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// The cookies the browser keeps for the current page.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call("GET", &self.at("/cookie"), None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG screenshot of `element` alone, saved to `path` too.
    pub async fn screenshot_element(&self, element: &Element, path: &Path) -> Vec<u8> {
        let encoded = self
            .call(
                "GET",
                &self.at(&format!("/element/{}/screenshot", element.0)),
                None,
            )
            .await;
        let png = decode_base64(encoded.as_str().unwrap_or_default());
        std::fs::write(path, &png).unwrap();
        png
    }

    /// A PNG screenshot of the viewport, saved to `path`.
    pub async fn screenshot(&self, path: &Path) -> Vec<u8> {
        let encoded = self.call("GET", &self.at("/screenshot"), None).await;
        let png = decode_base64(encoded.as_str().unwrap_or_default());
        std::fs::write(path, &png).unwrap();
        png
    }
}

impl Drop for Browser {
    /// Ends the session, which closes Chromium, then kills the driver's process group:
    /// killing the driver alone left Chromium running (a renderer at a fifth of a core
    /// each) for the rest of the suite, the live rollouts included.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        if !self.session.is_empty()
            && let Ok(mut stream) = std::net::TcpStream::connect(address)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("a base64 screenshot")
}

/// The share of a PNG's pixels within `tolerance` (per channel) of `colour`.
pub fn share_of_colour(png: &[u8], colour: [u8; 3], tolerance: u8) -> f64 {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG size")];
    let info = reader.next_frame(&mut pixels).expect("a PNG frame");
    let channels = info.color_type.samples();
    let frame = &pixels[..info.buffer_size()];
    let mut matching = 0usize;
    let mut total = 0usize;
    for pixel in frame.chunks_exact(channels) {
        total += 1;
        if pixel[..3]
            .iter()
            .zip(colour)
            .all(|(got, want)| got.abs_diff(want) <= tolerance)
        {
            matching += 1;
        }
    }
    matching as f64 / total.max(1) as f64
}
