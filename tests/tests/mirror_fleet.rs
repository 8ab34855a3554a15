//! A fleet rides out a manager outage on a mirror (issue #15 item 5(a)):
//! 200 real `binproxy` agents, each in its own directory, run against the
//! real `manager-lite` and a tree written by the real `manager-lite mirror
//! sync`, served by a real nginx, all on 127.0.0.1, at most [`CONCURRENT`]
//! agents at a time.
//!
//! Every node installs a signed v1 from the manager (its bytes from the
//! mirror). v2 is then signed, released and synced to the mirror, and the
//! manager is stopped (SIGTERM) before any node hears of it. With the
//! nodes' manager address refusing connections, every node installs v2 from
//! the mirror alone: exit 69, v2 live, its signed timestamp recorded,
//! `status` naming the mirror as where the target came from, and its
//! reports queued in its outbox. The manager comes back on its own data: one
//! more run of every node (`--ignore-backoff`: the outage started a
//! back-off) empties every outbox, and the manager then holds, for each of
//! the 200 nodes, exactly the progress reports that node had queued (one
//! `success` for v2 among them) and v2 as the node's installed version.
//!
//! Each phase's wall time is printed (`--nocapture` shows it); nothing
//! asserts on time. `minisign` and `nginx` must be installed (`tests/run.sh`
//! installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::mirror::MirrorBin;
use binproxy_protocol::Node;
use binproxy_protocol::ProgressStatus::{self, Success};
use binproxy_tests::agent::{count, good_script, progress, show, Agent, Outcome};
use binproxy_tests::minisign::Minisign;
use binproxy_tests::mirror::{came_from, configure, downloads_served, sync_command};
use binproxy_tests::nginx::Nginx;
use binproxy_tests::signed::{self, good_comment, signed_timestamp, BIN, T1, T2};
use binproxy_tests::{output_within, sha256_hex, Manager, TempDir};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many nodes the fleet has.
const NODES: usize = 200;
/// How many agents run at the same time.
const CONCURRENT: usize = 16;
/// How long one `mirror sync` may run.
const SYNC_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn two_hundred_agents_install_a_signed_release_from_the_mirror_while_the_manager_is_down() {
    let started = Instant::now();
    let mut f = Fleet::on_v1();
    let v2 = f.release_v2_and_sync();

    // The manager stops before any node hears of v2; the nodes' manager
    // address now refuses connections.
    let status = f.m.sigterm();
    assert!(
        status.success(),
        "the manager's exit after SIGTERM: {status}"
    );
    let gone = RefusingPort::bind();
    f.point_at(&gone.url);
    let queued = f.install_from_the_mirror(&v2);

    // The manager is back on its own data (on a new port).
    drop(gone);
    f.m.restart();
    let url = f.m.url.clone();
    f.point_at(&url);
    f.deliver(&v2);
    f.assert_received(&queued, &v2);
    eprintln!("the whole test: {:?}", started.elapsed());
}

/// A version of the bin: its bytes and sha256.
struct Release {
    bytes: Vec<u8>,
    sha: String,
}

/// The manager, the release key, the synced tree served by nginx, and the
/// nodes, which list the tree as their one mirror and trust the key.
struct Fleet {
    m: Manager,
    key: Minisign,
    /// The admin token's file, for `mirror sync`.
    token: PathBuf,
    /// The tree `mirror sync` writes.
    tree: PathBuf,
    nginx: Nginx,
    /// The tree's URL as the nodes list it.
    mirror: String,
    agents: Vec<Agent>,
    v1: Release,
    /// Holds `token` and `tree`.
    _tmp: TempDir,
}

