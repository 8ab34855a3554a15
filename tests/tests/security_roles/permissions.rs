//! The table checked: every admin endpoint answers each kind of caller 2xx,
//! 401 or 403 as the table says, and a refused call changes nothing; the
//! node-facing endpoints need no token and ignore a wrong one.

use crate::fixtures::{node_keepalive, Call, Caller, Endpoint, Fixtures, Unchanged};
use crate::table::endpoints;
use binproxy_tests::roles::{audit, bearer, new_token, release_of, releases_of, send, token_names};
use binproxy_tests::{
    artifact_bytes, sha256_hex, unique, Manager, ManagerOptions, Response, TempDir,
};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeSet;

/// Why `unchanged` no longer holds, if it does not.
fn changed(m: &Manager, unchanged: &Unchanged) -> Option<String> {
    let unpin = |node: &str, bin: &str| {
        send(
            m,
            "DELETE",
            &format!("/api/v1/nodes/{node}/pins/{bin}"),
            Some(&m.token),
            None,
        )
        .status
    };
    match unchanged {
        Unchanged::Nothing => None,
        Unchanged::ReleaseStatus(id, status) => {
            let now = release_of(m, *id).status;
            (now != *status).then(|| format!("release {id} went from {status:?} to {now:?}"))
        }
        Unchanged::ReleaseCount(bin, n) => {
            let now = releases_of(m, bin).len();
            (now != *n).then(|| format!("{bin} has {now} releases, not {n}"))
        }
        Unchanged::NoVersion(bin, version) => {
            let r = m.admin_get(&format!("/api/v1/bins/{bin}/versions"));
            let stored = r.text().contains(&format!("\"version\":\"{version}\""));
            stored.then(|| format!("{bin} {version} was stored: {r}"))
        }
        Unchanged::HasVersion(bin, version) => {
            let r = m.admin_get(&format!("/api/v1/bins/{bin}/versions"));
            let stored = r.text().contains(&format!("\"version\":\"{version}\""));
            (!stored).then(|| format!("{bin} {version} was deleted: {r}"))
        }
        Unchanged::NoToken(name) => token_names(m)
            .contains(name)
            .then(|| format!("token {name} was created")),
        Unchanged::TokenWorks(secret) => {
            let r = send(m, "GET", "/api/v1/releases", Some(secret), None);
            (r.status != 200).then(|| format!("the token was revoked: {r}"))
        }
        Unchanged::NoPin(node, bin) => {
            let status = unpin(node, bin);
            (status != 404).then(|| format!("{node} got a pin for {bin} (unpin: {status})"))
        }
        Unchanged::Pinned(node, bin) => {
            let status = unpin(node, bin);
            (status != 200).then(|| format!("{node} lost its pin for {bin} (unpin: {status})"))
        }
        Unchanged::NoSignature(bin, version) => {
            let r = m.admin_get(&format!("/api/v1/bins/{bin}/versions"));
            r.expect(200);
            let listed = r.json();
            let v = listed
                .as_array()
                .unwrap_or_else(|| panic!("not an array: {r}"))
                .iter()
                .find(|v| v["version"] == version.as_str() && v["arch"].is_null())
                .unwrap_or_else(|| panic!("no {bin} {version}: {r}"))
                .clone();
            (!v["signature"].is_null()).then(|| format!("{bin} {version} got a signature: {v}"))
        }
        Unchanged::Enrolled(node, secret) => {
            let r = node_keepalive(m, node, secret);
            (r.status != 200).then(|| format!("{node} is no longer enrolled: {r}"))
        }
    }
}

/// Sends `call` as `caller`; returns a description of what was wrong, if anything.
fn check_call(
    m: &Manager,
    e: &Endpoint,
    caller: Caller,
    secret: Option<&str>,
    name: &str,
    call: &Call,
) -> Option<String> {
    let auth = secret.map(bearer);
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if !call.content_type.is_empty() {
        headers.push(("Content-Type", call.content_type));
    }
    let r = m.request(e.method, &call.path, &headers, &call.body);
    let what = format!("{} {} as {caller:?}", e.method, call.path);
    let error = r
        .json_opt()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    let expected = match caller.role() {
        None => "401",
        Some(role) if role == "admin" || e.allowed.contains(&role) => "2xx",
        Some(_) => "403",
    };
    let wrong = match expected {
        // A fresh fixture per call makes success possible for every allowed
        // call: no "2xx or 409" leniency is needed anywhere in this table.
        "2xx" => !(200..300).contains(&r.status),
        "401" => r.status != 401 || error.is_none(),
        _ => {
            let role = caller.role().unwrap_or_default();
            r.status != 403
                || !error.as_deref().is_some_and(|t| {
                    t.contains("needs role") && t.contains(&format!("token {name} is {role}"))
                })
        }
    };
    if wrong {
        return Some(format!("{what}: expected {expected}, got {r}"));
    }
    if expected != "2xx" {
        if let Some(why) = changed(m, &call.unchanged) {
            return Some(format!("{what} was refused ({}) but {why}", r.status));
        }
    }
    None
}

