//! Every endpoint of manager-lite's HTTP API, its normal answer and each of its
//! documented errors, against the real server binary (see `/tmp/api-contract.md`).
//! Each test starts its own server on an ephemeral loopback port with its own
//! temporary data directory, so the tests run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{
    download_path, BinVersions, Health, KeepaliveReply, Node, ProgressRecord, ProgressStatus,
    Release, ReleaseStatus, Target, Version,
};
use binproxy_tests::{
    artifact_bytes, is_rfc3339, list_tree, output_within, sha256_hex, unique, Manager,
    ManagerOptions, Response, TempDir, TokenSource,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------
// helpers

/// Uploads `bytes` as `bin` `version` (arch-less) and releases it; returns the sha.
fn publish(m: &Manager, bin: &str, version: &str, bytes: &[u8]) -> String {
    let v: Version = m.upload(bin, version, None, bytes).expect(201).parse();
    assert_eq!(v.sha256sum, sha256_hex(bytes));
    m.release(bin, version).expect(201);
    v.sha256sum
}

fn register(m: &Manager, node: &str, arch: &str) -> KeepaliveReply {
    m.keepalive(node, arch, &[]).expect(200).parse()
}

fn target(m: &Manager, bin: &str, node: &str) -> Response {
    m.get(&format!("/api/v1/bins/{bin}?node_id={node}"))
}

fn progress_body(node: &str, hash: &str, status: &str) -> serde_json::Value {
    json!({"node_id": node, "targetHash": hash, "status": status, "processingTime": 7})
}

/// A manager whose data dir is `ROOT/data` and working dir `ROOT/cwd`, so a
/// test can check that nothing appears in ROOT outside the data dir.
fn sandboxed_manager() -> (TempDir, Manager) {
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
fn assert_nothing_outside_data(root: &Path, marker: &str) {
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

// ---------------------------------------------------------------------------
// process level

#[test]
fn serve_rejects_bad_flags_with_exit_2() {
    let tmp = TempDir::new("badflag");
    for bad in [
        &["--no-such-flag"][..],
        &["--progress-keep", "many"],
        &["--max-artifact-size", "lots"],
        &["--workers"],
    ] {
        let mut cmd = std::process::Command::new(binproxy_tests::manager_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(tmp.join("data"))
            .args(bad)
            .env_remove("MANAGER_ADMIN_TOKEN");
        let out = output_within(&mut cmd, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{bad:?}: want a one-line error, got: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// /health

#[test]
fn health_answers_ok_with_version() {
    let m = Manager::new();
    let r = m.get("/health");
    r.expect(200);
    let h: Health = r.parse();
    assert_eq!(h.status, "ok");
    assert_eq!(h.version, "0.1.0");
    assert!(
        r.header("content-type").is_some_and(|c| c.contains("json")),
        "{r}"
    );
}

// ---------------------------------------------------------------------------
// POST /api/v1/keepalive

#[test]
fn keepalive_registers_a_new_node_and_answers_targets_for_listed_bins() {
    let m = Manager::new();
    let sha = publish(&m, "tool", "1.0", &artifact_bytes("tool-1.0", 300));

    let r = m.keepalive("node-1", "x86_64", &[("tool", ""), ("unreleased", "")]);
    r.expect(200);
    let reply: KeepaliveReply = r.parse();
    assert_eq!(reply.node.node_id, "node-1");
    assert_eq!(reply.node.cpu_arch, "x86_64");
    assert_eq!(reply.node.os, "linux");
    assert_eq!(reply.node.os_release, "test");
    assert_eq!(reply.node.node_name, "name-node-1");
    assert_eq!(reply.node.bin_proxy_version, "0.1.0");
    assert!(reply.node.online);
    assert!(
        is_rfc3339(&reply.node.registered_at),
        "{}",
        reply.node.registered_at
    );
    assert!(
        is_rfc3339(&reply.node.last_seen),
        "{}",
        reply.node.last_seen
    );
    assert!(is_rfc3339(&reply.server_time), "{}", reply.server_time);

    assert_eq!(
        reply.targets.len(),
        2,
        "one entry per listed bin: {:?}",
        reply.targets
    );
    let t = reply.targets["tool"].as_ref().expect("target for tool");
    assert_eq!(t.bin_name, "tool");
    assert_eq!(t.version, "1.0");
    assert_eq!(t.sha256sum, sha);
    assert_eq!(t.size, 300);
    assert_eq!(t.url, download_path(&sha));
    assert_eq!(reply.targets["unreleased"], None);

    // No `bins` field: no targets.
    let r = m.post_json("/api/v1/keepalive", &json!({"node_id": "node-2"}));
    let reply: KeepaliveReply = r.expect(200).parse();
    assert!(reply.targets.is_empty(), "{r}");

    // The node is registered: the admin view lists it.
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["node-1", "node-2"]);

    // A second keepalive updates, it does not register twice.
    let r = m.keepalive("node-1", "aarch64", &[]);
    let again: KeepaliveReply = r.expect(200).parse();
    assert_eq!(again.node.cpu_arch, "aarch64");
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), 2);
}

#[test]
fn keepalive_accepts_old_camel_case_fields() {
    let m = Manager::new();
    let r = m.post_json(
        "/api/v1/keepalive",
        &json!({
            "nodeId": "old-agent",
            "cpuArch": "aarch64",
            "osRelease": "debian-11",
            "nodeName": "legacy-box",
            "binProxyVersion": "0.9.3",
            "labels": {"site": "lab"}
        }),
    );
    let reply: KeepaliveReply = r.expect(200).parse();
    assert_eq!(reply.node.node_id, "old-agent");
    assert_eq!(reply.node.cpu_arch, "aarch64");
    assert_eq!(reply.node.os_release, "debian-11");
    assert_eq!(reply.node.node_name, "legacy-box");
    assert_eq!(reply.node.bin_proxy_version, "0.9.3");
    assert_eq!(
        reply.node.labels.get("site").map(String::as_str),
        Some("lab")
    );
    // Output uses the documented snake_case names only.
    let raw = r.json();
    assert!(raw["node"].get("cpuArch").is_none(), "{r}");
    assert_eq!(raw["node"]["cpu_arch"], "aarch64");
}

/// The old shell agent's cycle, field for field (see README "Old agents"): it
/// names the node only by `nodeName` and reports what it runs as `sha256`.
#[test]
fn old_shell_agent_cycle_is_understood() {
    let m = Manager::new();
    let bytes = b"old client build";
    m.upload("tool", "1.0", None, bytes).expect(201);
    m.admin_post(
        "/api/v1/releases",
        &json!({"bin_name": "tool", "version": "1.0"}),
    )
    .expect(201);
    let sha = sha256_hex(bytes);

    m.get("/api/v1/keepalive?node_id=web-7").expect_error(404);
    let r = m.post_json(
        "/api/v1/keepalive",
        &json!({"nodeName": "web-7", "cpuArch": "x86_64", "osRelease": "centos-7",
                "binProxyVersion": "sh-1.2"}),
    );
    let reply: KeepaliveReply = r.expect(200).parse();
    assert_eq!(reply.node.node_id, "web-7", "nodeName is the id: {r}");
    assert_eq!(reply.node.node_name, "web-7");
    let target: Target = m.get("/api/v1/bins/tool").expect(200).parse();
    assert_eq!(target.sha256sum, sha);
    assert_eq!(m.get("/api/v1/download/tool").expect(200).body, bytes);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"nodeName": "web-7", "targetHash": sha, "status": "success", "processingTime": 3}),
    )
    .expect(201);
    let node: Node = m
        .post_json(
            "/api/v1/bins/tool",
            &json!({"nodeName": "web-7", "sha256": sha}),
        )
        .expect(200)
        .parse();
    assert_eq!(node.bins.get("tool"), Some(&sha));
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), 1, "one node, named once: {nodes:?}");

    // Neither name: refused, and the message says what is missing.
    let r = m.post_json("/api/v1/keepalive", &json!({"cpuArch": "x86_64"}));
    r.expect_error(400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("node_id"),
        "{r}"
    );
}

