//! The process and the node-facing calls: bad `serve` flags, `/health`,
//! `POST`/`GET /api/v1/keepalive` (new and old agents' spellings) and the
//! installed report `POST /api/v1/bins/{bin}`.

use binproxy_protocol::{download_path, Health, KeepaliveReply, Node, Target};
use binproxy_tests::agent::publish;
use binproxy_tests::api::register;
use binproxy_tests::{artifact_bytes, is_rfc3339, output_within, sha256_hex, Manager, TempDir};
use serde_json::json;
use std::time::Duration;

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
