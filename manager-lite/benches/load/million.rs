//! `--million`: can one manager on this 2-core machine carry a million
//! hosts polling every 60 s, with the load generator on the same machine?
//! For the sizing section of the README (issue #15 item 7).
//!
//! Registers `--nodes` node ids (default 1,000,000) through the real API
//! (`POST /api/v1/keepalive`, over `--clients` keep-alive connections, data
//! dir in /dev/shm), then holds an open-loop schedule of `--rate` keepalives
//! a second (default 16,700: a million hosts on a 60 s poll) for `--seconds`
//! (default 60), request `k` due at `k / rate` and going to node `k mod N`,
//! so each node polls once a minute. Meanwhile a release rolls out in waves
//! (1%, 10%, 100%, 30 s each, the default 95% of successes to go on): a
//! node whose keepalive answer names the new version reports `success` (a
//! durable write) and says it runs it from then on (another). Printed: registration time, the rate held (sent
//! on time or not), latency p50/p99/max from each request's due time (so a
//! server that falls behind shows it), RSS before and after, and where the
//! release got. Loopback only; every loop bounded in count and time.

// Counts up to a few million, shown as rates and MiB: far inside f64's and
// usize's exact ranges on the 64-bit machines this runs on.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::fleet::{register, rss_mib};
use super::{keepalive_body, start_manager, Conn, Opts};

/// Keepalives a second of a million hosts polling every 60 s.
pub const DEFAULT_RATE: u64 = 16_700;
/// A careful first wave, as an operator would roll out to a million hosts:
/// each reached node reports once, on its next poll.
const PLAN: &str = r#"{"bin_name":"streamd","version":"2.0",
  "waves":[{"percent":1,"wait":"30s"},{"percent":10,"wait":"30s"},{"percent":100}]}"#;
/// Waves in [`PLAN`].
const WAVES: u64 = 3;

