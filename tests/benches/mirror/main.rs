//! What a static mirror takes off the manager, for the figures of issue #15
//! item 6 (a benchmark, not a test: it prints what it measured and asserts
//! nothing about speed).
//!
//!     cargo bench -p binproxy-tests --bench mirror
//!     cargo bench -p binproxy-tests --bench mirror -- --nodes 1000 --size-mb 20 --rounds 3 --concurrency 32 [--pin]
//!
//! The real `manager-lite` (built by the harness in the profile of this
//! executable: `release` under `cargo bench`), a real nginx serving the tree
//! a real `manager-lite mirror sync` wrote, both on 127.0.0.1, with the
//! manager's data and the tree in /dev/shm (the temp dir without it), so the
//! disk is not what is measured. A fleet of `--nodes` simulated agents,
//! `--concurrency` at a time, updates from a tiny v1 to a new `--size-mb` MB
//! (10^6 bytes) v2 released at 100%, in three scenarios:
//!
//! - **A, manager only**: keepalive (`POST /api/v1/keepalive`, the target
//!   v2), progress `in_progress`, the artifact from the manager's download
//!   route, progress `success`, installed (`POST /api/v1/bins/{bin}`).
//! - **B, with the mirror**: the same, but the artifact from
//!   `<mirror>/artifacts/<sha256>`, as an agent listing `mirrors` fetches it.
//! - **C, manager stopped** (SIGTERM before, started again after): the
//!   keepalive is refused, the target comes from `<mirror>/bins/<bin>.json`
//!   and the artifact from the mirror; the three reports would be queued for
//!   later and are only counted.
//!
//! Every download is checked for size and sha256 as it streams (nothing is
//! stored). Rounds are interleaved (A, B, C, A, B, C, ...); each
//! scenario-round has a bin and node ids of its own (fresh nodes registered
//! on v1 before it, not measured), so rounds compare. Printed per round and
//! as min/median/max over the rounds: bytes and requests served by the
//! manager and by the mirror, and the time to converge (from the first
//! request to the last agent's verified download). Bytes are counted on the
//! client side (response heads and bodies as received): the manager has no
//! counter of response bytes and nginx runs with `access_log off`. The
//! manager's own count of requests (`manager_http_requests_total`) is shown
//! beside the client's. The `mirror sync` that copies each v2 (from the
//! manager, once) is shown apart. `--pin` puts the manager and nginx on CPU 0
//! and this load generator on CPU 1 (`taskset`).
//!
//! The full default run moves 20 GB per scenario-round, 180 GB in all: about
//! 3 minutes on 2 cores. On loopback the times are bound by CPU (the
//! generator's sha256, the servers' copies; nginx with the harness's
//! configuration: one worker, no sendfile), so they compare scenarios on one
//! machine; the bytes and requests are the figures that carry over.
//!
//! What it does not do: it runs on loopback (no network, no latency, no
//! bandwidth limit); simulated agents write nothing to disk, swap nothing,
//! restart nothing, and check no minisign signature (an agent with
//! `trusted_keys` also checks one in the same streaming pass, and needs one
//! to take a target from a mirror); they send one request per connection
//! (`Connection: close`) and no keepalive after the update. Every loop is
//! bounded in count and time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::mirror::{artifact_file, bin_file, MirrorBin};
use binproxy_protocol::{download_path, KeepaliveReply, Target, Version};
use binproxy_tests::metrics::metric;
use binproxy_tests::mirror::sync_command;
use binproxy_tests::nginx::Nginx;
use binproxy_tests::{artifact_bytes, manager_bin, output_within, pin, Manager, ManagerOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The bin of scenario-round `sr` is `svc-<sr>`.
const BIN_PREFIX: &str = "svc";
/// The longest one scenario-round (or one registration) may take.
const PHASE_LIMIT: Duration = Duration::from_secs(1800);
/// How long one `mirror sync` may run.
const SYNC_LIMIT: Duration = Duration::from_secs(600);
/// Socket reads and writes that block longer fail the request.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of one request (503, a reset, ...) before the bench gives up.
const MAX_TRIES: u32 = 5;
/// Bytes read from a socket at a time.
const READ_BUF: usize = 256 * 1024;
/// Size of v1, which is never downloaded.
const V1_SIZE: usize = 4096;
/// The arch of every simulated agent.
const ARCH: &str = "x86_64";

#[derive(Debug, Clone)]
struct Opts {
    nodes: usize,
    size_mb: usize,
    rounds: usize,
    concurrency: usize,
    pin: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        nodes: 1000,
        size_mb: 20,
        rounds: 3,
        concurrency: 32,
        pin: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> usize {
            let v = args
                .next()
                .unwrap_or_else(|| panic!("{name} needs a number"));
            let n: usize = v.parse().unwrap_or_else(|e| panic!("{name} {v:?}: {e}"));
            assert!(n > 0, "{name} must be at least 1");
            n
        };
        match a.as_str() {
            "--nodes" => o.nodes = num("--nodes"),
            "--size-mb" => o.size_mb = num("--size-mb"),
            "--rounds" => o.rounds = num("--rounds"),
            "--concurrency" => o.concurrency = num("--concurrency"),
            "--pin" => o.pin = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "cargo bench -p binproxy-tests --bench mirror -- \
                     [--nodes 1000] [--size-mb 20] [--rounds 3] [--concurrency 32] [--pin]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    o
}

// ---------------------------------------------------------------------------
// Scenarios and what they measure

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    ManagerOnly,
    Mirror,
    ManagerStopped,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario::ManagerOnly,
    Scenario::Mirror,
    Scenario::ManagerStopped,
];

impl Scenario {
    fn letter(self) -> char {
        match self {
            Scenario::ManagerOnly => 'a',
            Scenario::Mirror => 'b',
            Scenario::ManagerStopped => 'c',
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::ManagerOnly => "A manager only",
            Scenario::Mirror => "B with the mirror",
            Scenario::ManagerStopped => "C manager stopped",
        }
    }
}

/// Which server a request went to.
#[derive(Debug, Clone, Copy)]
enum Peer {
    Manager,
    Mirror,
}

/// Counted by the load generator during one scenario-round.
#[derive(Debug, Default)]
struct Tally {
    manager_bytes: AtomicU64,
    manager_requests: AtomicU64,
    mirror_bytes: AtomicU64,
    mirror_requests: AtomicU64,
    /// Keepalives refused (the manager stopped).
    refused: AtomicU64,
    /// Reports an agent would have queued (the manager stopped).
    queued: AtomicU64,
    /// Requests tried again after a 503, 429 or a transport error.
    retries: AtomicU64,
    /// Agents whose download was verified.
    verified: AtomicU64,
}

impl Tally {
    fn count(&self, peer: Peer, bytes: u64) {
        let (b, r) = match peer {
            Peer::Manager => (&self.manager_bytes, &self.manager_requests),
            Peer::Mirror => (&self.mirror_bytes, &self.mirror_requests),
        };
        b.fetch_add(bytes, Relaxed);
        r.fetch_add(1, Relaxed);
    }
}

/// The figures of one scenario-round.
#[derive(Debug, Clone)]
struct Measured {
    scenario: Scenario,
    round: usize,
    manager_bytes: u64,
    manager_requests: u64,
    /// `manager_http_requests_total` after minus before, less the scrape
    /// before (None: the manager was stopped).
    manager_counted: Option<u64>,
    mirror_bytes: u64,
    mirror_requests: u64,
    refused: u64,
    queued: u64,
    retries: u64,
    converge: Duration,
    /// Until every agent was done (reports included).
    wall: Duration,
    sync_bytes: u64,
    sync_time: Duration,
}

// ---------------------------------------------------------------------------
// A streaming HTTP/1.1 client that counts what it receives

/// One answer: its status and the bytes received (head and body).
struct Answer {
    status: u16,
    wire: u64,
}

/// Where an answer's body goes as it arrives; started over before each try.
trait Sink {
    fn reset(&mut self);
    fn feed(&mut self, piece: &[u8]);
}

/// The body collected (a small JSON answer).
impl Sink for Vec<u8> {
    fn reset(&mut self) {
        self.clear();
    }
    fn feed(&mut self, piece: &[u8]) {
        self.extend_from_slice(piece);
    }
}

/// The body hashed and counted, not kept (an artifact).
struct Verifier {
    hasher: Sha256,
    len: u64,
}

impl Sink for Verifier {
    fn reset(&mut self) {
        self.hasher = Sha256::new();
        self.len = 0;
    }
    fn feed(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.len += piece.len() as u64;
    }
}

/// `method path` on `addr` with `Connection: close`; the body goes to
/// `on_body` piece by piece as it arrives (the answer must carry a
/// `Content-Length`, as every answer of the manager and nginx here does).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    on_body: &mut dyn FnMut(&[u8]),
) -> io::Result<Answer> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body);
    (&stream).write_all(&wire)?;

    let mut reader = BufReader::with_capacity(READ_BUF, stream);
    let mut received = 0u64;
    let mut line = Vec::new();
    let mut status = 0u16;
    let mut length: Option<u64> = None;
    let mut first = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the head",
            ));
        }
        received += n as u64;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if first {
            first = false;
            status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("bad status line {text:?}")))?;
        } else if text.is_empty() {
            break;
        } else if let Some((k, v)) = text.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
                );
            }
        }
        if received > 64 * 1024 {
            return Err(bad("head over 64 KiB".into()));
        }
    }
    let mut left = if method == "HEAD" || status == 204 || status == 304 {
        0
    } else {
        length.ok_or_else(|| bad(format!("{method} {path}: answer {status} without a length")))?
    };
    while left > 0 {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body cut short, {left} bytes missing"),
            ));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        on_body(&buf[..take]);
        reader.consume(take);
        left -= take as u64;
        received += take as u64;
    }
    Ok(Answer {
        status,
        wire: received,
    })
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// [`exchange`], tried again (at most [`MAX_TRIES`]) after a 503, a 429 or a
/// transport error, every try counted (what arrived before an error was
/// served all the same).
fn call(
    tally: &Tally,
    peer: Peer,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    sink: &mut dyn Sink,
) -> Answer {
    let mut last = String::new();
    for attempt in 1..=MAX_TRIES {
        sink.reset();
        let mut wire = 0u64;
        let got = exchange(addr, method, path, body, &mut |piece| {
            wire += piece.len() as u64;
            sink.feed(piece);
        });
        match got {
            Ok(a) if a.status != 503 && a.status != 429 => {
                tally.count(peer, a.wire);
                return a;
            }
            Ok(a) => {
                tally.count(peer, a.wire);
                last = format!("HTTP {}", a.status);
            }
            Err(e) => {
                tally.count(peer, wire);
                last = e.to_string();
            }
        }
        if attempt < MAX_TRIES {
            tally.retries.fetch_add(1, Relaxed);
            thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        }
    }
    panic!("{method} {path} on {addr}: {MAX_TRIES} tries, the last: {last}");
}