#[test]
fn json_bodies_must_be_objects() {
    // serde's derive reads a struct from a sequence too, positionally: without
    // a check, `["n1"]` registers node "n1". Every JSON body is an object.
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"one").expect(201);
    register(&m, "n1", "x86_64");
    let sha = sha256_hex(b"one");
    let auth = format!("Bearer {}", m.token);
    let cases = [
        ("/api/v1/keepalive", json!(["node_id", "n2"])),
        ("/api/v1/bins/tool", json!(["n1", sha])),
        (
            "/api/v1/bins/tool/progress",
            json!(["n1", sha, "success", 5]),
        ),
        ("/api/v1/releases", json!(["tool", "1.0"])),
    ];
    let mut wrong = Vec::new();
    for (path, body) in &cases {
        let bytes = serde_json::to_vec(body).unwrap();
        let r = m.request("POST", path, &[("Authorization", &auth)], &bytes);
        if r.status != 400 {
            wrong.push(format!("POST {path} {body} -> {r}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "array bodies accepted:\n{}",
        wrong.join("\n")
    );
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
}

#[test]
fn keepalive_post_errors() {
    let m = Manager::new();
    // Missing node_id.
    m.post_json("/api/v1/keepalive", &json!({"cpu_arch": "x86_64"}))
        .expect_error(400);
    // Empty and bad node ids.
    m.post_json("/api/v1/keepalive", &json!({"node_id": ""}))
        .expect_error(400);
    m.post_json("/api/v1/keepalive", &json!({"node_id": "has space"}))
        .expect_error(400);
    m.post_json("/api/v1/keepalive", &json!({"node_id": "../etc"}))
        .expect_error(400);
    // Invalid JSON, wrong JSON shape.
    m.request(
        "POST",
        "/api/v1/keepalive",
        &[("Content-Type", "application/json")],
        b"{\"node_id\": ",
    )
    .expect_error(400);
    m.request("POST", "/api/v1/keepalive", &[], b"not json at all")
        .expect_error(400);
    m.request("POST", "/api/v1/keepalive", &[], b"")
        .expect_error(400);
    m.post_json("/api/v1/keepalive", &json!({"node_id": 42}))
        .expect_error(400);
    // A valid JSON body just over 64 KiB.
    let pad = "x".repeat(binproxy_protocol::MAX_JSON_BODY);
    let big = json!({"node_id": "big-node", "labels": {"pad": pad}});
    assert!(serde_json::to_vec(&big).unwrap().len() > binproxy_protocol::MAX_JSON_BODY);
    m.post_json("/api/v1/keepalive", &big).expect_error(413);

    // None of those registered anything.
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert!(nodes.is_empty(), "{nodes:?}");
    // And the server still works.
    register(&m, "fine", "x86_64");
}

// ---------------------------------------------------------------------------
// GET /api/v1/keepalive

#[test]
fn keepalive_get_shows_the_node_online() {
    let m = Manager::new();
    let reg = register(&m, "web-1:eu", "x86_64");
    let r = m.get("/api/v1/keepalive?node_id=web-1:eu");
    let node: Node = r.expect(200).parse();
    assert_eq!(node.node_id, "web-1:eu");
    assert_eq!(node.cpu_arch, "x86_64");
    assert!(node.online, "{r}");
    assert!(is_rfc3339(&node.last_seen), "{}", node.last_seen);
    assert!(is_rfc3339(&node.registered_at), "{}", node.registered_at);
    assert_eq!(node.registered_at, reg.node.registered_at);
}

#[test]
fn keepalive_get_errors() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    m.get("/api/v1/keepalive").expect_error(400);
    m.get("/api/v1/keepalive?other=1").expect_error(400);
    m.get("/api/v1/keepalive?node_id=").expect_error(400);
    m.get("/api/v1/keepalive?node_id=ghost").expect_error(404);
}

// ---------------------------------------------------------------------------
// GET /api/v1/bins/{bin}

#[test]
fn target_is_404_before_release_and_then_downloads_exact_bytes() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    target(&m, "tool", "n1").expect_error(404);

    // Uploaded but not released: still no target.
    let bytes = artifact_bytes("target-test", 4096 + 17);
    m.upload("tool", "2.1.0", None, &bytes).expect(201);
    target(&m, "tool", "n1").expect_error(404);

    m.release("tool", "2.1.0").expect(201);
    let r = target(&m, "tool", "n1");
    let t: Target = r.expect(200).parse();
    assert_eq!(t.bin_name, "tool");
    assert_eq!(t.version, "2.1.0");
    assert_eq!(t.sha256sum, sha256_hex(&bytes));
    assert_eq!(t.size, bytes.len() as u64);
    assert_eq!(t.url, download_path(&t.sha256sum));

    let d = m.get(&t.url);
    d.expect(200);
    assert_eq!(d.body, bytes, "downloaded bytes differ");
    assert_eq!(sha256_hex(&d.body), t.sha256sum);

    // Another bin of the same node is still 404.
    target(&m, "other", "n1").expect_error(404);
}

