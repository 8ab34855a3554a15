//! What the manager API tests (`tests/manager_api/`) share: registering
//! nodes, asking for targets, progress bodies, and a manager whose data and
//! working directories are watched for files it should not make.

use crate::{list_tree, Manager, ManagerOptions, Response, TempDir};
use binproxy_protocol::{KeepaliveReply, Release, Version};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn register(m: &Manager, node: &str, arch: &str) -> KeepaliveReply {
    m.keepalive(node, arch, &[]).expect(200).parse()
}

pub fn target(m: &Manager, bin: &str, node: &str) -> Response {
    m.get(&format!("/api/v1/bins/{bin}?node_id={node}"))
}

pub fn progress_body(node: &str, hash: &str, status: &str) -> serde_json::Value {
    json!({"node_id": node, "targetHash": hash, "status": status, "processingTime": 7})
}

/// A manager whose data dir is `ROOT/data` and working dir `ROOT/cwd`, so a
/// test can check that nothing appears in ROOT outside the data dir.
pub fn sandboxed_manager() -> (TempDir, Manager) {
    let root = TempDir::new("sandbox");
    let cwd = root.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let opts = ManagerOptions {
        cwd: Some(cwd),
        ..ManagerOptions::default()
    };
    let m = Manager::start(&root.join("data"), opts);
    (root, m)
}

/// Asserts ROOT holds only `data/...` and an empty `cwd`, and that no file
/// anywhere in ROOT or the system temp dir carries `marker` in its name.
pub fn assert_nothing_outside_data(root: &Path, marker: &str) {
    let outside: Vec<PathBuf> = list_tree(root)
        .into_iter()
        .filter(|p| !p.starts_with("data"))
        .collect();
    assert_eq!(
        outside,
        vec![PathBuf::from("cwd")],
        "files created outside the data dir"
    );
    let whole_tree = list_tree(root);
    let named_after: Vec<&PathBuf> = whole_tree
        .iter()
        .filter(|p| p.to_string_lossy().contains(marker))
        .collect();
    assert!(
        named_after.is_empty(),
        "files named after a refused name: {named_after:?}"
    );
    let tmp_named_after: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(marker))
        .collect();
    assert!(
        tmp_named_after.is_empty(),
        "files in the temp dir named after a refused name: {tmp_named_after:?}"
    );
}

/// Asserts `bin` has `versions` stored versions and the manager holds
/// `releases` releases in all: what refused writes must leave as it was.
#[track_caller]
pub fn assert_stored(m: &Manager, bin: &str, versions: usize, releases: usize) {
    let stored: Vec<Version> = m
        .admin_get(&format!("/api/v1/bins/{bin}/versions"))
        .expect(200)
        .parse();
    assert_eq!(stored.len(), versions, "{stored:?}");
    let all: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(all.len(), releases, "{all:?}");
}