impl Fleet {
    /// v1 signed (at T1), released and synced; the tree served; every node
    /// installs v1 from the manager's target, its bytes from the mirror.
    fn on_v1() -> Fleet {
        let m = Manager::new();
        let key = Minisign::generate();
        let tmp = TempDir::new("mirror-fleet");
        let token = tmp.join("admin.token");
        fs::write(&token, format!("{}\n", m.token)).unwrap();
        let tree = tmp.join("mirror");
        let bytes = good_script("v1");
        let sig = key.sign(&bytes, &good_comment("1.0.0", T1));
        let sha = signed::publish(&m, "1.0.0", &bytes, Some(&sig));
        sync(&m, &token, &tree);
        assert_synced(&tree, "1.0.0", &bytes, &sig);
        let nginx = Nginx::serve(&tree);
        let mirror = format!("{}/", nginx.url);
        let agents: Vec<Agent> = (0..NODES).map(|_| Agent::new(BIN)).collect();
        let f = Fleet {
            m,
            key,
            token,
            tree,
            nginx,
            mirror,
            agents,
            v1: Release { bytes, sha },
            _tmp: tmp,
        };
        let url = f.m.url.clone();
        f.point_at(&url);

        // The sync's own download of v1 counts too.
        let served_before = downloads_served(&f.m);
        let t = Instant::now();
        for_each(&f.agents, |a| {
            let out = a.run();
            expect_code(a, &out, 0, "installing v1");
            a.assert_live(&f.v1.bytes, &format!("{}: v1", a.node_id));
            assert_eq!(signed_timestamp(a), Some(T1), "{}", a.node_id);
            assert!(a.outbox().is_empty(), "{}: reports queued", a.node_id);
        });
        eprintln!("{NODES} agents install v1: {:?}", t.elapsed());
        assert_installed(&f.m, &f.agents, &f.v1.sha, "v1");
        assert_eq!(
            downloads_served(&f.m),
            served_before,
            "the nodes took v1's bytes from the manager, not the mirror"
        );
        f
    }

    /// Every node's config: the manager at `manager_url`, the key, the mirror.
    fn point_at(&self, manager_url: &str) {
        for a in &self.agents {
            configure(a, manager_url, &[&self.key], &[&self.mirror]);
        }
    }

    /// v2 signed (at T2, later than v1), released to every node, synced,
    /// and served.
    fn release_v2_and_sync(&self) -> Release {
        let bytes = good_script("v2");
        let sig = self.key.sign(&bytes, &good_comment("2.0.0", T2));
        let sha = signed::publish(&self.m, "2.0.0", &bytes, Some(&sig));
        sync(&self.m, &self.token, &self.tree);
        assert_synced(&self.tree, "2.0.0", &bytes, &sig);
        let r = self.nginx.get(&format!("/bins/{BIN}.json"), &[]);
        assert_eq!(r.status, 200, "nginx: {}", self.nginx.log());
        let served: MirrorBin = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(served.version, "2.0.0", "nginx serves an old bins file");
        Release { bytes, sha }
    }

    /// With the manager down, every node installs `v2` from the mirror and
    /// queues its reports; returns them, by node.
    fn install_from_the_mirror(&self, v2: &Release) -> BTreeMap<String, Vec<Value>> {
        let mirror = &self.mirror;
        let queued = Mutex::new(BTreeMap::new());
        let t = Instant::now();
        for_each(&self.agents, |a| {
            let node = &a.node_id;
            let out = a.run();
            expect_code(a, &out, 69, "with the manager down");
            for want in [
                "manager unreachable",
                &format!("{BIN}: installing 2.0.0 from mirror {mirror}"),
            ] {
                assert!(
                    out.stderr.contains(want),
                    "{node}: {want:?} not in the agent's log:\n{}",
                    out.stderr
                );
            }
            a.assert_live(&v2.bytes, &format!("{node}: v2 from the mirror"));
            assert_eq!(signed_timestamp(a), Some(T2), "{node}: signed timestamp");
            assert_eq!(
                came_from(a),
                (Some(format!("mirror {mirror}")), Some(mirror.clone())),
                "{node}: status says the version came from elsewhere"
            );
            assert!(
                a.kept(&self.v1.sha).exists(),
                "{node}: v1 not kept for rollback"
            );
            assert!(a.journal().is_none(), "{node}: journal left");
            assert!(a.beside().is_empty(), "{node}: debris: {:?}", a.beside());
            let reports = outbox(a);
            check_queued(node, &reports, &self.v1.sha, &v2.sha);
            queued.lock().unwrap().insert(node.clone(), reports);
        });
        eprintln!(
            "{NODES} agents install v2 from the mirror, the manager down: {:?}",
            t.elapsed()
        );
        let queued = queued.into_inner().unwrap();
        assert_eq!(queued.len(), NODES);
        queued
    }

