//! ETags and bodiless 304s on unchanged answers.

use super::*;

/// GETs `path` with `If-None-Match: etag` (and the admin token).
fn get_if_none_match(m: &Manager, path: &str, etag: &str) -> Response {
    let auth = format!("Bearer {}", m.token);
    m.get_with(path, &[("Authorization", &auth), ("If-None-Match", etag)])
}

/// The ETag of a 200 answer of `path`, checked to give a bodiless 304.
#[track_caller]
fn etag(m: &Manager, path: &str) -> String {
    let r = m.admin_get(path);
    let tag = r.expect(200).header("etag");
    let tag = tag.unwrap_or_else(|| panic!("{path}: no ETag: {r}"));
    assert!(
        tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"'),
        "{path}: {tag}"
    );
    let again = get_if_none_match(m, path, tag);
    assert_eq!(again.status, 304, "{path}: {again}");
    assert!(again.body.is_empty(), "{path}: {again}");
    assert_eq!(again.header("etag"), Some(tag), "{path}");
    tag.to_owned()
}

/// Polls `path` with `If-None-Match: old` until it answers 200, with a new
/// ETag; returns the answer.
#[track_caller]
fn changed(m: &Manager, path: &str, old: &str) -> Response {
    let r = poll(&format!("{path} to change"), || {
        let r = get_if_none_match(m, path, old);
        (r.status == 200).then(|| r.clone()).ok_or(r.to_string())
    });
    let tag = r.header("etag");
    assert!(
        tag.is_some_and(|t| t != old),
        "{path}: a change, a new ETag: {r}"
    );
    r
}

#[test]
fn unchanged_answers_are_304_and_changes_give_a_new_etag() {
    let s = small_fleet(ManagerOptions::default());
    let body = json!({"bin_name": "svc", "version": "2.0.0", "require_approval": true});
    let id = create_release(&s.m, &body).id;
    let release = format!("/api/v1/releases/{id}");
    let paths = [
        "/api/v1/fleet",
        "/api/v1/releases",
        &release,
        "/api/v1/nodes?offset=0",
    ];
    let tags: Vec<String> = paths.iter().map(|p| etag(&s.m, p)).collect();
    for (path, tag) in paths.iter().zip(&tags) {
        assert_eq!(
            etag(&s.m, path),
            *tag,
            "{path}: the same answer, the same ETag"
        );
        // A 304 is no way around the token.
        s.m.get_with(path, &[("If-None-Match", tag)])
            .expect_error(401);
    }
    let list = format!("\"nope\", W/{}", tags[0]);
    assert_eq!(
        get_if_none_match(&s.m, paths[0], &list).status,
        304,
        "one of a list"
    );
    assert_eq!(get_if_none_match(&s.m, paths[0], "\"nope\"").status, 200);

    // A new node changes the search at once and the fleet within its cache.
    s.send(["new-01", "New", "aarch64", "prod", "2.0.0"]);
    let nodes = changed(&s.m, paths[3], &tags[3]);
    assert_eq!(nodes.header("x-total-count"), Some("8"));
    assert_eq!(changed(&s.m, paths[0], &tags[0]).json()["nodes"], 8);
    // A release operation changes the releases.
    op(&s.m, id, "cancel").expect(200);
    assert_eq!(
        changed(&s.m, paths[2], &tags[2]).json()["status"],
        "cancelled"
    );
    changed(&s.m, paths[1], &tags[1]);
}

/// The contract: every GET answer with a JSON body and status 200 carries
/// an ETag, and sending it back answers 304. Fails while the whole node
/// list (`GET /api/v1/nodes`, a chunked stream) comes without one.
#[test]
fn every_json_get_carries_an_etag() {
    let s = small_fleet(ManagerOptions::default());
    let id = create_release(&s.m, &json!({"bin_name": "svc", "version": "2.0.0"})).id;
    let mut missing = Vec::new();
    let paths = "/api/v1/fleet /api/v1/releases /api/v1/releases/ID /api/v1/releases/ID/failures \
                 /api/v1/nodes?offset=0 /api/v1/nodes?limit=2 /api/v1/nodes/app-01 \
                 /api/v1/bins /api/v1/bins/svc/versions /api/v1/tokens /api/v1/audit";
    for path in paths
        .split_whitespace()
        .map(|p| p.replace("ID", &id.to_string()))
    {
        let r = s.m.admin_get(&path);
        let kind = r.expect(200).header("content-type").unwrap_or_default();
        assert!(kind.contains("json"), "{path}: {r}");
        match r.header("etag") {
            Some(tag) => assert_eq!(get_if_none_match(&s.m, &path, tag).status, 304, "{path}"),
            None => missing.push(path),
        }
    }
    assert!(
        missing.is_empty(),
        "200 JSON answers without an ETag: {missing:?}"
    );
    // The whole fleet without paging is streamed a page at a time as the
    // client reads, never whole in memory: nothing to hash, no tag.
    let whole = s.m.admin_get("/api/v1/nodes");
    assert_eq!(whole.expect(200).header("etag"), None, "{whole}");
}
