//! A simulated fleet for the progressive-rollout tests and the fleet benchmark:
//! hundreds (or thousands) of node ids that talk to a real `manager-lite` over
//! real HTTP exactly as agents do, without running an agent each.
//!
//! One [`Fleet::round`] is what every node does once per cycle: a keepalive
//! (`POST /api/v1/keepalive` with `bins: {bin: installed sha or ""}`), and, in
//! [`Mode::Update`], for each bin whose target differs from what it runs, an
//! "update": progress `in_progress` and then `success` (plus the installed
//! report `POST /api/v1/bins/{bin}`), or `failed` / `rolled_back` for a node
//! told to fail (it then leaves that hash alone, like the agent's quarantine).
//! Nodes are split over a few client threads. Every round and every poll is
//! bounded in count and time; nothing measures or asserts durations.
//!
//! Also here: the admin calls of the rollout API (release operations, pins,
//! the why-not view), bounded polls on a release, and [`bucket`], the
//! contract's stable node bucket.

use binproxy_protocol::{KeepaliveReply, NodeView, ProgressStatus, Release, Target, Version};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{artifact_bytes, request, Manager, ManagerOptions, Response};

/// The longest any poll waits for a state.
pub const POLL_LIMIT: Duration = Duration::from_secs(60);
/// The most rounds a [`drive`] runs.
pub const MAX_ROUNDS: u64 = 1000;
/// How often the managers of these tests evaluate their rollouts.
pub const ROLLOUT_INTERVAL: &str = "100ms";

/// A manager (own temp data dir) evaluating rollouts every [`ROLLOUT_INTERVAL`].
pub fn rollout_manager() -> Manager {
    Manager::new_with(rollout_options())
}

/// Default options plus `--rollout-interval ROLLOUT_INTERVAL`.
pub fn rollout_options() -> ManagerOptions {
    ManagerOptions::default()
        .arg("--rollout-interval")
        .arg(ROLLOUT_INTERVAL)
}

