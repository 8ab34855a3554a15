//! The harness of the end-to-end tests: it runs the real `manager-lite` (and
//! `binproxy`) binaries as child processes on ephemeral loopback ports, with
//! their state in temporary directories, and talks to them over real HTTP.
//! Nothing is mocked. [`Manager`] owns one server process (start, kill -9,
//! SIGTERM, restart on the same data directory, its captured log); [`request`]
//! is a deliberately raw HTTP/1.1 client that sends the path exactly as given,
//! so `%2e%2e`, `%2f`, `%00` and literal `..` reach the server unnormalised.
//! [`TempDir`] is a std-only temporary directory removed on drop.
//! [`browser`] drives a real headless Chromium over WebDriver for the admin page.
//!
//! Binaries are found next to the test executable: `target/<profile>/deps/x`
//! means `target/<profile>/<name>`. They are (re)built once per test process
//! with `cargo build -p <pkg> --bin <name>` into that same target directory, so
//! a test never runs a stale server; `cargo test` releases its build-directory
//! lock before it runs test executables, so this does not deadlock. Setting
//! `BINPROXY_TEST_BIN_DIR` skips the build and takes the binaries from there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub mod agent;
pub mod browser;
pub mod enrollment;
pub mod fleet;
pub mod relay;
pub mod tls;
pub mod tls_forward;
pub mod windows;

/// How long a socket read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (in this or another process) uses at the same time.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// The names in `dir` that start with `prefix` (leftover temp files, say).
pub fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `len` bytes that differ for each `seed`, so different artifacts hash apart.
pub fn artifact_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Sha256::digest(seed.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

/// Whether `s` looks like an RFC 3339 timestamp (`2024-01-02T03:04:05Z`,
/// optional fraction, `Z` or `±hh:mm`), with plausible field ranges.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok()).unwrap_or(99);
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Temporary directories

/// A directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("binproxy-tests-{prefix}")));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory (not created).
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Every path under `dir`, relative to it, sorted (directories included).
pub fn list_tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// Finding (and building) the binaries

/// `target/<profile>` of the running test executable, and the arguments that
/// make `cargo build` write into it.
fn profile_dir_and_args() -> (PathBuf, Vec<OsString>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test exe has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name")
        .to_string();
    let mut args: Vec<OsString> = Vec::new();
    match profile.as_str() {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => {
            args.push("--profile".into());
            args.push(other.into());
        }
    }
    // target/<profile> or, when cross-compiling, target/<triple>/<profile>.
    let above = dir.parent().expect("target directory").to_path_buf();
    let target_dir = if above.join("CACHEDIR.TAG").exists() || above.parent().is_none() {
        above
    } else if above
        .parent()
        .is_some_and(|p| p.join("CACHEDIR.TAG").exists())
    {
        let triple = above.file_name().expect("triple").to_os_string();
        args.push("--target".into());
        args.push(triple);
        above.parent().expect("target directory").to_path_buf()
    } else {
        above
    };
    args.push("--target-dir".into());
    args.push(target_dir.into_os_string());
    (dir, args)
}

/// Builds `bin` of package `pkg` (once per process) and returns its path.
fn cargo_bin(pkg: &'static str, bin: &'static str, cell: &'static OnceLock<PathBuf>) -> PathBuf {
    cell.get_or_init(|| {
        if let Some(dir) = std::env::var_os("BINPROXY_TEST_BIN_DIR") {
            let path = PathBuf::from(dir).join(bin);
            assert!(
                path.is_file(),
                "BINPROXY_TEST_BIN_DIR has no {}",
                path.display()
            );
            return path;
        }
        let (dir, args) = profile_dir_and_args();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", pkg, "--bin", bin])
            .args(&args)
            .stdin(Stdio::null());
        // cargo sets these for the test or program running now (CARGO_PKG_NAME
        // = binproxy-tests, ...). Passed on, ring's build script, which
        // watches them, sees them change and rebuilds ring, rustls, ureq and
        // the agent (20 s and more) on every switch between this nested
        // build and a plain `cargo build`.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if is_per_crate_cargo_var(&key) {
                build.env_remove(&*key);
            }
        }
        let out = build
            .output()
            .unwrap_or_else(|e| panic!("run {} build -p {pkg}: {e}", cargo.display()));
        assert!(
            out.status.success(),
            "cargo build -p {pkg} --bin {bin} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join(bin);
        assert!(
            path.is_file(),
            "{} missing after cargo build",
            path.display()
        );
        path
    })
    .clone()
}

