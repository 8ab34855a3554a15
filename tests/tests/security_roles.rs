//! Named admin tokens with roles, four-eyes approval and the audit log of
//! manager-lite (issue #5 part 1, contract `/tmp/api5a.md`), against the real
//! server binary on 127.0.0.1 over real HTTP.
//!
//! The core is a table: every admin endpoint × every kind of caller (no token,
//! a wrong token, the bootstrap admin, a named admin, a publisher, an approver,
//! a viewer) must answer 2xx, 401 or 403 exactly as the contract's permission
//! table says. Each call gets its own fixture (a fresh bin, a release in the
//! state the operation needs, a fresh pin or token), so a refused call can be
//! checked to have changed nothing and an allowed one can only succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{Release, ReleaseStatus};
use binproxy_tests::minisign::WELL_FORMED;
use binproxy_tests::{
    artifact_bytes, is_rfc3339, sha256_hex, unique, Manager, ManagerOptions, Response, TempDir,
};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------
// helpers

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One request with an optional token and an optional JSON body.
fn send(
    m: &Manager,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let auth = token.map(bearer);
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    m.request(method, path, &headers, &bytes)
}

/// `POST /api/v1/tokens` with the bootstrap token.
fn create_token(m: &Manager, name: &str, role: &str) -> Response {
    let body = json!({"name": name, "role": role});
    send(m, "POST", "/api/v1/tokens", Some(&m.token), Some(&body))
}

/// Creates a named token with the bootstrap token; returns its secret.
fn new_token(m: &Manager, name: &str, role: &str) -> String {
    let r = create_token(m, name, role);
    r.expect(201);
    r.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"token\" string: {r}"))
        .to_owned()
}

/// `GET /api/v1/tokens` as the bootstrap admin.
fn token_list(m: &Manager) -> Vec<Value> {
    let r = m.admin_get("/api/v1/tokens");
    r.expect(200);
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {r}"))
        .clone()
}