/// A JSON request; the answer's body collected.
#[track_caller]
fn json_call(
    tally: &Tally,
    peer: Peer,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    want: u16,
) -> Vec<u8> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut collected = Vec::new();
    let a = call(tally, peer, addr, method, path, &bytes, &mut collected);
    assert_eq!(
        a.status,
        want,
        "{method} {path}: HTTP {}: {}",
        a.status,
        String::from_utf8_lossy(&collected)
    );
    collected
}

/// Downloads `path` from `addr` and checks size and sha256 against `target`
/// as the bytes stream in.
fn download(tally: &Tally, peer: Peer, addr: SocketAddr, path: &str, target: &Target) {
    let mut v = Verifier {
        hasher: Sha256::new(),
        len: 0,
    };
    let a = call(tally, peer, addr, "GET", path, b"", &mut v);
    assert_eq!(a.status, 200, "GET {path} on {addr}: HTTP {}", a.status);
    assert_eq!(v.len, target.size, "GET {path} on {addr}: size");
    assert_eq!(
        hex(&v.hasher.finalize()),
        target.sha256sum,
        "GET {path} on {addr}: sha256"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---------------------------------------------------------------------------
// One simulated agent

/// What the agents of one scenario-round share.
struct Round<'a> {
    scenario: Scenario,
    bin: &'a str,
    prefix: String,
    v1: &'a str,
    v2: &'a str,
    manager: SocketAddr,
    mirror: SocketAddr,
    tally: Tally,
}

impl Round<'_> {
    fn node(&self, i: usize) -> String {
        format!("{}-{i:05}", self.prefix)
    }

    fn keepalive(&self, node: &str, installed: &str) -> KeepaliveReply {
        let body = json!({
            "node_id": node,
            "cpu_arch": ARCH,
            "os": "linux",
            "os_release": "sim",
            "node_name": format!("sim-{node}"),
            "bin_proxy_version": "0.0.0-sim",
            "bins": {self.bin: installed},
        });
        let got = json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            "/api/v1/keepalive",
            Some(&body),
            200,
        );
        serde_json::from_slice(&got).unwrap()
    }

    fn progress(&self, node: &str, status: &str) {
        let body = json!({
            "node_id": node,
            "targetHash": self.v2,
            "fromHash": self.v1,
            "status": status,
            "processingTime": 1,
            "message": "simulated",
        });
        let path = format!("/api/v1/bins/{}/progress", self.bin);
        json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            &path,
            Some(&body),
            201,
        );
    }

    fn installed(&self, node: &str) {
        let body = json!({"node_id": node, "sha256sum": self.v2});
        let path = format!("/api/v1/bins/{}", self.bin);
        json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            &path,
            Some(&body),
            200,
        );
    }

    /// Registers node `i` running v1 (before the release: no target).
    fn register(&self, i: usize) {
        let reply = self.keepalive(&self.node(i), self.v1);
        let target = reply.targets.get(self.bin).cloned().flatten();
        assert!(target.is_none(), "a target before the release: {target:?}");
    }

    /// What agent `i` does in this scenario; returns when its download is
    /// verified and (for A and B) reported, with the time it was verified.
    fn agent(&self, i: usize) -> Instant {
        let node = self.node(i);
        let verified = match self.scenario {
            Scenario::ManagerOnly | Scenario::Mirror => {
                let reply = self.keepalive(&node, self.v1);
                let target = reply
                    .targets
                    .get(self.bin)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| {
                        panic!("{node}: no target: {:?}", reply.reasons.get(self.bin))
                    });
                assert_eq!(target.sha256sum, self.v2, "{node}: the target");
                self.progress(&node, "in_progress");
                if self.scenario == Scenario::ManagerOnly {
                    assert_eq!(target.url, download_path(self.v2), "{node}: the URL");
                    download(
                        &self.tally,
                        Peer::Manager,
                        self.manager,
                        &target.url,
                        &target,
                    );
                } else {
                    let path = format!("/{}", artifact_file(&target.sha256sum));
                    download(&self.tally, Peer::Mirror, self.mirror, &path, &target);
                }
                let at = Instant::now();
                self.progress(&node, "success");
                self.installed(&node);
                at
            }
            Scenario::ManagerStopped => {
                // The keepalive first: refused, the manager is down.
                assert!(
                    TcpStream::connect_timeout(&self.manager, IO_TIMEOUT).is_err(),
                    "the stopped manager's port answers"
                );
                self.tally.refused.fetch_add(1, Relaxed);
                let path = format!("/{}", bin_file(self.bin));
                let doc = json_call(
                    &self.tally,
                    Peer::Mirror,
                    self.mirror,
                    "GET",
                    &path,
                    None,
                    200,
                );
                let doc: MirrorBin = serde_json::from_slice(&doc).unwrap();
                let target = doc
                    .target_for(ARCH)
                    .unwrap_or_else(|| panic!("{path} has no target for {ARCH}"))
                    .clone();
                assert_eq!(target.sha256sum, self.v2, "{node}: the mirror's target");
                let path = format!("/{}", target.url);
                download(&self.tally, Peer::Mirror, self.mirror, &path, &target);
                // in_progress, success, installed: queued for later.
                self.tally.queued.fetch_add(3, Relaxed);
                Instant::now()
            }
        };
        self.tally.verified.fetch_add(1, Relaxed);
        verified
    }
}

