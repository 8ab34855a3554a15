//! Helpers for the end-to-end tests of the `binproxy` agent: an [`Agent`] is one
//! node (its own temp dir with the managed binary's directory, the state dir
//! and the config file) driving the real `binproxy` binary; [`FakeManager`] is
//! a small, deliberately misbehaving HTTP server that plays the manager (wrong
//! bytes, cut or overlong downloads, refused reports); the free functions
//! publish versions on and read records from a real [`Manager`].
//!
//! Every wait is a bounded poll ([`wait_until`]); nothing here measures time.

use binproxy_protocol::{
    Installed, Keepalive, KeepaliveReply, Node, Progress, ProgressRecord, ProgressStatus, Target,
    Version,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{binproxy_bin, output_within, sha256_hex, unique, wait_until, Manager, TempDir};

/// How long one `binproxy` command may run before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// errno ETXTBSY on Linux.
pub const ETXTBSY: i32 = 26;

/// A shell script artifact: prints `tag`; `--health` runs `health` (shell
/// code, e.g. `exit 0`; the script exits with its status); `--version` prints
/// `tag`; `--selftest` runs `selftest` (likewise).
pub fn script(tag: &str, health: &str, selftest: &str) -> Vec<u8> {
    format!(
        "#!/bin/sh\n# binproxy e2e artifact {tag}\ncase \"$1\" in\n  --health)\n    {health}\n    exit $? ;;\n  --selftest)\n    {selftest}\n    exit $? ;;\n  --version) echo {tag}; exit 0 ;;\nesac\necho {tag}\n"
    )
    .into_bytes()
}

/// A script whose `--health` and `--selftest` pass.
pub fn good_script(tag: &str) -> Vec<u8> {
    script(tag, "exit 0", "exit 0")
}

// ---------------------------------------------------------------------------
// The real manager

/// Uploads `bytes` as `bin` `version` (for every arch) and releases it.
pub fn publish(m: &Manager, bin: &str, version: &str, bytes: &[u8]) -> String {
    let v: Version = m.upload(bin, version, None, bytes).expect(201).parse();
    assert_eq!(v.sha256sum, sha256_hex(bytes), "manager stored other bytes");
    m.release(bin, version).expect(201);
    v.sha256sum
}

/// The progress reports the manager holds for `node` and `bin`, oldest first.
pub fn progress(m: &Manager, bin: &str, node: &str) -> Vec<ProgressRecord> {
    let mut all: Vec<ProgressRecord> = m
        .admin_get(&format!(
            "/api/v1/bins/{bin}/progress?node_id={node}&limit=1000"
        ))
        .expect(200)
        .parse();
    all.reverse();
    all
}

/// How many of `records` have `status` for `target`.
pub fn count(records: &[ProgressRecord], status: ProgressStatus, target: &str) -> usize {
    records
        .iter()
        .filter(|r| r.status == status && r.target_hash == target)
        .count()
}

/// `records` as `status target[..8]` lines, for failure messages.
pub fn show(records: &[ProgressRecord]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "#{} {} {} from {:?}: {:?}",
                r.id,
                r.status.as_str(),
                &r.target_hash[..8],
                r.from_hash.as_deref().map(|h| &h[..8]),
                r.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The hash the manager records as installed for `bin` on `node`.
pub fn installed_hash(m: &Manager, node: &str, bin: &str) -> Option<String> {
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    nodes
        .into_iter()
        .find(|n| n.node_id == node)
        .and_then(|n| n.bins.get(bin).cloned())
}

// ---------------------------------------------------------------------------
// One node running the agent

/// What a finished `binproxy` command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts the exit code, showing the agent's output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Outcome {
    /// Asserts that stderr holds every one of `words`, showing it when not.
    #[track_caller]
    pub fn expect_log(&self, words: &[&str]) -> &Outcome {
        let missing: Vec<&&str> = words
            .iter()
            .filter(|w| !self.stderr.contains(**w))
            .collect();
        assert!(
            missing.is_empty(),
            "{missing:?} not in the agent's log:\n{}",
            self.stderr
        );
        self
    }
}

impl From<std::process::Output> for Outcome {
    fn from(o: std::process::Output) -> Outcome {
        Outcome {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A node: `ROOT/bin/<bin>` is the managed file, `ROOT/state` the state dir,
/// `ROOT/config.json` the config, `ROOT/marks` free for the test's markers.
pub struct Agent {
    pub dir: TempDir,
    pub node_id: String,
    pub bin: String,
    pub live: PathBuf,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub marks: PathBuf,
    spawned: AtomicU64,
}

impl Agent {
    pub fn new(bin: &str) -> Agent {
        let dir = TempDir::new("agent");
        let bin_dir = dir.join("bin");
        let marks = dir.join("marks");
        fs::create_dir(&bin_dir).unwrap();
        fs::create_dir(&marks).unwrap();
        Agent {
            node_id: unique("node"),
            bin: bin.to_owned(),
            live: bin_dir.join(bin),
            state_dir: dir.join("state"),
            config: dir.join("config.json"),
            marks,
            dir,
            spawned: AtomicU64::new(0),
        }
    }

    /// A marker path (not created).
    pub fn mark(&self, name: &str) -> PathBuf {
        self.marks.join(name)
    }

    /// The config for `manager_url`, with `extra` merged into the bin's entry.
    pub fn config_json(&self, manager_url: &str, extra: &Value) -> Value {
        let mut bin = json!({"name": self.bin, "path": self.live});
        if let (Some(b), Some(e)) = (bin.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        json!({
            "manager_url": manager_url,
            "node_id": self.node_id,
            "state_dir": self.state_dir,
            "splay": "0s",
            "timeout": "5s",
            "bins": [bin],
        })
    }

    /// Writes the config (see [`Agent::config_json`]).
    pub fn configure(&self, manager_url: &str, extra: &Value) {
        self.write_config(&self.config_json(manager_url, extra));
    }

    pub fn write_config(&self, config: &Value) {
        fs::write(&self.config, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    }

    /// `binproxy SUB --config FILE ARGS...`, environment cleaned.
    pub fn command(&self, sub: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(binproxy_bin());
        cmd.arg(sub)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs a command to its end (bounded).
    pub fn exec(&self, sub: &str, args: &[&str]) -> Outcome {
        output_within(&mut self.command(sub, args), RUN_LIMIT).into()
    }

    /// `binproxy run --config FILE --now`.
    pub fn run(&self) -> Outcome {
        self.exec("run", &["--now"])
    }

    /// Starts a command in the background; its stdout and stderr go to a file.
    pub fn spawn(&self, sub: &str, args: &[&str]) -> Spawned {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let log = self.dir.join(&format!("{sub}-{n}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .command(sub, args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn binproxy {sub}: {e}"));
        Spawned {
            child: Some(child),
            log,
        }
    }

    /// `binproxy status --json` (exit 0 asserted), parsed.
    pub fn status_json(&self) -> Value {
        let out = self.exec("status", &["--json"]);
        out.expect_code(0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", out.stdout))
    }

    /// The bytes at the live path, `None` when it does not exist.
    pub fn live_bytes(&self) -> Option<Vec<u8>> {
        match fs::read(&self.live) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {}: {e}", self.live.display()),
        }
    }

    /// Asserts the live file holds exactly `want` and is executable.
    #[track_caller]
    pub fn assert_live(&self, want: &[u8], what: &str) {
        let got = self
            .live_bytes()
            .unwrap_or_else(|| panic!("{what}: {} is missing", self.live.display()));
        assert!(
            got == want,
            "{what}: live file has {} bytes sha {}, wanted {} bytes sha {}",
            got.len(),
            sha256_hex(&got),
            want.len(),
            sha256_hex(want)
        );
        self.assert_executable(what);
    }

    /// Asserts the live file holds exactly one of `versions`, executable;
    /// returns which.
    #[track_caller]
    pub fn assert_live_one_of(&self, versions: &[&[u8]], what: &str) -> usize {
        let got = self
            .live_bytes()
            .unwrap_or_else(|| panic!("{what}: {} is missing", self.live.display()));
        let i = versions.iter().position(|v| *v == got).unwrap_or_else(|| {
            panic!(
                "{what}: live file ({} bytes, sha {}) is none of the versions",
                got.len(),
                sha256_hex(&got)
            )
        });
        self.assert_executable(what);
        i
    }

    #[track_caller]
    fn assert_executable(&self, what: &str) {
        let mode = fs::metadata(&self.live).unwrap().permissions().mode();
        assert!(
            mode & 0o111 == 0o111,
            "{what}: live file mode {mode:o} is not executable"
        );
    }

    /// Names in the live file's directory other than the live file itself.
    pub fn beside(&self) -> Vec<String> {
        let own = self
            .live
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut names: Vec<String> = fs::read_dir(self.live.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| *n != own)
            .collect();
        names.sort();
        names
    }

    /// `state_dir/kept/<bin>/<sha>`.
    pub fn kept(&self, sha: &str) -> PathBuf {
        self.state_dir.join("kept").join(&self.bin).join(sha)
    }

    /// `state_dir/journal/<bin>.json`, parsed, if present.
    pub fn journal(&self) -> Option<Value> {
        let p = self
            .state_dir
            .join("journal")
            .join(format!("{}.json", self.bin));
        let bytes = fs::read(p).ok()?;
        // Written atomically (temp file and rename): a partial read is a bug.
        Some(serde_json::from_slice(&bytes).expect("journal is JSON"))
    }

    /// The journal's `phase`, if a journal is present.
    pub fn journal_phase(&self) -> Option<String> {
        self.journal()
            .and_then(|j| j.get("phase").and_then(Value::as_str).map(str::to_owned))
    }

    /// `state_dir/state.json`, parsed, if present.
    pub fn state(&self) -> Option<Value> {
        let bytes = fs::read(self.state_dir.join("state.json")).ok()?;
        Some(serde_json::from_slice(&bytes).expect("state.json is JSON"))
    }

    /// The quarantined hashes state.json records for the bin.
    pub fn quarantined(&self) -> Vec<String> {
        self.state()
            .and_then(|s| s["bins"][&self.bin]["quarantined"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|q| q["sha256"].as_str().map(str::to_owned))
            .collect()
    }

    /// kill -9 `run` (see [`Spawned::kill9`]), then waits until its lock on
    /// `state_dir/binproxy.lock` is free. A hook the killed run was starting
    /// holds a copy of the lock's file descriptor between its fork and its
    /// exec (close-on-exec closes it only then); a run started in that
    /// window rightly finds the lock taken and leaves the cycle to "the other
    /// run", exit 0, which is not what a recovery test means to check.
    #[track_caller]
    pub fn kill9(&self, run: &mut Spawned) {
        use fs2::FileExt;
        run.kill9();
        let lock = File::open(self.state_dir.join("binproxy.lock")).expect("the lock file");
        wait_until(
            "the killed run's lock to be released",
            Duration::from_secs(30),
            || lock.try_lock_exclusive().is_ok(),
        );
        FileExt::unlock(&lock).expect("unlock");
    }

    /// The queued report files in `state_dir/outbox`.
    pub fn outbox(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = match fs::read_dir(self.state_dir.join("outbox")) {
            Ok(l) => l
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Writes `bytes` at the live path with mode 0755 (a version installed
    /// before the agent ever ran).
    pub fn place(&self, bytes: &[u8]) {
        fs::write(&self.live, bytes).unwrap();
        fs::set_permissions(&self.live, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Every file under `dir` with its bytes (directories with `None`), sorted.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    crate::list_tree(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let bytes = if p.is_dir() { None } else { fs::read(&p).ok() };
            (rel, bytes)
        })
        .collect()
}

/// A background `binproxy` process. Dropping it kills it (-9).
pub struct Spawned {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Spawned {
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited (reaping it if so).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .expect("not yet waited for")
            .try_wait()
            .expect("try_wait binproxy")
    }

    /// kill -9 and reap. Panics if it had already exited: the kill would
    /// then prove nothing.
    #[track_caller]
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!(
                "binproxy exited ({st}) before the kill -9\noutput:\n{}",
                self.output()
            );
        }
        child.kill().expect("kill -9 binproxy");
        let st = child.wait().expect("reap binproxy");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(9),
            "binproxy was not killed by SIGKILL: {st}"
        );
    }

    /// `kill -SIG` by pid.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Waits (bounded) for the exit.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.try_exit() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() <= deadline,
                "binproxy still running after {limit:?}\noutput:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// A misbehaving manager

/// How the fake manager answers a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// The artifact, honouring `Range: bytes=N-`.
    Exact,
    /// As many bytes as the artifact, but other ones (the hash will not match).
    WrongBytes,
    /// `Content-Length` of the whole artifact, half of it, then the
    /// connection closes.
    Truncated,
    /// The artifact followed by extra bytes, all announced in `Content-Length`.
    Excess,
    /// The artifact (from a `Range` start too), `bytes` at a time with a
    /// pause of `pause_ms` after each: dripped or slow but moving.
    Paced { bytes: usize, pause_ms: u64 },
}

/// One request the fake manager received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    bin: String,
    target: Target,
    artifact: Vec<u8>,
    download: Download,
    refuse_reports: bool,
    seen: Vec<Seen>,
}

/// A tiny HTTP/1.1 server on `127.0.0.1:<ephemeral>` playing manager-lite for
/// one bin: a keepalive gets a target pointing at its own download path;
/// progress and installed reports are recorded (or refused with 503).
/// One connection at a time, `Connection: close`; it stops on drop and after
/// ten minutes at most.
pub struct FakeManager {
    pub addr: SocketAddr,
    pub url: String,
    pub target: Target,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const FAKE_LIFETIME: Duration = Duration::from_secs(600);

impl FakeManager {
    pub fn start(bin: &str, version: &str, artifact: Vec<u8>, download: Download) -> FakeManager {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake manager");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let sha = sha256_hex(&artifact);
        let target = Target {
            bin_name: bin.to_owned(),
            version: version.to_owned(),
            url: format!("/dl/{sha}"),
            sha256sum: sha,
            size: artifact.len() as u64,
            reason: None,
            signature: None,
        };
        let shared = Arc::new(Mutex::new(Shared {
            bin: bin.to_owned(),
            target: target.clone(),
            artifact,
            download,
            refuse_reports: false,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::spawn(move || serve(&listener, &shared, &stop))
        };
        FakeManager {
            addr,
            url: format!("http://{addr}"),
            target,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_download(&self, d: Download) {
        self.lock().download = d;
    }

    /// Answer progress and installed reports with 503 (or accept them again).
    pub fn set_refuse_reports(&self, refuse: bool) {
        self.lock().refuse_reports = refuse;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The downloads asked for, with their `Range` header.
    pub fn downloads(&self) -> Vec<Option<String>> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.starts_with("/dl/"))
            .map(|s| s.header("range").map(str::to_owned))
            .collect()
    }

    /// The progress reports received (and accepted or not), in order.
    pub fn progress(&self) -> Vec<Progress> {
        let path = format!("/api/v1/bins/{}/progress", self.lock().bin);
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == path)
            .map(|s| serde_json::from_slice(&s.body).expect("progress body"))
            .collect()
    }

    /// The installed reports received.
    pub fn installed(&self) -> Vec<Installed> {
        let path = format!("/api/v1/bins/{}", self.lock().bin);
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == path)
            .map(|s| serde_json::from_slice(&s.body).expect("installed body"))
            .collect()
    }
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let deadline = Instant::now() + FAKE_LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                // A broken connection is the client's business; keep serving.
                let _ = handle(stream, shared);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_request(stream: &mut TcpStream) -> io::Result<Seen> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if raw.len() > 64 * 1024 {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no head"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(len);
    Ok(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    use std::fmt::Write as _;
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn json_reply(stream: &mut TcpStream, status: u16, v: &Value) {
    let body = serde_json::to_vec(v).unwrap();
    respond(
        stream,
        status,
        &[("Content-Type", "application/json".into())],
        &body,
    );
}

fn handle(mut stream: TcpStream, shared: &Mutex<Shared>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let rq = read_request(&mut stream)?;
    let (bin, target, artifact, download, refuse) = {
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.seen.push(rq.clone());
        (
            s.bin.clone(),
            s.target.clone(),
            s.artifact.clone(),
            s.download,
            s.refuse_reports,
        )
    };
    let reports = [
        format!("/api/v1/bins/{bin}/progress"),
        format!("/api/v1/bins/{bin}"),
    ];
    match (rq.method.as_str(), rq.path.as_str()) {
        ("POST", "/api/v1/keepalive") => {
            let k: Keepalive = serde_json::from_slice(&rq.body).map_err(io::Error::other)?;
            let when = "2024-01-02T03:04:05Z".to_owned();
            let reply = KeepaliveReply {
                node: Node {
                    node_id: k.node_id,
                    registered_at: when.clone(),
                    last_seen: when.clone(),
                    online: true,
                    ..Node::default()
                },
                server_time: when,
                reasons: BTreeMap::new(),
                node_secret: None,
                enrolled: false,
                targets: [(bin, Some(target))].into_iter().collect(),
            };
            json_reply(&mut stream, 200, &serde_json::to_value(reply).unwrap());
        }
        ("POST", p) if reports.iter().any(|r| r == p) => {
            if refuse {
                json_reply(&mut stream, 503, &json!({"error": "fake manager: down"}));
            } else {
                json_reply(&mut stream, 201, &json!({}));
            }
        }
        ("GET", p) if p == target.url => {
            serve_download(&mut stream, &rq, &artifact, download);
        }
        _ => json_reply(
            &mut stream,
            404,
            &json!({"error": "fake manager: no route"}),
        ),
    }
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// The start of a `Range: bytes=N-` request inside the artifact.
fn range_start(rq: &Seen, len: usize) -> Option<usize> {
    rq.header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < len)
}

fn serve_download(stream: &mut TcpStream, rq: &Seen, artifact: &[u8], download: Download) {
    let len = artifact.len();
    let octets = ("Content-Type", "application/octet-stream".to_owned());
    match download {
        Download::Exact => match range_start(rq, len) {
            Some(n) => respond(
                stream,
                206,
                &[
                    octets,
                    ("Content-Range", format!("bytes {n}-{}/{len}", len - 1)),
                ],
                &artifact[n..],
            ),
            None => respond(stream, 200, &[octets], artifact),
        },
        Download::WrongBytes => {
            let wrong: Vec<u8> = artifact.iter().map(|b| b ^ 0x20).collect();
            respond(stream, 200, &[octets], &wrong);
        }
        Download::Truncated => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&artifact[..len / 2]);
            let _ = stream.flush();
        }
        Download::Paced { bytes, pause_ms } => {
            let from = range_start(rq, len).unwrap_or(0);
            let head = format!(
                "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{}\r\n",
                if from > 0 { 206 } else { 200 },
                len - from,
                if from > 0 { format!("Content-Range: bytes {from}-{}/{len}\r\n", len - 1) } else { String::new() },
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for chunk in artifact[from..].chunks(bytes.max(1)) {
                // The agent hung up (cut the download): stop serving it.
                if stream
                    .write_all(chunk)
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(pause_ms));
            }
        }
        Download::Excess => {
            let mut more = artifact.to_vec();
            more.extend_from_slice(&[b'#'; 4096]);
            respond(stream, 200, &[octets], &more);
        }
    }
}
