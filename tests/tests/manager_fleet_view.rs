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

// ---------------------------------------------------------------------------
// GET /api/v1/fleet

#[test]
fn fleet_counts_nodes_by_state_arch_and_version_for_any_role() {
    let s = small_fleet(ManagerOptions::default());
    s.m.get("/api/v1/fleet").expect_error(401);
    let bad = [("Authorization", "Bearer not-a-token")];
    s.m.get_with("/api/v1/fleet", &bad).expect_error(401);

    let v = wait_fleet(&s.m, "7 nodes", |v| v["nodes"] == 7);
    assert_eq!([&v["online"], &v["offline"]], [7, 0]);
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 2, "x86_64": 4}));
    assert_eq!(v["bins"].as_array().unwrap().len(), 2, "{v}");
    // 3.0.0 is uploaded but run by none: not listed.
    let svc = json!({"bin_name": "svc", "nodes": 6, "missing": 1, "unknown": 1,
        "versions": [{"version": "1.0.0", "nodes": 3}, {"version": "2.0.0", "nodes": 1}]});
    assert_eq!(*bin(&v, "svc"), svc);
    let web = json!({"bin_name": "web", "nodes": 1, "missing": 0, "unknown": 0,
        "versions": [{"version": "1.0.0", "nodes": 1}]});
    assert_eq!(*bin(&v, "web"), web);
    for role in ["admin", "publisher", "approver", "viewer"] {
        let auth = bearer(&s.m, role);
        let r = s.m.get_with("/api/v1/fleet", &[("Authorization", &auth)]);
        assert_eq!(r.expect(200).json(), v, "as a {role}");
    }

    // A node moves to 2.0.0 and a new one comes on it: 2.0.0 now leads.
    s.send(["app-02", "Web-Beta", "x86_64", "staging", "2.0.0"]);
    s.send(["new-01", "New", "aarch64", "prod", "2.0.0"]);
    let v = wait_fleet(&s.m, "8 nodes, 3 on 2.0.0", |v| {
        v["nodes"] == 8 && bin(v, "svc")["versions"][0]["nodes"] == 3
    });
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 3, "x86_64": 4}));
    let svc = json!({"bin_name": "svc", "nodes": 7, "missing": 1, "unknown": 1,
        "versions": [{"version": "2.0.0", "nodes": 3}, {"version": "1.0.0", "nodes": 2}]});
    assert_eq!(*bin(&v, "svc"), svc, "most nodes first");
}

#[test]
fn offline_nodes_are_counted_and_found_by_state() {
    let s = small_fleet(ManagerOptions::default().arg("--offline-after").arg("3s"));
    wait_fleet(&s.m, "every node offline", |v| v["offline"] == 7);
    let live = ["app-03", "db-02"];
    let back = || live.iter().for_each(|id| s.touch(id));
    let v = wait_fleet(&s.m, "two nodes online again", |v| {
        back();
        v["online"] == 2 && v["offline"] == 5
    });
    assert_eq!(v["nodes"], 7);
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 2, "x86_64": 4}));

    back();
    let r = s.m.admin_get("/api/v1/nodes?state=online");
    let online: Vec<Node> = r.expect(200).parse();
    assert!(online.iter().all(|n| n.online), "{r}");
    assert_eq!(ids(&r), live);
    assert_eq!(r.header("x-total-count"), Some("2"));
    let offline = "app-01 app-02 db-01 edge-01 edge-02 / 5";
    assert_eq!(s.search("state=offline"), offline);
    assert_eq!(s.search("state=offline&arch=aarch64"), "db-01 / 1");
    back();
    assert_eq!(s.search("state=online&arch=aarch64"), "app-03 / 1");
}

// ---------------------------------------------------------------------------
// GET /api/v1/nodes: the search