#[test]
fn target_picks_the_artifact_of_the_nodes_arch() {
    let m = Manager::new();
    let x86 = artifact_bytes("x86", 500);
    let arm = artifact_bytes("arm", 600);
    let any = artifact_bytes("any", 700);
    let vx: Version = m
        .upload("agent", "1.0", Some("x86_64"), &x86)
        .expect(201)
        .parse();
    assert_eq!(vx.arch.as_deref(), Some("x86_64"));
    let va: Version = m
        .upload("agent", "1.0", Some("aarch64"), &arm)
        .expect(201)
        .parse();
    assert_eq!(va.arch.as_deref(), Some("aarch64"));
    let vn: Version = m.upload("agent", "2.0", None, &any).expect(201).parse();
    assert_eq!(vn.arch, None);
    m.release("agent", "1.0").expect(201);

    register(&m, "n-x86", "x86_64");
    register(&m, "n-arm", "aarch64");
    register(&m, "n-rv", "riscv64");

    let t: Target = target(&m, "agent", "n-x86").expect(200).parse();
    assert_eq!((t.sha256sum.as_str(), t.size), (vx.sha256sum.as_str(), 500));
    let t: Target = target(&m, "agent", "n-arm").expect(200).parse();
    assert_eq!((t.sha256sum.as_str(), t.size), (va.sha256sum.as_str(), 600));
    // The `arch` query wins over the registered arch.
    let t: Target = m
        .get("/api/v1/bins/agent?node_id=n-x86&arch=aarch64")
        .expect(200)
        .parse();
    assert_eq!(t.sha256sum, va.sha256sum);
    let t: Target = m
        .get("/api/v1/bins/agent?node_id=n-arm&arch=x86_64")
        .expect(200)
        .parse();
    assert_eq!(t.sha256sum, vx.sha256sum);
    // No artifact for riscv64 in 1.0.
    target(&m, "agent", "n-rv").expect_error(404);
    m.get("/api/v1/bins/agent?node_id=n-x86&arch=riscv64")
        .expect_error(404);

    // Each download is the bytes of its arch.
    assert_eq!(m.get(&download_path(&vx.sha256sum)).expect(200).body, x86);
    assert_eq!(m.get(&download_path(&va.sha256sum)).expect(200).body, arm);

    // 2.0 has one arch-less artifact: it serves every arch.
    m.release("agent", "2.0").expect(201);
    for node in ["n-x86", "n-arm", "n-rv"] {
        let t: Target = target(&m, "agent", node).expect(200).parse();
        assert_eq!(
            (t.version.as_str(), t.sha256sum.as_str()),
            ("2.0", vn.sha256sum.as_str()),
            "{node}"
        );
    }
    let t: Target = m
        .get("/api/v1/bins/agent?node_id=n-x86&arch=mips")
        .expect(200)
        .parse();
    assert_eq!(t.sha256sum, vn.sha256sum);

    // The keepalive reply agrees with GET /bins/{bin}.
    let reply: KeepaliveReply = m
        .keepalive("n-rv", "riscv64", &[("agent", "")])
        .expect(200)
        .parse();
    assert_eq!(
        reply.targets["agent"]
            .as_ref()
            .map(|t| t.sha256sum.as_str()),
        Some(vn.sha256sum.as_str())
    );
}

#[test]
fn target_etag_and_if_none_match() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    publish(&m, "tool", "1.0", &artifact_bytes("etag-1", 100));
    let r = target(&m, "tool", "n1");
    r.expect(200);
    let etag = r.header("etag").expect("ETag header").to_string();
    assert!(!etag.is_empty());

    let r304 = m.request(
        "GET",
        "/api/v1/bins/tool?node_id=n1",
        &[("If-None-Match", &etag)],
        b"",
    );
    r304.expect(304);
    assert!(r304.body.is_empty(), "{r304}");

    // A different tag gets the full answer.
    let r = m.request(
        "GET",
        "/api/v1/bins/tool?node_id=n1",
        &[("If-None-Match", "\"other\"")],
        b"",
    );
    r.expect(200);

    // A new release changes the target, so the old tag no longer matches.
    publish(&m, "tool", "1.1", &artifact_bytes("etag-2", 100));
    let r = m.request(
        "GET",
        "/api/v1/bins/tool?node_id=n1",
        &[("If-None-Match", &etag)],
        b"",
    );
    let t: Target = r.expect(200).parse();
    assert_eq!(t.version, "1.1");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
}

// ---------------------------------------------------------------------------
// POST /api/v1/bins/{bin}  (installed)

#[test]
fn installed_report_shows_in_nodes() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    register(&m, "n2", "x86_64");
    let sha = sha256_hex(b"some build");
    let r = m.post_json(
        "/api/v1/bins/tool",
        &json!({"node_id": "n1", "sha256sum": sha}),
    );
    let node: Node = r.expect(200).parse();
    assert_eq!(node.node_id, "n1");
    assert_eq!(node.bins.get("tool"), Some(&sha));

    // Upper case is accepted and stored lower case.
    let sha2 = sha256_hex(b"other build");
    let r = m.post_json(
        "/api/v1/bins/db",
        &json!({"nodeName": "n2", "sha256sum": sha2.to_ascii_uppercase()}),
    );
    let node: Node = r.expect(200).parse();
    assert_eq!(node.bins.get("db"), Some(&sha2));

    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    let n1 = nodes.iter().find(|n| n.node_id == "n1").expect("n1 listed");
    assert_eq!(n1.bins.get("tool"), Some(&sha));
    let n2 = nodes.iter().find(|n| n.node_id == "n2").expect("n2 listed");
    assert_eq!(n2.bins.get("db"), Some(&sha2));
    assert_eq!(
        m.get("/api/v1/keepalive?node_id=n1")
            .expect(200)
            .parse::<Node>()
            .bins
            .get("tool"),
        Some(&sha)
    );
}

#[test]
fn installed_report_errors() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    let sha = sha256_hex(b"x");
    m.post_json(
        "/api/v1/bins/tool",
        &json!({"node_id": "ghost", "sha256sum": sha}),
    )
    .expect_error(404);
    for bad in ["abc", "", &"g".repeat(64), &sha[..63], &format!("{sha}0")] {
        m.post_json(
            "/api/v1/bins/tool",
            &json!({"node_id": "n1", "sha256sum": bad}),
        )
        .expect_error(400);
    }
    m.post_json("/api/v1/bins/tool", &json!({"node_id": "n1"}))
        .expect_error(400);
    m.request("POST", "/api/v1/bins/tool", &[], b"{oops")
        .expect_error(400);
    // Nothing was recorded.
    let node: Node = m.get("/api/v1/keepalive?node_id=n1").expect(200).parse();
    assert!(node.bins.is_empty(), "{node:?}");
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(
        nodes.len(),
        1,
        "unknown node must not be registered by an installed report"
    );
}

// ---------------------------------------------------------------------------
// progress