    /// With the manager back, one run of every node empties its outbox. The
    /// nodes are within the back-off the outage started, in which (mirrors
    /// set) a run reads only the mirrors: `--ignore-backoff` makes them
    /// contact the manager now.
    fn deliver(&self, v2: &Release) {
        let t = Instant::now();
        for_each(&self.agents, |a| {
            let out = a.exec("run", &["--now", "--ignore-backoff"]);
            expect_code(a, &out, 0, "with the manager back");
            assert!(
                a.outbox().is_empty(),
                "{}: reports still queued: {:?}",
                a.node_id,
                a.outbox()
            );
            a.assert_live(&v2.bytes, &format!("{}: v2 stays", a.node_id));
        });
        eprintln!("{NODES} agents deliver their reports: {:?}", t.elapsed());
    }

    /// The manager holds, for every node, exactly the progress reports for
    /// v2 it had queued (one `success` among them), still the one `success`
    /// for v1, and v2 as its installed version.
    fn assert_received(&self, queued: &BTreeMap<String, Vec<Value>>, v2: &Release) {
        for a in &self.agents {
            let node = &a.node_id;
            let p = progress(&self.m, BIN, node);
            let got: Vec<Sent> = p
                .iter()
                .filter(|r| r.target_hash == v2.sha)
                .map(|r| (r.status, r.target_hash.clone(), r.from_hash.clone()))
                .collect();
            let want: Vec<Sent> = queued[node].iter().filter_map(progress_of).collect();
            assert_eq!(
                got,
                want,
                "{node}: the manager's reports for v2 are not the ones queued\n{}",
                show(&p)
            );
            assert_eq!(count(&p, Success, &v2.sha), 1, "{node}: {}", show(&p));
            assert_eq!(count(&p, Success, &self.v1.sha), 1, "{node}: {}", show(&p));
        }
        assert_installed(&self.m, &self.agents, &v2.sha, "v2");
    }
}

// ---------------------------------------------------------------------------
// The fleet

/// Runs `check` on every agent, at most [`CONCURRENT`] at a time. After a
/// failure no further agent is started; the first failure's panic is the
/// test's.
fn for_each(agents: &[Agent], check: impl Fn(&Agent) + Sync) {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT {
            s.spawn(|| {
                let _flag = FlagOnPanic(&failed);
                while !failed.load(Ordering::Relaxed) {
                    let Some(a) = agents.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    check(a);
                }
            });
        }
    });
}

/// Sets its flag when dropped by a panicking thread.
struct FlagOnPanic<'a>(&'a AtomicBool);

impl Drop for FlagOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[track_caller]
fn expect_code(a: &Agent, out: &Outcome, code: i32, what: &str) {
    assert_eq!(
        out.code,
        Some(code),
        "{}: {what}: unexpected exit code\nstdout:\n{}\nstderr:\n{}",
        a.node_id,
        out.stdout,
        out.stderr
    );
}

/// Asserts that the manager records `sha` as installed on every agent.
#[track_caller]
fn assert_installed(m: &Manager, agents: &[Agent], sha: &str, what: &str) {
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    let installed: BTreeMap<&str, Option<&String>> = nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.bins.get(BIN)))
        .collect();
    for a in agents {
        assert_eq!(
            installed.get(a.node_id.as_str()),
            Some(&Some(&sha.to_owned())),
            "{}: the manager does not record {what} installed",
            a.node_id
        );
    }
}

// ---------------------------------------------------------------------------
// The outbox