/// The `manager-lite` binary of this workspace, built if needed.
/// The variables cargo sets for one crate's build or run, as opposed to
/// settings for cargo itself (`CARGO_HOME`, `CARGO_TARGET_DIR`, ...).
fn is_per_crate_cargo_var(key: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || matches!(
            key,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

pub fn manager_bin() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    cargo_bin("manager-lite", "manager-lite", &CELL)
}

/// The `binproxy` binary of this workspace, built if needed.
pub fn binproxy_bin() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    cargo_bin("binproxy", "binproxy", &CELL)
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client

/// One HTTP answer. Header names are lower case.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the answer) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    /// The body as a wire type; panics (showing the answer) when it does not parse.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not a {} ({e}): {self}", std::any::type_name::<T>())
        })
    }

    /// Asserts the status, showing the whole answer when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Response {
        assert_eq!(self.status, status, "unexpected answer: {self}");
        self
    }

    /// Asserts an error answer: this status and a JSON `{"error": "<non-empty>"}` body.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> &Response {
        self.expect(status);
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {self}"));
        let msg = v.get("error").and_then(serde_json::Value::as_str);
        assert!(
            msg.is_some_and(|m| !m.is_empty()),
            "no \"error\" string: {self}"
        );
        self
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, "\n  {k}: {v}")?;
        }
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(2000).collect();
        write!(f, "\n  body ({} bytes): {shown}", self.body.len())
    }
}

/// Sends one request and reads the answer to EOF (`Connection: close`).
///
/// `path` goes on the request line byte for byte. `Host`, `Connection` and
/// (for a body or a POST/PUT) `Content-Length` are added unless `headers` has
/// them (or, for the length, a `Transfer-Encoding`: `body` is then sent as
/// given, already chunked). A write error is tolerated when the server still answers (it may
/// refuse a body before reading all of it).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    use std::fmt::Write as _;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "Host: {addr}\r\n");
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body);
    let write_result = stream.write_all(&wire).and_then(|()| stream.flush());

    let mut raw = Vec::new();
    let read_result = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        write_result?;
        read_result?;
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty answer"));
    }
    parse_response(&raw, method == "HEAD")
}

/// [`try_request`], panicking on a transport error.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_response(raw: &[u8], head_only: bool) -> io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| bad(format!("head not UTF-8: {e}")))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if head_only || status == 304 || status == 204 || (100..200).contains(&status) {
        rest.to_vec()
    } else if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if rest.len() < len {
            return Err(bad(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line not terminated".into()))?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|e| bad(e.to_string()))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunk cut short".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// The manager-lite server process

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
    let log_err = Arc::clone(log);
    thread::spawn(move || {
        let mut tx = Some(tx);
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(addr) = listening_addr(&text) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            log_err
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_str(&text);
        }
    });
    let log_out = Arc::clone(log);
    thread::spawn(move || {
        let mut buf = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            buf.clear();
            buf.push_str("[stdout] ");
            buf.push_str(&String::from_utf8_lossy(&line));
            log_out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_str(&buf);
        }
    });

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

/// Runs `cmd` to completion like [`Command::output`], but kills it and panics
/// when it has not exited within `limit` (a server that should have refused
/// its flags would otherwise run forever).
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{cmd:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Query-string helper: `k=v` pairs joined with `&` (values taken as given).
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Counts by status, for reporting many answers compactly.
pub fn status_counts(statuses: &[u16]) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for s in statuses {
        *m.entry(*s).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        assert!(is_rfc3339("2024-01-02T03:04:05Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05.123Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05+01:00"));
        assert!(!is_rfc3339("2024-01-02 03:04:05"));
        assert!(!is_rfc3339("2024-13-02T03:04:05Z"));
        assert!(!is_rfc3339("1700000000"));
    }

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"abc"[..], Some("b"))
        );
        let r = parse_response(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x\r\nc\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"abc"[..]));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true).unwrap();
        assert!(r.body.is_empty());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false).is_err()
        );
    }

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

    #[test]
    fn artifacts_differ_by_seed() {
        let a = artifact_bytes("a", 100);
        assert_eq!(a.len(), 100);
        assert_ne!(a, artifact_bytes("b", 100));
        assert_eq!(sha256_hex(b"").len(), 64);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
