//! `GET /api/v1/nodes` in pages (`?limit=&after=`, the next page named by
//! `X-Next-After` and `Link`) and whole (streamed, one JSON array as before
//! paging): ordered by node id, bad values refused naming the parameter,
//! every node seen exactly once while nodes register between pages, and the
//! CLI's `nodes` following the pages of a fleet larger than one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::Node;
use binproxy_tests::{Manager, Response, TempDir};
use std::collections::BTreeSet;

fn ids(r: &Response) -> Vec<String> {
    let nodes: Vec<Node> = r.parse();
    nodes.into_iter().map(|n| n.node_id).collect()
}

fn register(m: &Manager, ids: impl IntoIterator<Item = String>) {
    for id in ids {
        m.keepalive(&id, "x86_64", &[]).expect(200);
    }
}

#[test]
fn pages_follow_the_cursor_and_the_whole_list_is_unchanged() {
    let m = Manager::new();
    register(&m, (0..25).map(|i| format!("n-{i:02}")));
    let all: Vec<String> = (0..25).map(|i| format!("n-{i:02}")).collect();

    let first = m.admin_get("/api/v1/nodes?limit=10");
    first.expect(200);
    assert_eq!(ids(&first), all[..10]);
    assert_eq!(first.header("x-next-after"), Some("n-09"), "{first}");
    assert_eq!(
        first.header("link"),
        Some("</api/v1/nodes?limit=10&after=n-09>; rel=\"next\"")
    );
    let second = m.admin_get("/api/v1/nodes?limit=10&after=n-09");
    assert_eq!(ids(second.expect(200)), all[10..20]);
    let last = m.admin_get("/api/v1/nodes?limit=10&after=n-19");
    assert_eq!(ids(last.expect(200)), all[20..]);
    assert_eq!(last.header("x-next-after"), None, "the last page: {last}");
    assert_eq!(last.header("link"), None);

    // `after` alone pages with the default limit; `after=` is the start.
    let rest = m.admin_get("/api/v1/nodes?after=n-22");
    assert_eq!(ids(rest.expect(200)), ["n-23", "n-24"]);
    let start = m.admin_get("/api/v1/nodes?after=");
    assert_eq!(ids(start.expect(200)), all);
    // An id between two nodes starts after it.
    let between = m.admin_get("/api/v1/nodes?limit=2&after=n-05x");
    assert_eq!(ids(between.expect(200)), ["n-06", "n-07"]);
    let past = m.admin_get("/api/v1/nodes?limit=2&after=z");
    assert_eq!(ids(past.expect(200)), Vec::<String>::new());

    // No parameter: every node, as before paging, without a cursor.
    let whole = m.admin_get("/api/v1/nodes");
    assert_eq!(ids(whole.expect(200)), all);
    assert_eq!(whole.header("x-next-after"), None);
}

#[test]
fn bad_paging_values_are_refused_naming_the_parameter() {
    let m = Manager::new();
    register(&m, ["a".to_owned()]);
    for (query, word) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("limit=-1", "limit"),
        ("after=..", "after"),
        ("after=a%2fb", "after"),
        ("limit=5&after=%00", "after"),
    ] {
        let r = m.admin_get(&format!("/api/v1/nodes?{query}"));
        let error = r.expect_error(400).json()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains(word), "{query}: {error}");
    }
    m.admin_get("/api/v1/nodes?limit=10000").expect(200);
}

#[test]
fn every_node_is_seen_once_while_nodes_register_between_pages() {
    let m = Manager::new();
    let first: Vec<String> = (0..40).map(|i| format!("n-{:03}", i * 10)).collect();
    register(&m, first.clone());
    let mut seen = Vec::new();
    let mut after = String::new();
    for page in 0..100 {
        let r = m.admin_get(&format!("/api/v1/nodes?limit=7&after={after}"));
        seen.extend(ids(r.expect(200)));
        // New nodes before and after the cursor, and a known one again.
        register(
            &m,
            [
                format!("n-{:03}", page * 10 + 5),
                format!("n-{:03}", 395 - page),
                first[page % first.len()].clone(),
            ],
        );
        match r.header("x-next-after") {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no node twice: {seen:?}");
    for id in &first {
        assert!(
            unique.contains(id),
            "{id} was registered throughout: {seen:?}"
        );
    }
    let sorted: Vec<&String> = unique.into_iter().collect();
    assert_eq!(sorted, seen.iter().collect::<Vec<_>>(), "in id order");
}

#[test]
fn a_fleet_larger_than_a_page_streams_whole_and_the_cli_follows_pages() {
    let m = Manager::new();
    let all: Vec<String> = (0..2345).map(|i| format!("node-{i:05}")).collect();
    std::thread::scope(|s| {
        for part in all.chunks(600) {
            let m = &m;
            s.spawn(move || register(m, part.to_vec()));
        }
    });
    let whole = m.admin_get("/api/v1/nodes");
    whole.expect(200);
    assert_eq!(
        whole.header("transfer-encoding"),
        Some("chunked"),
        "made as it is read"
    );
    assert_eq!(ids(&whole), all);
    let head = m.request(
        "HEAD",
        "/api/v1/nodes",
        &[("Authorization", &format!("Bearer {}", m.token))],
        b"",
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let dir = TempDir::new("paging-cli");
    let token = dir.path().join("token");
    std::fs::write(&token, &m.token).unwrap();
    let out = m.cli(&token, &["nodes", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<Node> = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<String> = listed.into_iter().map(|n| n.node_id).collect();
    assert_eq!(listed, all, "the CLI lists every page");
}
