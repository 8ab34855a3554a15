//! A small W3C WebDriver client for the browser tests: it starts Debian's
//! `chromedriver` on an ephemeral loopback port (`--port=0`, reading the port
//! it prints), opens one headless Chromium session with its own profile in a
//! temporary directory, and speaks the WebDriver JSON protocol over HTTP with
//! `ureq`: navigate, find by CSS selector, click, type, read text, run a
//! script, take a PNG screenshot. Dropping a [`Browser`] deletes the session
//! and kills chromedriver (and with it the browser).
//!
//! Every wait is a bounded poll (count and time); nothing measures durations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::TempDir;

/// Where Debian installs the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to print its port.
const DRIVER_START: Duration = Duration::from_secs(60);
/// The longest one WebDriver command may take (a session start included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest [`Browser::wait_for`] polls.
/// Generous: the machine running the tests may be busy building.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);
const WAIT_ROUNDS: u32 = 2400;
/// A screenshot is a few hundred KiB of base64; more means something is wrong.
const MAX_ANSWER: u64 = 64 << 20;
/// The key of an element reference in W3C WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Panics with the install command when the browser or its driver is missing.
pub fn require_chromium() {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).is_file(),
            "{path} is missing: the admin page test drives a real headless browser. \
             Install it with `apt-get install -y chromium chromium-driver` (tests/run.sh does)."
        );
    }
}

/// One chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    log: Arc<Mutex<String>>,
    profile: TempDir,
}

/// A found element, by its WebDriver id.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a
    /// `width`×`height` window.
    pub fn start(width: u32, height: u32) -> Browser {
        require_chromium();
        let profile = TempDir::new("chromium");
        let (driver, port, log) = spawn_driver(&profile);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(COMMAND_TIMEOUT))
            // Loopback only: never through a proxy from the environment.
            .proxy(None)
            .build();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent: ureq::Agent::new_with_config(config),
            log,
            profile,
        };
        browser.wait_ready();
        let caps = capabilities(browser.profile.path(), width, height);
        let created = browser.call("POST", "/session", Some(&caps));
        created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in the new session answer: {created}"))
            .clone_into(&mut browser.session);
        browser
    }

    /// Polls `GET /status` until the driver says it is ready.
    fn wait_ready(&self) {
        let deadline = Instant::now() + DRIVER_START;
        for _ in 0..600 {
            let v = self.call("GET", "/status", None);
            if v["ready"].as_bool() == Some(true) {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready: {v}");
            thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver never became ready");
    }

    /// One WebDriver command; returns its `value`, panics on an error answer.
    #[track_caller]
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn try_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let sent = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => {
                let bytes = serde_json::to_vec(body.unwrap_or(&json!({}))).unwrap();
                self.agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(&bytes[..])
            }
        };
        let mut resp = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {url}: answer is not JSON ({e}): {text}"));
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 || value.get("error").is_some() {
            return Err(format!(
                "WebDriver error {status}: {} — {}",
                value["error"], value["message"]
            ));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// What chromedriver printed so far, for failure messages.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The first element matching a CSS selector; panics when there is none.
    #[track_caller]
    pub fn find(&self, css: &str) -> Element {
        let v = self.session_call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element id for {css:?}: {v}"))
                .to_owned(),
        )
    }

    /// How many elements match a CSS selector.
    pub fn count(&self, css: &str) -> usize {
        let v = self.session_call(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        );
        v.as_array().map_or(0, Vec::len)
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(&json!({})));
    }

    pub fn type_text(&self, e: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({ "text": text })),
        );
    }

    /// The rendered text of an element.
    pub fn text(&self, e: &Element) -> String {
        let v = self.session_call("GET", &format!("/element/{}/text", e.0), None);
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The rendered text of the first element matching `css`, read in one
    /// command: a page that redraws itself cannot replace the element
    /// between finding and reading it.
    #[track_caller]
    pub fn text_of(&self, css: &str) -> String {
        let v = self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null;",
            &[json!(css)],
        );
        match v {
            Value::String(text) => text,
            _ => panic!("no element matches {css:?}; {}", self.page_status()),
        }
    }

    /// Finds the first element matching `css` and clicks it, finding it
    /// again when the page redrew it in between ("stale element").
    #[track_caller]
    pub fn click_on(&self, css: &str) {
        for _ in 0..5 {
            let e = self.find(css);
            let path = format!("/session/{}/element/{}/click", self.session, e.0);
            match self.try_call("POST", &path, Some(&json!({}))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => {}
                Err(e) => panic!("click {css:?}: {e}"),
            }
        }
        panic!("click {css:?}: the element went stale five times over");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn script(&self, script: &str, args: &[Value]) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` until it returns `true` (bounded); panics with `what`
    /// and the page's status line otherwise.
    #[track_caller]
    pub fn wait_for(&self, what: &str, script: &str) {
        self.poll(what, |b| {
            (b.script(script, &[]) == Value::Bool(true)).then_some(())
        });
    }

    /// Calls `check` until it gives a value (bounded in rounds and time);
    /// panics with `what` otherwise. `check` may panic itself to fail fast.
    #[track_caller]
    pub fn poll<T>(&self, what: &str, mut check: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT_LIMIT;
        for _ in 0..WAIT_ROUNDS {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("waited {WAIT_LIMIT:?} for {what}; {}", self.page_status());
    }

    /// The page's state and status line, for failure messages.
    fn page_status(&self) -> String {
        let v = self.script(
            "const s = document.getElementById('status'); \
             return 'state ' + document.body.dataset.state + ', status line: ' + (s ? s.textContent : '');",
            &[],
        );
        v.as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.session_call("GET", "/screenshot", None);
        let b64 = v.as_str().expect("screenshot is base64 text");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("screenshot base64 decodes")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on a port the kernel picks; returns it, the port it
/// printed, and its output (drained by a thread so it never blocks).
fn spawn_driver(profile: &TempDir) -> (Child, u16, Arc<Mutex<String>>) {
    let mut child = Command::new(CHROMEDRIVER)
        .arg("--port=0")
        .arg(format!(
            "--log-path={}",
            profile.join("chromedriver.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = started_port(&line) {
                let _ = tx.send(port);
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    match rx.recv_timeout(DRIVER_START) {
        Ok(port) => (child, port, log),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let out = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("chromedriver printed no port ({e}):\n{out}");
        }
    }
}

/// The port in chromedriver's "… started successfully on port 40123." line.
fn started_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// The new-session body: headless Chromium, quiet (no network of its own),
/// its profile in `profile`.
fn capabilities(profile: &Path, width: u32, height: u32) -> Value {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-extensions".to_owned(),
        "--disable-default-apps".to_owned(),
        "--no-proxy-server".to_owned(),
        "--disable-features=Translate,MediaRouter,OptimizationHints".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--hide-scrollbars".to_owned(),
        "--force-device-scale-factor=1".to_owned(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.join("profile").display()),
    ];
    json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
    }}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_line_parses() {
        assert_eq!(
            started_port("ChromeDriver was started successfully on port 44047."),
            Some(44047)
        );
        assert_eq!(started_port("Only local connections are allowed."), None);
    }
}
