//! What manager-lite promises about its state: every acknowledged write
//! survives kill -9 and a clean SIGTERM, and concurrent clients never get a
//! 5xx or lose an acknowledged result. Real server binary, real redb files in
//! temporary directories, real signals.
//!
//! (A data dir whose database has a newer schema is covered by the store's
//! unit tests: it cannot be forged here without redb.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{
    download_path, Node, ProgressRecord, Release, ReleaseStatus, Target, Version,
};
use binproxy_tests::{
    artifact_bytes, sha256_hex, status_counts, Manager, ManagerOptions, Response,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything the server acknowledged, as it answered.
#[derive(Default)]
struct Acked {
    /// node id → the node as the last acknowledged answer showed it.
    nodes: BTreeMap<String, Node>,
    /// (bin, version, arch) → the version and its bytes.
    versions: BTreeMap<(String, String, String), (Version, Vec<u8>)>,
    /// release id → bin.
    releases: BTreeMap<u64, String>,
    progress: BTreeMap<u64, ProgressRecord>,
}

impl Acked {
    fn keepalive(&mut self, m: &Manager, node: &str, arch: &str) {
        let r = m.keepalive(node, arch, &[]);
        let reply: binproxy_protocol::KeepaliveReply = r.expect(200).parse();
        self.nodes.insert(node.to_string(), reply.node);
    }

    fn upload(&mut self, m: &Manager, bin: &str, version: &str, arch: Option<&str>, len: usize) {
        let bytes = artifact_bytes(&format!("{bin}/{version}/{arch:?}"), len);
        let v: Version = m.upload(bin, version, arch, &bytes).expect(201).parse();
        assert_eq!(v.sha256sum, sha256_hex(&bytes));
        let key = (
            bin.to_string(),
            version.to_string(),
            arch.unwrap_or("").to_string(),
        );
        self.versions.insert(key, (v, bytes));
    }

    fn release(&mut self, m: &Manager, bin: &str, version: &str) {
        let rel: Release = m.release(bin, version).expect(201).parse();
        self.releases.insert(rel.id, bin.to_string());
    }

    fn installed(&mut self, m: &Manager, node: &str, bin: &str, sha: &str) {
        let r = m.post_json(
            &format!("/api/v1/bins/{bin}"),
            &json!({"node_id": node, "sha256sum": sha}),
        );
        let n: Node = r.expect(200).parse();
        assert_eq!(n.bins.get(bin).map(String::as_str), Some(sha));
        self.nodes.insert(node.to_string(), n);
    }

    fn progress(&mut self, m: &Manager, bin: &str, node: &str, status: &str, n: u64) {
        let r = m.post_json(
            &format!("/api/v1/bins/{bin}/progress"),
            &json!({"node_id": node, "targetHash": sha256_hex(&n.to_le_bytes()), "status": status,
                    "processingTime": n, "message": format!("report {n}")}),
        );
        let rec: ProgressRecord = r.expect(201).parse();
        self.progress.insert(rec.id, rec);
    }

    /// Asserts the server shows every acknowledged write.
    fn verify(&self, m: &Manager) {
        // Nodes: identity, registration time and installed bins.
        let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
        let by_id: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.node_id.as_str(), n)).collect();
        for (id, want) in &self.nodes {
            let got = by_id
                .get(id.as_str())
                .unwrap_or_else(|| panic!("node {id} lost"));
            assert_eq!(got.cpu_arch, want.cpu_arch, "node {id}");
            assert_eq!(got.node_name, want.node_name, "node {id}");
            assert_eq!(got.registered_at, want.registered_at, "node {id}");
            assert_eq!(got.bins, want.bins, "node {id}: installed bins");
        }
        assert_eq!(
            nodes.len(),
            self.nodes.len(),
            "no node appears from nowhere"
        );

        // Versions: listed as acknowledged, and their artifacts intact.
        let bins: BTreeSet<&str> = self.versions.keys().map(|(b, _, _)| b.as_str()).collect();
        for bin in &bins {
            let list: Vec<Version> = m
                .admin_get(&format!("/api/v1/bins/{bin}/versions"))
                .expect(200)
                .parse();
            let want: Vec<&Version> = self
                .versions
                .iter()
                .filter(|((b, _, _), _)| b == bin)
                .map(|(_, (v, _))| v)
                .collect();
            assert_eq!(list.len(), want.len(), "versions of {bin}: {list:?}");
            for v in want {
                assert!(list.contains(v), "version {v:?} lost; listed: {list:?}");
            }
        }
        for (v, bytes) in self.versions.values() {
            let d = m.get(&download_path(&v.sha256sum));
            assert_eq!(
                d.expect(200).body,
                *bytes,
                "artifact of {} {} damaged",
                v.bin_name,
                v.version
            );
        }

        // Releases: all there; per bin, only the newest is live.
        let releases: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
        let got_ids: BTreeSet<u64> = releases.iter().map(|r| r.id).collect();
        let want_ids: BTreeSet<u64> = self.releases.keys().copied().collect();
        assert_eq!(got_ids, want_ids, "releases");
        let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, bin) in &self.releases {
            let e = newest.entry(bin.as_str()).or_insert(*id);
            *e = (*e).max(*id);
        }
        for r in &releases {
            let want = if newest[r.bin_name.as_str()] == r.id {
                ReleaseStatus::RollingOut
            } else {
                ReleaseStatus::Superseded
            };
            assert_eq!(r.status, want, "release {} of {}", r.id, r.bin_name);
            assert_eq!(self.releases[&r.id], r.bin_name);
        }

        // Progress: every acknowledged report, unchanged.
        let pbins: BTreeSet<&str> = self
            .progress
            .values()
            .map(|p| p.bin_name.as_str())
            .collect();
        let mut seen = 0;
        for bin in pbins {
            let list: Vec<ProgressRecord> = m
                .admin_get(&format!("/api/v1/bins/{bin}/progress?limit=1000"))
                .expect(200)
                .parse();
            let got: BTreeMap<u64, &ProgressRecord> = list.iter().map(|p| (p.id, p)).collect();
            for want in self.progress.values().filter(|p| p.bin_name == bin) {
                let g = got
                    .get(&want.id)
                    .unwrap_or_else(|| panic!("progress report {} lost", want.id));
                assert_eq!(*g, want);
                seen += 1;
            }
        }
        assert_eq!(seen, self.progress.len());
    }
}

