//! The audit log: every admin write (also one answered 405), newest first,
//! no reads, its limits; and no secret ever reaches the log.

use binproxy_protocol::Release;
use binproxy_tests::roles::{audit, bearer, create_token, expect_forbidden, keys, new_token, send};
use binproxy_tests::{is_rfc3339, unique, Manager, ManagerOptions};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// audit

/// (actor, method, path, status) of an audit record.
fn summary(a: &Value) -> (Option<String>, String, String, u64) {
    (
        a["actor"].as_str().map(str::to_owned),
        a["method"].as_str().unwrap_or_default().to_owned(),
        a["path"].as_str().unwrap_or_default().to_owned(),
        a["status"].as_u64().unwrap_or_default(),
    )
}

fn expected(
    actor: Option<&str>,
    method: &str,
    path: &str,
    status: u64,
) -> (Option<String>, String, String, u64) {
    (actor.map(str::to_owned), method.into(), path.into(), status)
}

/// Some admin writes of every outcome, and reads in between; returns the
/// writes as the audit log should show them, oldest first.
/// The admin writes refused for want of a valid token so far, from `/metrics`.
fn unauthenticated_count(m: &Manager) -> u64 {
    let text = m.admin_get("/metrics").expect(200).text();
    text.lines()
        .find_map(|l| l.strip_prefix("manager_audit_unauthenticated_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no manager_audit_unauthenticated_total in:\n{text}"))
}

/// Makes admin writes of every outcome; returns the audit records they
/// must leave, oldest first. Three writes without a valid token are made
/// too: those are only counted ([`unauthenticated_count`]).
fn audited_writes(m: &Manager) -> Vec<(Option<String>, String, String, u64)> {
    let ci = new_token(m, "ci", "publisher");
    let mut want = vec![expected(Some("admin"), "POST", "/api/v1/tokens", 201)];
    m.request(
        "POST",
        "/api/v1/bins/tool/versions?version=1",
        &[("Authorization", &bearer(&ci))],
        b"one",
    )
    .expect(201);
    want.push(expected(
        Some("ci"),
        "POST",
        "/api/v1/bins/tool/versions",
        201,
    ));
    m.admin_get("/api/v1/releases").expect(200);
    let body = json!({"bin_name": "tool", "version": "1"});
    send(m, "POST", "/api/v1/releases", None, Some(&body)).expect_error(401);
    // Refused without a valid token: counted, not audited one by one.
    send(
        m,
        "POST",
        "/api/v1/releases",
        Some("no-such-token-at-all"),
        Some(&body),
    )
    .expect_error(401);
    // Refused without a valid token: counted, not audited one by one.
    let r = send(
        m,
        "POST",
        "/api/v1/tokens",
        Some(&ci),
        Some(&json!({"name": "mine", "role": "admin"})),
    );
    expect_forbidden(&r, "ci", "publisher");
    want.push(expected(Some("ci"), "POST", "/api/v1/tokens", 403));
    send(m, "GET", "/api/v1/tokens", Some(&ci), None).expect(200);
    let bad = json!({"bin_name": "tool"});
    send(m, "POST", "/api/v1/releases", Some(&ci), Some(&bad)).expect_error(400);
    want.push(expected(Some("ci"), "POST", "/api/v1/releases", 400));
    create_token(m, "ci", "viewer").expect_error(409);
    want.push(expected(Some("admin"), "POST", "/api/v1/tokens", 409));
    let rel: Release = send(m, "POST", "/api/v1/releases", Some(&ci), Some(&body))
        .expect(201)
        .parse();
    want.push(expected(Some("ci"), "POST", "/api/v1/releases", 201));
    let cancel = format!("/api/v1/releases/{}/cancel", rel.id);
    send(m, "POST", &cancel, Some(&ci), None).expect_error(403);
    want.push(expected(Some("ci"), "POST", &cancel, 403));
    let pin = "/api/v1/nodes/n1/pins/tool";
    send(
        m,
        "PUT",
        pin,
        Some(&m.token),
        Some(&json!({"version": "1"})),
    )
    .expect(200);
    want.push(expected(Some("admin"), "PUT", pin, 200));
    send(m, "DELETE", pin, Some(&m.token), None).expect(200);
    want.push(expected(Some("admin"), "DELETE", pin, 200));
    send(m, "DELETE", "/api/v1/tokens/nobody", Some(&m.token), None).expect_error(404);
    want.push(expected(
        Some("admin"),
        "DELETE",
        "/api/v1/tokens/nobody",
        404,
    ));
    send(m, "DELETE", "/api/v1/tokens/ci", Some(&m.token), None).expect(200);
    want.push(expected(Some("admin"), "DELETE", "/api/v1/tokens/ci", 200));
    // The revoked token is no one now.
    send(m, "POST", "/api/v1/releases", Some(&ci), Some(&body)).expect_error(401);
    // Refused without a valid token: counted, not audited one by one.
    m.admin_get("/api/v1/audit").expect(200);
    m.admin_get("/api/v1/nodes").expect(200);
    want
}

