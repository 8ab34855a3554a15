//! A full disk under a running manager: its data directory on a small tmpfs
//! (mounted by the test, so it needs root; CI runs as root), filled with
//! `fallocate`, then freed. While full, writes are answered 503 with
//! `Retry-After` and the reason, `/health` says degraded, `/metrics` shows
//! it, and reads are still served; once freed, writes work again within
//! seconds in the same process, and everything acknowledged before, during
//! and after is there, also after a kill -9 and a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{download_path, Node};
use binproxy_tests::{
    artifact_bytes, names_starting, sha256_hex, Manager, ManagerOptions, Response, TempDir,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for one test; unmounted when dropped, also on panic.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            is_root(),
            "tests/tests/manager_storage.rs needs root: it mounts a tmpfs (mount -t tmpfs -o size={size}) \
             to fill a real filesystem under the manager. CI runs as root; run it as root \
             (e.g. sudo -E cargo test -p binproxy-tests --test manager_storage)"
        );
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills what is left with `fallocate`, then with `dd` (a tmpfs may
    /// keep a few pages `fallocate` cannot have).
    fn fill(&self) {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let avail: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
        if avail > 4096 {
            run(Command::new("fallocate")
                .args(["-l", &(avail - 4096).to_string()])
                .arg(self.dir.join("filler")));
        }
        // Fails with ENOSPC once full: that is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4096", "status=none"])
            .arg(format!("of={}", self.dir.join("filler2").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn free(&self) {
        for f in ["filler", "filler2"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A keepalive that changes the node's record (its labels), so it must be
/// committed before its answer.
fn register(m: &Manager, node: &str, label: &str) -> Response {
    m.post_json(
        "/api/v1/keepalive",
        &json!({"node_id": node, "cpu_arch": "x86_64", "os": "linux",
                "labels": {"pad": label}, "bins": {"app": ""}}),
    )
}

/// A refusal of degraded storage: 503, `Retry-After`, and the reason.
fn assert_unavailable(r: &Response, what: &str) {
    assert_eq!(r.status, 503, "{what}: {r}");
    assert!(r.header("Retry-After").is_some(), "{what}: {r}");
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("No space left on device"),
        "{what}: the reason is said: {r}"
    );
}

fn metric(m: &Manager, line_start: &str) -> u64 {
    let text = m.admin_get("/metrics").expect(200).text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line_start}: {e}"))
}

fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes until the database refuses (redb may have room inside its file
/// for the first commits), then checks every kind of write is refused with
/// the reason, and what health and metrics say. Returns the nodes whose
/// registration was acknowledged on the way.
fn refuse_while_full(m: &Manager, data: &Path, v1: &[u8]) -> Vec<String> {
    let pad = "p".repeat(1000);
    let mut acked = Vec::new();
    let refused = (0..5000).find_map(|i| {
        let node = format!("full-{i}");
        let r = register(m, &node, &pad);
        if r.status == 200 {
            acked.push(node);
            None
        } else {
            Some(r)
        }
    });
    let refused = refused.expect("a full disk refuses a write within 5000 registrations");
    assert_unavailable(&refused, "a registration on a full disk");
    // Refused fast, with the reason, while it stays full.
    assert_unavailable(&register(m, "late", "y"), "the next registration");
    let progress = m.post_json(
        "/api/v1/bins/app/progress",
        &json!({"node_id": "early", "targetHash": sha256_hex(v1), "status": "in_progress"}),
    );
    assert_unavailable(&progress, "a progress report");
    assert_unavailable(
        &m.upload("app", "2.0", None, &artifact_bytes("storage-v2", 200_000)),
        "an upload",
    );
    let leftovers = names_starting(&data.join("artifacts"), ".tmp-");
    assert!(
        leftovers.is_empty(),
        "a refused upload leaves no temp file: {leftovers:?}"
    );

    let health = m.get("/health");
    assert_eq!(health.status, 503, "{health}");
    let body = health.json();
    assert_eq!(body["status"], "degraded", "{health}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("database") && reason.contains("artifacts"),
        "{health}"
    );
    assert!(reason.contains("No space left on device"), "{health}");
    assert_eq!(metric(m, "manager_storage_degraded{part=\"database\"}"), 1);
    assert_eq!(metric(m, "manager_storage_degraded{part=\"artifacts\"}"), 1);
    assert!(metric(m, "manager_storage_write_failures_total{part=\"database\"}") >= 1);

    acked
}

/// Reads are served from what is committed, and an unchanged keepalive
/// from memory; returns the node as that keepalive showed it.
fn read_while_full(m: &Manager, v1: &[u8], token: &str, acked: usize) -> Node {
    std::thread::sleep(Duration::from_millis(1100));
    let unchanged = register(m, "early", "x");
    unchanged.expect(200);
    let seen_full: Node = serde_json::from_value(unchanged.json()["node"].clone()).unwrap();
    assert_eq!(
        unchanged.json()["targets"]["app"]["sha256sum"],
        sha256_hex(v1),
        "{unchanged}"
    );
    let nodes = m.admin_get("/api/v1/nodes").expect(200).json();
    assert!(nodes.as_array().unwrap().len() > acked, "{nodes}");
    m.admin_get("/api/v1/releases").expect(200);
    m.get("/api/v1/bins/app?node_id=early").expect(200);
    assert_eq!(m.get(&download_path(&sha256_hex(v1))).expect(200).body, v1);
    let viewer = format!("Bearer {token}");
    m.request("GET", "/api/v1/audit", &[("Authorization", &viewer)], b"")
        .expect(200);

    seen_full
}

#[test]
fn a_full_disk_degrades_the_manager_and_freeing_it_heals_without_restart() {
    let tmp = TempDir::new("storage");
    let fs = Tmpfs::mount(&tmp.join("mnt"), "32m");
    let data = fs.dir.join("data");
    let mut m = Manager::start(
        &data,
        ManagerOptions::default().arg("--flush-interval").arg("1s"),
    );
    let pid = m.pid();

    // Acknowledged before the disk fills.
    let v1 = artifact_bytes("storage-v1", 300_000);
    m.upload("app", "1.0", None, &v1).expect(201);
    m.release("app", "1.0").expect(201);
    // The forms worker looks at the upload in the background: let it finish
    // first, so the temp files below are the refused writes' only.
    binproxy_tests::wait_until("forms of 1.0", Duration::from_secs(60), || {
        m.admin_get("/metrics")
            .text()
            .contains("manager_delta_versions_total 1")
    });
    let token = m
        .admin_post("/api/v1/tokens", &json!({"name": "ci", "role": "viewer"}))
        .expect(201)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    register(&m, "early", "x").expect(200);
    let seen_before: Node = m.get("/api/v1/keepalive?node_id=early").expect(200).parse();

    fs.fill();
    let acked = refuse_while_full(&m, &data, &v1);
    let seen_full = read_while_full(&m, &v1, &token, acked.len());
    assert!(seen_full.last_seen > seen_before.last_seen);
    // Past a few failed flushes of early's new last_seen.
    std::thread::sleep(Duration::from_secs(2));

    fs.free();
    // Writes work again, in the same process, within seconds.
    within(
        Duration::from_secs(30),
        "a registration after freeing",
        || {
            let r = register(&m, "after", "z");
            (r.status == 200).then_some(())
        },
    );
    let v2 = artifact_bytes("storage-v2", 200_000);
    m.upload("app", "2.0", None, &v2).expect(201);
    within(Duration::from_secs(30), "health ok again", || {
        (m.get("/health").status == 200).then_some(())
    });
    assert_eq!(m.pid(), pid, "healed without a restart");
    assert_eq!(metric(&m, "manager_storage_degraded{part=\"database\"}"), 0);
    assert!(metric(&m, "manager_storage_reopens_total") >= 1);
    m.post_json(
        "/api/v1/bins/app/progress",
        &json!({"node_id": "after", "targetHash": sha256_hex(&v1), "status": "success"}),
    )
    .expect(201);
    // The failed flushes kept early's last_seen pending: a later one writes it.
    std::thread::sleep(Duration::from_secs(4));

    // Nothing acknowledged is lost, also across kill -9.
    m.kill9();
    m.restart();
    for node in acked
        .iter()
        .chain(["early".to_owned(), "after".to_owned()].iter())
    {
        m.get(&format!("/api/v1/keepalive?node_id={node}"))
            .expect(200);
    }
    let early: Node = m.get("/api/v1/keepalive?node_id=early").expect(200).parse();
    assert!(
        early.last_seen >= seen_full.last_seen,
        "the last_seen of the full-disk keepalive was flushed once the disk was freed: {} < {}",
        early.last_seen,
        seen_full.last_seen
    );
    assert_eq!(m.get(&download_path(&sha256_hex(&v1))).expect(200).body, v1);
    assert_eq!(m.get(&download_path(&sha256_hex(&v2))).expect(200).body, v2);
    let progress = m
        .admin_get("/api/v1/bins/app/progress?node_id=after")
        .expect(200)
        .json();
    assert_eq!(progress[0]["status"], "success", "{progress}");
    let viewer = format!("Bearer {token}");
    m.request("GET", "/api/v1/audit", &[("Authorization", &viewer)], b"")
        .expect(200);
    drop(m);
    drop(fs);
}
