//! Every node call moves `last_seen`, and it survives kill -9 after the
//! flush interval.

use binproxy_protocol::Node;
use binproxy_tests::{sha256_hex, Manager, ManagerOptions};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

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
