//! Online backup and restore, end to end: `manager-lite backup` against a
//! manager that keeps taking writes (keepalives, uploads, releases,
//! progress) while it streams, then `manager-lite restore` into a new data
//! directory and a manager started on it. Everything acknowledged before the
//! backup began is there, nothing half-written is (every version has its
//! bytes, every release its version), artifacts come back byte-identical,
//! and node secrets and tokens still work. Restore refuses a non-empty
//! directory and a damaged or altered archive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::download_path;
use binproxy_tests::{
    artifact_bytes, manager_bin, names_starting, output_within, request, sha256_hex, unique,
    Manager, ManagerOptions, Response, TempDir,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A manager with node authentication, and the files its clients use.
struct Setup {
    m: Manager,
    dir: TempDir,
    enroll: String,
    enroll_file: PathBuf,
    admin_file: PathBuf,
}

fn setup() -> Setup {
    let dir = TempDir::new("backup");
    let enroll = unique("enroll-token-0123456789");
    let enroll_file = dir.join("enroll.token");
    fs::write(&enroll_file, &enroll).unwrap();
    let m = Manager::new_with(options(&enroll_file, &unique("admin-token-Bk9")));
    let admin_file = dir.join("admin.token");
    fs::write(&admin_file, &m.token).unwrap();
    Setup {
        m,
        dir,
        enroll,
        enroll_file,
        admin_file,
    }
}

fn options(enroll_file: &Path, admin: &str) -> ManagerOptions {
    ManagerOptions {
        token: binproxy_tests::TokenSource::Env(admin.to_owned()),
        ..ManagerOptions::default()
    }
    .arg("--node-enroll-token-file")
    .arg(enroll_file.to_str().unwrap())
}

fn call(m: &Manager, method: &str, path: &str, auth: &str, body: &Value) -> Response {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let bearer = format!("Bearer {auth}");
    request(
        m.addr,
        method,
        path,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &bytes,
    )
}

fn keepalive(m: &Manager, node: &str, auth: &str, label: &str) -> Response {
    call(
        m,
        "POST",
        "/api/v1/keepalive",
        auth,
        &json!({"node_id": node, "cpu_arch": "x86_64", "os": "linux",
                "labels": {"n": label}, "bins": {"app": ""}}),
    )
}

/// Enrolls `node`; returns its secret.
fn enroll(s: &Setup, node: &str) -> String {
    let r = keepalive(&s.m, node, &s.enroll, "0");
    r.expect(200).json()["node_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no node_secret: {r}"))
        .to_owned()
}

/// The artifact with these bytes, as the manager serves it.
fn fetch(m: &Manager, bytes: &[u8]) -> Vec<u8> {
    let path = download_path(&sha256_hex(bytes));
    call(m, "GET", &path, &m.token, &Value::Null)
        .expect(200)
        .body
        .clone()
}

fn restore(from: &Path, data: &Path) -> Output {
    output_within(
        Command::new(manager_bin())
            .args(["restore", "--from"])
            .arg(from)
            .arg("--data")
            .arg(data),
        Duration::from_secs(120),
    )
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the writers got acknowledged: version → bytes, release ids.
#[derive(Default, Clone)]
struct Acked {
    versions: BTreeMap<String, Vec<u8>>,
    releases: Vec<u64>,
    labels: BTreeMap<String, String>,
}

/// Uploads, releases and changed keepalives, until `stop`.
fn writer(m: &Manager, node: &str, secret: &str, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let version = format!("w{i}");
        let bytes = artifact_bytes(&format!("{node}-{version}"), 300_000);
        // Refused (or cut) writes count for nothing: only answers acknowledge.
        if m.upload("app", &version, None, &bytes).status != 201 {
            continue;
        }
        acked
            .lock()
            .unwrap()
            .versions
            .insert(version.clone(), bytes);
        let r = m.release("app", &version);
        if r.status == 201 {
            let id = r.json()["id"].as_u64().unwrap();
            acked.lock().unwrap().releases.push(id);
        }
        let label = i.to_string();
        if keepalive(m, node, secret, &label).status == 200 {
            acked.lock().unwrap().labels.insert(node.into(), label);
        }
    }
}

