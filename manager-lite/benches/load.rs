//! Throughput of one manager-lite: keepalives per second and manifest
//! (`GET /api/v1/bins/{bin}`) requests per second, on loopback.
//!
//! `cargo bench -p manager-lite --bench load [-- --seconds N --clients N --nodes N]`
//!
//! Starts the real release-built binary on an ephemeral loopback port with a
//! temp data dir, registers a fleet, publishes a release, then drives each
//! request kind from `clients` threads over keep-alive connections for a fixed
//! time (bounded in count too). Prints requests/s and latency percentiles.
//! The load generator shares the machine with the server, so the figures are
//! a floor for a dedicated host.
//!
//! `--fleet` measures what a large fleet costs instead (see `fleet.rs`):
//! keepalives of random registered nodes, idle CPU, RSS after load and after
//! listing every node, and the restart time; `--pin` puts the manager on CPU 0
//! and the load generator on CPU 1; `--manager PATH` runs another build of
//! the manager under the same load.
//!
//! `--million` asks whether one manager carries a million hosts polling
//! every 60 s (see `million.rs`; `--rate` sets the keepalives a second).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";
/// Upper bound of requests per client per phase, besides the time bound.
const MAX_REQUESTS_PER_CLIENT: usize = 2_000_000;

#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/million.rs"]
mod million;

struct Opts {
    seconds: u64,
    clients: usize,
    nodes: usize,
    /// Measure a fleet's costs (`fleet.rs`) rather than both request kinds.
    fleet: bool,
    /// Hold a million hosts' poll rate (`million.rs`).
    million: bool,
    /// Keepalives a second for `--million`.
    rate: u64,
    /// Seconds over which idle CPU is measured (`--fleet`).
    idle_seconds: u64,
    /// Manager on CPU 0, this process on CPU 1 (`taskset`).
    pin: bool,
    /// The manager binary: this build's, or another (`--manager PATH`) to
    /// measure two builds with the same load.
    manager: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 10,
        clients: 16,
        nodes: 1000,
        fleet: false,
        million: false,
        rate: million::DEFAULT_RATE,
        idle_seconds: 30,
        pin: false,
        manager: env!("CARGO_BIN_EXE_manager-lite").to_owned(),
    };
    let args: Vec<String> = std::env::args().collect();
    o.fleet = args.iter().any(|a| a == "--fleet");
    o.pin = args.iter().any(|a| a == "--pin");
    o.million = args.iter().any(|a| a == "--million");
    if o.million {
        (o.nodes, o.seconds, o.clients) = (1_000_000, 60, 32);
    }
    for pair in args.windows(2) {
        let n = || pair[1].parse().expect("a number");
        match pair[0].as_str() {
            "--seconds" => o.seconds = n() as u64,
            "--clients" => o.clients = n(),
            "--nodes" => o.nodes = n(),
            "--idle-seconds" => o.idle_seconds = n() as u64,
            "--rate" => o.rate = n() as u64,
            "--manager" => o.manager.clone_from(&pair[1]),
            _ => {}
        }
    }
    o
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// Sends a request, reads the answer; returns (status, body).
    fn call(&mut self, method: &str, path: &str, body: &[u8], token: bool) -> (u16, Vec<u8>) {
        let (status, _, body) = self.call_with_headers(method, path, body, token);
        (status, body)
    }

    /// Sends a request, reads the answer (plain or chunked); returns
    /// (status, lower-cased header lines, body).
    fn call_with_headers(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        token: bool,
    ) -> (u16, Vec<String>, Vec<u8>) {
        let auth = if token {
            format!("Authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).unwrap();
        self.writer.write_all(body).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0;
        let mut chunked = false;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let line = line.trim_end().to_ascii_lowercase();
            if let Some(v) = line.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
            headers.push(line);
        }
        let body = if chunked {
            self.read_chunks()
        } else {
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).unwrap();
            body
        };
        (status, headers, body)
    }

    fn read_chunks(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2]; // and its CRLF
            self.reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