/// Runs `work(i)` for every `i` in `0..n` on `threads` threads, each taking
/// the next `i` until none is left; returns the results by `i`.
fn fan_out<T: Send>(
    n: usize,
    threads: usize,
    what: &str,
    work: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let deadline = Instant::now() + PHASE_LIMIT;
    thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not done after {PHASE_LIMIT:?}"
                );
                let got = work(i);
                out.lock().unwrap()[i] = Some(got);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect()
}

// ---------------------------------------------------------------------------
// Setup: a scratch directory, pinning, uploads, releases, syncs

/// A directory removed (with its contents) on drop: in /dev/shm when there
/// is one.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("binproxy-bench-mirror-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Uploads `bytes` as `bin` `version` (for every arch); returns its sha256.
fn upload(m: &Manager, bin: &str, version: &str, bytes: &[u8]) -> String {
    let v: Version = m.upload(bin, version, None, bytes).expect(201).parse();
    v.sha256sum
}

/// `manager-lite mirror sync --to DIR --json`: (bytes copied, time taken).
fn sync(m: &Manager, token: &Path, dir: &Path) -> (u64, Duration) {
    let started = Instant::now();
    let mut cmd = sync_command(&m.url, token, dir, &["--json"]);
    let out = output_within(&mut cmd, SYNC_LIMIT);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "mirror sync: {out:?}");
    let facts: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("mirror sync --json ({e}): {out:?}"));
    (facts["bytes_copied"].as_u64().unwrap_or_default(), took)
}