/// The node's queued reports, oldest first, parsed.
fn outbox(a: &Agent) -> Vec<Value> {
    a.outbox()
        .iter()
        .map(|p| {
            serde_json::from_slice(&fs::read(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {} is not JSON: {e}", a.node_id, p.display()))
        })
        .collect()
}

/// What a progress report says: status, target, the version it was from.
type Sent = (ProgressStatus, String, Option<String>);

/// What a queued progress report says; `None` for another kind.
fn progress_of(report: &Value) -> Option<Sent> {
    if report["kind"] != "progress" {
        return None;
    }
    let body = &report["body"];
    let status = serde_json::from_value(body["status"].clone()).unwrap();
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    Some((status, text("targetHash").unwrap(), text("fromHash")))
}

/// What a node that installed v2 with the manager down must have queued:
/// progress reports for v2 from v1 ending in one `success`, and the report
/// that v2 is installed.
#[track_caller]
fn check_queued(node: &str, reports: &[Value], sha1: &str, sha2: &str) {
    let shown = || serde_json::to_string_pretty(reports).unwrap();
    assert!(!reports.is_empty(), "{node}: no report queued");
    for r in reports {
        assert_eq!(r["bin"], BIN, "{node}: {}", shown());
        assert_eq!(r["body"]["node_id"], node, "{node}: {}", shown());
    }
    let progress: Vec<Sent> = reports.iter().filter_map(progress_of).collect();
    assert!(
        progress
            .iter()
            .all(|(_, to, from)| to == sha2 && from.as_deref() == Some(sha1)),
        "{node}: a report of something else than the update from v1 to v2: {}",
        shown()
    );
    assert_eq!(
        progress.last().map(|p| p.0),
        Some(Success),
        "{node}: the last progress report is not a success: {}",
        shown()
    );
    let installed: Vec<&Value> = reports
        .iter()
        .filter(|r| r["kind"] == "installed")
        .collect();
    assert_eq!(installed.len(), 1, "{node}: {}", shown());
    assert_eq!(
        installed[0]["body"]["sha256sum"],
        sha2,
        "{node}: {}",
        shown()
    );
}

// ---------------------------------------------------------------------------
// The mirror and the manager's address

/// `manager-lite mirror sync --to DIR` against `m` with the token in `token`.
#[track_caller]
fn sync(m: &Manager, token: &Path, dir: &Path) {
    let out = output_within(&mut sync_command(&m.url, token, dir, &[]), SYNC_LIMIT);
    assert_eq!(out.status.code(), Some(0), "mirror sync: {out:?}");
}

/// Asserts that the tree at `dir` offers `version` (`bytes`, signed `sig`)
/// to every arch.
#[track_caller]
fn assert_synced(dir: &Path, version: &str, bytes: &[u8], sig: &str) {
    let file = dir.join(format!("bins/{BIN}.json"));
    let doc: MirrorBin = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc.version, version, "{}", file.display());
    let t = doc.target_for(signed::host_arch()).expect("a target");
    let sha = sha256_hex(bytes);
    assert_eq!(t.sha256sum, sha, "{}", file.display());
    assert_eq!(t.signature.as_deref(), Some(sig), "{}", file.display());
    let artifact: PathBuf = dir.join(&t.url);
    assert_eq!(
        fs::read(&artifact).unwrap(),
        bytes,
        "{}",
        artifact.display()
    );
    let minisig = dir.join(format!("artifacts/{sha}.minisig"));
    assert_eq!(fs::read_to_string(&minisig).unwrap(), sig);
}

/// A loopback port bound but not listening, kept while this lives: a
/// connection to it is refused, and nothing else can take the port.
struct RefusingPort {
    _socket: Socket,
    url: String,
}

impl RefusingPort {
    fn bind() -> RefusingPort {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| e.kind())
            .err();
        assert_eq!(
            refused,
            Some(std::io::ErrorKind::ConnectionRefused),
            "{addr} does not refuse connections"
        );
        RefusingPort {
            _socket: socket,
            url: format!("http://{addr}"),
        }
    }
}
