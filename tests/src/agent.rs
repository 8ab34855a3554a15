//! Helpers for the end-to-end tests of the `binproxy` agent: an [`Agent`] is one
//! node (its own temp dir with the managed binary's directory, the state dir
//! and the config file) driving the real `binproxy` binary; a [`Spawned`] is
//! one of its commands running in the background; the free functions make
//! script artifacts, publish versions on and read records from a real
//! [`Manager`]. The misbehaving manager the fault tests use instead is
//! [`crate::fake_manager`].
//!
//! Every wait is a bounded poll ([`wait_until`]); nothing here measures time.

use binproxy_protocol::{Node, ProgressRecord, ProgressStatus, Version};
use serde_json::{json, Value};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
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