/// Requests the manager has answered, by its own `/metrics`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn answered(m: &Manager) -> u64 {
    // A counter: a whole number, well inside f64's exact range.
    metric(m, "manager_http_requests_total", &[]) as u64
}

/// The `model name` of the first CPU in /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------------------
// Printing

#[allow(clippy::cast_precision_loss)]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn show(m: &Measured) -> String {
    let counted = m
        .manager_counted
        .map_or_else(|| "stopped".to_owned(), |n| format!("it counted {n}"));
    let mut s = format!(
        "{} round {}: manager {:.1} MB in {} requests ({counted}), mirror {:.1} MB in {} requests; \
         converged in {:.2} s ({:.0} MB/s), all done in {:.2} s",
        m.scenario.title(),
        m.round + 1,
        mb(m.manager_bytes),
        m.manager_requests,
        mb(m.mirror_bytes),
        m.mirror_requests,
        m.converge.as_secs_f64(),
        mb(m.manager_bytes + m.mirror_bytes) / m.converge.as_secs_f64(),
        m.wall.as_secs_f64(),
    );
    if m.refused > 0 || m.queued > 0 {
        let _ = write!(
            s,
            "; {} keepalives refused, {} reports queued",
            m.refused, m.queued
        );
    }
    if m.retries > 0 {
        let _ = write!(s, "; {} requests tried again", m.retries);
    }
    if m.scenario != Scenario::ManagerOnly {
        let _ = write!(
            s,
            " (mirror sync before: {:.1} MB from the manager in {:.2} s)",
            mb(m.sync_bytes),
            m.sync_time.as_secs_f64()
        );
    }
    s
}

