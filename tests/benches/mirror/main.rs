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
//!
//! `client.rs` is the counting HTTP client, `agent.rs` one simulated agent
//! per scenario and the pool that runs them; this file the options, the
//! setup, the rounds and the printing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod client;

use agent::{fan_out, Round};
use client::Tally;

use binproxy_protocol::Version;
use binproxy_tests::metrics::metric;
use binproxy_tests::mirror::sync_command;
use binproxy_tests::nginx::Nginx;
use binproxy_tests::{artifact_bytes, manager_bin, output_within, pin, Manager, ManagerOptions};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

/// The bin of scenario-round `sr` is `svc-<sr>`.
const BIN_PREFIX: &str = "svc";
/// The longest one scenario-round (or one registration) may take.
const PHASE_LIMIT: Duration = Duration::from_secs(1800);
/// How long one `mirror sync` may run.
const SYNC_LIMIT: Duration = Duration::from_secs(600);
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