/// Runs `manager-lite backup` while two nodes' writers upload, release and
/// send changed keepalives; returns what was acknowledged before it began,
/// and in all.
fn backup_under_writes(s: &Setup, secrets: &BTreeMap<String, String>) -> (Acked, Acked) {
    let m = &s.m;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let before = std::thread::scope(|scope| {
        for node in ["node-2", "node-3"] {
            let (stop, acked, secret) = (&stop, &acked, &secrets[node]);
            scope.spawn(move || writer(m, node, secret, stop, acked));
        }
        // Let the writers get going; what they have now was acknowledged
        // before the backup began.
        std::thread::sleep(Duration::from_millis(500));
        let before = acked.lock().unwrap().clone();
        let out = m.cli(
            &s.admin_file,
            &["backup", "--to", s.dir.join("out/b.tar").to_str().unwrap()],
        );
        // A backup into a directory that does not exist fails, writing nothing.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        fs::create_dir(s.dir.join("out")).unwrap();
        let out = m.cli(
            &s.admin_file,
            &["backup", "--to", s.dir.join("out/b.tar").to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("every sha256 checked"));
        stop.store(true, Ordering::Relaxed);
        before
    });
    let written = acked.lock().unwrap().clone();
    assert!(
        !before.versions.is_empty() && written.versions.len() > before.versions.len(),
        "writes went on before and during the backup: {} then {}",
        before.versions.len(),
        written.versions.len()
    );
    (before, written)
}

#[test]
fn a_backup_taken_under_writes_restores_everything_acknowledged_before_it() {
    let s = setup();
    let m = &s.m;
    let mut secrets = BTreeMap::new();
    for i in 0..4 {
        let node = format!("node-{i}");
        secrets.insert(node.clone(), enroll(&s, &node));
    }
    let mut uploaded = BTreeMap::new();
    for i in 0..6 {
        let version = format!("1.{i}");
        let bytes = artifact_bytes(&format!("before-{i}"), 1_500_000);
        m.upload("app", &version, None, &bytes).expect(201);
        uploaded.insert(version, bytes);
    }
    let release = m.release("app", "1.5").expect(201).json()["id"]
        .as_u64()
        .unwrap();
    let ci = m
        .admin_post(
            "/api/v1/tokens",
            &json!({"name": "ci", "role": "publisher"}),
        )
        .expect(201)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        m,
        "PUT",
        "/api/v1/nodes/node-1/pins/app",
        &m.token,
        &json!({"version": "1.2"}),
    )
    .expect(200);

    let (before, written) = backup_under_writes(&s, &secrets);
    let backup = s.dir.join("out/b.tar");
    let mode = fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup file is the admins' alone");
    let out_dir: Vec<_> = fs::read_dir(s.dir.join("out")).unwrap().collect();
    assert_eq!(out_dir.len(), 1, "no temp file is left beside it");
    let leftovers = names_starting(&m.data_dir, ".backup-");
    assert!(
        leftovers.is_empty(),
        "the snapshot is removed: {leftovers:?}"
    );
    let audit = m.admin_get("/api/v1/audit").expect(200).text();
    assert!(
        audit.contains("/api/v1/backup"),
        "a backup is audited: {audit}"
    );

    let data = s.dir.join("restored");
    let out = restore(&backup, &data);
    assert!(out.status.success(), "{}", text(&out));
    let r = Manager::start(&data, options(&s.enroll_file, &m.token));

    // Acknowledged before the backup began: there.
    for (node, label) in &before.labels {
        let seen = r
            .admin_get(&format!("/api/v1/nodes/{node}"))
            .expect(200)
            .json();
        let now: u64 = seen["node"]["labels"]["n"]
            .as_str()
            .or_else(|| seen["labels"]["n"].as_str())
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        assert!(now >= label.parse().unwrap(), "{node}: {seen}");
    }
    for (node, secret) in &secrets {
        keepalive(&r, node, secret, "after").expect(200);
    }
    keepalive(&r, "node-0", "not-a-secret-0123456789", "x").expect_error(401);
    call(&r, "GET", "/api/v1/releases", &ci, &Value::Null).expect(200);
    let pin = r.admin_get("/api/v1/nodes/node-1").expect(200).text();
    assert!(pin.contains("1.2"), "the pin is kept: {pin}");
    r.admin_get(&format!("/api/v1/releases/{release}"))
        .expect(200);
    for id in &before.releases {
        r.admin_get(&format!("/api/v1/releases/{id}")).expect(200);
    }
    uploaded.extend(written.versions.clone());
    for version in before
        .versions
        .keys()
        .chain(["1.0".to_owned(), "1.4".to_owned()].iter())
    {
        let bytes = &uploaded[version];
        assert_eq!(fetch(&r, bytes), *bytes);
    }
    nothing_half_written(&r, &uploaded);
}

