//! Named tokens: a created token's secret shown once and working at once,
//! names and roles checked, revocation immediate, all surviving kill -9.

use binproxy_tests::roles::{
    bearer, create_token, expect_forbidden, keys, new_token, send, token_list, token_names,
    LISTED_KEYS,
};
use binproxy_tests::{is_rfc3339, sha256_hex, unique, Manager};
use serde_json::json;

// ---------------------------------------------------------------------------
// tokens

#[test]
fn a_created_token_shows_its_secret_once_and_works_at_once() {
    let m = Manager::new();
    let r = create_token(&m, "ci", "publisher");
    r.expect(201);
    let created = r.json();
    assert_eq!(
        keys(&created),
        ["created_at", "created_by", "name", "role", "token"],
        "{r}"
    );
    assert_eq!(created["name"], "ci");
    assert_eq!(created["role"], "publisher");
    assert_eq!(created["created_by"], "admin");
    assert!(
        is_rfc3339(created["created_at"].as_str().unwrap()),
        "{created}"
    );
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(
        secret.len() >= 16 && secret.bytes().all(|b| b.is_ascii_graphic()),
        "the secret should be long and fit in a header: {secret:?}"
    );
    assert_ne!(secret, m.token);
    // It works at once, for what its role may do.
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect(200);
    m.request(
        "POST",
        "/api/v1/bins/tool/versions?version=1",
        &[("Authorization", &bearer(&secret))],
        b"bytes",
    )
    .expect(201);

    // Listed without the secret or its hash; the bootstrap admin included.
    let r = m.admin_get("/api/v1/tokens");
    r.expect(200);
    let hash = sha256_hex(secret.as_bytes());
    for needle in [&secret, &hash, &hash.to_uppercase()] {
        assert!(!r.text().contains(needle.as_str()), "the list leaks: {r}");
    }
    let list = r.json();
    let list = list.as_array().unwrap();
    for t in list {
        assert_eq!(keys(t), LISTED_KEYS, "{r}");
    }
    let find = |name: &str| list.iter().find(|t| t["name"] == name).cloned();
    let ci = find("ci").unwrap_or_else(|| panic!("ci not listed: {r}"));
    assert_eq!(
        (&ci["role"], &ci["created_by"], &ci["created_at"]),
        (
            &created["role"],
            &created["created_by"],
            &created["created_at"]
        )
    );
    let admin = find("admin").unwrap_or_else(|| panic!("bootstrap not listed: {r}"));
    assert_eq!(admin["role"], "admin", "{r}");
    assert_eq!(list.len(), 2, "{r}");
    // Every role may read the list, and none of them sees a secret.
    let viewer = new_token(&m, "eyes", "viewer");
    let r = send(&m, "GET", "/api/v1/tokens", Some(&viewer), None);
    r.expect(200);
    assert!(
        !r.text().contains(&secret) && !r.text().contains(&viewer),
        "{r}"
    );
    // Nor does the audit log.
    let text = m.admin_get("/api/v1/audit").text();
    assert!(!text.contains(&secret) && !text.contains(&viewer), "{text}");
}