fn start_manager(data: &std::path::Path, o: &Opts) -> (Child, String) {
    let manager = o.manager.as_str();
    let mut command = if o.pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", manager]);
        c
    } else {
        Command::new(manager)
    };
    let mut child = command
        // Every client comes from 127.0.0.1 here, standing in for many
        // hosts: lift the per-address cap above --clients.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections-per-ip",
            "100000",
            "--data",
        ])
        .arg(data)
        .env("MANAGER_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("manager exited").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            // "IP:PORT (N connections at most)"
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// Uploads an artifact as streamd 1.0 and releases it; returns its sha256.
fn publish(addr: &str) -> String {
    let sha = upload(addr, "1.0", 7);
    let release = br#"{"bin_name":"streamd","version":"1.0"}"#;
    let mut admin = Conn::open(addr);
    assert_eq!(admin.call("POST", "/api/v1/releases", release, true).0, 201);
    sha
}

/// Uploads 1 MiB of `fill` as streamd `version`; returns its sha256.
fn upload(addr: &str, version: &str, fill: u8) -> String {
    let mut admin = Conn::open(addr);
    let path = format!("/api/v1/bins/streamd/versions?version={version}");
    let (status, body) = admin.call("POST", &path, &vec![fill; 1 << 20], true);
    assert!(status == 201 || status == 200, "upload: {status}");
    let text = String::from_utf8_lossy(&body);
    text.split("\"sha256sum\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .expect("the upload's answer names its sha256")
        .to_owned()
}

/// A node's keepalive, saying it runs `sha` as streamd.
fn keepalive_body(node: usize, sha: &str) -> Vec<u8> {
    format!(
        r#"{{"node_id":"node-{node:05}","cpu_arch":"x86_64","os":"linux","os_release":"bench","node_name":"n{node}","bin_proxy_version":"0.1.0","labels":{{"env":"bench"}},"bins":{{"streamd":"{sha}"}}}}"#
    )
    .into_bytes()
}

/// Runs `clients` threads sending `request(client, i)` until time is up.
fn phase(
    name: &str,
    addr: &str,
    o: &Opts,
    request: impl Fn(usize, usize) -> (String, String, Vec<u8>) + Sync,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.clients)
            .map(|c| {
                let (stop, request) = (Arc::clone(&stop), &request);
                s.spawn(move || {
                    let mut conn = Conn::open(addr);
                    let mut lat = Vec::new();
                    for i in 0..MAX_REQUESTS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (method, path, body) = request(c, i);
                        let t = Instant::now();
                        let (status, _) = conn.call(&method, &path, &body, false);
                        lat.push(t.elapsed());
                        assert_eq!(status, 200, "{method} {path}");
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(o.seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |permille: usize| {
        let i = (latencies.len() * permille / 1000).min(latencies.len() - 1);
        latencies[i].as_secs_f64() * 1000.0
    };
    let count = f64::from(u32::try_from(latencies.len()).unwrap_or(u32::MAX));
    println!(
        "{name:<10} {:>9.0} req/s   {} requests in {elapsed:.1}s   p50 {:.2} ms  p99 {:.2} ms",
        count / elapsed,
        latencies.len(),
        pct(500),
        pct(990),
    );
}

fn main() {
    let o = opts();
    if o.fleet {
        fleet::run(&o);
        return;
    }
    if o.million {
        million::run(&o);
        return;
    }
    let data = std::env::temp_dir().join(format!("manager-bench-{}", std::process::id()));
    let (mut child, addr) = start_manager(&data, &o);

    publish(&addr);
    let mut admin = Conn::open(&addr);
    let zeros = "0".repeat(64);
    for n in 0..o.nodes {
        assert_eq!(
            admin
                .call(
                    "POST",
                    "/api/v1/keepalive",
                    &keepalive_body(n, &zeros),
                    false
                )
                .0,
            200
        );
    }
    println!(
        "manager-lite on {addr}: {} nodes, {} clients, {} s per phase, {} cores",
        o.nodes,
        o.clients,
        o.seconds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let nodes = o.nodes;
    phase("keepalive", &addr, &o, |c, i| {
        let node = (c * 7919 + i) % nodes;
        (
            "POST".into(),
            "/api/v1/keepalive".into(),
            keepalive_body(node, &zeros),
        )
    });
    phase("manifest", &addr, &o, |c, i| {
        let node = (c * 7919 + i) % nodes;
        (
            "GET".into(),
            format!("/api/v1/bins/streamd?node_id=node-{node:05}"),
            Vec::new(),
        )
    });

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
}