#[test]
fn progress_accepts_each_status() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    let to = sha256_hex(b"to");
    let from = sha256_hex(b"from");
    let mut last_id = 0;
    for (status, want) in [
        ("in_progress", ProgressStatus::InProgress),
        ("success", ProgressStatus::Success),
        ("failed", ProgressStatus::Failed),
        ("rolled_back", ProgressStatus::RolledBack),
    ] {
        let r = m.post_json(
            "/api/v1/bins/tool/progress",
            &json!({"node_id": "n1", "targetHash": to, "status": status, "processingTime": 1234,
                    "fromHash": from, "message": format!("step {status}")}),
        );
        let rec: ProgressRecord = r.expect(201).parse();
        assert_eq!(rec.status, want);
        assert_eq!(rec.node_id, "n1");
        assert_eq!(rec.bin_name, "tool");
        assert_eq!(rec.target_hash, to);
        assert_eq!(rec.from_hash.as_deref(), Some(from.as_str()));
        assert_eq!(rec.processing_time_ms, 1234);
        assert_eq!(
            rec.message.as_deref(),
            Some(format!("step {status}").as_str())
        );
        assert!(is_rfc3339(&rec.received_at), "{}", rec.received_at);
        assert!(
            rec.id > last_id,
            "ids must grow: {} after {last_id}",
            rec.id
        );
        last_id = rec.id;
    }
    let list: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(list.len(), 4);
}

#[test]
fn progress_errors_and_old_node_name() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    let h = sha256_hex(b"t");
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &h, "done"),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &h, "SUCCESS"),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"node_id": "n1", "targetHash": h}),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"targetHash": h, "status": "success"}),
    )
    .expect_error(400);
    m.request("POST", "/api/v1/bins/tool/progress", &[], b"[1,2")
        .expect_error(400);
    let none: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert!(none.is_empty(), "{none:?}");

    // The old agents' spelling, `nodeName` and snake_case, are accepted.
    let r = m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"nodeName": "n1", "targetHash": h, "status": "success", "processingTime": 5}),
    );
    let rec: ProgressRecord = r.expect(201).parse();
    assert_eq!(rec.node_id, "n1");
    assert_eq!(rec.processing_time_ms, 5);
    let r = m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"node_id": "n1", "target_hash": h, "status": "failed", "processing_time": 6}),
    );
    r.expect(201);
    let list: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(list.len(), 2);
}

#[test]
fn progress_list_is_newest_first_with_node_filter_and_limit() {
    let m = Manager::new();
    register(&m, "a", "x86_64");
    register(&m, "b", "x86_64");
    let mut ids_a = Vec::new();
    let mut ids_b = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { "a" } else { "b" };
        let rec: ProgressRecord = m
            .post_json(
                "/api/v1/bins/tool/progress",
                &progress_body(node, &sha256_hex(&[i]), "in_progress"),
            )
            .expect(201)
            .parse();
        if node == "a" { &mut ids_a } else { &mut ids_b }.push(rec.id);
    }
    // Another bin's reports stay apart.
    m.post_json(
        "/api/v1/bins/other/progress",
        &progress_body("a", &sha256_hex(b"o"), "success"),
    )
    .expect(201);

    let all: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    let ids: Vec<u64> = all.iter().map(|r| r.id).collect();
    let mut want: Vec<u64> = ids_a.iter().chain(&ids_b).copied().collect();
    want.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(ids, want, "all reports of the bin, newest first");
    assert!(all.iter().all(|r| r.bin_name == "tool"));

    let only_a: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=a")
        .expect(200)
        .parse();
    let got: Vec<u64> = only_a.iter().map(|r| r.id).collect();
    let want_a: Vec<u64> = ids_a.iter().rev().copied().collect();
    assert_eq!(got, want_a);

    let two: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?limit=2")
        .expect(200)
        .parse();
    assert_eq!(
        two.iter().map(|r| r.id).collect::<Vec<_>>(),
        want[..2].to_vec()
    );
    let one_b: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=b&limit=1")
        .expect(200)
        .parse();
    assert_eq!(
        one_b.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![*ids_b.last().unwrap()]
    );

    for bad in ["abc", "-1", "1.5"] {
        m.admin_get(&format!("/api/v1/bins/tool/progress?limit={bad}"))
            .expect_error(400);
    }
    let none: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/never/progress")
        .expect(200)
        .parse();
    assert!(none.is_empty());
}

#[test]
fn progress_history_is_bounded_per_node() {
    let m = Manager::new_with(ManagerOptions::default().arg("--progress-keep").arg("5"));
    register(&m, "busy", "x86_64");
    register(&m, "quiet", "x86_64");
    let mut busy_ids = Vec::new();
    for i in 0..12u8 {
        let rec: ProgressRecord = m
            .post_json(
                "/api/v1/bins/tool/progress",
                &progress_body("busy", &sha256_hex(&[i]), "success"),
            )
            .expect(201)
            .parse();
        busy_ids.push(rec.id);
    }
    for i in 0..3u8 {
        m.post_json(
            "/api/v1/bins/tool/progress",
            &progress_body("quiet", &sha256_hex(&[i, i]), "failed"),
        )
        .expect(201);
    }
    let busy: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=busy")
        .expect(200)
        .parse();
    let want: Vec<u64> = busy_ids.iter().rev().take(5).copied().collect();
    assert_eq!(
        busy.iter().map(|r| r.id).collect::<Vec<_>>(),
        want,
        "the newest 5 are kept"
    );
    let quiet: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=quiet")
        .expect(200)
        .parse();
    assert_eq!(quiet.len(), 3);
    let all: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(all.len(), 8);
}

// ---------------------------------------------------------------------------
// downloads

#[test]
fn download_by_sha_and_by_bin_name() {
    let m = Manager::new();
    let bytes = artifact_bytes("dl", 1000);
    let sha = publish(&m, "dl", "1.0", &bytes);
    for path in [download_path(&sha), "/api/v1/download/dl".to_string()] {
        let r = m.get(&path);
        r.expect(200);
        assert_eq!(r.body, bytes, "{path}");
        assert_eq!(r.header("content-length"), Some("1000"), "{path}: {r}");
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{sha}\"").as_str()),
            "{path}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
    }
    // After a new release the bin name serves the new version; the sha the old one.
    let bytes2 = artifact_bytes("dl2", 1200);
    let sha2 = publish(&m, "dl", "2.0", &bytes2);
    assert_eq!(m.get("/api/v1/download/dl").expect(200).body, bytes2);
    assert_eq!(m.get(&download_path(&sha)).expect(200).body, bytes);
    assert_eq!(m.get(&download_path(&sha2)).expect(200).body, bytes2);
}