/// `min / median / max` of `values` as `fmt` shows each, or one value when
/// they are all equal.
fn spread(mut values: Vec<f64>, fmt: impl Fn(f64) -> String) -> String {
    values.sort_by(f64::total_cmp);
    let (lo, hi) = (values[0], values[values.len() - 1]);
    let n = values.len();
    let med = if n % 2 == 1 {
        values[n / 2]
    } else {
        values[n / 2 - 1].midpoint(values[n / 2])
    };
    let (a, b, c) = (fmt(lo), fmt(med), fmt(hi));
    if a == c {
        a
    } else {
        format!("{a} / {b} / {c}")
    }
}

#[allow(clippy::cast_precision_loss)]
fn summary(all: &[Measured], o: &Opts) {
    println!();
    println!(
        "summary over {} round(s), min / median / max ({} nodes, {} MB each, {} at a time; bytes as the clients received them):",
        o.rounds, o.nodes, o.size_mb, o.concurrency
    );
    for s in SCENARIOS {
        let ms: Vec<&Measured> = all.iter().filter(|m| m.scenario == s).collect();
        if ms.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&Measured) -> f64, fmt: &dyn Fn(f64) -> String| {
            spread(ms.iter().map(|m| f(m)).collect(), fmt)
        };
        let one = |v: f64| format!("{v:.1}");
        let int = |v: f64| format!("{v:.0}");
        let secs = |v: f64| format!("{v:.2}");
        println!("  {}", s.title());
        println!(
            "    served by the manager: {} MB in {} requests",
            col(&|m| mb(m.manager_bytes), &one),
            col(&|m| m.manager_requests as f64, &int)
        );
        println!(
            "    served by the mirror:  {} MB in {} requests",
            col(&|m| mb(m.mirror_bytes), &one),
            col(&|m| m.mirror_requests as f64, &int)
        );
        println!(
            "    time to converge:      {} s (all done: {} s)",
            col(&|m| m.converge.as_secs_f64(), &secs),
            col(&|m| m.wall.as_secs_f64(), &secs)
        );
        if s != Scenario::ManagerOnly {
            println!(
                "    mirror sync before it: {} MB from the manager in {} s",
                col(&|m| mb(m.sync_bytes), &one),
                col(&|m| m.sync_time.as_secs_f64(), &secs)
            );
        }
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let o = parse_args();
    let cores = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let manager_path = manager_bin();
    let profile = manager_path
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "?".into(), |p| p.to_string_lossy().into_owned());
    println!(
        "machine: {cores} cores ({}); manager-lite: {profile} build; nginx: worker_processes 1, access_log off",
        cpu_model()
    );
    println!(
        "fleet: {} nodes, {} at a time; v2: {} MB (10^6 bytes); {} round(s) of A, B, C interleaved{}",
        o.nodes,
        o.concurrency.min(o.nodes),
        o.size_mb,
        o.rounds,
        if o.pin {
            "; manager and nginx on CPU 0, this load on CPU 1"
        } else {
            ""
        }
    );
    if o.pin {
        assert!(cores >= 2, "--pin needs two CPUs, this machine has {cores}");
        // Children inherit the affinity of the thread that starts them.
        pin(std::process::id(), 0);
    }

    // Declared first, so removed last (after the manager and nginx stop).
    let scratch = Scratch::new();
    let mut bench = Bench::start(&scratch.0, o);
    if bench.o.pin {
        pin(std::process::id(), 1);
    }
    println!(
        "manager on {}, mirror (nginx) on {}, data and tree in {}",
        bench.manager.url,
        bench.nginx.url,
        scratch.0.display()
    );
    let mut all = Vec::new();
    for round in 0..bench.o.rounds {
        for scenario in SCENARIOS {
            let measured = bench.run(scenario, round);
            println!("{}", show(&measured));
            all.push(measured);
        }
    }
    summary(&all, &bench.o);
    drop(bench);
    drop(scratch);
}