#[test]
fn audit_lists_every_admin_write_newest_first_and_no_reads() {
    let mut m = Manager::new();
    let want = audited_writes(&m);
    assert_eq!(unauthenticated_count(&m), 3);
    let records = audit(&m, None);
    let got: Vec<_> = records.iter().map(summary).collect();
    let newest_first: Vec<_> = want.iter().rev().cloned().collect();
    assert_eq!(got, newest_first, "audit:\n{records:#?}");
    let ids: Vec<u64> = records.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids not newest first: {ids:?}"
    );
    let mut times: Vec<&str> = records.iter().map(|a| a["at"].as_str().unwrap()).collect();
    assert!(times.iter().all(|t| is_rfc3339(t)), "{times:?}");
    times.reverse();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for a in &records {
        assert_eq!(a["remote_addr"], "127.0.0.1", "{a}");
        let mut k = keys(a);
        k.retain(|k| {
            ![
                "id",
                "at",
                "actor",
                "method",
                "path",
                "status",
                "remote_addr",
            ]
            .contains(k)
        });
        assert!(k.is_empty(), "unexpected audit fields {k:?} in {a}");
    }

    // limit: the newest N.
    for n in [1, 2, 5] {
        assert_eq!(audit(&m, Some(n)), records[..n].to_vec(), "limit={n}");
    }
    assert_eq!(audit(&m, Some(1000)), records);

    // Every role may read it, and reading adds nothing.
    let viewer = new_token(&m, "auditor", "viewer");
    let all = audit(&m, None);
    let r = send(&m, "GET", "/api/v1/audit?limit=3", Some(&viewer), None);
    r.expect(200);
    assert_eq!(r.json().as_array().unwrap().as_slice(), &all[..3]);
    assert_eq!(audit(&m, None), all);

    // It survives kill -9, and new records come after the old.
    m.kill9();
    m.restart();
    assert_eq!(audit(&m, None), all);
    send(&m, "DELETE", "/api/v1/tokens/auditor", Some(&m.token), None).expect(200);
    let after = audit(&m, Some(1));
    assert_eq!(
        summary(&after[0]),
        expected(Some("admin"), "DELETE", "/api/v1/tokens/auditor", 200)
    );
    assert!(after[0]["id"].as_u64().unwrap() > all[0]["id"].as_u64().unwrap());
}