#[test]
fn large_downloads_carry_content_length() {
    // An agent wants the length (to resume, and to refuse more bytes than
    // announced), and HEAD must give it too.
    let m = Manager::new();
    let bytes = artifact_bytes("big", 3 << 20);
    let sha = publish(&m, "big", "1.0", &bytes);
    let r = m.get(&download_path(&sha));
    assert_eq!(r.body.len(), bytes.len());
    assert_eq!(r.header("content-length"), Some("3145728"), "{r}");
    assert_eq!(r.header("transfer-encoding"), None, "{r}");
    let head = m.request("HEAD", &download_path(&sha), &[], b"");
    assert_eq!(head.header("content-length"), Some("3145728"), "{head}");
    let part = m.request(
        "GET",
        &download_path(&sha),
        &[("Range", "bytes=1000-")],
        b"",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-length"), Some("3144728"), "{part}");
}

#[test]
fn download_ranges() {
    let m = Manager::new();
    let bytes = artifact_bytes("range", 100);
    let sha = publish(&m, "rng", "1.0", &bytes);
    let path = download_path(&sha);
    let range = |spec: &str| m.request("GET", &path, &[("Range", spec)], b"");

    let r = range("bytes=10-19");
    r.expect(206);
    assert_eq!(r.body, &bytes[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100"), "{r}");
    assert_eq!(r.header("content-length"), Some("10"), "{r}");

    let r = range("bytes=-5");
    r.expect(206);
    assert_eq!(r.body, &bytes[95..]);
    assert_eq!(r.header("content-range"), Some("bytes 95-99/100"), "{r}");

    let r = range("bytes=90-");
    r.expect(206);
    assert_eq!(r.body, &bytes[90..]);
    assert_eq!(r.header("content-range"), Some("bytes 90-99/100"), "{r}");

    let r = range("bytes=0-0");
    r.expect(206);
    assert_eq!(r.body, &bytes[..1]);

    // An end past the last byte is clamped (RFC 9110 14.1.2).
    let r = range("bytes=95-500");
    r.expect(206);
    assert_eq!(r.body, &bytes[95..]);
    assert_eq!(r.header("content-range"), Some("bytes 95-99/100"), "{r}");

    for spec in ["bytes=100-", "bytes=200-300", "bytes=100-100"] {
        let r = range(spec);
        r.expect(416);
    }

    // Range by bin name too.
    let r = m.request(
        "GET",
        "/api/v1/download/rng",
        &[("Range", "bytes=10-19")],
        b"",
    );
    r.expect(206);
    assert_eq!(r.body, &bytes[10..20]);
}

#[test]
fn download_unknown_and_head() {
    let m = Manager::new();
    let bytes = artifact_bytes("head", 321);
    let sha = publish(&m, "hd", "1.0", &bytes);

    m.get(&download_path(&"0".repeat(64))).expect_error(404);
    m.get("/api/v1/download/no-such-bin").expect_error(404);

    let r = m.request("HEAD", &download_path(&sha), &[], b"");
    r.expect(200);
    assert!(r.body.is_empty(), "HEAD has no body: {r}");
    assert_eq!(r.header("content-length"), Some("321"), "{r}");
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let r = m.request("HEAD", "/api/v1/download/hd", &[], b"");
    r.expect(200);
    assert!(r.body.is_empty());
    let r = m.request("HEAD", &download_path(&"1".repeat(64)), &[], b"");
    r.expect(404);
}

// ---------------------------------------------------------------------------
// uploads and versions

#[test]
fn upload_is_idempotent_and_refuses_other_bytes() {
    let m = Manager::new();
    let bytes = artifact_bytes("up", 2048);
    let r = m.upload("svc", "1.0.0", None, &bytes);
    let v: Version = r.expect(201).parse();
    assert_eq!(v.bin_name, "svc");
    assert_eq!(v.version, "1.0.0");
    assert_eq!(v.arch, None);
    assert_eq!(v.sha256sum, sha256_hex(&bytes));
    assert_eq!(v.size, 2048);
    assert!(is_rfc3339(&v.created_at), "{}", v.created_at);
    assert!(
        m.data_dir.join("artifacts").join(&v.sha256sum).is_file(),
        "artifact stored by sha"
    );

    let again: Version = m.upload("svc", "1.0.0", None, &bytes).expect(200).parse();
    assert_eq!(again.sha256sum, v.sha256sum);

    m.upload("svc", "1.0.0", None, &artifact_bytes("other", 2048))
        .expect_error(409);
    // The same version for an arch is another artifact.
    m.upload(
        "svc",
        "1.0.0",
        Some("x86_64"),
        &artifact_bytes("other", 2048),
    )
    .expect(201);

    let list: Vec<Version> = m.admin_get("/api/v1/bins/svc/versions").expect(200).parse();
    assert_eq!(list.len(), 2, "{list:?}");
    let plain = list
        .iter()
        .find(|x| x.arch.is_none())
        .expect("arch-less version listed");
    assert_eq!(
        plain.sha256sum, v.sha256sum,
        "the 409 must not replace the stored artifact"
    );
    assert_eq!(m.get(&download_path(&v.sha256sum)).expect(200).body, bytes);
}

#[test]
fn upload_over_the_size_limit_is_413_and_stores_nothing() {
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--max-artifact-size")
            .arg("1000"),
    );
    let ok = artifact_bytes("limit-ok", 1000);
    m.upload("lim", "1.0", None, &ok).expect(201);
    let big = artifact_bytes("limit-big", 1001);
    m.upload("lim", "2.0", None, &big).expect_error(413);
    let bigger = artifact_bytes("limit-bigger", 50_000);
    m.upload("lim", "3.0", None, &bigger).expect_error(413);

    let list: Vec<Version> = m.admin_get("/api/v1/bins/lim/versions").expect(200).parse();
    assert_eq!(
        list.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(),
        ["1.0"]
    );
    assert!(!m.data_dir.join("artifacts").join(sha256_hex(&big)).exists());
    assert!(!m
        .data_dir
        .join("artifacts")
        .join(sha256_hex(&bigger))
        .exists());
    m.get(&download_path(&sha256_hex(&big))).expect_error(404);
    m.release("lim", "2.0").expect_error(404);
}

#[test]
fn upload_without_version_is_400() {
    let m = Manager::new();
    let auth = format!("Bearer {}", m.token);
    for path in [
        "/api/v1/bins/tool/versions",
        "/api/v1/bins/tool/versions?version=",
        "/api/v1/bins/tool/versions?arch=x86_64",
        "/api/v1/bins/tool/versions?vers=1.0",
    ] {
        m.request("POST", path, &[("Authorization", &auth)], b"bytes")
            .expect_error(400);
    }
    m.admin_get("/api/v1/bins/tool/versions").expect_error(404);
}

#[test]
fn version_listings() {
    let m = Manager::new();
    let none: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    assert!(none.is_empty());
    m.admin_get("/api/v1/bins/nothing/versions")
        .expect_error(404);

    let a1: Version = m.upload("alpha", "1.0", None, b"a1").expect(201).parse();
    let a2: Version = m
        .upload("alpha", "2.0", Some("aarch64"), b"a2")
        .expect(201)
        .parse();
    let b1: Version = m.upload("beta", "0.1", None, b"b1").expect(201).parse();

    let mut bins: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    bins.sort_by(|x, y| x.bin_name.cmp(&y.bin_name));
    let names: Vec<&str> = bins.iter().map(|b| b.bin_name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let mut alpha: Vec<Version> = bins[0].versions.clone();
    alpha.sort_by(|x, y| x.version.cmp(&y.version));
    assert_eq!(alpha, vec![a1.clone(), a2.clone()]);
    assert_eq!(bins[1].versions, vec![b1]);

    let mut list: Vec<Version> = m
        .admin_get("/api/v1/bins/alpha/versions")
        .expect(200)
        .parse();
    list.sort_by(|x, y| x.version.cmp(&y.version));
    assert_eq!(list, vec![a1, a2]);
}

// ---------------------------------------------------------------------------
// releases

#[test]
fn release_create_and_unknown_version() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"one").expect(201);
    let r = m.admin_post(
        "/api/v1/releases",
        &json!({"bin_name": "tool", "version": "1.0", "note": "first"}),
    );
    let rel: Release = r.expect(201).parse();
    assert_eq!(rel.bin_name, "tool");
    assert_eq!(rel.version, "1.0");
    assert_eq!(rel.note.as_deref(), Some("first"));
    assert_eq!(rel.status, ReleaseStatus::RollingOut);
    assert_eq!(rel.percent, 100);
    assert!(
        is_rfc3339(&rel.created_at) && is_rfc3339(&rel.updated_at),
        "{rel:?}"
    );
    assert!(
        !rel.history.is_empty(),
        "creation is recorded in the history"
    );
    assert!(is_rfc3339(&rel.history[0].at));

    m.release("tool", "9.9").expect_error(404);
    m.release("never-uploaded", "1.0").expect_error(404);
    m.admin_post("/api/v1/releases", &json!({"bin_name": "tool"}))
        .expect_error(400);
    let auth = format!("Bearer {}", m.token);
    m.request(
        "POST",
        "/api/v1/releases",
        &[("Authorization", &auth)],
        b"{bad json",
    )
    .expect_error(400);

    let list: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(list.len(), 1, "refused releases are not stored: {list:?}");
    assert_eq!(list[0].id, rel.id);
}

#[test]
fn a_second_release_supersedes_the_first() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"one").expect(201);
    m.upload("tool", "2.0", None, b"two").expect(201);
    m.upload("other", "1.0", None, b"other").expect(201);
    let r1: Release = m.release("tool", "1.0").expect(201).parse();
    let o1: Release = m.release("other", "1.0").expect(201).parse();
    let r2: Release = m.release("tool", "2.0").expect(201).parse();
    assert!(r2.id > r1.id);

    let r1_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", r1.id))
        .expect(200)
        .parse();
    assert_eq!(r1_now.status, ReleaseStatus::Superseded);
    assert!(
        r1_now.history.len() > r1.history.len(),
        "the supersede is recorded in the history: {:?}",
        r1_now.history
    );
    let r2_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", r2.id))
        .expect(200)
        .parse();
    assert_eq!(r2_now.status, ReleaseStatus::RollingOut);
    // Another bin's release is untouched.
    let o1_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", o1.id))
        .expect(200)
        .parse();
    assert_eq!(o1_now.status, ReleaseStatus::RollingOut);

    register(&m, "n1", "x86_64");
    let t: Target = target(&m, "tool", "n1").expect(200).parse();
    assert_eq!(t.version, "2.0");
    let t: Target = target(&m, "other", "n1").expect(200).parse();
    assert_eq!(t.version, "1.0");
}