#[test]
fn search_filters_by_text_arch_label_and_bin_version() {
    let s = small_fleet(ManagerOptions::default());
    for (query, want) in [
        ("offset=0", ALL),
        ("q=web", "app-01 app-02 edge-01"),
        ("q=WeB", "app-01 app-02 edge-01"),
        ("q=app-0", "app-01 app-02 app-03"),
        ("q=db-r", "db-02"),
        ("q=nothing-like-it", ""),
        ("arch=aarch64", "app-03 db-01"),
        ("label=env=prod", "app-01 app-03 db-01 edge-02"),
        ("label=env%3Dstaging", "app-02 db-02"),
        ("label=env=Prod", ""),
        ("bin=svc", "app-01 app-02 app-03 db-01 db-02 edge-02"),
        ("bin=web", "edge-01"),
        ("bin=svc&version=1.0.0", "app-01 app-02 edge-02"),
        ("bin=svc&version=2.0.0", "app-03"),
        ("bin=svc&version=3.0.0", ""),
        ("bin=svc&version=*missing", "db-01"),
        ("bin=svc&version=*unknown", "db-02"),
        ("bin=web&version=1.0.0", "edge-01"),
        ("bin=nothing", ""),
        (
            "q=e&arch=x86_64&label=env=prod&bin=svc&version=1.0.0",
            "app-01 edge-02",
        ),
    ] {
        let n = want.split_whitespace().count();
        let want = format!("{want} / {n}");
        assert_eq!(s.search(query), want.trim_start(), "{query}");
    }
    // The answer is whole node records.
    let r = s.m.admin_get("/api/v1/nodes?label=env=staging&arch=x86_64");
    let nodes: Vec<Node> = r.expect(200).parse();
    let got: Vec<[&str; 2]> = nodes
        .iter()
        .map(|n| [&*n.node_name, &*n.labels["env"]])
        .collect();
    assert_eq!(got, [["Web-Beta", "staging"], ["Db-Replica", "staging"]]);
    assert_eq!(nodes[0].bins["svc"], s.svc["1.0.0"]);
}

fn reversed(ids: &str) -> String {
    ids.rsplit(' ').collect::<Vec<_>>().join(" ")
}

#[test]
fn search_sorts_and_pages_with_offset() {
    let s = small_fleet(ManagerOptions::default());
    assert_eq!(s.search("sort=id"), format!("{ALL} / 7"));
    assert_eq!(s.search("sort=-id"), format!("{} / 7", reversed(ALL)));
    assert_eq!(s.search("sort=name"), format!("{BY_NAME} / 7"));
    assert_eq!(s.search("sort=-name"), format!("{} / 7", reversed(BY_NAME)));
    let by_arch = "edge-01 app-03 db-01 app-01 app-02 db-02 edge-02 / 7";
    assert_eq!(s.search("sort=arch"), by_arch, "no arch, aarch64, x86_64");

    // Seen in this order, a few milliseconds apart.
    let seen = "edge-02 app-02 db-01 app-03 db-02 app-01 edge-01";
    for id in seen.split(' ') {
        thread::sleep(Duration::from_millis(5));
        s.touch(id);
    }
    assert_eq!(s.search("sort=last_seen"), format!("{seen} / 7"));
    assert_eq!(
        s.search("sort=-last_seen"),
        format!("{} / 7", reversed(seen))
    );

    // Pages of 1 to 3 at growing offsets make up the whole sorted list.
    for limit in 1..=3 {
        let mut pages = Vec::new();
        for offset in (0..7).step_by(limit) {
            let page = s.search(&format!("sort=name&limit={limit}&offset={offset}"));
            let (ids, total) = page.split_once(" / ").unwrap();
            let full = ids.split(' ').count() == limit.min(7 - offset);
            assert!(
                full && total == "7",
                "limit {limit} offset {offset}: {page}"
            );
            pages.push(ids.to_owned());
        }
        assert_eq!(pages.join(" "), BY_NAME, "pages of {limit}");
    }
    assert_eq!(s.search("sort=name&offset=7"), "/ 7");
    assert_eq!(s.search("offset=100&limit=5"), "/ 7");
    // svc's six nodes by name, descending: the second page of 2.
    assert_eq!(
        s.search("bin=svc&sort=-name&limit=2&offset=2"),
        "edge-02 db-02 / 6"
    );
}

/// The contract: "ties keep id order", whatever the sort. Nodes of one
/// arch must stay in id order when the arches are sorted descending.
/// Fails while the server reverses the whole sorted list for `-`, ties
/// included (`search` in manager-lite/src/api/fleet.rs).
#[test]
fn descending_sort_keeps_ties_in_id_order() {
    let s = small_fleet(ManagerOptions::default());
    let want = "app-01 app-02 db-02 edge-02 app-03 db-01 edge-01 / 7";
    assert_eq!(s.search("sort=-arch"), want, "x86_64, aarch64, no arch");
}

#[test]
fn search_pages_hold_1000_nodes_by_default() {
    let m = Manager::new();
    let all: Vec<String> = (0..1003).map(|i| format!("bulk-{i:04}")).collect();
    thread::scope(|s| {
        for part in all.chunks(251) {
            let m = &m;
            s.spawn(move || {
                for id in part {
                    m.keepalive(id, "x86_64", &[]).expect(200);
                }
            });
        }
    });
    m.keepalive("other", "x86_64", &[]).expect(200);
    let page = |ids: &[String], total| format!("{} / {total}", ids.join(" "));
    assert_eq!(search(&m, "q=bulk"), page(&all[..1000], 1003));
    assert_eq!(search(&m, "q=bulk&offset=1000"), page(&all[1000..], 1003));
    assert_eq!(search(&m, "q=BULK&limit=10000"), page(&all, 1003));
    assert_eq!(search(&m, "offset=1003&limit=1"), "other / 1004");
}