/// Registers, uploads, releases, reports installs and progress: `round`
/// selects names so rounds add to each other; `last` picks the kind of the
/// final write (the one right before the kill).
fn write_batch(m: &Manager, acked: &mut Acked, round: usize, last: usize) {
    let arches = ["x86_64", "aarch64"];
    for i in 0..10 {
        acked.keepalive(m, &format!("r{round}-node-{i}"), arches[i % 2]);
    }
    for (b, bin) in ["alpha", "beta"].iter().enumerate() {
        for v in 0..3 {
            let version = format!("{round}.{v}");
            if v == 2 {
                acked.upload(m, bin, &version, Some("x86_64"), 1000 + b * 100 + v);
                acked.upload(m, bin, &version, Some("aarch64"), 2000 + b * 100 + v);
            } else {
                acked.upload(m, bin, &version, None, 3000 + b * 100 + v);
            }
            acked.release(m, bin, &version);
        }
    }
    for i in 0..10 {
        let node = format!("r{round}-node-{i}");
        let sha = sha256_hex(format!("installed {round} {i}").as_bytes());
        acked.installed(m, &node, if i % 2 == 0 { "alpha" } else { "beta" }, &sha);
    }
    let statuses = ["in_progress", "success", "failed", "rolled_back"];
    for n in 0..20u64 {
        let node = format!("r{round}-node-{}", n % 10);
        let bin = if n % 3 == 0 { "beta" } else { "alpha" };
        let idx = usize::try_from(n).unwrap() % 4;
        acked.progress(m, bin, &node, statuses[idx], n + 1000 * round as u64);
    }
    // The last acknowledged write, of a kind that varies with `last`.
    match last % 5 {
        0 => acked.progress(m, "alpha", "r0-node-0", "success", 999_999),
        1 => acked.installed(
            m,
            "r0-node-1",
            "gamma",
            &sha256_hex(format!("last {round}").as_bytes()),
        ),
        2 => acked.release(m, "alpha", &format!("{round}.0")),
        3 => acked.keepalive(m, &format!("r{round}-late-node"), "riscv64"),
        _ => acked.upload(m, "gamma", &format!("{round}.late"), None, 777),
    }
}

#[test]
fn kill9_loses_no_acknowledged_write() {
    let mut m = Manager::new();
    let mut acked = Acked::default();
    for round in 0..5 {
        write_batch(&m, &mut acked, round, round);
        // Straight after the last acknowledgement.
        m.kill9();
        m.restart();
        acked.verify(&m);
    }
    // The restored state still drives targets: the newest release of alpha.
    let newest_alpha = acked
        .releases
        .iter()
        .filter(|(_, b)| *b == "alpha")
        .map(|(id, _)| *id)
        .max()
        .unwrap();
    let rel: Release = m
        .admin_get(&format!("/api/v1/releases/{newest_alpha}"))
        .expect(200)
        .parse();
    let t: Target = m
        .get("/api/v1/bins/alpha?node_id=r0-node-0")
        .expect(200)
        .parse();
    assert_eq!(t.version, rel.version);
}

