//! The `manager-lite serve` process under test: [`Manager`] owns one server
//! on `127.0.0.1:<ephemeral>` with its data directory (a temp dir of its own,
//! or one the test gives), and can kill it (-9), signal it (SIGTERM, SIGINT),
//! restart it on the same data directory and show its captured log; its
//! request helpers go through the raw client of [`crate::http`] with or
//! without the admin token. [`ManagerOptions`] are the flags, environment
//! and token source it starts with.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::build::manager_bin;
use crate::http::{request, try_request, Response};
use crate::process::output_within;
use crate::tempdir::{unique, TempDir};

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server gets its admin token.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Env `MANAGER_ADMIN_TOKEN` set to this.
    Env(String),
    /// Neither env nor flag: the server generates `DATA/admin.token`.
    Generated,
    /// `--admin-token-file FILE`; `token` is the file's contents (the test writes it).
    File { path: PathBuf, token: String },
}

/// How to start a manager.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Extra `serve` arguments (after `--listen` and `--data`).
    pub args: Vec<String>,
    /// Extra environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    pub token: TokenSource,
    /// Working directory of the process (default: the test's own).
    pub cwd: Option<PathBuf>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            args: Vec::new(),
            env: Vec::new(),
            token: TokenSource::Env(unique("admin-token-Xq7")),
            cwd: None,
        }
    }
}

impl ManagerOptions {
    #[must_use]
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Serve HTTPS with this PEM certificate chain and key.
    #[must_use]
    pub fn tls(self, cert: &Path, key: &Path) -> Self {
        self.arg("--tls-cert")
            .arg(&cert.to_string_lossy())
            .arg("--tls-key")
            .arg(&key.to_string_lossy())
    }

    #[must_use]
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// A running `manager-lite serve` on `127.0.0.1:<ephemeral>`. Dropping it kills
/// the process (and removes its temp dir, if it owns one).
pub struct Manager {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    opts: ManagerOptions,
    log: Arc<Mutex<String>>,
    // Dropped after the process is killed (fields drop after `Drop::drop`).
    owned_dir: Option<TempDir>,
}

impl Manager {
    /// Runs the admin command line against this manager with the token in
    /// `token_file` (and no token or URL from the environment), bounded in time.
    pub fn cli(&self, token_file: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(manager_bin());
        cmd.args(args)
            .arg("--server")
            .arg(&self.url)
            .arg("--token-file")
            .arg(token_file)
            .env_remove("MANAGER_ADMIN_TOKEN")
            .env_remove("MANAGER_URL");
        output_within(&mut cmd, Duration::from_secs(60))
    }

    /// A manager with default options on a fresh temp data dir it owns.
    pub fn new() -> Manager {
        Manager::new_with(ManagerOptions::default())
    }

    /// A manager with `opts` on a fresh temp data dir it owns.
    pub fn new_with(opts: ManagerOptions) -> Manager {
        let tmp = TempDir::new("manager");
        let mut m = Manager::start(&tmp.join("data"), opts);
        m.owned_dir = Some(tmp);
        m
    }

    /// Starts a manager on `data_dir` (created by the server if missing) and
    /// waits for its `listening on` line.
    pub fn start(data_dir: &Path, opts: ManagerOptions) -> Manager {
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr, scheme) = spawn_manager(data_dir, &opts, &log);
        let mut m = Manager {
            child: Some(child),
            addr,
            url: format!("{scheme}://{addr}"),
            token: String::new(),
            data_dir: data_dir.to_path_buf(),
            opts,
            log,
            owned_dir: None,
        };
        m.token = m.read_token();
        m
    }