#[test]
fn release_listing_filter_and_lookup() {
    let m = Manager::new();
    m.upload("a", "1", None, b"a1").expect(201);
    m.upload("a", "2", None, b"a2").expect(201);
    m.upload("b", "1", None, b"b1").expect(201);
    let ra1: Release = m.release("a", "1").expect(201).parse();
    let rb1: Release = m.release("b", "1").expect(201).parse();
    let ra2: Release = m.release("a", "2").expect(201).parse();

    let all: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ra2.id, rb1.id, ra1.id],
        "newest first"
    );
    let only_a: Vec<Release> = m
        .admin_get("/api/v1/releases?bin_name=a")
        .expect(200)
        .parse();
    assert_eq!(
        only_a.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ra2.id, ra1.id]
    );
    let none: Vec<Release> = m
        .admin_get("/api/v1/releases?bin_name=zzz")
        .expect(200)
        .parse();
    assert!(none.is_empty());

    let got: Release = m
        .admin_get(&format!("/api/v1/releases/{}", rb1.id))
        .expect(200)
        .parse();
    assert_eq!(got, rb1);
    m.admin_get("/api/v1/releases/999999").expect_error(404);
    for bad in ["abc", "-1", "1.0", "0x10"] {
        m.admin_get(&format!("/api/v1/releases/{bad}"))
            .expect_error(400);
    }
}

// ---------------------------------------------------------------------------
// authentication

#[test]
fn admin_endpoints_require_the_token() {
    let m = Manager::new();
    // Something to look at, made with the token.
    m.upload("tool", "1.0", None, b"one").expect(201);
    let rel: Release = m.release("tool", "1.0").expect(201).parse();

    let release_body = serde_json::to_vec(&json!({"bin_name": "tool", "version": "1.0"})).unwrap();
    let endpoints: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "POST",
            "/api/v1/bins/tool/versions?version=2.0".into(),
            b"two".to_vec(),
        ),
        ("GET", "/api/v1/bins".into(), Vec::new()),
        ("GET", "/api/v1/bins/tool/versions".into(), Vec::new()),
        ("POST", "/api/v1/releases".into(), release_body),
        ("GET", "/api/v1/releases".into(), Vec::new()),
        ("GET", "/api/v1/releases?bin_name=tool".into(), Vec::new()),
        ("GET", format!("/api/v1/releases/{}", rel.id), Vec::new()),
        ("GET", "/api/v1/nodes".into(), Vec::new()),
        ("GET", "/api/v1/bins/tool/progress".into(), Vec::new()),
    ];
    let wrong = format!("Bearer {}x", m.token);
    let prefix = format!("Bearer {}", &m.token[..m.token.len() - 1]);
    let basic = format!("Basic {}", m.token);
    let bare = m.token.clone();
    for (method, path, body) in &endpoints {
        let r = m.request(method, path, &[], body);
        r.expect_error(401);
        for auth in [
            wrong.as_str(),
            prefix.as_str(),
            basic.as_str(),
            bare.as_str(),
            "Bearer ",
            "Bearer",
        ] {
            let r = m.request(method, path, &[("Authorization", auth)], body);
            assert_eq!(
                r.status, 401,
                "{method} {path} with Authorization: {auth:?}: {r}"
            );
        }
    }
    // The refused writes changed nothing.
    let versions: Vec<Version> = m
        .admin_get("/api/v1/bins/tool/versions")
        .expect(200)
        .parse();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let releases: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(releases.len(), 1, "{releases:?}");
    // And every endpoint answers with the right token.
    let auth = format!("Bearer {}", m.token);
    for (method, path, body) in &endpoints {
        let r = m.request(method, path, &[("Authorization", &auth)], body);
        assert!(r.status < 300, "{method} {path} with the token: {r}");
    }
}

