//! `manager-lite mirror sync --to DIR` against the real manager, and the
//! tree it writes served by a real nginx: the first sync writes every
//! artifact, signature, bins file and the index; a sync with nothing new
//! rewrites nothing; a new release copies only what is new; a viewer token
//! suffices (with node authentication on) and a bad one writes nothing;
//! versions deleted on the manager wait out `--grace`; a sync killed -9
//! mid-download leaves no partial file under a final name, and a second
//! sync meanwhile is refused by the lock. nginx comes from `tests/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::mirror::{MirrorBin, MirrorIndex};
use binproxy_protocol::Version;
use binproxy_tests::enrollment::secured;
use binproxy_tests::minisign::WELL_FORMED;
use binproxy_tests::mirror::sync_command;
use binproxy_tests::nginx::Nginx;
use binproxy_tests::roles::new_token;
use binproxy_tests::{
    artifact_bytes, list_tree, manager_bin, output_within, sha256_hex, wait_until, Manager, TempDir,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long one `mirror sync` may run.
const SYNC_LIMIT: Duration = Duration::from_secs(120);

fn sync(server: &str, token: &Path, dir: &Path, args: &[&str]) -> Output {
    output_within(&mut sync_command(server, token, dir, args), SYNC_LIMIT)
}

/// A sync that must succeed; its summary line.
#[track_caller]
fn synced(server: &str, token: &Path, dir: &Path, args: &[&str]) -> String {
    let out = sync(server, token, dir, args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(line.lines().count(), 1, "one summary line: {line}");
    line
}

fn token_file(dir: &TempDir, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("{token}\n")).unwrap();
    path
}

fn upload(m: &Manager, bin: &str, version: &str, arch: Option<&str>, bytes: &[u8]) -> String {
    let v: Version = m.upload(bin, version, arch, bytes).expect(201).parse();
    assert_eq!(v.sha256sum, sha256_hex(bytes));
    v.sha256sum
}

fn release(m: &Manager, body: &serde_json::Value) -> u64 {
    let r = m.admin_post("/api/v1/releases", body);
    r.expect(201);
    r.json()["id"].as_u64().unwrap()
}

fn sign(m: &Manager, bin: &str, version: &str, arch: &str, text: &str) {
    let auth = format!("Bearer {}", m.token);
    m.request(
        "PUT",
        &format!("/api/v1/bins/{bin}/versions/{version}/signature?arch={arch}"),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        text.as_bytes(),
    )
    .expect(200);
}

fn bin_file(dir: &Path, bin: &str) -> MirrorBin {
    serde_json::from_slice(&fs::read(dir.join(format!("bins/{bin}.json"))).unwrap()).unwrap()
}

fn index(dir: &Path) -> MirrorIndex {
    serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn artifact(dir: &Path, sha: &str) -> Vec<u8> {
    fs::read(dir.join("artifacts").join(sha)).unwrap()
}

/// Every file of the tree (not this command's own state) with its inode
/// and mtime: a file rewritten by rename gets a new inode.
fn stamps(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    list_tree(dir)
        .into_iter()
        .filter(|p| !p.starts_with(".mirror-sync"))
        .filter_map(|p| {
            let m = fs::metadata(dir.join(&p)).unwrap();
            m.is_file()
                .then(|| (p, (m.ino(), m.mtime(), m.mtime_nsec())))
        })
        .collect()
}

/// Names anywhere in the tree that start with `.mirror-tmp-`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    list_tree(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".mirror-tmp-"))
        })
        .collect()
}

/// What [`store_three_bins`] put on the manager.
struct Stored {
    /// (sha256, bytes) of app 1.0, app 2.0, tool 1.0 x86_64, tool 1.0 for
    /// every arch, edge 1.0.
    artifacts: Vec<(String, Vec<u8>)>,
    app_release: u64,
    tool_release: u64,
}