pub fn run(o: &Opts) {
    super::fleet::pin_self(o);
    let data = super::fleet::data_dir("manager-million");
    let (child, addr) = start_manager(&data, o);
    let pid = child.id();
    let v1 = super::publish(&addr);
    let t = Instant::now();
    register(&addr, o, &v1);
    let took = t.elapsed().as_secs_f64();
    println!(
        "{} nodes registered in {took:.1} s ({:.0}/s) over {} connections; RSS {:.1} MiB",
        o.nodes,
        o.nodes as f64 / took,
        o.clients,
        rss_mib(pid)
    );
    println!("data directory: {:.0} MiB on disk", disk_mib(&data));
    let v2 = super::upload(&addr, "2.0", 9);
    let mut admin = Conn::open(&addr);
    let (status, body) = admin.call("POST", "/api/v1/releases", PLAN.as_bytes(), true);
    assert_eq!(status, 201, "release: {}", String::from_utf8_lossy(&body));
    let id = field(&body, "\"id\":").expect("the release's id");
    let cpu_before = super::fleet::cpu_seconds(pid);
    let held = hold(&addr, o, &v1, &v2);
    let cpu = super::fleet::cpu_seconds(pid) - cpu_before;
    held.print(o);
    println!(
        "manager CPU during the schedule: {:.0}% of one core; RSS after: {:.1} MiB",
        cpu / held.elapsed * 100.0,
        rss_mib(pid)
    );
    // A fresh connection: the first one sat idle past the server's timeout.
    let (_, body) = Conn::open(&addr).call("GET", &format!("/api/v1/releases/{id}"), &[], true);
    println!(
        "release {id}: wave {} of {WAVES}, {}% of the fleet, {} successes reported",
        field(&body, "\"wave\":").map_or(0, |w| w + 1),
        field(&body, "\"percent\":").unwrap_or(0),
        held.updates.load(Ordering::Relaxed),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut child = child;
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
}

/// What the open-loop schedule saw.
struct Held {
    elapsed: f64,
    sent: u64,
    /// Requests sent more than 100 ms after they were due.
    late: u64,
    /// Milliseconds from each request's due time to its answer, sorted.
    latencies: Vec<f64>,
    updates: AtomicU64,
}

impl Held {
    fn print(&self, o: &Opts) {
        let rate = o.rate as f64;
        let pct = |permille: usize| {
            let i = (self.latencies.len() * permille / 1000).min(self.latencies.len() - 1);
            self.latencies[i]
        };
        let achieved = self.sent as f64 / self.elapsed;
        let held = self.late * 100 <= self.sent && achieved >= rate * 0.99;
        println!(
            "schedule of {rate:.0} keepalives/s for {} s: {} sent in {:.1} s = {achieved:.0}/s, {} late by >100 ms; {}",
            o.seconds,
            self.sent,
            self.elapsed,
            self.late,
            if held { "HELD" } else { "NOT HELD" },
        );
        println!(
            "latency from due time: p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
            pct(500),
            pct(990),
            self.latencies.last().copied().unwrap_or(0.0),
        );
    }
}

/// Sends `rate * seconds` keepalives on schedule from `clients` threads.
fn hold(addr: &str, o: &Opts, v1: &str, v2: &str) -> Held {
    let total = o.rate * o.seconds;
    let running: Vec<AtomicBool> = (0..o.nodes).map(|_| AtomicBool::new(false)).collect();
    let updates = AtomicU64::new(0);
    let late = AtomicU64::new(0);
    let start = Instant::now() + Duration::from_millis(200);
    let clients = o.clients as u64;
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (running, updates, late) = (&running, &updates, &late);
                s.spawn(move || {
                    let mut conn = Conn::open(addr);
                    let mut lat = Vec::with_capacity((total / clients) as usize + 1);
                    for k in (c..total).step_by(clients as usize) {
                        let due = start + Duration::from_secs_f64(k as f64 / o.rate as f64);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        } else if now - due > Duration::from_millis(100) {
                            late.fetch_add(1, Ordering::Relaxed);
                        }
                        let node = (k % o.nodes as u64) as usize;
                        let new = running[node].load(Ordering::Relaxed);
                        let body = keepalive_body(node, if new { v2 } else { v1 });
                        let (status, reply) = conn.call("POST", "/api/v1/keepalive", &body, false);
                        assert_eq!(status, 200, "keepalive of node {node}");
                        lat.push(due.elapsed().as_secs_f64() * 1000.0);
                        if !new && String::from_utf8_lossy(&reply).contains(v2) {
                            report_success(&mut conn, node, v2);
                            running[node].store(true, Ordering::Relaxed);
                            updates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Held {
        elapsed,
        sent: latencies.len() as u64,
        late: late.into_inner(),
        latencies,
        updates,
    }
}

/// The node's update went well: what an agent reports.
fn report_success(conn: &mut Conn, node: usize, sha: &str) {
    let body = format!(
        r#"{{"node_id":"node-{node:05}","targetHash":"{sha}","status":"success","processingTime":900}}"#
    );
    let path = "/api/v1/bins/streamd/progress";
    let (status, _) = conn.call("POST", path, body.as_bytes(), false);
    assert!(
        status == 200 || status == 201,
        "progress of node {node}: {status}"
    );
}

/// Space the files of `dir` (and one level below) take on disk.
fn disk_mib(dir: &std::path::Path) -> f64 {
    use std::os::unix::fs::MetadataExt;
    let mut blocks = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        blocks += meta.blocks();
        if meta.is_dir() {
            for inner in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                blocks += inner.metadata().map_or(0, |m| m.blocks());
            }
        }
    }
    (blocks * 512) as f64 / (1024.0 * 1024.0)
}

/// The number after `key` in a JSON text (enough for these flat answers).
fn field(body: &[u8], key: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(body);
    let rest = text.split(key).nth(1)?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
