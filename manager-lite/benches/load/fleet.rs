//! `--fleet`: what a large fleet costs the manager, for the figures of
//! issue #13 item 7. Registers `--nodes` nodes (over `--clients` keep-alive
//! connections, data dir in /dev/shm so that one fsync'd commit per new node
//! does not dominate), lets a release complete on all of them, then
//! measures, in this order: the manager's idle CPU over `--idle-seconds`;
//! keepalives of random registered nodes (`--clients` threads, `--seconds`);
//! RSS after that load; RSS after listing every node four times, page by
//! page (`?limit=1000&after=`, following `X-Next-After`; a manager that does
//! not page answers the whole fleet at once); and the restart time (SIGTERM,
//! then a fresh start until it listens). Loopback only; every loop is
//! bounded in count and time.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{keepalive_body, phase, publish, start_manager, Conn, Opts};

/// Page size asked for when listing nodes.
const PAGE: usize = 1000;
/// Upper bound of pages per listing, whatever the server answers.
const MAX_PAGES: usize = 1_000;

pub fn run(o: &Opts) {
    pin_self(o);
    let data = data_dir("manager-fleet");
    let (child, addr) = start_manager(&data, o);
    let pid = child.id();
    let sha = publish(&addr);
    let t = Instant::now();
    register(&addr, o, &sha);
    println!(
        "{} nodes registered in {:.1} s over {} connections",
        o.nodes,
        t.elapsed().as_secs_f64(),
        o.clients
    );
    // The release completes at the next rollout tick (every node runs it).
    std::thread::sleep(Duration::from_secs(6));
    println!("RSS after registering: {:.1} MiB", rss_mib(pid));
    let cpu = idle_cpu(pid, o.idle_seconds);
    println!("idle CPU over {} s: {cpu:.2}% of one core", o.idle_seconds);
    let nodes = o.nodes;
    phase("keepalive", &addr, o, |c, i| {
        let node = usize::try_from(random(c, i) % nodes as u64).unwrap();
        (
            "POST".into(),
            "/api/v1/keepalive".into(),
            keepalive_body(node, &sha),
        )
    });
    println!("RSS after the keepalives: {:.1} MiB", rss_mib(pid));
    for _ in 0..4 {
        list_all(&addr, nodes);
    }
    println!(
        "RSS after listing every node 4 times: {:.1} MiB",
        rss_mib(pid)
    );
    restart(child, &data, o);
    let _ = std::fs::remove_dir_all(&data);
}

/// With `--pin`, this process (every load thread) on CPU 1.
pub fn pin_self(o: &Opts) {
    if o.pin {
        // Threads inherit it: every load thread runs on CPU 1.
        let pid = std::process::id().to_string();
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &pid])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset could not pin the load generator to CPU 1");
    }
}

/// A fresh data dir under /dev/shm (else the temp dir): one fsync'd commit
/// per new node must not be what is measured.
pub fn data_dir(prefix: &str) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("{prefix}-{}", std::process::id()))
}

/// Registers every node, running the release, from `clients` connections.
pub fn register(addr: &str, o: &Opts, sha: &str) {
    std::thread::scope(|s| {
        for c in 0..o.clients {
            s.spawn(move || {
                let mut conn = Conn::open(addr);
                for n in (c..o.nodes).step_by(o.clients) {
                    let body = keepalive_body(n, sha);
                    assert_eq!(conn.call("POST", "/api/v1/keepalive", &body, false).0, 200);
                }
            });
        }
    });
}

/// A well-spread, repeatable number for request `i` of client `c`
/// (splitmix64).
fn random(c: usize, i: usize) -> u64 {
    let mut z = ((c as u64) << 40 ^ i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces: state is the 3rd.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    f64::from(u32::try_from(ticks).unwrap()) / 100.0 // USER_HZ is 100 on Linux
}

/// Share of one core the process used over `seconds` with no request.
fn idle_cpu(pid: u32, seconds: u64) -> f64 {
    let (t, before) = (Instant::now(), cpu_seconds(pid));
    std::thread::sleep(Duration::from_secs(seconds));
    (cpu_seconds(pid) - before) / t.elapsed().as_secs_f64() * 100.0
}

pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Lists every node, page by page, and checks the count.
fn list_all(addr: &str, nodes: usize) {
    let mut conn = Conn::open(addr);
    let (t, mut seen, mut pages) = (Instant::now(), 0, 0);
    let mut after = String::new();
    while pages < MAX_PAGES {
        let path = format!("/api/v1/nodes?limit={PAGE}&after={after}");
        let (status, headers, body) = conn.call_with_headers("GET", &path, &[], true);
        assert_eq!(status, 200, "GET {path}");
        seen += String::from_utf8_lossy(&body)
            .matches("\"node_id\"")
            .count();
        pages += 1;
        match headers.iter().find_map(|h| h.strip_prefix("x-next-after:")) {
            Some(next) => next.trim().clone_into(&mut after),
            None => break,
        }
    }
    assert_eq!(seen, nodes, "nodes listed");
    println!(
        "listed {seen} nodes in {pages} pages in {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// SIGTERM, then a fresh start on the same data: the time until it listens.
fn restart(mut child: std::process::Child, data: &std::path::Path, o: &Opts) {
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    println!("stopped in {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (mut child, _) = start_manager(data, o);
    println!(
        "restarted (listening) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