/// app: 1.0 for every arch at 100%, then 2.0 stuck at 50% of a two-wave
/// plan; tool: 1.0 for x86_64 (signed) and for every other arch, at 100%;
/// edge: 1.0 at 100% but only to x86_64 nodes.
fn store_three_bins(m: &Manager) -> Stored {
    let mut artifacts = Vec::new();
    let mut put = |bin: &str, version: &str, arch: Option<&str>, seed: &str, len: usize| {
        let bytes = artifact_bytes(seed, len);
        artifacts.push((upload(m, bin, version, arch, &bytes), bytes));
    };
    put("app", "1.0", None, "app-1", 70_000);
    put("app", "2.0", None, "app-2", 80_000);
    put("tool", "1.0", Some("x86_64"), "tool-x86", 50_000);
    put("tool", "1.0", None, "tool-any", 40_000);
    put("edge", "1.0", None, "edge", 30_000);
    sign(m, "tool", "1.0", "x86_64", WELL_FORMED);
    let app_release = release(m, &json!({"bin_name": "app", "version": "1.0"}));
    let waves = json!([{"percent": 50, "wait": "1h"}, {"percent": 100}]);
    release(
        m,
        &json!({"bin_name": "app", "version": "2.0", "waves": waves}),
    );
    let tool_release = release(m, &json!({"bin_name": "tool", "version": "1.0"}));
    let selector = json!({"cpu_arch": ["x86_64"]});
    release(
        m,
        &json!({"bin_name": "edge", "version": "1.0", "selector": selector}),
    );
    Stored {
        artifacts,
        app_release,
        tool_release,
    }
}

/// The tree after the first sync of [`store_three_bins`].
fn check_first_tree(m: &Manager, dir: &Path, stored: &Stored) {
    for (sha, bytes) in &stored.artifacts {
        assert_eq!(&artifact(dir, sha), bytes, "artifacts/{sha}");
    }
    let sha = |i: usize| stored.artifacts[i].0.as_str();
    let versions: Vec<Version> = m
        .admin_get("/api/v1/bins/tool/versions")
        .expect(200)
        .parse();
    let signature = versions
        .iter()
        .find_map(|v| v.signature.clone())
        .expect("the stored signature");
    let minisig = dir.join(format!("artifacts/{}.minisig", sha(2)));
    assert_eq!(fs::read_to_string(&minisig).unwrap(), signature);
    assert!(!dir.join(format!("artifacts/{}.minisig", sha(3))).exists());

    let i = index(dir);
    assert_eq!(i.generation, 1);
    assert_eq!(i.bins, ["app", "tool"]);
    assert!(binproxy_tests::is_rfc3339(&i.generated_at), "{i:?}");
    assert!(
        !dir.join("bins/edge.json").exists(),
        "a selector depends on the node"
    );
    let app = bin_file(dir, "app");
    let r1 = stored.app_release;
    assert_eq!((app.release_id, app.version.as_str()), (r1, "1.0"));
    assert_eq!(app.targets.keys().collect::<Vec<_>>(), ["*"]);
    let target = &app.targets["*"];
    assert_eq!(target.url, format!("artifacts/{}", sha(0)));
    assert_eq!((target.sha256sum.as_str(), target.size), (sha(0), 70_000));
    assert_eq!(
        target.reason.as_deref(),
        Some(&*format!("release {r1} (mirror)"))
    );
    let tool = bin_file(dir, "tool");
    assert_eq!(tool.release_id, stored.tool_release);
    assert_eq!(tool.targets.keys().collect::<Vec<_>>(), ["*", "x86_64"]);
    let x86 = tool.target_for("x86_64").unwrap();
    assert_eq!(x86.sha256sum, sha(2));
    assert_eq!(x86.signature.as_deref(), Some(signature.as_str()));
    assert_eq!(tool.target_for("aarch64").unwrap().sha256sum, sha(3));
}

