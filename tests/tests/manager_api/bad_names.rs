//! Bad names everywhere a name is taken: bins, versions, arches, node ids,
//! in URLs and JSON bodies, all refused with 400 and no file made for them.

use binproxy_protocol::{BinVersions, Node, ProgressRecord, Release, Version};
use binproxy_tests::agent::publish;
use binproxy_tests::api::{
    assert_nothing_outside_data, assert_stored, progress_body, register, sandboxed_manager, target,
};
use binproxy_tests::{unique, Manager, Response};
use serde_json::json;

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
    assert_stored(&m, "tool", 1, 1);
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