#[test]
fn bad_search_values_are_refused_and_the_plain_listing_is_unchanged() {
    let s = small_fleet(ManagerOptions::default());
    let long = "x".repeat(129);
    let wide = "%C3%A9".repeat(129);
    let bad = "state=idle state=ONLINE label=env label==prod version=1.0.0 version=*missing \
               sort=size sort=- sort=--id offset=ten offset=-1 q=a&after=app-01 offset=0&after= \
               q=a&limit=0 q=a&limit=10001";
    let queries = [format!("q={long}"), format!("q={wide}")];
    for query in bad.split_whitespace().map(String::from).chain(queries) {
        let r = s.m.admin_get(&format!("/api/v1/nodes?{query}"));
        let error = r.expect_error(400).json()["error"].to_string();
        // The error names the parameter (the last one given).
        let word = query.rsplit('&').next().unwrap().split('=').next().unwrap();
        assert!(error.contains(word), "{query}: {error}");
    }
    // 128 characters (not bytes) are fine.
    assert_eq!(s.search(&format!("q={}", &wide[..6 * 128])), "/ 0");
    assert_eq!(s.search(&format!("q={}", &long[..128])), "/ 0");
    s.m.get("/api/v1/nodes?q=app").expect_error(401);

    // No search parameter: the whole list or cursor pages, no total.
    let whole = s.m.admin_get("/api/v1/nodes");
    assert_eq!(ids(whole.expect(200)).join(" "), ALL);
    let page = s.m.admin_get("/api/v1/nodes?limit=3");
    assert_eq!(ids(page.expect(200)), ["app-01", "app-02", "app-03"]);
    assert_eq!(page.header("x-next-after"), Some("app-03"));
    let rest = s.m.admin_get("/api/v1/nodes?after=db-02");
    assert_eq!(ids(rest.expect(200)), ["edge-01", "edge-02"]);
    for r in [whole, page, rest] {
        assert_eq!(r.header("x-total-count"), None, "{r}");
    }
}

// ---------------------------------------------------------------------------
// Releases: actions, wave counts, failures

const OPS: [&str; 6] = [
    "approve", "pause", "resume", "promote", "cancel", "rollback",
];

/// Asserts release `id` offers the operations `want` (space separated), in
/// `GET /api/v1/releases/{id}` and in the list, and that each other
/// operation is refused (409) and changes nothing.
#[track_caller]
fn check_actions(m: &Manager, id: u64, want: &str) {
    let one = get(m, &format!("/api/v1/releases/{id}"));
    let list = get(m, "/api/v1/releases");
    let listed = list.as_array().unwrap().iter().find(|r| r["id"] == id);
    assert_eq!(one["actions"], listed.unwrap()["actions"], "release {id}");
    let got = one["actions"].as_array().unwrap_or_else(|| panic!("{one}"));
    let got: BTreeSet<&str> = got.iter().map(|a| a.as_str().unwrap()).collect();
    let want: BTreeSet<&str> = want.split_whitespace().collect();
    assert_eq!(got, want, "{one}");
    for name in OPS.into_iter().filter(|o| !want.contains(o)) {
        op(m, id, name).expect_error(409);
    }
    let status = get_release(m, id).status.as_str();
    assert_eq!(one["status"], status, "refusals change nothing");
}