#[test]
fn the_tree_holds_every_artifact_and_the_targets_every_node_gets() {
    let m = Manager::new();
    let tmp = TempDir::new("mirror");
    let token = token_file(&tmp, "admin.token", &m.token);
    let dir = tmp.join("mirror");
    let stored = store_three_bins(&m);
    let line = synced(&m.url, &token, &dir, &[]);
    let want = format!(
        "mirror {}: generation 1, 5 artifacts copied (0.3 MB), 0 removed, \
         0 waiting out the grace period, 2 bins\n",
        dir.display()
    );
    assert_eq!(line, want);
    check_first_tree(&m, &dir, &stored);
    let minisig = dir.join(format!("artifacts/{}.minisig", stored.artifacts[2].0));

    // Nothing new: no file rewritten, the same generation.
    let before = stamps(&dir);
    let line = synced(&m.url, &token, &dir, &[]);
    assert!(
        line.contains("generation 1 (unchanged), 0 artifacts copied"),
        "{line}"
    );
    assert_eq!(stamps(&dir), before);
    let out = sync(&m.url, &token, &dir, &["--json"]);
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&facts["generation"], &facts["changed"], &facts["artifacts"]),
        (&json!(1), &json!(false), &json!(5)),
        "{facts}"
    );
    assert_eq!(stamps(&dir), before);

    // A new release of app: only its artifact is copied; app.json and the
    // index change, and nothing else is rewritten.
    let app3 = artifact_bytes("app-3", 90_000);
    let app3_sha = upload(&m, "app", "3.0", None, &app3);
    let r4 = release(&m, &json!({"bin_name": "app", "version": "3.0"}));
    let line = synced(&m.url, &token, &dir, &[]);
    assert!(
        line.contains("generation 2, 1 artifact copied (0.1 MB)"),
        "{line}"
    );
    assert_eq!(artifact(&dir, &app3_sha), app3);
    assert_eq!(index(&dir).generation, 2);
    assert_eq!(bin_file(&dir, "app").release_id, r4);
    let after = stamps(&dir);
    let rewritten: Vec<&PathBuf> = after
        .iter()
        .filter(|(path, stamp)| before.get(*path) != Some(stamp))
        .map(|(path, _)| path)
        .collect();
    let app3_path = PathBuf::from(format!("artifacts/{app3_sha}"));
    assert_eq!(
        rewritten,
        [
            &app3_path,
            &PathBuf::from("bins/app.json"),
            &PathBuf::from("index.json")
        ],
    );

    // A new signature of the same bytes: the .minisig is rewritten.
    let resigned = WELL_FORMED.replace("timestamp=1700000000", "timestamp=1700000001");
    sign(&m, "tool", "1.0", "x86_64", &resigned);
    let line = synced(&m.url, &token, &dir, &[]);
    assert!(line.contains("generation 3, 0 artifacts copied"), "{line}");
    assert!(fs::read_to_string(&minisig)
        .unwrap()
        .contains("timestamp=1700000001"));

    // What nginx serves from the tree, as an agent would ask for it.
    let nginx = Nginx::serve(&dir);
    let r = nginx.get("/bins/app.json", &[]);
    assert_eq!(r.status, 200, "{}", nginx.log());
    assert_eq!(r.body, fs::read(dir.join("bins/app.json")).unwrap());
    let served: MirrorBin = serde_json::from_slice(&r.body).unwrap();
    let url = &served.target_for("x86_64").unwrap().url;
    let r = nginx.get(&format!("/{url}"), &[]);
    assert_eq!(r.status, 200, "{}", nginx.log());
    assert_eq!(sha256_hex(&r.body), app3_sha);
    let r = nginx.get("/index.json", &[]);
    assert_eq!(
        serde_json::from_slice::<MirrorIndex>(&r.body)
            .unwrap()
            .generation,
        3
    );
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new());
}

#[test]
fn a_viewer_token_suffices_and_a_bad_token_writes_nothing() {
    // Node authentication on: downloads need a node secret or an admin token.
    let s = secured();
    let m = &s.m;
    let bytes = artifact_bytes("viewed", 60_000);
    let sha = upload(m, "svc", "1.0", None, &bytes);
    release(m, &json!({"bin_name": "svc", "version": "1.0"}));
    let tmp = TempDir::new("mirror-viewer");
    let dir = tmp.join("mirror");

    let bad = token_file(&tmp, "bad.token", "not-a-token-of-this-manager");
    let out = sync(&m.url, &bad, &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stamps(&dir), BTreeMap::new(), "nothing of the tree written");

    let viewer = new_token(m, "mirror", "viewer");
    let viewer = token_file(&tmp, "viewer.token", &viewer);
    let line = synced(&m.url, &viewer, &dir, &[]);
    assert!(line.contains("generation 1, 1 artifact copied"), "{line}");
    assert_eq!(artifact(&dir, &sha), bytes);
    assert_eq!(bin_file(&dir, "svc").version, "1.0");

    // On an existing tree, a bad token changes nothing either.
    let before = stamps(&dir);
    upload(m, "svc", "2.0", None, &artifact_bytes("viewed-2", 1000));
    let out = sync(&m.url, &bad, &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stamps(&dir), before);
}