#[test]
fn restore_refuses_a_non_empty_dir_and_a_damaged_archive() {
    let s = setup();
    let bytes = artifact_bytes("small", 100_000);
    s.m.upload("app", "1.0", None, &bytes).expect(201);
    let backup = s.dir.join("b.tar");
    let out =
        s.m.cli(&s.admin_file, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A viewer may not take one.
    let viewer =
        s.m.admin_post("/api/v1/tokens", &json!({"name": "look", "role": "viewer"}))
            .expect(201)
            .json()["token"]
            .as_str()
            .unwrap()
            .to_owned();
    call(&s.m, "GET", "/api/v1/backup", &viewer, &Value::Null).expect_error(403);

    let full = s.dir.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep"), "mine").unwrap();
    let out = restore(&backup, &full);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(fs::read_to_string(full.join("keep")).unwrap(), "mine");

    let archive = fs::read(&backup).unwrap();
    let at = archive
        .windows(64)
        .position(|w| w == &bytes[..64])
        .expect("the artifact's bytes are in the archive");
    let mut tampered = archive.clone();
    tampered[at + 1000] ^= 1;
    let bad = s.dir.join("tampered.tar");
    fs::write(&bad, &tampered).unwrap();
    let target = s.dir.join("from-tampered");
    let out = restore(&bad, &target);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not what its manifest says"),
        "{}",
        text(&out)
    );
    assert!(!target.exists(), "nothing that looks restored");
    let beside = names_starting(s.dir.path(), ".from-tampered");
    assert!(beside.is_empty(), "no temp dir left: {beside:?}");

    let cut = s.dir.join("cut.tar");
    fs::write(&cut, &archive[..archive.len() / 2]).unwrap();
    let out = restore(&cut, &target);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!target.exists());

    let out = output_within(
        Command::new(manager_bin())
            .args(["restore", "--from"])
            .arg(&backup),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The real one restores into an empty directory.
    let empty = s.dir.join("empty");
    fs::create_dir(&empty).unwrap();
    let out = restore(&backup, &empty);
    assert!(out.status.success(), "{}", text(&out));
    // A snapshot a crashed backup left is cleaned at startup.
    fs::create_dir_all(empty.join(".backup-1-0/artifacts")).unwrap();
    fs::write(empty.join(".backup-1-0/manager.redb"), "half").unwrap();
    let r = Manager::start(&empty, options(&s.enroll_file, &s.m.token));
    assert_eq!(fetch(&r, &bytes), bytes);
    assert!(names_starting(&empty, ".backup-").is_empty());
}

/// Every version of the restored manager has its bytes (and was uploaded
/// with them), every release its version.
fn nothing_half_written(r: &Manager, uploaded: &BTreeMap<String, Vec<u8>>) {
    // Nothing half-written: every version has its bytes, every release its version.
    let bins = r.admin_get("/api/v1/bins/app/versions").expect(200).json();
    let mut restored_versions = Vec::new();
    for v in bins.as_array().unwrap() {
        let version = v["version"].as_str().unwrap().to_owned();
        let bytes = uploaded
            .get(&version)
            .unwrap_or_else(|| panic!("{version} was never uploaded"));
        assert_eq!(fetch(r, bytes), *bytes);
        restored_versions.push(version);
    }
    for rel in r
        .admin_get("/api/v1/releases")
        .expect(200)
        .json()
        .as_array()
        .unwrap()
    {
        let version = rel["version"].as_str().unwrap();
        assert!(restored_versions.iter().any(|v| v == version), "{rel}");
    }
}