#[test]
fn release_actions_follow_the_state_machine() {
    let m = rollout_manager();
    upload_versions(&m, "svc", &["1.0.0", "2.0.0", "3.0.0"]);
    let mut fleet = Fleet::new(&["svc"], 4);
    fleet.round(m.addr, Mode::Observe);
    let gated = |v| json!({"bin_name": "svc", "version": v, "require_approval": true});
    let completed = |r: &Release| r.status == Completed;
    let v1 = create_release(&m, &gated("1.0.0")).id;
    check_actions(&m, v1, "approve cancel");
    approve(&m, v1).expect(200);
    check_actions(&m, v1, "pause promote cancel");
    op(&m, v1, "pause").expect(200);
    check_actions(&m, v1, "resume promote cancel");
    op(&m, v1, "resume").expect(200);
    drive(&m, &mut fleet, v1, Mode::Update, "completed", completed);
    // Completed without a baseline: nothing to do.
    check_actions(&m, v1, "");
    let raw = get(&m, &format!("/api/v1/releases/{v1}"));
    assert_eq!(raw["counts"].get("waves"), None, "a single wave: {raw}");

    let plan = json!([{"percent": 50, "wait": "1h"}, {"percent": 100}]);
    let v2 = json!({"bin_name": "svc", "version": "2.0.0", "waves": plan});
    let v2 = create_release(&m, &v2);
    assert_eq!(v2.baseline_version.as_deref(), Some("1.0.0"));
    check_actions(&m, v2.id, "pause promote cancel rollback");
    op(&m, v2.id, "pause").expect(200);
    check_actions(&m, v2.id, "resume promote cancel rollback");
    let undo: Release = op(&m, v2.id, "rollback").expect(201).parse();
    check_actions(&m, v2.id, "");
    // Every node runs 1.0.0 already: the rollback completes, and it is
    // live with a baseline.
    wait_release(&m, undo.id, "the rollback completed", completed);
    assert_eq!(undo.baseline_version.as_deref(), Some("1.0.0"));
    check_actions(&m, undo.id, "rollback");
    assert_eq!(get_release(&m, v1).status, Superseded);
    check_actions(&m, v1, "");

    let v3 = create_release(&m, &gated("3.0.0")).id;
    check_actions(&m, v3, "approve cancel");
    op(&m, v3, "cancel").expect(200);
    check_actions(&m, v3, "");
}

/// The plan of [`failing_rollout`]: cumulative percents.
const PLAN: [u32; 3] = [20, 50, 100];

/// A rollout of svc 2.0.0 to the 40 `env=prod` nodes of 80, in the waves of
/// [`PLAN`] (an hour apart), its first wave done: two of its nodes failed,
/// one rolled back, the rest succeeded.
struct Rollout {
    m: Manager,
    fleet: Fleet,
    id: u64,
    sha: String,
    selected: BTreeSet<String>,
    failing: BTreeMap<String, ProgressStatus>,
}

fn failing_rollout() -> Rollout {
    let m = rollout_manager();
    let sha = upload_versions(&m, "svc", &["2.0.0"])["2.0.0"].clone();
    let mut fleet = Fleet::new(&["svc"], 80);
    let mut selected = BTreeSet::new();
    for n in fleet.nodes.iter_mut().step_by(2) {
        n.labels.insert("env".into(), "prod".into());
        selected.insert(n.id.clone());
    }
    fleet.round(m.addr, Mode::Observe);
    let waves = PLAN.map(|p| json!({"percent": p, "wait": "1h"}));
    let body = json!({"bin_name": "svc", "version": "2.0.0", "max_failures": "50",
                      "selector": {"labels": {"env": ["prod"]}}, "waves": waves});
    let id = create_release(&m, &body).id;
    let first: Vec<&String> = selected
        .iter()
        .filter(|n| in_percent(id, n, PLAN[0]))
        .collect();
    assert!(first.len() >= 4, "the first wave reaches {first:?}");
    let first_three = first.iter().map(|n| (*n).clone());
    let failing: BTreeMap<_, _> = first_three.zip([Failed, Failed, RolledBack]).collect();
    for (node, status) in &failing {
        fleet.node_mut(node).fails_with = Some(*status);
    }
    let ok = first.len() as u64 - 3;
    let done = |r: &Release| {
        let c = &r.counts;
        c.success == ok && c.failed == 2 && c.rolled_back == 1
    };
    drive(&m, &mut fleet, id, Mode::Update, "wave 1 done", done);
    Rollout {
        m,
        fleet,
        id,
        sha,
        selected,
        failing,
    }
}

impl Rollout {
    /// What `counts.waves` must say once the first `started` waves started.
    fn expected_waves(&self, started: usize) -> Vec<WaveCounts> {
        let mut below = 0;
        let mut waves = Vec::new();
        for (i, percent) in PLAN.into_iter().enumerate() {
            let slice = u64::from(below) * 100..u64::from(percent) * 100;
            let slice: Vec<&String> = (self.selected.iter())
                .filter(|n| slice.contains(&bucket(self.id, n)))
                .collect();
            below = percent;
            let ended = |s| {
                slice
                    .iter()
                    .filter(|n| self.failing.get(**n) == Some(&s))
                    .count() as u64
            };
            let target = slice.len() as u64;
            let mut w = WaveCounts {
                percent,
                target,
                ..WaveCounts::default()
            };
            if i < started {
                w.reached = target;
                (w.failed, w.rolled_back) = (ended(Failed), ended(RolledBack));
                w.success = target - w.failed - w.rolled_back;
            }
            waves.push(w);
        }
        waves
    }