    fn read_token(&self) -> String {
        match &self.opts.token {
            TokenSource::Env(t) | TokenSource::File { token: t, .. } => t.clone(),
            TokenSource::Generated => {
                let path = self.data_dir.join("admin.token");
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("read {}: {e}\nlog:\n{}", path.display(), self.log())
                });
                text.trim().to_string()
            }
        }
    }

    /// The temp dir this manager owns (its data dir is `data` in it), if any.
    pub fn owned_dir(&self) -> Option<&Path> {
        self.owned_dir.as_ref().map(TempDir::path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("manager is running").id()
    }

    /// Everything the server(s) wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("manager is running");
        child.kill().expect("kill -9 manager");
        child.wait().expect("reap manager")
    }

    /// `kill -TERM` and wait (bounded) for the exit; returns its status.
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// `kill -<sig>` (e.g. `"INT"`) and wait (bounded) for the exit; returns its status.
    pub fn signal(&mut self, sig: &str) -> ExitStatus {
        let mut child = self.child.take().expect("manager is running");
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill -{sig}: {e}"));
        assert!(
            status.success(),
            "kill -{sig} {} failed: {status}",
            child.id()
        );
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait manager") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "manager did not exit within {EXIT_TIMEOUT:?} of SIG{sig}\nlog:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait manager"))
    }

    /// Starts the server again on the same data dir with the same options (a
    /// new ephemeral port). A still-running process is killed (-9) first.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_str("\n===== restart =====\n");
        let (child, addr, scheme) = spawn_manager(&self.data_dir, &self.opts, &self.log);
        self.child = Some(child);
        self.addr = addr;
        self.url = format!("{scheme}://{addr}");
        self.token = self.read_token();
    }

    // -- HTTP helpers ------------------------------------------------------

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        try_request(self.addr, method, path, headers, body)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// `GET path` with these headers (no token).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        )
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn admin_get(&self, path: &str) -> Response {
        let auth = self.bearer();
        self.request("GET", path, &[("Authorization", &auth)], b"")
    }

    pub fn admin_post(&self, path: &str, body: &serde_json::Value) -> Response {
        let auth = self.bearer();
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &bytes,
        )
    }

    /// `POST /api/v1/bins/{bin}/versions?version=V[&arch=A]` with `bytes`.
    pub fn upload(&self, bin: &str, version: &str, arch: Option<&str>, bytes: &[u8]) -> Response {
        let mut path = format!("/api/v1/bins/{bin}/versions?version={version}");
        if let Some(a) = arch {
            path.push_str("&arch=");
            path.push_str(a);
        }
        let auth = self.bearer();
        self.request(
            "POST",
            &path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            bytes,
        )
    }

    /// `POST /api/v1/keepalive` for a node with `cpu_arch` and `bins`.
    pub fn keepalive(&self, node_id: &str, cpu_arch: &str, bins: &[(&str, &str)]) -> Response {
        let bins: serde_json::Map<String, serde_json::Value> = bins
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        self.post_json(
            "/api/v1/keepalive",
            &serde_json::json!({
                "node_id": node_id,
                "cpu_arch": cpu_arch,
                "os": "linux",
                "os_release": "test",
                "node_name": format!("name-{node_id}"),
                "bin_proxy_version": "0.1.0",
                "bins": bins,
            }),
        )
    }

    /// `POST /api/v1/releases`.
    pub fn release(&self, bin: &str, version: &str) -> Response {
        self.admin_post(
            "/api/v1/releases",
            &serde_json::json!({"bin_name": bin, "version": version}),
        )
    }
}

impl Default for Manager {
    fn default() -> Self {
        Manager::new()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_manager(
    data_dir: &Path,
    opts: &ManagerOptions,
    log: &Arc<Mutex<String>>,
) -> (Child, SocketAddr, &'static str) {
    let bin = manager_bin();
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data_dir)
        .env_remove("MANAGER_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &opts.token {
        TokenSource::Env(t) => {
            cmd.env("MANAGER_ADMIN_TOKEN", t);
        }
        TokenSource::Generated => {}
        TokenSource::File { path, .. } => {
            cmd.arg("--admin-token-file").arg(path);
        }
    }
    cmd.args(&opts.args);
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if let Some(cwd) = &opts.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

    let (tx, rx) = mpsc::channel::<(SocketAddr, &'static str)>();
    let stderr = child.stderr.take().expect("stderr piped");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut tx = Some(tx);
    capture_lines(stderr, "", log, move |line| {
        if let Some(addr) = listening_addr(line) {
            if let Some(tx) = tx.take() {
                let _ = tx.send(addr);
            }
        }
    });
    capture_lines(stdout, "[stdout] ", log, |_| {});

    if let Ok((addr, scheme)) = rx.recv_timeout(START_TIMEOUT) {
        (child, addr, scheme)
    } else {
        let _ = child.kill();
        let status = child.wait();
        // Give the reader thread a moment to drain the last lines.
        thread::sleep(Duration::from_millis(100));
        let text = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        panic!(
            "manager-lite did not print `listening on http(s)://ADDR` (exit: {status:?})\nlog:\n{text}"
        );
    }
}

/// Appends each line `from` writes to `log`, after `prefix`, on a thread of
/// its own until `from` ends; `seen` looks at each line first.
fn capture_lines(
    from: impl Read + Send + 'static,
    prefix: &'static str,
    log: &Arc<Mutex<String>>,
    mut seen: impl FnMut(&str) + Send + 'static,
) {
    let log = Arc::clone(log);
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            seen(&text);
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            log.push_str(prefix);
            log.push_str(&text);
        }
    });
}

/// The address and scheme in a `listening on http(s)://IP:PORT` line.
fn listening_addr(line: &str) -> Option<(SocketAddr, &'static str)> {
    let (scheme, at) = ["http", "https"]
        .into_iter()
        .find_map(|s| Some((s, line.find(&format!("listening on {s}://"))?)))?;
    let rest = &line[at + "listening on ://".len() + scheme.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    Some((rest[..end].parse().ok()?, scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_address() {
        assert_eq!(
            listening_addr(
                "[2024 INFO manager_lite] listening on http://127.0.0.1:4567 (16 workers)\n"
            ),
            Some(("127.0.0.1:4567".parse().unwrap(), "http"))
        );
        assert_eq!(
            listening_addr("listening on https://[::1]:80 (64 connections at most)"),
            Some(("[::1]:80".parse().unwrap(), "https"))
        );
        assert_eq!(listening_addr("starting"), None);
    }
}