#[test]
fn node_endpoints_need_no_token() {
    let m = Manager::new();
    let bytes = artifact_bytes("open", 64);
    let sha = publish(&m, "tool", "1.0", &bytes);
    m.get("/health").expect(200);
    m.keepalive("n1", "x86_64", &[("tool", "")]).expect(200);
    m.get("/api/v1/keepalive?node_id=n1").expect(200);
    target(&m, "tool", "n1").expect(200);
    m.post_json(
        "/api/v1/bins/tool",
        &json!({"node_id": "n1", "sha256sum": sha}),
    )
    .expect(200);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &sha, "success"),
    )
    .expect(201);
    assert_eq!(m.get(&download_path(&sha)).expect(200).body, bytes);
    assert_eq!(m.get("/api/v1/download/tool").expect(200).body, bytes);
}

#[test]
fn generated_admin_token_is_private_and_works() {
    let opts = ManagerOptions {
        token: TokenSource::Generated,
        env: vec![("RUST_LOG".into(), "debug".into())],
        ..ManagerOptions::default()
    };
    let mut m = Manager::new_with(opts);
    let path = m.data_dir.join("admin.token");
    let meta = std::fs::metadata(&path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} mode",
            path.display()
        );
    }
    assert!(
        m.token.len() >= 16,
        "a generated token should be long: {:?}",
        m.token
    );
    assert!(
        m.token.chars().all(|c| c.is_ascii_graphic()),
        "{:?}",
        m.token
    );
    m.admin_get("/api/v1/nodes").expect(200);
    let wrong = "Bearer not-the-token";
    m.request("GET", "/api/v1/nodes", &[("Authorization", wrong)], b"")
        .expect_error(401);

    // A restart keeps the same token.
    let before = m.token.clone();
    m.restart();
    assert_eq!(m.token, before);
    m.admin_get("/api/v1/nodes").expect(200);
    m.sigterm();
    let log = m.log();
    assert!(log.contains("listening on http://"), "{log}");
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug was not honoured:\n{log}"
    );
    assert!(
        !log.contains(&before),
        "the generated token appears in the log:\n{log}"
    );
}

#[test]
fn admin_token_file_wins_over_env() {
    let tmp = TempDir::new("tokenfile");
    let file = tmp.join("token");
    let from_file = unique("file-token");
    std::fs::write(&file, format!("{from_file}\n")).unwrap();
    let from_env = unique("env-token");
    let opts = ManagerOptions {
        token: TokenSource::File {
            path: file,
            token: from_file.clone(),
        },
        env: vec![("MANAGER_ADMIN_TOKEN".into(), from_env.clone())],
        ..ManagerOptions::default()
    };
    let m = Manager::start(&tmp.join("data"), opts);
    m.admin_get("/api/v1/nodes").expect(200);
    let env_auth = format!("Bearer {from_env}");
    m.request("GET", "/api/v1/nodes", &[("Authorization", &env_auth)], b"")
        .expect_error(401);
    assert!(
        !m.data_dir.join("admin.token").exists(),
        "no token is generated when one is given"
    );
}