trait JsonOpt {
    fn json_opt(&self) -> Option<Value>;
}

impl JsonOpt for Response {
    fn json_opt(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[test]
fn every_admin_endpoint_answers_each_role_as_the_permission_table_says() {
    // Node authentication on, for `DELETE /api/v1/nodes/{node_id}/secret`.
    let dir = TempDir::new("enroll");
    let enroll = unique("enroll-token-0123456789");
    let enroll_file = dir.join("enroll.token");
    std::fs::write(&enroll_file, format!("{enroll}\n")).unwrap();
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--node-enroll-token-file")
            .arg(enroll_file.to_str().unwrap()),
    );
    let setup = new_token(&m, "setup", "admin");
    let secrets: Vec<(Caller, String, Option<String>)> = Caller::ALL
        .iter()
        .map(|&c| {
            let (name, secret) = match c {
                Caller::NoToken => (String::new(), None),
                Caller::WrongToken => (String::new(), Some(unique("not-a-token-at-all"))),
                Caller::Bootstrap => ("admin".to_owned(), Some(m.token.clone())),
                other => {
                    let role = other.role().unwrap();
                    let name = format!("the-{role}");
                    let secret = new_token(&m, &name, role);
                    (name, Some(secret))
                }
            };
            (c, name, secret)
        })
        .collect();
    node_keepalive(&m, "node-1", &enroll).expect(200);
    let fixtures = Fixtures {
        m: &m,
        setup,
        next: Cell::new(0),
        node: "node-1".into(),
        enroll,
    };
    let endpoints = endpoints();
    let mut failures = Vec::new();
    let mut calls = 0;
    for e in &endpoints {
        for (caller, name, secret) in &secrets {
            let call = (e.prepare)(&fixtures);
            calls += 1;
            if let Some(why) = check_call(&m, e, *caller, secret.as_deref(), name, &call) {
                failures.push(why);
            }
        }
    }
    assert_eq!(calls, 27 * 7);
    assert!(
        failures.is_empty(),
        "{} of {calls} calls broke the permission table:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Every route of the contract's table was covered.
    let routes: BTreeSet<(&str, &str)> = endpoints.iter().map(|e| (e.method, e.route)).collect();
    assert_eq!(routes.len(), endpoints.len());
}

#[test]
fn node_facing_endpoints_need_no_token_and_ignore_a_wrong_one() {
    let m = Manager::new();
    let bytes = artifact_bytes("open", 64);
    let sha = sha256_hex(&bytes);
    m.upload("tool", "1.0", None, &bytes).expect(201);
    m.release("tool", "1.0").expect(201);
    let viewer = new_token(&m, "watcher", "viewer");
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/health".into(), None),
        (
            "POST",
            "/api/v1/keepalive".into(),
            Some(json!({"node_id": "n1", "cpu_arch": "x86_64", "os": "linux",
                        "os_release": "t", "node_name": "n1", "bin_proxy_version": "0.1.0",
                        "bins": {"tool": ""}})),
        ),
        ("GET", "/api/v1/keepalive?node_id=n1".into(), None),
        ("GET", "/api/v1/bins/tool?node_id=n1".into(), None),
        // No release of this bin: 404, still not a question of tokens.
        ("GET", "/api/v1/bins/other?node_id=n1".into(), None),
        (
            "POST",
            "/api/v1/bins/tool".into(),
            Some(json!({"node_id": "n1", "sha256sum": sha})),
        ),
        (
            "POST",
            "/api/v1/bins/tool/progress".into(),
            Some(
                json!({"node_id": "n1", "targetHash": sha, "status": "success",
                        "processingTime": 7}),
            ),
        ),
        ("GET", format!("/api/v1/download/{sha}"), None),
        ("GET", "/api/v1/download/tool".into(), None),
        ("HEAD", "/api/v1/download/tool".into(), None),
    ];
    let wrong = unique("wrong-token");
    for token in [None, Some(wrong.as_str()), Some(viewer.as_str())] {
        for (method, path, body) in &calls {
            let r = send(&m, method, path, token, body.as_ref());
            assert!(
                (200..300).contains(&r.status) || r.status == 404,
                "{method} {path} with token {}: {r}",
                token.map_or("none", |t| if t == wrong { "wrong" } else { "viewer" })
            );
        }
    }
    // Node traffic is not audited.
    let records = audit(&m, None);
    assert!(
        records.iter().all(|a| !a["path"]
            .as_str()
            .unwrap_or("")
            .starts_with("/api/v1/keepalive")
            && a["path"] != "/api/v1/bins/tool"
            && a["path"] != "/api/v1/bins/tool/progress"),
        "{records:?}"
    );
}