/// "Every admin write (POST/PUT/DELETE on admin routes), whatever its
/// outcome": a method the route does not take is an outcome too. Sent
/// without a token, the same write is counted instead.
#[test]
fn audit_records_writes_answered_405_on_admin_routes() {
    let m = Manager::new();
    let writes = [
        ("POST", "/api/v1/bins"),
        ("DELETE", "/api/v1/releases"),
        ("PUT", "/api/v1/tokens"),
        ("POST", "/api/v1/audit"),
    ];
    for (method, path) in writes {
        send(&m, method, path, Some(&m.token), None).expect_error(405);
        send(&m, method, path, None, None);
    }
    let records = audit(&m, None);
    let mut missing = Vec::new();
    for (method, path) in writes {
        let found = records
            .iter()
            .map(summary)
            .filter(|(actor, m, p, status)| {
                m == method && p == path && *status == 405 && actor.as_deref() == Some("admin")
            })
            .count();
        if found != 1 {
            missing.push(format!("{method} {path}: {found} of 1 recorded"));
        }
    }
    assert_eq!(records.len(), writes.len(), "{records:?}");
    assert_eq!(unauthenticated_count(&m), writes.len() as u64);
    assert!(
        missing.is_empty(),
        "writes refused with 405 are missing from the audit: {missing:?}\naudit: {records:?}"
    );
}

#[test]
fn audit_keeps_100_by_default_and_at_most_1000_per_request() {
    let m = Manager::new();
    let auth = bearer(&m.token);
    for i in 0..105 {
        m.request(
            "POST",
            &format!("/api/v1/releases/{}/pause", 1000 + i),
            &[("Authorization", &auth)],
            b"",
        )
        .expect_error(404);
    }
    let records = audit(&m, None);
    assert_eq!(records.len(), 100);
    assert_eq!(records[0]["path"], "/api/v1/releases/1104/pause");
    assert_eq!(records[99]["path"], "/api/v1/releases/1005/pause");
    assert_eq!(audit(&m, Some(105)).len(), 105);
    // Above the maximum: refused, or capped at 1000.
    let r = m.admin_get("/api/v1/audit?limit=1001");
    assert!(
        r.status == 400 || (r.status == 200 && r.json().as_array().unwrap().len() <= 1000),
        "{r}"
    );
}

// ---------------------------------------------------------------------------
// secrets

#[test]
fn secrets_never_reach_the_log() {
    let opts = ManagerOptions::default().env("RUST_LOG", "debug");
    let mut m = Manager::new_with(opts);
    let admin = new_token(&m, "log-admin", "admin");
    let publisher = new_token(&m, "log-publisher", "publisher");
    let approver = new_token(&m, "log-approver", "approver");
    let viewer = new_token(&m, "log-viewer", "viewer");
    let stray = unique("stray-secret");
    let secrets = [&m.token, &admin, &publisher, &approver, &viewer, &stray].map(String::clone);
    // Every outcome: allowed, forbidden, revoked, unknown.
    m.request(
        "POST",
        "/api/v1/bins/tool/versions?version=1",
        &[("Authorization", &bearer(&publisher))],
        b"one",
    )
    .expect(201);
    let body = json!({"bin_name": "tool", "version": "1", "require_approval": true});
    let r: Release = send(
        &m,
        "POST",
        "/api/v1/releases",
        Some(&publisher),
        Some(&body),
    )
    .expect(201)
    .parse();
    let approve = format!("/api/v1/releases/{}/approve", r.id);
    send(&m, "POST", &approve, Some(&viewer), None).expect_error(403);
    send(&m, "POST", &approve, Some(&approver), None).expect(200);
    send(&m, "GET", "/api/v1/audit", Some(&viewer), None).expect(200);
    send(
        &m,
        "DELETE",
        "/api/v1/tokens/log-viewer",
        Some(&admin),
        None,
    )
    .expect(200);
    send(&m, "GET", "/api/v1/tokens", Some(&viewer), None).expect_error(401);
    send(&m, "GET", "/api/v1/tokens", Some(&stray), None).expect_error(401);
    m.restart();
    send(&m, "GET", "/api/v1/tokens", Some(&approver), None).expect(200);
    let status = m.sigterm();
    assert!(status.success(), "{status}");
    let log = m.log();
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug was not honoured:\n{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret appears in the log:\n{log}"
        );
    }
}
