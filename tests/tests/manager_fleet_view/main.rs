//! The manager's fleet view, end to end against the real `manager-lite` on
//! loopback with its own redb in a temp dir: `GET /api/v1/fleet` (nodes by
//! state, arch and bin version, for any admin role, following changes
//! within its one-second cache); the node search of `GET /api/v1/nodes`
//! (text, state, arch, label and bin/version filters, sorts, offset pages
//! with `X-Total-Count`, bad values refused, the plain listing unchanged);
//! the `actions` each release state offers, checked against what the
//! operations really do; per-wave counts of a release, computed exactly
//! from the contract's buckets; `GET /api/v1/releases/{id}/failures`; and
//! ETags with bodiless 304s on unchanged answers. Every wait is a bounded
//! poll.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::{self, Failed, RolledBack};
use binproxy_protocol::ReleaseStatus::{Completed, Superseded};
use binproxy_protocol::{Node, Release, WaveCounts};
use binproxy_tests::fleet::{
    admin, approve, bucket, create_release, drive, get_release, in_percent, op, rollout_manager,
    upload_versions, wait_release, Fleet, Mode,
};
use binproxy_tests::roles::{new_token, send};
use binproxy_tests::{is_rfc3339, Manager, ManagerOptions, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a test waits for an answer to change (the fleet is counted
/// at most once a second, nodes go offline after 3 s).
const WAIT: Duration = Duration::from_secs(30);

/// A node of the small fleet: id, name, arch ("" none), `env` label (""
/// none), and what it runs of svc: a version, "" (listed without a file),
/// "?" (a hash no svc upload has: web 1.0.0's) or "-" (svc not listed; it
/// runs web 1.0.0).
type Spec = [&'static str; 5];
/// The names sort the same with and without case.
const NODES: [Spec; 7] = [
    ["app-01", "Web-Alpha", "x86_64", "prod", "1.0.0"],
    ["app-02", "Web-Beta", "x86_64", "staging", "1.0.0"],
    ["app-03", "Cache-Gamma", "aarch64", "prod", "2.0.0"],
    ["db-01", "Db-Primary", "aarch64", "prod", ""],
    ["db-02", "Db-Replica", "x86_64", "staging", "?"],
    ["edge-01", "Edge-WEB", "", "", "-"],
    ["edge-02", "Edge-Cache", "x86_64", "prod", "1.0.0"],
];
const ALL: &str = "app-01 app-02 app-03 db-01 db-02 edge-01 edge-02";
/// [`NODES`] by name.
const BY_NAME: &str = "app-03 db-01 db-02 edge-02 edge-01 app-01 app-02";

/// A manager with svc 1.0.0 to 3.0.0 and web 1.0.0 uploaded and [`NODES`]
/// registered in order.
struct Small {
    m: Manager,
    svc: BTreeMap<String, String>,
    web: String,
}

fn small_fleet(opts: ManagerOptions) -> Small {
    let m = Manager::new_with(opts);
    let svc = upload_versions(&m, "svc", &["1.0.0", "2.0.0", "3.0.0"]);
    let web = upload_versions(&m, "web", &["1.0.0"])["1.0.0"].clone();
    let s = Small { m, svc, web };
    for n in NODES {
        s.send(n);
    }
    s
}

impl Small {
    /// A keepalive of `id` as [`NODES`] describes it.
    fn touch(&self, id: &str) {
        self.send(*NODES.iter().find(|n| n[0] == id).unwrap());
    }

    fn send(&self, [id, name, arch, env, svc]: Spec) {
        let bins = match svc {
            "-" => json!({"web": self.web}),
            "?" => json!({"svc": self.web}),
            "" => json!({"svc": ""}),
            v => json!({"svc": self.svc[v]}),
        };
        let labels = BTreeMap::from_iter(Some(("env", env)).filter(|l| !l.1.is_empty()));
        let body = json!({"node_id": id, "node_name": name, "cpu_arch": arch,
                          "labels": labels, "bins": bins});
        self.m.post_json("/api/v1/keepalive", &body).expect(200);
    }

    #[track_caller]
    fn search(&self, query: &str) -> String {
        search(&self.m, query)
    }
}

/// The JSON of an admin `GET path`; asserts 200.
#[track_caller]
fn get(m: &Manager, path: &str) -> Value {
    m.admin_get(path).expect(200).json()
}

/// `GET /api/v1/nodes?{query}`: the ids of the page and, after a `/`,
/// `X-Total-Count`.
#[track_caller]
fn search(m: &Manager, query: &str) -> String {
    let r = m.admin_get(&format!("/api/v1/nodes?{query}"));
    let total = r.expect(200).header("x-total-count");
    let total = total.unwrap_or_else(|| panic!("{query}: no X-Total-Count: {r}"));
    let ids = ids(&r).join(" ");
    format!("{ids} / {total}").trim_start().to_owned()
}

fn ids(r: &Response) -> Vec<String> {
    let nodes: Vec<Node> = r.parse();
    nodes.into_iter().map(|n| n.node_id).collect()
}

/// Calls `f` until it gives `Ok`, at most [`WAIT`]; fails with `what` and
/// the last `Err` (what was seen).
#[track_caller]
fn poll<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "gave up after {WAIT:?} waiting for {what}; last seen: {seen}"
            ),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `GET /api/v1/fleet` until `pred` holds; returns that answer.
#[track_caller]
fn wait_fleet(m: &Manager, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    poll(what, || {
        let v = get(m, "/api/v1/fleet");
        pred(&v).then(|| v.clone()).ok_or(v.to_string())
    })
}

/// The entry of bin `name` in a fleet answer.
#[track_caller]
fn bin<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    let bins = fleet["bins"].as_array().unwrap();
    let found = bins.iter().find(|b| b["bin_name"] == name);
    found.unwrap_or_else(|| panic!("no bin {name} in {fleet}"))
}

/// The `Authorization` value of a new token of `role`.
fn bearer(m: &Manager, role: &str) -> String {
    let body = json!({"name": format!("fleet-{role}"), "role": role});
    let r = admin(m, "POST", "/api/v1/tokens", Some(&body));
    let created = r.expect(201).json();
    format!("Bearer {}", created["token"].as_str().unwrap())
}

mod etags;
mod fleet;
mod releases;
mod search;