#[test]
fn sigterm_exits_0_and_keeps_everything() {
    let mut m = Manager::new();
    let mut acked = Acked::default();
    write_batch(&m, &mut acked, 0, 0);
    // A later keepalive of a known node: a clean shutdown keeps its last_seen too.
    let last: binproxy_protocol::KeepaliveReply =
        m.keepalive("r0-node-3", "aarch64", &[]).expect(200).parse();
    acked.nodes.insert("r0-node-3".into(), last.node.clone());
    let status = m.sigterm();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exit: {status}\nlog:\n{}",
        m.log()
    );
    m.restart();
    acked.verify(&m);
    let node: Node = m
        .get("/api/v1/keepalive?node_id=r0-node-3")
        .expect(200)
        .parse();
    assert_eq!(
        node.last_seen, last.node.last_seen,
        "last_seen flushed at shutdown"
    );

    // And once more, after more writes on the reopened database.
    write_batch(&m, &mut acked, 1, 4);
    let status = m.signal("INT");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGINT exit: {status}\nlog:\n{}",
        m.log()
    );
    m.restart();
    acked.verify(&m);
}

#[test]
fn sigterm_during_uploads_keeps_every_acknowledged_upload() {
    let mut m = Manager::new();
    let acked: Mutex<Vec<(Version, Vec<u8>)>> = Mutex::new(Vec::new());
    let count = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let statuses: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let addr = m.addr;
    let auth = format!("Bearer {}", m.token);
    std::thread::scope(|s| {
        let uploader = s.spawn(|| {
            // Bounded: at most 2000 uploads; ends at the first refused connection.
            for i in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let bytes = artifact_bytes(&format!("inflight-{i}"), 64 * 1024 + i);
                let path = format!("/api/v1/bins/busy/versions?version=v{i}");
                match binproxy_tests::try_request(
                    addr,
                    "POST",
                    &path,
                    &[("Authorization", &auth)],
                    &bytes,
                ) {
                    Ok(r) => {
                        statuses.lock().unwrap().push(r.status);
                        if r.status == 201 {
                            acked.lock().unwrap().push((r.parse(), bytes));
                            count.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // A server shutting down may refuse new work, but never with a 5xx
                            // other than 503.
                            assert!(r.status < 500 || r.status == 503, "upload {i}: {r}");
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while count.load(Ordering::Relaxed) < 5
            && Instant::now() < deadline
            && !uploader.is_finished()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            count.load(Ordering::Relaxed) >= 5,
            "uploads did not get going: {:?}",
            statuses.lock().unwrap()
        );
        let status = m.sigterm();
        stop.store(true, Ordering::Relaxed);
        uploader.join().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM exit: {status}\nlog:\n{}",
            m.log()
        );
    });
    m.restart();
    let acked = acked.into_inner().unwrap();
    let list: Vec<Version> = m
        .admin_get("/api/v1/bins/busy/versions")
        .expect(200)
        .parse();
    for (v, bytes) in &acked {
        assert!(list.contains(v), "acknowledged upload {} lost", v.version);
        assert_eq!(m.get(&download_path(&v.sha256sum)).expect(200).body, *bytes);
    }
    // Anything listed beyond the acknowledged ones must be whole.
    for v in &list {
        let d = m.get(&download_path(&v.sha256sum));
        assert_eq!(
            sha256_hex(&d.expect(200).body),
            v.sha256sum,
            "stored artifact {} is torn",
            v.version
        );
    }
}

/// One client's acknowledged results.
#[derive(Default)]
struct ThreadResults {
    versions: Vec<Version>,
    progress: Vec<ProgressRecord>,
    releases: Vec<Release>,
    statuses: Vec<u16>,
}

fn expect_status(out: &mut ThreadResults, r: &Response, want: u16, what: &str) {
    out.statuses.push(r.status);
    assert!(r.status < 500, "{what}: 5xx: {r}");
    assert_eq!(r.status, want, "{what}: {r}");
}

const THREADS: usize = 8;
const OPS: usize = 50;

/// One of the concurrent clients: `OPS` bounded operations, each checked.
fn client(m: &Manager, t: usize) -> ThreadResults {
    let mut out = ThreadResults::default();
    let node = format!("conc-node-{t}");
    let bin = format!("conc-{}", t % 2);
    let r = m.keepalive(&node, "x86_64", &[(&bin, "")]);
    expect_status(&mut out, &r, 200, "first keepalive");
    for j in 0..OPS {
        match j % 5 {
            0 | 3 => {
                let version = format!("t{t}-{j}");
                let bytes = artifact_bytes(&format!("{bin}/{version}"), 1000 + j * 37 + t);
                let r = m.upload(&bin, &version, None, &bytes);
                expect_status(&mut out, &r, 201, &format!("upload {bin} {version}"));
                out.versions.push(r.parse());
            }
            1 => {
                let r = m.keepalive(&node, "x86_64", &[(&bin, "")]);
                expect_status(&mut out, &r, 200, "keepalive");
            }
            2 => {
                let r = m.post_json(
                    &format!("/api/v1/bins/{bin}/progress"),
                    &json!({"node_id": node, "targetHash": sha256_hex(format!("{t}/{j}").as_bytes()),
                            "status": "success", "processingTime": j}),
                );
                expect_status(&mut out, &r, 201, "progress");
                out.progress.push(r.parse());
            }
            _ => {
                let version = out
                    .versions
                    .last()
                    .expect("uploaded before")
                    .version
                    .clone();
                let r = m.release(&bin, &version);
                expect_status(&mut out, &r, 201, &format!("release {bin} {version}"));
                out.releases.push(r.parse());
                let r = m.get(&format!("/api/v1/bins/{bin}?node_id={node}"));
                expect_status(&mut out, &r, 200, "target");
            }
        }
    }
    out
}

/// Asserts the server shows every result the clients got acknowledged.
fn check_concurrent(m: &Manager, results: &[ThreadResults], stage: &str) {
    for bin in ["conc-0", "conc-1"] {
        let list: Vec<Version> = m
            .admin_get(&format!("/api/v1/bins/{bin}/versions"))
            .expect(200)
            .parse();
        let want: Vec<&Version> = results
            .iter()
            .flat_map(|r| &r.versions)
            .filter(|v| v.bin_name == bin)
            .collect();
        assert_eq!(list.len(), want.len(), "{bin}");
        for v in want {
            assert!(list.contains(v), "upload {v:?} lost");
        }
        let progress: Vec<ProgressRecord> = m
            .admin_get(&format!("/api/v1/bins/{bin}/progress?limit=1000"))
            .expect(200)
            .parse();
        let want: Vec<&ProgressRecord> = results
            .iter()
            .flat_map(|r| &r.progress)
            .filter(|p| p.bin_name == bin)
            .collect();
        assert_eq!(progress.len(), want.len(), "{bin} progress");
        for p in want {
            assert!(progress.contains(p), "progress {p:?} lost");
        }
        // Every release is there; exactly the newest one of the bin is live.
        let releases: Vec<Release> = m
            .admin_get(&format!("/api/v1/releases?bin_name={bin}"))
            .expect(200)
            .parse();
        let want: BTreeSet<u64> = results
            .iter()
            .flat_map(|r| &r.releases)
            .filter(|r| r.bin_name == bin)
            .map(|r| r.id)
            .collect();
        let got: BTreeSet<u64> = releases.iter().map(|r| r.id).collect();
        assert_eq!(got, want, "{bin} releases");
        let newest = *want.iter().max().unwrap();
        let shown: Vec<(u64, &str, &str)> = releases
            .iter()
            .map(|r| (r.id, r.version.as_str(), r.status.as_str()))
            .collect();
        for r in &releases {
            let status = if r.id == newest {
                ReleaseStatus::RollingOut
            } else {
                ReleaseStatus::Superseded
            };
            assert_eq!(
                r.status, status,
                "{stage}: release {} of {bin}; only the newest ({newest}) may be live: {shown:?}",
                r.id
            );
        }
    }
    let ids: BTreeSet<u64> = results
        .iter()
        .flat_map(|r| &r.progress)
        .map(|p| p.id)
        .collect();
    assert_eq!(ids.len(), THREADS * (OPS / 5), "progress ids are unique");
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), THREADS, "{nodes:?}");
}

#[test]
fn concurrent_clients_lose_nothing() {
    let mut m = Manager::new();
    let results: Vec<ThreadResults> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = &m;
                s.spawn(move || client(m, t))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all_statuses: Vec<u16> = results
        .iter()
        .flat_map(|r| r.statuses.iter().copied())
        .collect();
    assert_eq!(
        all_statuses.len(),
        THREADS * (OPS + 1) + THREADS * (OPS / 5)
    );
    assert!(
        all_statuses.iter().all(|s| *s < 500),
        "{:?}",
        status_counts(&all_statuses)
    );
    check_concurrent(&m, &results, "before restart");
    m.kill9();
    m.restart();
    check_concurrent(&m, &results, "after kill -9 and restart");
}

#[test]
fn concurrent_releases_of_one_bin_leave_only_the_newest_live() {
    const CLIENTS: usize = 8;
    const RELEASES: usize = 20;
    let mut m = Manager::new();
    for t in 0..CLIENTS {
        m.upload("hot", &format!("v{t}"), None, format!("hot {t}").as_bytes())
            .expect(201);
    }
    let barrier = std::sync::Barrier::new(CLIENTS);
    let created: Vec<Release> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..RELEASES)
                        .map(|_| m.release("hot", &format!("v{t}")).expect(201).parse())
                        .collect::<Vec<Release>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(created.len(), CLIENTS * RELEASES);
    let newest = created.iter().map(|r| r.id).max().unwrap();
    let newest_version = created
        .iter()
        .find(|r| r.id == newest)
        .unwrap()
        .version
        .clone();
    for stage in ["before restart", "after kill -9 and restart"] {
        let releases: Vec<Release> = m
            .admin_get("/api/v1/releases?bin_name=hot")
            .expect(200)
            .parse();
        assert_eq!(releases.len(), created.len(), "{stage}");
        let live: Vec<(u64, &str)> = releases
            .iter()
            .filter(|r| r.status.is_live())
            .map(|r| (r.id, r.version.as_str()))
            .collect();
        assert_eq!(
            live,
            vec![(newest, newest_version.as_str())],
            "{stage}: exactly the newest release may be live"
        );
        register(&m, "probe", "x86_64");
        let t: Target = m.get("/api/v1/bins/hot?node_id=probe").expect(200).parse();
        assert_eq!(
            t.version, newest_version,
            "{stage}: target follows the newest release"
        );
        if stage == "before restart" {
            m.kill9();
            m.restart();
        }
    }
}

