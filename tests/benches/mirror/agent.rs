//! One simulated agent's update in each scenario, and the pool that runs
//! the fleet of them `--concurrency` at a time.

use super::client::{download, json_call, Peer, Tally, IO_TIMEOUT};
use super::{Scenario, ARCH, PHASE_LIMIT};
use binproxy_protocol::mirror::{artifact_file, bin_file, MirrorBin};
use binproxy_protocol::{download_path, KeepaliveReply};
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

/// What the agents of one scenario-round share.
pub struct Round<'a> {
    pub scenario: Scenario,
    pub bin: &'a str,
    pub prefix: String,
    pub v1: &'a str,
    pub v2: &'a str,
    pub manager: SocketAddr,
    pub mirror: SocketAddr,
    pub tally: Tally,
}

impl Round<'_> {
    pub fn node(&self, i: usize) -> String {
        format!("{}-{i:05}", self.prefix)
    }

    pub fn keepalive(&self, node: &str, installed: &str) -> KeepaliveReply {
        let body = json!({
            "node_id": node,
            "cpu_arch": ARCH,
            "os": "linux",
            "os_release": "sim",
            "node_name": format!("sim-{node}"),
            "bin_proxy_version": "0.0.0-sim",
            "bins": {self.bin: installed},
        });
        let got = json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            "/api/v1/keepalive",
            Some(&body),
            200,
        );
        serde_json::from_slice(&got).unwrap()
    }

    pub fn progress(&self, node: &str, status: &str) {
        let body = json!({
            "node_id": node,
            "targetHash": self.v2,
            "fromHash": self.v1,
            "status": status,
            "processingTime": 1,
            "message": "simulated",
        });
        let path = format!("/api/v1/bins/{}/progress", self.bin);
        json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            &path,
            Some(&body),
            201,
        );
    }

    pub fn installed(&self, node: &str) {
        let body = json!({"node_id": node, "sha256sum": self.v2});
        let path = format!("/api/v1/bins/{}", self.bin);
        json_call(
            &self.tally,
            Peer::Manager,
            self.manager,
            "POST",
            &path,
            Some(&body),
            200,
        );
    }

    /// Registers node `i` running v1 (before the release: no target).
    pub fn register(&self, i: usize) {
        let reply = self.keepalive(&self.node(i), self.v1);
        let target = reply.targets.get(self.bin).cloned().flatten();
        assert!(target.is_none(), "a target before the release: {target:?}");
    }

    /// What agent `i` does in this scenario; returns when its download is
    /// verified and (for A and B) reported, with the time it was verified.
    pub fn agent(&self, i: usize) -> Instant {
        let node = self.node(i);
        let verified = match self.scenario {
            Scenario::ManagerOnly | Scenario::Mirror => {
                let reply = self.keepalive(&node, self.v1);
                let target = reply
                    .targets
                    .get(self.bin)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| {
                        panic!("{node}: no target: {:?}", reply.reasons.get(self.bin))
                    });
                assert_eq!(target.sha256sum, self.v2, "{node}: the target");
                self.progress(&node, "in_progress");
                if self.scenario == Scenario::ManagerOnly {
                    assert_eq!(target.url, download_path(self.v2), "{node}: the URL");
                    download(
                        &self.tally,
                        Peer::Manager,
                        self.manager,
                        &target.url,
                        &target,
                    );
                } else {
                    let path = format!("/{}", artifact_file(&target.sha256sum));
                    download(&self.tally, Peer::Mirror, self.mirror, &path, &target);
                }
                let at = Instant::now();
                self.progress(&node, "success");
                self.installed(&node);
                at
            }
            Scenario::ManagerStopped => {
                // The keepalive first: refused, the manager is down.
                assert!(
                    TcpStream::connect_timeout(&self.manager, IO_TIMEOUT).is_err(),
                    "the stopped manager's port answers"
                );
                self.tally.refused.fetch_add(1, Relaxed);
                let path = format!("/{}", bin_file(self.bin));
                let doc = json_call(
                    &self.tally,
                    Peer::Mirror,
                    self.mirror,
                    "GET",
                    &path,
                    None,
                    200,
                );
                let doc: MirrorBin = serde_json::from_slice(&doc).unwrap();
                let target = doc
                    .target_for(ARCH)
                    .unwrap_or_else(|| panic!("{path} has no target for {ARCH}"))
                    .clone();
                assert_eq!(target.sha256sum, self.v2, "{node}: the mirror's target");
                let path = format!("/{}", target.url);
                download(&self.tally, Peer::Mirror, self.mirror, &path, &target);
                // in_progress, success, installed: queued for later.
                self.tally.queued.fetch_add(3, Relaxed);
                Instant::now()
            }
        };
        self.tally.verified.fetch_add(1, Relaxed);
        verified
    }
}

/// Runs `work(i)` for every `i` in `0..n` on `threads` threads, each taking
/// the next `i` until none is left; returns the results by `i`.
pub fn fan_out<T: Send>(
    n: usize,
    threads: usize,
    what: &str,
    work: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let deadline = Instant::now() + PHASE_LIMIT;
    thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not done after {PHASE_LIMIT:?}"
                );
                let got = work(i);
                out.lock().unwrap()[i] = Some(got);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect()
}