    /// Asserts `counts.waves` once `started` waves started, and that the
    /// waves' numbers add up to the release's.
    #[track_caller]
    fn check_waves(&self, r: &Release, started: usize) {
        let c = &r.counts;
        assert_eq!(c.waves, self.expected_waves(started), "{started} started");
        let sum = |f: fn(&WaveCounts) -> u64| c.waves.iter().map(f).sum::<u64>();
        assert_eq!(sum(|w| w.target), self.selected.len() as u64, "{c:?}");
        assert_eq!(sum(|w| w.reached), c.targeted, "{c:?}");
        assert_eq!(sum(|w| w.success), c.success, "{c:?}");
        assert_eq!(sum(|w| w.failed), c.failed, "{c:?}");
        assert_eq!(sum(|w| w.rolled_back), c.rolled_back, "{c:?}");
        assert_eq!(sum(|w| w.in_progress), c.in_progress, "{c:?}");
    }
}

#[test]
fn wave_counts_split_the_selected_nodes_by_wave() {
    let mut w = failing_rollout();
    w.check_waves(&get_release(&w.m, w.id), 1);
    let raw = get(&w.m, &format!("/api/v1/releases/{}", w.id));
    let waves = raw["counts"]["waves"].as_array().map(Vec::len);
    assert_eq!(waves, Some(3), "{raw}");

    op(&w.m, w.id, "promote").expect(200);
    let all = w.selected.len() as u64;
    let done = |r: &Release| r.counts.success == all - 3 && r.counts.targeted == all;
    let r = drive(&w.m, &mut w.fleet, w.id, Mode::Update, "all done", done);
    w.check_waves(&r, 3);
}

/// `GET /api/v1/releases/{id}/failures{query}`: the list and `X-Total-Count`.
#[track_caller]
fn failures(m: &Manager, id: u64, query: &str) -> (Vec<Value>, String) {
    let r = m.admin_get(&format!("/api/v1/releases/{id}/failures{query}"));
    let total = r.expect(200).header("x-total-count").unwrap_or_default();
    (r.json().as_array().unwrap().clone(), total.to_owned())
}

#[test]
fn failures_list_the_nodes_whose_last_report_failed() {
    let mut w = failing_rollout();
    let (all, total) = failures(&w.m, w.id, "");
    assert_eq!((all.len(), total.as_str()), (3, "3"), "{all:?}");
    for f in &all {
        let id = f["node_id"].as_str().unwrap();
        assert_eq!(f["status"], w.failing[id].as_str(), "{f}");
        assert_eq!(f["node_name"], format!("sim-{id}"));
        assert_eq!(f["message"], "simulated failure");
        assert_eq!(f["target_hash"], w.sha.as_str());
        assert!(is_rfc3339(f["received_at"].as_str().unwrap()), "{f}");
    }
    let field = |k: &str| {
        all.iter()
            .map(|f| f[k].as_str().unwrap())
            .collect::<Vec<_>>()
    };
    let listed: BTreeSet<&str> = field("node_id").into_iter().collect();
    assert_eq!(listed, w.failing.keys().map(String::as_str).collect());
    let at = field("received_at");
    assert!(at.windows(2).all(|p| p[0] >= p[1]), "newest first: {at:?}");
    let two = failures(&w.m, w.id, "?limit=2");
    assert_eq!(two, (all[..2].to_vec(), "3".into()));

    let path = format!("/api/v1/releases/{}/failures", w.id);
    w.m.get(&path).expect_error(401);
    w.m.admin_get(&format!("{path}?limit=0")).expect_error(400);
    w.m.admin_get("/api/v1/releases/999/failures")
        .expect_error(404);
    w.m.admin_get("/api/v1/releases/abc/failures")
        .expect_error(400);

    // The rolled-back node is fixed and succeeds: it is no longer listed.
    let fixed = w.failing.iter().find(|f| *f.1 == RolledBack).unwrap().0;
    let node = w.fleet.node_mut(fixed);
    node.fails_with = None;
    node.quarantined.clear();
    let done = |r: &Release| r.counts.rolled_back == 0;
    drive(&w.m, &mut w.fleet, w.id, Mode::Update, "fixed", done);
    let (left, total) = failures(&w.m, w.id, "");
    let left: Vec<[&Value; 2]> = left.iter().map(|f| [&f["node_id"], &f["status"]]).collect();
    assert_eq!(total, "2");
    assert!(
        left.iter().all(|[n, s]| *s == "failed" && *n != fixed),
        "{left:?}"
    );
}

// ---------------------------------------------------------------------------
// ETag and 304

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