fn register(m: &Manager, node: &str, arch: &str) {
    m.keepalive(node, arch, &[]).expect(200);
}

/// Every call by which a node proves itself alive moves its `last_seen`, and
/// that survives a kill -9 once `--flush-interval` has passed: the old
/// agents' `GET /api/v1/keepalive?node_id=` and `POST /api/v1/bins/{bin}`
/// (changed or not) and a progress report, not only `POST` keepalives.
#[test]
fn last_seen_of_every_node_call_survives_kill_9() {
    let mut m = Manager::new_with(ManagerOptions::default().arg("--flush-interval=200ms"));
    m.upload("tool", "1.0", None, b"tool one").expect(201);
    let sha = sha256_hex(b"tool one");
    for node in ["by-get", "by-installed", "by-same-installed", "by-progress"] {
        m.keepalive(node, "x86_64", &[]).expect(200);
    }
    let installed = |node: &str| {
        m.post_json(
            "/api/v1/bins/tool",
            &json!({"node_id": node, "sha256sum": sha}),
        )
        .expect(200)
        .parse::<Node>()
    };
    installed("by-same-installed");
    let before = nodes_by_id(&m);
    // last_seen has whole seconds: let one pass.
    std::thread::sleep(Duration::from_millis(1100));

    let mut seen = BTreeMap::new();
    let got: Node = m
        .get("/api/v1/keepalive?node_id=by-get")
        .expect(200)
        .parse();
    seen.insert("by-get", got.last_seen);
    seen.insert("by-installed", installed("by-installed").last_seen);
    seen.insert(
        "by-same-installed",
        installed("by-same-installed").last_seen,
    );
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"node_id": "by-progress", "targetHash": sha, "status": "success"}),
    )
    .expect(201);
    seen.insert(
        "by-progress",
        nodes_by_id(&m)["by-progress"].last_seen.clone(),
    );
    for (node, last_seen) in &seen {
        assert_ne!(
            *last_seen, before[*node].last_seen,
            "{node}: the call did not move last_seen"
        );
    }

    std::thread::sleep(Duration::from_millis(700));
    m.kill9();
    m.restart();
    let after = nodes_by_id(&m);
    for (node, last_seen) in &seen {
        assert_eq!(
            after[*node].last_seen, *last_seen,
            "{node}: last_seen lost by a kill -9 after the flush interval"
        );
    }
}

fn nodes_by_id(m: &Manager) -> BTreeMap<String, Node> {
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect()
}