#[test]
fn env_token_works_and_is_never_logged() {
    let opts = ManagerOptions::default().env("RUST_LOG", "debug");
    let mut m = Manager::new_with(opts);
    let token = m.token.clone();
    // Requests of every kind, authorised and not.
    m.upload("tool", "1.0", None, b"bytes").expect(201);
    m.release("tool", "1.0").expect(201);
    m.admin_get("/api/v1/nodes").expect(200);
    m.admin_get("/api/v1/releases").expect(200);
    let almost = format!("Bearer {token}-wrong");
    m.request("GET", "/api/v1/nodes", &[("Authorization", &almost)], b"")
        .expect_error(401);
    m.keepalive("n1", "x86_64", &[("tool", "")]).expect(200);
    assert!(
        !m.data_dir.join("admin.token").exists(),
        "no token is generated when env gives one"
    );
    let status = m.sigterm();
    assert!(status.success(), "{status}");
    let log = m.log();
    assert!(log.contains("listening on http://"), "{log}");
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug was not honoured:\n{log}"
    );
    assert!(
        !log.contains(&token),
        "the admin token appears in the log:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// routing

#[test]
fn unknown_routes_are_404() {
    let m = Manager::new();
    for path in [
        "/nope",
        "/ui",
        "/ui/nope",
        "/ui/app.js/x",
        "/api",
        "/api/v1",
        "/api/v1/nope",
        "/api/v2/bins",
        "/api/v1/bins/tool/nope",
        "/api/v1/bins/tool/versions/1.0/extra",
        "/api/v1/releases/1/extra",
        "/healthz",
    ] {
        let r = m.admin_get(path);
        assert_eq!(r.status, 404, "GET {path}: {r}");
        r.expect_error(404);
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let m = Manager::new();
    // With the token, so that a 401 cannot stand in for the 405.
    let auth = format!("Bearer {}", m.token);
    for (method, path, allowed) in [
        ("DELETE", "/health", "GET"),
        ("POST", "/health", "GET"),
        ("POST", "/", "GET"),
        ("PUT", "/ui/app.js", "GET"),
        ("PUT", "/api/v1/keepalive", "POST"),
        ("DELETE", "/api/v1/keepalive", "GET"),
        ("PUT", "/api/v1/releases", "POST"),
        ("DELETE", "/api/v1/releases", "GET"),
        ("PATCH", "/api/v1/nodes", "GET"),
        ("PUT", "/api/v1/bins/tool/versions", "POST"),
        ("POST", "/api/v1/download/tool", "GET"),
    ] {
        let r = m.request(method, path, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 405, "{method} {path}: {r}");
        r.expect_error(405);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header: {r}"));
        assert!(
            allow.contains(allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
        assert!(
            !allow.contains(method),
            "{method} {path}: Allow {allow:?} lists the refused method"
        );
    }
}

// ---------------------------------------------------------------------------
// bad names

/// Bad values as they appear in a URL (path segment or query value).
fn bad_url_values(marker: &str, max: usize) -> Vec<String> {
    vec![
        "..".into(),
        ".".into(),
        "%2e%2e".into(),
        "%2E%2E".into(),
        "%2e".into(),
        format!("{marker}%2fx"),
        format!("{marker}%2Fx"),
        format!("{marker}%00x"),
        format!("{marker}%20x"),
        format!("{marker}%25x"),
        "x".repeat(max + 1),
    ]
}

/// Bad values as they appear in a JSON body.
fn bad_json_values(marker: &str, max: usize) -> Vec<String> {
    vec![
        "..".into(),
        ".".into(),
        String::new(),
        format!("{marker}/x"),
        format!("../{marker}"),
        format!("{marker}\0x"),
        format!("{marker} x"),
        format!("{marker}%2fx"),
        "x".repeat(max + 1),
    ]
}

#[track_caller]
fn expect_400(r: &Response, what: &str) {
    assert_eq!(r.status, 400, "{what}: {r}");
    r.expect_error(400);
}

#[test]
fn bad_bin_names_are_400() {
    let (root, m) = sandboxed_manager();
    let marker = unique("evilbin");
    let sha = publish(&m, "tool", "1.0", b"good");
    register(&m, "n1", "x86_64");
    let auth = format!("Bearer {}", m.token);
    let max = "b".repeat(64);
    // The longest name is fine.
    m.upload(&max, "1.0", None, b"long").expect(201);

    for bin in bad_url_values(&marker, 64) {
        let installed = serde_json::to_vec(&json!({"node_id": "n1", "sha256sum": sha})).unwrap();
        let progress = serde_json::to_vec(&progress_body("n1", &sha, "success")).unwrap();
        let cases: Vec<(&str, String, Vec<u8>)> = vec![
            ("GET", format!("/api/v1/bins/{bin}?node_id=n1"), Vec::new()),
            ("POST", format!("/api/v1/bins/{bin}"), installed),
            ("POST", format!("/api/v1/bins/{bin}/progress"), progress),
            ("GET", format!("/api/v1/bins/{bin}/progress"), Vec::new()),
            ("GET", format!("/api/v1/bins/{bin}/versions"), Vec::new()),
            (
                "POST",
                format!("/api/v1/bins/{bin}/versions?version=1.0"),
                b"payload".to_vec(),
            ),
            ("GET", format!("/api/v1/download/{bin}"), Vec::new()),
        ];
        for (method, path, body) in cases {
            let r = m.request(method, &path, &[("Authorization", &auth)], &body);
            expect_400(&r, &format!("{method} {path}"));
        }
    }
    for bin in bad_json_values(&marker, 64) {
        let r = m.admin_post(
            "/api/v1/releases",
            &json!({"bin_name": bin, "version": "1.0"}),
        );
        expect_400(&r, &format!("release bin_name {bin:?}"));
    }
    let bins: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    assert_eq!(bins.len(), 2, "{bins:?}");
    let releases: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(releases.len(), 1);
    drop(m);
    assert_nothing_outside_data(root.path(), &marker);
}

#[test]
fn bad_versions_are_400() {
    let (root, m) = sandboxed_manager();
    let marker = unique("evilver");
    let max = "1".repeat(128);
    m.upload("tool", &max, None, b"long version").expect(201);
    m.release("tool", &max).expect(201);
    for version in bad_url_values(&marker, 128) {
        let r = m.upload("tool", &version, None, b"payload");
        expect_400(&r, &format!("upload version={version}"));
        let r = m.upload("tool", &version, Some("x86_64"), b"payload");
        expect_400(&r, &format!("upload version={version}&arch=x86_64"));
    }
    for version in bad_json_values(&marker, 128) {
        let r = m.admin_post(
            "/api/v1/releases",
            &json!({"bin_name": "tool", "version": version}),
        );
        expect_400(&r, &format!("release version {version:?}"));
    }
    let versions: Vec<Version> = m
        .admin_get("/api/v1/bins/tool/versions")
        .expect(200)
        .parse();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let releases: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(releases.len(), 1);
    drop(m);
    assert_nothing_outside_data(root.path(), &marker);
}

#[test]
fn bad_arches_are_400() {
    let (root, m) = sandboxed_manager();
    let marker = unique("evilarch");
    m.upload("tool", "1.0", Some(&"a".repeat(64)), b"long arch")
        .expect(201);
    publish(&m, "tool", "2.0", b"all arches");
    register(&m, "n1", "x86_64");
    for arch in bad_url_values(&marker, 64) {
        let r = m.upload("tool", "3.0", Some(&arch), b"payload");
        expect_400(&r, &format!("upload arch={arch}"));
        let r = m.get(&format!("/api/v1/bins/tool?node_id=n1&arch={arch}"));
        expect_400(&r, &format!("target arch={arch}"));
    }
    let versions: Vec<Version> = m
        .admin_get("/api/v1/bins/tool/versions")
        .expect(200)
        .parse();
    assert_eq!(versions.len(), 2, "{versions:?}");
    drop(m);
    assert_nothing_outside_data(root.path(), &marker);
}

#[test]
fn keepalive_with_a_bad_cpu_arch_is_400() {
    let m = Manager::new();
    let marker = unique("evilcpu");
    for arch in bad_json_values(&marker, 64) {
        if arch.is_empty() {
            continue; // an agent that cannot tell its arch sends nothing
        }
        let r = m.post_json(
            "/api/v1/keepalive",
            &json!({"node_id": "n1", "cpu_arch": arch}),
        );
        expect_400(&r, &format!("keepalive cpu_arch {arch:?}"));
    }
    m.post_json(
        "/api/v1/keepalive",
        &json!({"node_id": "n1", "cpu_arch": ""}),
    )
    .expect(200);
}

#[test]
fn bad_node_ids_are_400() {
    let (root, m) = sandboxed_manager();
    let marker = unique("evilnode");
    let sha = publish(&m, "tool", "1.0", b"good");
    let longest = "n".repeat(128);
    register(&m, &longest, "x86_64");
    register(&m, "10.0.0.1:web", "x86_64");
    target(&m, "tool", &longest).expect(200);

    for node in bad_json_values(&marker, 128) {
        let r = m.post_json("/api/v1/keepalive", &json!({"node_id": node}));
        expect_400(&r, &format!("keepalive node_id {node:?}"));
        let r = m.post_json(
            "/api/v1/bins/tool",
            &json!({"node_id": node, "sha256sum": sha}),
        );
        expect_400(&r, &format!("installed node_id {node:?}"));
        let r = m.post_json(
            "/api/v1/bins/tool/progress",
            &progress_body(&node, &sha, "success"),
        );
        expect_400(&r, &format!("progress node_id {node:?}"));
    }
    for node in bad_url_values(&marker, 128) {
        let r = m.get(&format!("/api/v1/keepalive?node_id={node}"));
        expect_400(&r, &format!("GET keepalive node_id={node}"));
        let r = m.get(&format!("/api/v1/bins/tool?node_id={node}"));
        expect_400(&r, &format!("target node_id={node}"));
        let r = m.admin_get(&format!("/api/v1/bins/tool/progress?node_id={node}"));
        expect_400(&r, &format!("progress list node_id={node}"));
    }
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let progress: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert!(progress.is_empty(), "{progress:?}");
    drop(m);
    assert_nothing_outside_data(root.path(), &marker);
}