#[test]
fn artifacts_deleted_on_the_manager_wait_out_the_grace_period() {
    let m = Manager::new();
    let tmp = TempDir::new("mirror-grace");
    let token = token_file(&tmp, "admin.token", &m.token);
    let dir = tmp.join("mirror");
    let kept = artifact_bytes("kept", 10_000);
    let kept_sha = upload(&m, "svc", "1.0", None, &kept);
    release(&m, &json!({"bin_name": "svc", "version": "1.0"}));
    let doomed = artifact_bytes("doomed", 20_000);
    let doomed_sha = upload(&m, "svc", "9.0", Some("aarch64"), &doomed);
    sign(&m, "svc", "9.0", "aarch64", WELL_FORMED);
    synced(&m.url, &token, &dir, &[]);
    assert_eq!(artifact(&dir, &doomed_sha), doomed);

    let out = m.cli(&token, &["version", "delete", "svc", "9.0"]);
    assert!(out.status.success(), "{out:?}");
    let before = stamps(&dir);
    let line = synced(&m.url, &token, &dir, &["--grace", "1h"]);
    assert!(
        line.contains("generation 1 (unchanged), 0 artifacts copied (0.0 MB), 0 removed, 1 waiting out the grace period, 1 bin"),
        "{line}"
    );
    assert_eq!(stamps(&dir), before, "kept for the grace period");

    let line = synced(&m.url, &token, &dir, &["--grace", "0s"]);
    assert!(
        line.contains("generation 2, 0 artifacts copied (0.0 MB), 1 removed, 0 waiting"),
        "{line}"
    );
    assert!(!dir.join(format!("artifacts/{doomed_sha}")).exists());
    assert!(!dir.join(format!("artifacts/{doomed_sha}.minisig")).exists());
    assert_eq!(artifact(&dir, &kept_sha), kept);
    assert_eq!(index(&dir).generation, 2);

    // A bad --grace is a usage error, before anything is asked or written.
    let out = sync(&m.url, &token, &dir, &["--grace", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--grace soon"));
    let out = output_within(
        Command::new(manager_bin()).args(["mirror", "sync"]),
        SYNC_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "--to is required: {out:?}");
}

#[test]
fn a_sync_killed_mid_download_leaves_no_partial_file_and_holds_off_a_second() {
    let m = Manager::new();
    let tmp = TempDir::new("mirror-kill");
    let token = token_file(&tmp, "admin.token", &m.token);
    let dir = tmp.join("mirror");
    let big = artifact_bytes("big", 30 << 20);
    let sha = upload(&m, "big", "1.0", None, &big);
    release(&m, &json!({"bin_name": "big", "version": "1.0"}));
    // nginx in front of the manager, sending at most 8 MB/s: the download
    // takes a few seconds, long enough to be caught in the middle.
    let slow = Nginx::start(|_, addr| {
        format!(
            "server {{ listen {addr}; location / {{ proxy_pass {}; limit_rate 8m; }} }}",
            m.url
        )
    });

    let mut first = sync_command(&slow.url, &token, &dir, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.join(format!("artifacts/.mirror-tmp-{sha}"));
    wait_until("the download is under way", Duration::from_secs(60), || {
        fs::metadata(&partial).is_ok_and(|m| m.len() > 1 << 20)
    });

    // Meanwhile a second sync of the same DIR: refused at once by the lock.
    let out = sync(&m.url, &token, &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another mirror sync holds"), "{stderr}");
    assert!(stderr.contains(".mirror-sync/lock"), "{stderr}");

    first.kill().unwrap();
    first.wait().unwrap();
    assert!(partial.exists(), "killed in the middle of the download");
    assert!(
        !dir.join(format!("artifacts/{sha}")).exists(),
        "no partial file under the final name"
    );
    assert!(!dir.join("index.json").exists());
    assert!(!dir.join("bins/big.json").exists());

    let line = synced(&m.url, &token, &dir, &[]);
    assert!(
        line.contains("generation 1, 1 artifact copied (31.5 MB)"),
        "{line}"
    );
    assert_eq!(sha256_hex(&artifact(&dir, &sha)), sha);
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new());
    assert_eq!(bin_file(&dir, "big").targets["*"].sha256sum, sha);
}