fn token_names(m: &Manager) -> BTreeSet<String> {
    token_list(m)
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /api/v1/audit[?limit=N]` as the bootstrap admin.
fn audit(m: &Manager, limit: Option<usize>) -> Vec<Value> {
    let path = match limit {
        Some(n) => format!("/api/v1/audit?limit={n}"),
        None => "/api/v1/audit".to_owned(),
    };
    let r = m.admin_get(&path);
    r.expect(200);
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {r}"))
        .clone()
}

fn release_of(m: &Manager, id: u64) -> Release {
    m.admin_get(&format!("/api/v1/releases/{id}"))
        .expect(200)
        .parse()
}

fn releases_of(m: &Manager, bin: &str) -> Vec<Release> {
    m.admin_get(&format!("/api/v1/releases?bin_name={bin}"))
        .expect(200)
        .parse()
}

/// Asserts a 403 whose error names the token and its role, as the contract's
/// `"... needs role X; token T is viewer"`.
#[track_caller]
fn expect_forbidden(r: &Response, name: &str, role: &str) {
    r.expect_error(403);
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("needs role") && error.contains(&format!("token {name} is {role}")),
        "403 should say what role is needed and that token {name} is {role}: {r}"
    );
}

// ---------------------------------------------------------------------------
// the permission table

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    NoToken,
    WrongToken,
    /// The bootstrap token (named "admin", from the environment).
    Bootstrap,
    /// A token created through the API with role admin.
    NamedAdmin,
    Publisher,
    Approver,
    Viewer,
}

impl Caller {
    const ALL: [Caller; 7] = [
        Caller::NoToken,
        Caller::WrongToken,
        Caller::Bootstrap,
        Caller::NamedAdmin,
        Caller::Publisher,
        Caller::Approver,
        Caller::Viewer,
    ];

    /// The role of the caller's token; `None` when it has no valid token.
    fn role(self) -> Option<&'static str> {
        match self {
            Caller::NoToken | Caller::WrongToken => None,
            Caller::Bootstrap | Caller::NamedAdmin => Some("admin"),
            Caller::Publisher => Some("publisher"),
            Caller::Approver => Some("approver"),
            Caller::Viewer => Some("viewer"),
        }
    }
}

/// The roles of the table besides admin, which may do everything.
const READERS: &[&str] = &["viewer", "publisher", "approver"];
const PUBLISHER: &[&str] = &["publisher"];
const PAUSERS: &[&str] = &["publisher", "approver"];
const APPROVER: &[&str] = &["approver"];
const ADMIN_ONLY: &[&str] = &[];

/// What must still hold after a refused call (checked as the bootstrap admin).
enum Unchanged {
    /// A read: nothing to check.
    Nothing,
    ReleaseStatus(u64, ReleaseStatus),
    /// The bin still has this many releases.
    ReleaseCount(String, usize),
    /// This version of the bin was not stored.
    NoVersion(String, String),
    /// This version of the bin is still stored.
    HasVersion(String, String),
    /// No token of this name was created.
    NoToken(String),
    /// The token with this secret still works.
    TokenWorks(String),
    /// The node has no pin for the bin (the bootstrap DELETE answers 404).
    NoPin(String, String),
    /// The node's pin for the bin is still there (the bootstrap DELETE answers 200).
    Pinned(String, String),
    /// This version of the bin (no arch) still has no signature.
    NoSignature(String, String),
    /// The node with this secret is still enrolled (its keepalive answers 200).
    Enrolled(String, String),
}

/// One call, ready to send.
struct Call {
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    unchanged: Unchanged,
}

impl Call {
    fn read(path: String) -> Call {
        Call {
            path,
            content_type: "",
            body: Vec::new(),
            unchanged: Unchanged::Nothing,
        }
    }

    fn json(path: String, body: &Value, unchanged: Unchanged) -> Call {
        Call {
            path,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap(),
            unchanged,
        }
    }

    /// A POST without a body (a release operation).
    fn op(path: String, unchanged: Unchanged) -> Call {
        Call {
            path,
            content_type: "",
            body: Vec::new(),
            unchanged,
        }
    }
}

/// An admin endpoint: how to call it legitimately, and who may.
struct Endpoint {
    method: &'static str,
    route: &'static str,
    /// Roles besides admin that may call it.
    allowed: &'static [&'static str],
    prepare: fn(&Fixtures) -> Call,
}

/// Builds what the calls need, with a named admin token of its own (so that
/// the bootstrap and the other named admin are never a release's creator,
/// and four eyes never gets in the way of the table).
struct Fixtures<'a> {
    m: &'a Manager,
    setup: String,
    next: Cell<u32>,
    /// A registered node, for `GET /api/v1/nodes/{id}`.
    node: String,
    /// The manager's enrollment token (node authentication is on).
    enroll: String,
}

/// A keepalive body for `node_id`.
fn keepalive_body(node_id: &str) -> Value {
    json!({"node_id": node_id, "cpu_arch": "x86_64", "os": "linux", "os_release": "t",
           "node_name": node_id, "bin_proxy_version": "0.1.0", "bins": {}})
}

/// `POST /api/v1/keepalive` for `node_id` with `token` (an enrollment token
/// or a node secret).
fn node_keepalive(m: &Manager, node_id: &str, token: &str) -> Response {
    send(
        m,
        "POST",
        "/api/v1/keepalive",
        Some(token),
        Some(&keepalive_body(node_id)),
    )
}

/// Waves that keep a release with no nodes in its first wave for an hour.
fn slow_waves() -> Value {
    json!([{"percent": 10, "wait": "1h"}, {"percent": 100}])
}

impl Fixtures<'_> {
    fn n(&self) -> u32 {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        send(self.m, "POST", path, Some(&self.setup), Some(body))
    }

    /// A POST without a body.
    fn op(&self, path: &str) -> Response {
        send(self.m, "POST", path, Some(&self.setup), None)
    }

    /// A fresh bin with versions "1" and "2" uploaded.
    fn bin(&self) -> String {
        let bin = format!("b{}", self.n());
        for v in ["1", "2"] {
            let bytes = artifact_bytes(&format!("{bin}-{v}"), 64);
            let auth = bearer(&self.setup);
            self.m
                .request(
                    "POST",
                    &format!("/api/v1/bins/{bin}/versions?version={v}"),
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/octet-stream"),
                    ],
                    &bytes,
                )
                .expect(201);
        }
        bin
    }

    fn release(&self, body: &Value, status: ReleaseStatus) -> Release {
        let r: Release = self.post("/api/v1/releases", body).expect(201).parse();
        assert_eq!(r.status, status, "{r:?}");
        r
    }

    /// Version "2" of a fresh bin, rolling out (first wave, for an hour).
    fn rolling(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
            ReleaseStatus::RollingOut,
        )
    }

    /// Version "2" of a fresh bin, awaiting approval.
    fn pending(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves(), "require_approval": true}),
            ReleaseStatus::PendingApproval,
        )
    }

    fn paused(&self) -> Release {
        let r = self.rolling();
        let r: Release = self
            .op(&format!("/api/v1/releases/{}/pause", r.id))
            .expect(200)
            .parse();
        assert_eq!(r.status, ReleaseStatus::Paused, "{r:?}");
        r
    }

    /// Version "2" rolling out over version "1", its baseline.
    fn rollbackable(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "1"}),
            ReleaseStatus::RollingOut,
        );
        let r = self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
            ReleaseStatus::RollingOut,
        );
        assert_eq!(r.baseline_version.as_deref(), Some("1"), "{r:?}");
        r
    }

    /// A fresh node id and bin with version "1" (for pins).
    fn pin_target(&self) -> (String, String) {
        (format!("pn-{}", self.n()), self.bin())
    }

    /// A freshly enrolled node: its id and its secret.
    fn enrolled(&self) -> (String, String) {
        let node = format!("en-{}", self.n());
        let r = node_keepalive(self.m, &node, &self.enroll);
        r.expect(200);
        let secret = r.json()["node_secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"node_secret\" string: {r}"))
            .to_owned();
        (node, secret)
    }
}

fn release_op(op: &str, r: &Release) -> Call {
    Call::op(
        format!("/api/v1/releases/{}/{op}", r.id),
        Unchanged::ReleaseStatus(r.id, r.status),
    )
}

const fn ep(
    method: &'static str,
    route: &'static str,
    allowed: &'static [&'static str],
    prepare: fn(&Fixtures) -> Call,
) -> Endpoint {
    Endpoint {
        method,
        route,
        allowed,
        prepare,
    }
}

/// The contract's permission table, one row per admin endpoint.
fn endpoints() -> Vec<Endpoint> {
    let mut all = reads();
    all.extend(writes());
    all.extend(admin_writes());
    all
}

/// Every role may read.
fn reads() -> Vec<Endpoint> {
    vec![
        ep("GET", "/api/v1/bins", READERS, |_| {
            Call::read("/api/v1/bins".into())
        }),
        ep("GET", "/api/v1/bins/{bin}/versions", READERS, |f| {
            Call::read(format!("/api/v1/bins/{}/versions", f.bin()))
        }),
        ep("GET", "/api/v1/bins/{bin}/progress", READERS, |f| {
            Call::read(format!("/api/v1/bins/{}/progress", f.bin()))
        }),
        ep("GET", "/api/v1/releases", READERS, |_| {
            Call::read("/api/v1/releases".into())
        }),
        ep("GET", "/api/v1/releases/{id}", READERS, |f| {
            Call::read(format!("/api/v1/releases/{}", f.rolling().id))
        }),
        ep("GET", "/api/v1/nodes", READERS, |_| {
            Call::read("/api/v1/nodes".into())
        }),
        ep("GET", "/api/v1/nodes/{id}", READERS, |f| {
            Call::read(format!("/api/v1/nodes/{}", f.node))
        }),
        ep("GET", "/api/v1/audit", READERS, |_| {
            Call::read("/api/v1/audit".into())
        }),
        ep("GET", "/api/v1/tokens", READERS, |_| {
            Call::read("/api/v1/tokens".into())
        }),
        // Prometheus scrapes with a viewer token unless --metrics-public.
        ep("GET", "/metrics", READERS, |_| {
            Call::read("/metrics".into())
        }),
    ]
}

fn writes() -> Vec<Endpoint> {
    vec![
        ep("POST", "/api/v1/bins/{bin}/versions", PUBLISHER, |f| {
            let bin = f.bin();
            Call {
                path: format!("/api/v1/bins/{bin}/versions?version=3"),
                content_type: "application/octet-stream",
                body: artifact_bytes(&format!("{bin}-3"), 64),
                unchanged: Unchanged::NoVersion(bin, "3".into()),
            }
        }),
        ep("POST", "/api/v1/releases", PUBLISHER, |f| {
            let bin = f.bin();
            Call::json(
                "/api/v1/releases".into(),
                &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
                Unchanged::ReleaseCount(bin, 0),
            )
        }),
        ep("POST", "/api/v1/releases/{id}/pause", PAUSERS, |f| {
            release_op("pause", &f.rolling())
        }),
        ep("POST", "/api/v1/releases/{id}/approve", APPROVER, |f| {
            release_op("approve", &f.pending())
        }),
        ep("POST", "/api/v1/releases/{id}/resume", APPROVER, |f| {
            release_op("resume", &f.paused())
        }),
        ep("POST", "/api/v1/releases/{id}/promote", APPROVER, |f| {
            release_op("promote", &f.rolling())
        }),
        ep("POST", "/api/v1/releases/{id}/rollback", APPROVER, |f| {
            release_op("rollback", &f.rollbackable())
        }),
        ep("POST", "/api/v1/releases/{id}/cancel", ADMIN_ONLY, |f| {
            release_op("cancel", &f.rolling())
        }),
        // A read, but of every token's and node secret's hash.
        ep("GET", "/api/v1/backup", ADMIN_ONLY, |_| {
            Call::read("/api/v1/backup".into())
        }),
        ep("PUT", "/api/v1/nodes/{node}/pins/{bin}", ADMIN_ONLY, |f| {
            let (node, bin) = f.pin_target();
            Call::json(
                format!("/api/v1/nodes/{node}/pins/{bin}"),
                &json!({"version": "1"}),
                Unchanged::NoPin(node, bin),
            )
        }),
        ep(
            "DELETE",
            "/api/v1/nodes/{node}/pins/{bin}",
            ADMIN_ONLY,
            |f| {
                let (node, bin) = f.pin_target();
                let path = format!("/api/v1/nodes/{node}/pins/{bin}");
                send(
                    f.m,
                    "PUT",
                    &path,
                    Some(&f.setup),
                    Some(&json!({"version": "1"})),
                )
                .expect(200);
                Call::op(path, Unchanged::Pinned(node, bin))
            },
        ),
        ep(
            "PUT",
            "/api/v1/bins/{bin}/versions/{version}/signature",
            PUBLISHER,
            |f| {
                let bin = f.bin();
                Call {
                    path: format!("/api/v1/bins/{bin}/versions/1/signature"),
                    content_type: "text/plain",
                    body: WELL_FORMED.as_bytes().to_vec(),
                    unchanged: Unchanged::NoSignature(bin, "1".into()),
                }
            },
        ),
    ]
}

/// Node secrets and tokens: admin only.
fn admin_writes() -> Vec<Endpoint> {
    vec![
        ep(
            "DELETE",
            "/api/v1/nodes/{node_id}/secret",
            ADMIN_ONLY,
            |f| {
                let (node, secret) = f.enrolled();
                Call::op(
                    format!("/api/v1/nodes/{node}/secret"),
                    Unchanged::Enrolled(node, secret),
                )
            },
        ),
        ep(
            "DELETE",
            "/api/v1/bins/{bin}/versions/{version}",
            ADMIN_ONLY,
            |f| {
                let bin = f.bin();
                Call::op(
                    format!("/api/v1/bins/{bin}/versions/1"),
                    Unchanged::HasVersion(bin, "1".into()),
                )
            },
        ),
        ep("DELETE", "/api/v1/nodes/{node_id}", ADMIN_ONLY, |f| {
            let (node, secret) = f.enrolled();
            Call::op(
                format!("/api/v1/nodes/{node}"),
                Unchanged::Enrolled(node, secret),
            )
        }),
        ep("POST", "/api/v1/tokens", ADMIN_ONLY, |f| {
            let name = format!("new-{}", f.n());
            Call::json(
                "/api/v1/tokens".into(),
                &json!({"name": name, "role": "viewer"}),
                Unchanged::NoToken(name),
            )
        }),
        ep("DELETE", "/api/v1/tokens/{name}", ADMIN_ONLY, |f| {
            let name = format!("doomed-{}", f.n());
            let secret = new_token(f.m, &name, "viewer");
            Call::op(
                format!("/api/v1/tokens/{name}"),
                Unchanged::TokenWorks(secret),
            )
        }),
    ]
}

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

// ---------------------------------------------------------------------------
// tokens

/// The keys of a listed token: never the secret or its hash.
const LISTED_KEYS: [&str; 4] = ["created_at", "created_by", "name", "role"];

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

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

// ---------------------------------------------------------------------------
// four eyes

fn pending_release(m: &Manager, token: &str, bin: &str) -> Release {
    let auth = bearer(token);
    m.request(
        "POST",
        &format!("/api/v1/bins/{bin}/versions?version=1"),
        &[("Authorization", &auth)],
        &artifact_bytes(bin, 32),
    )
    .expect(201);
    let body = json!({"bin_name": bin, "version": "1", "require_approval": true});
    let r: Release = send(m, "POST", "/api/v1/releases", Some(token), Some(&body))
        .expect(201)
        .parse();
    assert_eq!(r.status, ReleaseStatus::PendingApproval, "{r:?}");
    r
}

#[test]
fn four_eyes_the_creator_of_a_release_may_not_approve_it() {
    let m = Manager::new();
    let lead = new_token(&m, "lead", "admin");
    let checker = new_token(&m, "checker", "approver");
    let r = pending_release(&m, &lead, "tool");
    assert_eq!(r.created_by, "lead");
    assert_eq!(r.history.first().map(|e| e.actor.as_str()), Some("lead"));

    let approve = format!("/api/v1/releases/{}/approve", r.id);
    let answer = send(&m, "POST", &approve, Some(&lead), None);
    answer.expect_error(403);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("four eyes") && error.contains("lead"),
        "the 403 should name four eyes and the creator: {answer}"
    );
    assert_eq!(release_of(&m, r.id).status, ReleaseStatus::PendingApproval);

    let approved: Release = send(&m, "POST", &approve, Some(&checker), None)
        .expect(200)
        .parse();
    assert_eq!(approved.status, ReleaseStatus::RollingOut);
    let last = approved.history.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("checker", "approved"),
        "{approved:?}"
    );
}

#[test]
fn four_eyes_holds_for_the_bootstrap_admin_and_publishers() {
    let m = Manager::new();
    // The bootstrap admin creates: it may not approve, a named admin may.
    let r = pending_release(&m, &m.token, "one");
    assert_eq!(r.created_by, "admin");
    let approve = format!("/api/v1/releases/{}/approve", r.id);
    let answer = send(&m, "POST", &approve, Some(&m.token), None);
    answer.expect_error(403);
    assert!(answer.text().contains("four eyes"), "{answer}");
    let other = new_token(&m, "other-admin", "admin");
    send(&m, "POST", &approve, Some(&other), None).expect(200);

    // A publisher creates: it may not approve (its role), an approver may.
    let publisher = new_token(&m, "ci", "publisher");
    let approver = new_token(&m, "qa", "approver");
    let r = pending_release(&m, &publisher, "two");
    assert_eq!(r.created_by, "ci");
    let approve = format!("/api/v1/releases/{}/approve", r.id);
    expect_forbidden(
        &send(&m, "POST", &approve, Some(&publisher), None),
        "ci",
        "publisher",
    );
    let done: Release = send(&m, "POST", &approve, Some(&approver), None)
        .expect(200)
        .parse();
    assert_eq!(done.status, ReleaseStatus::RollingOut);
    assert!(
        done.history
            .iter()
            .any(|e| e.actor == "qa" && e.action == "approved"),
        "{done:?}"
    );
    // Other operations by the approver carry its name too.
    let paused: Release = send(
        &m,
        "POST",
        &format!("/api/v1/releases/{}/pause", r.id),
        Some(&approver),
        None,
    )
    .expect(200)
    .parse();
    assert_eq!(paused.history.last().unwrap().actor, "qa");
}

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

// ---------------------------------------------------------------------------
// the command line

#[test]
fn cli_creates_lists_revokes_tokens_and_shows_the_audit() {
    let m = Manager::new();
    let tmp = TempDir::new("cli-tokens");
    let admin_file = tmp.join("admin");
    std::fs::write(&admin_file, format!("{}\n", m.token)).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out = m.cli(&admin_file, &["token", "create", "ci", "publisher"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let secret = text(&out.stdout).trim_end().to_owned();
    assert_eq!(
        text(&out.stdout),
        format!("{secret}\n"),
        "only the secret on stdout"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not be shown again"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect(200);

    let out = m.cli(
        &admin_file,
        &["token", "create", "qa", "approver", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&created["name"], &created["role"]),
        (&json!("qa"), &json!("approver"))
    );
    assert!(created["token"].as_str().is_some_and(|t| !t.is_empty()));

    let out = m.cli(&admin_file, &["token", "create", "x", "root"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("\"root\""), "{out:?}");
    let out = m.cli(&admin_file, &["token", "create", "ci", "viewer"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("409"), "{out:?}");

    let out = m.cli(&admin_file, &["token", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let list = text(&out.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "ROLE", "CREATED", "BY"], "{list}");
    assert!(
        rows.iter()
            .any(|r| r[..2] == ["ci", "publisher"] && r[3] == "admin"),
        "{list}"
    );
    assert!(rows.iter().any(|r| r[..2] == ["admin", "admin"]), "{list}");
    assert!(!list.contains(&secret), "{list}");

    // A publisher's token file: refused with 403, exit 1.
    let ci_file = tmp.join("ci");
    std::fs::write(&ci_file, &secret).unwrap();
    let out = m.cli(&ci_file, &["token", "revoke", "qa"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("403"), "{out:?}");

    let out = m.cli(&admin_file, &["token", "revoke", "ci"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("revoked token ci"), "{out:?}");
    let out = m.cli(&ci_file, &["token", "list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("401"), "{out:?}");

    let out = m.cli(&admin_file, &["audit", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"],
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    // Newest first: the refused `token list` was a read; the last write was
    // the revocation, and before it the refused revocation by ci.
    assert_eq!(
        rows[1][2..],
        ["admin", "DELETE", "/api/v1/tokens/ci", "200", "127.0.0.1"],
        "{table}"
    );
    assert_eq!(
        rows[2][2..],
        ["ci", "DELETE", "/api/v1/tokens/qa", "403", "127.0.0.1"],
        "{table}"
    );
    let out = m.cli(&admin_file, &["audit", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two creations, the duplicate, the refused and the done revocation;
    // the bad role never left the client.
    assert_eq!(records.as_array().unwrap().len(), 5, "{records:#}");
}
