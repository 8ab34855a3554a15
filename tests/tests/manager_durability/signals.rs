//! kill -9 and SIGTERM: no acknowledged write is lost, SIGTERM exits 0,
//! also during uploads.

use binproxy_protocol::{
    download_path, Node, NodeView, ProgressRecord, Release, ReleaseStatus, Target, Version,
};
use binproxy_tests::{artifact_bytes, sha256_hex, Manager};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitStatus;
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
    expect_exit_0(status, &m);
    m.restart();
    acked.verify(&m);
    // The admin's node view: `GET /api/v1/keepalive?node_id=` is the node's
    // own read when node auth is off, whoever sends it, and moves last_seen
    // to now (the check then held only within the same second).
    let view: NodeView = m.admin_get("/api/v1/nodes/r0-node-3").expect(200).parse();
    let node = view.node;
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
        expect_exit_0(status, &m);
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

/// Asserts a SIGTERM ended the manager with exit code 0, showing its log
/// when not.
#[track_caller]
fn expect_exit_0(status: ExitStatus, m: &Manager) {
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exit: {status}\nlog:\n{}",
        m.log()
    );
}