/// The servers and what every scenario-round needs.
struct Bench {
    o: Opts,
    manager: Manager,
    nginx: Nginx,
    /// The admin token in a file, for `mirror sync`.
    token: PathBuf,
    /// The mirror's tree, which nginx serves.
    tree: PathBuf,
}

impl Bench {
    /// The manager (data in `dir/data`) and nginx serving `dir/mirror`.
    fn start(dir: &Path, o: Opts) -> Bench {
        let tree = dir.join("mirror");
        std::fs::create_dir_all(&tree).unwrap();
        let manager = Manager::start(&dir.join("data"), ManagerOptions::default());
        let token = dir.join("admin.token");
        std::fs::write(&token, format!("{}\n", manager.token)).unwrap();
        let nginx = Nginx::serve(&tree);
        Bench {
            o,
            manager,
            nginx,
            token,
            tree,
        }
    }

    /// One scenario in one round: a bin and fleet of its own on v1, v2
    /// released at 100% and synced to the mirror (not measured), then the
    /// fleet's update (measured).
    fn run(&mut self, scenario: Scenario, round: usize) -> Measured {
        let tag = format!("{}{}", scenario.letter(), round + 1);
        let bin = format!("{BIN_PREFIX}-{tag}");
        let nodes = self.o.nodes;
        let v1_bytes = artifact_bytes(&format!("{bin} v1"), V1_SIZE);
        let v1 = upload(&self.manager, &bin, "1", &v1_bytes);
        let v2_bytes = artifact_bytes(&format!("{bin} v2"), self.o.size_mb * 1_000_000);
        let v2 = upload(&self.manager, &bin, "2", &v2_bytes);
        drop(v2_bytes);

        let mut fleet = Round {
            scenario,
            bin: &bin,
            prefix: tag.clone(),
            v1: &v1,
            v2: &v2,
            manager: self.manager.addr,
            mirror: self.nginx.addr,
            tally: Tally::default(),
        };
        let began = Instant::now();
        fan_out(nodes, self.o.concurrency, "registering", |i| {
            fleet.register(i);
        });
        let registered = began.elapsed();
        self.manager
            .admin_post(
                "/api/v1/releases",
                &json!({"bin_name": bin, "version": "2"}),
            )
            .expect(201);
        let (sync_bytes, sync_time) = sync(&self.manager, &self.token, &self.tree);
        eprintln!(
            "  [{tag}] {nodes} nodes registered on v1 in {:.2} s; v2 released; mirror synced",
            registered.as_secs_f64()
        );
        fleet.tally = Tally::default();

        let stopped = scenario == Scenario::ManagerStopped;
        let before = (!stopped).then(|| answered(&self.manager));
        if stopped {
            let status = self.manager.sigterm();
            assert!(status.success(), "the manager's exit on SIGTERM: {status}");
        }
        let started = Instant::now();
        let verified = fan_out(nodes, self.o.concurrency, &format!("scenario {tag}"), |i| {
            fleet.agent(i)
        });
        let wall = started.elapsed();
        let last = verified.into_iter().max().unwrap_or(started);
        // The scrape before is counted by the scrape after.
        let manager_counted = before.map(|b| answered(&self.manager).saturating_sub(b + 1));
        if stopped {
            self.manager.restart();
            if self.o.pin {
                pin(self.manager.pid(), 0);
            }
        }
        let tally = &fleet.tally;
        assert_eq!(
            tally.verified.load(Relaxed),
            nodes as u64,
            "agents verified"
        );
        Measured {
            scenario,
            round,
            manager_bytes: tally.manager_bytes.load(Relaxed),
            manager_requests: tally.manager_requests.load(Relaxed),
            manager_counted,
            mirror_bytes: tally.mirror_bytes.load(Relaxed),
            mirror_requests: tally.mirror_requests.load(Relaxed),
            refused: tally.refused.load(Relaxed),
            queued: tally.queued.load(Relaxed),
            retries: tally.retries.load(Relaxed),
            converge: last.duration_since(started),
            wall,
            sync_bytes,
            sync_time,
        }
    }
}