#[test]
fn token_names_and_roles_are_checked() {
    let m = Manager::new();
    new_token(&m, "ci", "publisher");
    // Existing name, whatever the role; the reserved bootstrap name.
    for role in ["publisher", "viewer"] {
        create_token(&m, "ci", role).expect_error(409);
    }
    for role in ["admin", "viewer"] {
        create_token(&m, "admin", role).expect_error(409);
    }
    for role in ["root", "Admin", "VIEWER", "", "publisher "] {
        let r = create_token(&m, &unique("r"), role);
        r.expect_error(400);
    }
    let long = "x".repeat(65);
    for name in ["", "a b", "a/b", "ci\n", "caf\u{e9}", "a:b", long.as_str()] {
        let r = create_token(&m, name, "viewer");
        assert_eq!(r.status, 400, "name {name:?}: {r}");
        r.expect_error(400);
    }
    // The whole name alphabet, at the longest.
    let longest = format!("Az09._-{}", "y".repeat(57));
    assert_eq!(longest.len(), 64);
    create_token(&m, &longest, "viewer").expect(201);
    // Bodies that are not a token request.
    let auth = bearer(&m.token);
    for body in [
        &b"not json"[..],
        b"[]",
        b"{\"name\":\"x1\"}",
        b"{\"role\":\"viewer\"}",
    ] {
        let r = m.request(
            "POST",
            "/api/v1/tokens",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        assert_eq!(r.status, 400, "{}: {r}", String::from_utf8_lossy(body));
    }
    let names = token_names(&m);
    assert_eq!(
        names,
        ["admin", "ci", longest.as_str()]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        "refused requests created nothing"
    );
}

#[test]
fn revocation_is_immediate_and_checked() {
    let m = Manager::new();
    let secret = new_token(&m, "ci", "publisher");
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect(200);
    let r = send(&m, "DELETE", "/api/v1/tokens/ci", Some(&m.token), None);
    r.expect(200);
    let body = r.json();
    assert_eq!(
        (&body["name"], &body["role"]),
        (&json!("ci"), &json!("publisher"))
    );
    assert!(
        body.get("token").is_none() && !r.text().contains(&secret),
        "{r}"
    );
    // Refused at once, for reads and writes.
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect_error(401);
    m.request(
        "POST",
        "/api/v1/bins/tool/versions?version=1",
        &[("Authorization", &bearer(&secret))],
        b"bytes",
    )
    .expect_error(401);
    assert!(!token_names(&m).contains("ci"));
    // Gone, unknown, reserved.
    send(&m, "DELETE", "/api/v1/tokens/ci", Some(&m.token), None).expect_error(404);
    send(&m, "DELETE", "/api/v1/tokens/nobody", Some(&m.token), None).expect_error(404);
    send(&m, "DELETE", "/api/v1/tokens/admin", Some(&m.token), None).expect_error(409);
    m.admin_get("/api/v1/tokens").expect(200);
    // A name no token can have: unknown, or refused as a token name.
    for bad in ["a%2Fb", "a%20b", "%2E%2E"] {
        let r = send(
            &m,
            "DELETE",
            &format!("/api/v1/tokens/{bad}"),
            Some(&m.token),
            None,
        );
        assert!(r.status == 404 || r.status == 400, "{bad}: {r}");
        if r.status == 400 {
            let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
            assert!(
                error.contains("token name"),
                "{bad}: a 400 should say what is wrong: {r}"
            );
        }
    }
    // A named admin may revoke, but not the bootstrap token, nor does
    // revoking itself leave it working.
    let boss = new_token(&m, "boss", "admin");
    send(&m, "DELETE", "/api/v1/tokens/admin", Some(&boss), None).expect_error(409);
    m.admin_get("/api/v1/tokens").expect(200);
    send(&m, "DELETE", "/api/v1/tokens/boss", Some(&boss), None).expect(200);
    send(&m, "GET", "/api/v1/tokens", Some(&boss), None).expect_error(401);
    // The name is free again; the old secret stays dead.
    let again = new_token(&m, "ci", "viewer");
    assert_ne!(again, secret);
    send(&m, "GET", "/api/v1/releases", Some(&again), None).expect(200);
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect_error(401);
}

#[test]
fn tokens_and_revocations_survive_kill_9() {
    let mut m = Manager::new();
    let keep = new_token(&m, "keep", "approver");
    let gone = new_token(&m, "gone", "publisher");
    send(&m, "DELETE", "/api/v1/tokens/gone", Some(&m.token), None).expect(200);
    let before = token_list(&m);
    m.kill9();
    m.restart();
    send(&m, "GET", "/api/v1/releases", Some(&keep), None).expect(200);
    send(&m, "GET", "/api/v1/releases", Some(&gone), None).expect_error(401);
    assert_eq!(token_list(&m), before);
    // Its role came back too: an approver may not create tokens.
    let r = send(
        &m,
        "POST",
        "/api/v1/tokens",
        Some(&keep),
        Some(&json!({"name": "x", "role": "viewer"})),
    );
    expect_forbidden(&r, "keep", "approver");
    // And the data dir holds no secret in the clear.
    let mut found = Vec::new();
    for path in binproxy_tests::list_tree(&m.data_dir) {
        let full = m.data_dir.join(&path);
        if let Ok(bytes) = std::fs::read(&full) {
            let text = String::from_utf8_lossy(&bytes);
            if text.contains(&keep) || text.contains(&gone) {
                found.push(path);
            }
        }
    }
    assert!(found.is_empty(), "secrets stored in the clear in {found:?}");
}