/// The contract's bucket of a node for a release: the first 8 bytes
/// (big-endian) of `sha256("{release_id}:{node_id}")`, mod 10000.
pub fn bucket(release_id: u64, node_id: &str) -> u64 {
    let digest = Sha256::digest(format!("{release_id}:{node_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 10_000
}

/// Whether a release at `percent` reaches `node_id` (selector aside).
pub fn in_percent(release_id: u64, node_id: &str, percent: u32) -> bool {
    bucket(release_id, node_id) < u64::from(percent) * 100
}

/// `mean ± 5σ` of Binomial(n, p): the bounds a wave's size must fall in.
pub fn binomial_bounds(n: usize, percent: u32) -> (usize, usize) {
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let p = f64::from(percent) / 100.0;
    let mean = nf * p;
    let slack = (5.0 * (nf * p * (1.0 - p)).sqrt()).max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = (mean - slack).floor().max(0.0) as usize;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let hi = (mean + slack).ceil() as usize;
    (lo, hi.min(n))
}

// ---------------------------------------------------------------------------
// Versions

/// The bytes of `bin` `version` in these tests.
pub fn version_bytes(bin: &str, version: &str) -> Vec<u8> {
    artifact_bytes(&format!("fleet {bin} {version}"), 512)
}

/// Uploads each version of `bin` (for every arch); returns version → sha256.
pub fn upload_versions(m: &Manager, bin: &str, versions: &[&str]) -> BTreeMap<String, String> {
    versions
        .iter()
        .map(|v| {
            let got: Version = m
                .upload(bin, v, None, &version_bytes(bin, v))
                .expect(201)
                .parse();
            ((*v).to_owned(), got.sha256sum)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Admin calls

/// An admin request with the manager's token; `body` is sent as JSON.
pub fn admin(m: &Manager, method: &str, path: &str, body: Option<&Value>) -> Response {
    let auth = format!("Bearer {}", m.token);
    match body {
        Some(b) => m.request(
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &serde_json::to_vec(b).unwrap(),
        ),
        None => m.request(method, path, &[("Authorization", &auth)], b""),
    }
}

/// `POST /api/v1/releases` with `body`; asserts 201.
#[track_caller]
pub fn create_release(m: &Manager, body: &Value) -> Release {
    admin(m, "POST", "/api/v1/releases", Some(body))
        .expect(201)
        .parse()
}

/// `GET /api/v1/releases/{id}`; asserts 200.
#[track_caller]
pub fn get_release(m: &Manager, id: u64) -> Release {
    admin(m, "GET", &format!("/api/v1/releases/{id}"), None)
        .expect(200)
        .parse()
}

/// `POST /api/v1/releases/{id}/{op}` (approve, pause, resume, promote,
/// rollback, cancel) with no body.
pub fn op(m: &Manager, id: u64, op: &str) -> Response {
    admin(m, "POST", &format!("/api/v1/releases/{id}/{op}"), None)
}

/// Approves with a second token (an approver made for the purpose): four
/// eyes forbid the token that created a release to approve it.
pub fn approve(m: &Manager, id: u64) -> Response {
    let name = crate::unique("approver");
    let body = serde_json::json!({"name": name, "role": "approver"});
    let created = admin(m, "POST", "/api/v1/tokens", Some(&body))
        .expect(201)
        .json();
    let token = created["token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    m.request(
        "POST",
        &format!("/api/v1/releases/{id}/approve"),
        &[("Authorization", &auth)],
        b"",
    )
}

/// `GET /api/v1/nodes/{node}`; asserts 200.
#[track_caller]
pub fn node_view(m: &Manager, node: &str) -> NodeView {
    admin(m, "GET", &format!("/api/v1/nodes/{node}"), None)
        .expect(200)
        .parse()
}

/// `PUT /api/v1/nodes/{node}/pins/{bin}` `{"version"}`.
pub fn pin(m: &Manager, node: &str, bin: &str, version: &str) -> Response {
    admin(
        m,
        "PUT",
        &format!("/api/v1/nodes/{node}/pins/{bin}"),
        Some(&json!({ "version": version })),
    )
}

/// `DELETE /api/v1/nodes/{node}/pins/{bin}`.
pub fn unpin(m: &Manager, node: &str, bin: &str) -> Response {
    admin(
        m,
        "DELETE",
        &format!("/api/v1/nodes/{node}/pins/{bin}"),
        None,
    )
}

/// Polls the release until `pred` holds (at most [`POLL_LIMIT`]); panics with
/// the last state seen otherwise.
#[track_caller]
pub fn wait_release(
    m: &Manager,
    id: u64,
    what: &str,
    mut pred: impl FnMut(&Release) -> bool,
) -> Release {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        let r = get_release(m, id);
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {POLL_LIMIT:?} waiting for release {id}: {what}\nlast seen: {}",
            show_release(&r)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs rounds of `fleet` in `mode` until `pred(release)` holds, at most
/// [`MAX_ROUNDS`] rounds and [`POLL_LIMIT`]; returns the release then.
#[track_caller]
pub fn drive(
    m: &Manager,
    fleet: &mut Fleet,
    id: u64,
    mode: Mode,
    what: &str,
    mut pred: impl FnMut(&Release) -> bool,
) -> Release {
    let deadline = Instant::now() + POLL_LIMIT;
    for _ in 0..MAX_ROUNDS {
        fleet.round(m.addr, mode);
        let r = get_release(m, id);
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {POLL_LIMIT:?} ({} rounds) driving release {id} to: {what}\nlast seen: {}",
            fleet.rounds,
            show_release(&r)
        );
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{MAX_ROUNDS} rounds did not drive release {id} to: {what}\nlast seen: {}",
        show_release(&get_release(m, id))
    );
}

/// Runs rounds until `pred(fleet)` holds (bounded like [`drive`]).
#[track_caller]
pub fn drive_fleet(
    m: &Manager,
    fleet: &mut Fleet,
    mode: Mode,
    what: &str,
    mut pred: impl FnMut(&Fleet) -> bool,
) {
    let deadline = Instant::now() + POLL_LIMIT;
    for _ in 0..MAX_ROUNDS {
        fleet.round(m.addr, mode);
        if pred(fleet) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {POLL_LIMIT:?} ({} rounds) driving the fleet to: {what}",
            fleet.rounds
        );
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{MAX_ROUNDS} rounds did not drive the fleet to: {what}");
}

/// A release in one line plus its history, for failure messages.
pub fn show_release(r: &Release) -> String {
    let history: Vec<String> = r
        .history
        .iter()
        .map(|e| format!("{} {} {} {:?}", e.at, e.actor, e.action, e.detail))
        .collect();
    format!(
        "release {} {} {} status={} wave={} percent={} paused_reason={:?} counts={:?} baseline={:?}\n  history: {}",
        r.id,
        r.bin_name,
        r.version,
        r.status.as_str(),
        r.wave,
        r.percent,
        r.paused_reason,
        r.counts,
        r.baseline_version,
        history.join("\n           ")
    )
}

// ---------------------------------------------------------------------------
// The fleet

/// What the nodes do in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keepalive only: read targets and reasons.
    Observe,
    /// Keepalive, then update every bin whose target differs from what runs.
    Update,
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub id: String,
    pub arch: String,
    pub labels: BTreeMap<String, String>,
    /// Bin → sha256 it runs ("" for none).
    pub installed: BTreeMap<String, String>,
    /// Every update this node tries ends with this status instead of success.
    pub fails_with: Option<ProgressStatus>,
    /// Keepalives only, never updates (a stuck or slow host).
    pub stalled: bool,
    /// Hashes it failed on and will not try again (the agent's quarantine).
    pub quarantined: BTreeSet<String>,
    /// Bin → the target of the last keepalive answer.
    pub targets: BTreeMap<String, Option<Target>>,
    /// Bin → the `reasons` entry of the last keepalive answer (absent: none given).
    pub reasons: BTreeMap<String, String>,
}

impl SimNode {
    /// The version of the last target for `bin`, if any.
    pub fn target_version(&self, bin: &str) -> Option<&str> {
        self.targets
            .get(bin)
            .and_then(Option::as_ref)
            .map(|t| t.version.as_str())
    }

    /// The why-not text of the last keepalive for `bin` ("" when absent).
    pub fn reason(&self, bin: &str) -> &str {
        self.reasons.get(bin).map_or("", String::as_str)
    }
}

/// Many [`SimNode`]s that manage the same bins.
#[derive(Debug)]
pub struct Fleet {
    pub bins: Vec<String>,
    pub nodes: Vec<SimNode>,
    /// Client threads per round.
    pub threads: usize,
    /// The most a single round may take before the test fails.
    pub round_limit: Duration,
    /// Rounds run so far.
    pub rounds: u64,
    /// HTTP requests sent so far.
    pub requests: u64,
}

impl Fleet {
    /// `n` nodes `node-00000`, `node-00001`, ..., `x86_64`, no labels,
    /// running nothing of `bins`.
    pub fn new(bins: &[&str], n: usize) -> Fleet {
        let nodes = (0..n)
            .map(|i| SimNode {
                id: node_id(i),
                arch: "x86_64".to_owned(),
                labels: BTreeMap::new(),
                installed: bins
                    .iter()
                    .map(|b| ((*b).to_owned(), String::new()))
                    .collect(),
                fails_with: None,
                stalled: false,
                quarantined: BTreeSet::new(),
                targets: BTreeMap::new(),
                reasons: BTreeMap::new(),
            })
            .collect();
        Fleet {
            bins: bins.iter().map(|b| (*b).to_owned()).collect(),
            nodes,
            threads: 8,
            round_limit: Duration::from_secs(300),
            rounds: 0,
            requests: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    #[track_caller]
    pub fn node(&self, id: &str) -> &SimNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    #[track_caller]
    pub fn node_mut(&mut self, id: &str) -> &mut SimNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Ids of the nodes whose last target for `bin` is `version`.
    pub fn targeted(&self, bin: &str, version: &str) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.target_version(bin) == Some(version))
            .map(|n| n.id.clone())
            .collect()
    }

    /// Ids of the nodes that run `sha` for `bin`.
    pub fn running(&self, bin: &str, sha: &str) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.installed.get(bin).map(String::as_str) == Some(sha))
            .map(|n| n.id.clone())
            .collect()
    }

    /// Every node: no more failures or stalls, quarantine forgotten (a fixed bug).
    pub fn fix_all(&mut self) {
        for n in &mut self.nodes {
            n.fails_with = None;
            n.stalled = false;
            n.quarantined.clear();
        }
    }

    /// One round: every node keepalives and (in [`Mode::Update`]) acts on its
    /// targets. Returns the requests it sent.
    #[track_caller]
    pub fn round(&mut self, addr: SocketAddr, mode: Mode) -> u64 {
        let sent = AtomicU64::new(0);
        let deadline = Instant::now() + self.round_limit;
        let limit = self.round_limit;
        let chunk = self.nodes.len().div_ceil(self.threads.max(1)).max(1);
        let bins = &self.bins;
        thread::scope(|s| {
            for part in self.nodes.chunks_mut(chunk) {
                let sent = &sent;
                s.spawn(move || {
                    for node in part {
                        assert!(
                            Instant::now() < deadline,
                            "a round of the fleet took longer than {limit:?}"
                        );
                        step(addr, bins, node, mode, sent);
                    }
                });
            }
        });
        let n = sent.into_inner();
        self.rounds += 1;
        self.requests += n;
        n
    }
}

/// The id of the `i`th node of a [`Fleet`].
pub fn node_id(i: usize) -> String {
    format!("node-{i:05}")
}

#[track_caller]
fn post(addr: SocketAddr, path: &str, body: &Value, want: u16, sent: &AtomicU64) -> Response {
    let bytes = serde_json::to_vec(body).unwrap();
    sent.fetch_add(1, Ordering::Relaxed);
    let r = request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    );
    assert_eq!(r.status, want, "POST {path} {body}: unexpected answer: {r}");
    r
}

fn step(addr: SocketAddr, bins: &[String], node: &mut SimNode, mode: Mode, sent: &AtomicU64) {
    let body = json!({
        "node_id": node.id,
        "cpu_arch": node.arch,
        "os": "linux",
        "os_release": "sim",
        "node_name": format!("sim-{}", node.id),
        "bin_proxy_version": "0.0.0-sim",
        "labels": node.labels,
        "bins": node.installed,
    });
    let reply: KeepaliveReply = post(addr, "/api/v1/keepalive", &body, 200, sent).parse();
    for bin in bins {
        let target = reply.targets.get(bin).cloned().flatten();
        node.targets.insert(bin.clone(), target);
        match reply.reasons.get(bin) {
            Some(r) => node.reasons.insert(bin.clone(), r.clone()),
            None => node.reasons.remove(bin),
        };
    }
    if mode == Mode::Observe || node.stalled {
        return;
    }
    for bin in bins {
        let Some(Some(target)) = node.targets.get(bin).cloned() else {
            continue;
        };
        let from = node.installed.get(bin).cloned().unwrap_or_default();
        if target.sha256sum == from || node.quarantined.contains(&target.sha256sum) {
            continue;
        }
        update(addr, bin, node, &target, &from, sent);
    }
}

fn update(
    addr: SocketAddr,
    bin: &str,
    node: &mut SimNode,
    target: &Target,
    from: &str,
    sent: &AtomicU64,
) {
    let path = format!("/api/v1/bins/{bin}/progress");
    let report = |status: ProgressStatus, message: &str| {
        let mut body = json!({
            "node_id": node.id,
            "targetHash": target.sha256sum,
            "status": status.as_str(),
            "processingTime": 1,
            "message": message,
        });
        if !from.is_empty() {
            body["fromHash"] = json!(from);
        }
        // What a real agent says of its download: a node that had a build
        // says it fetched a patch of a quarter of the size.
        if status == ProgressStatus::Success {
            let (bytes, method) = if from.is_empty() {
                (target.size, "full")
            } else {
                (target.size / 4, "delta")
            };
            body["bytes"] = json!(bytes);
            body["method"] = json!(method);
        }
        post(addr, &path, &body, 201, sent);
    };
    report(ProgressStatus::InProgress, "simulated update");
    if let Some(status) = node.fails_with {
        report(status, "simulated failure");
        node.quarantined.insert(target.sha256sum.clone());
        return;
    }
    report(ProgressStatus::Success, "simulated success");
    post(
        addr,
        &format!("/api/v1/bins/{bin}"),
        &json!({"node_id": node.id, "sha256sum": target.sha256sum}),
        200,
        sent,
    );
    node.installed
        .insert(bin.to_owned(), target.sha256sum.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket(7, "a"), bucket(7, "a"));
        let n = 10_000;
        let low = (0..n).filter(|i| in_percent(3, &node_id(*i), 10)).count();
        let (lo, hi) = binomial_bounds(n, 10);
        assert!((lo..=hi).contains(&low), "{low} not in {lo}..={hi}");
        assert!((0..n).all(|i| in_percent(3, &node_id(i), 100)));
        assert!((0..n).all(|i| !in_percent(3, &node_id(i), 0)));
    }

    #[test]
    fn bounds_are_five_sigma() {
        assert_eq!(binomial_bounds(400, 10), (10, 70));
        assert_eq!(binomial_bounds(10_000, 10), (850, 1150));
        assert_eq!(binomial_bounds(50, 100), (49, 50));
    }
}
