//! The manager's HTTP server under hostile, sloppy or merely heavy clients,
//! over raw TCP (and TLS) on loopback, most cases while a legitimate client
//! checks it is still served. What `manager-lite serve` promises here:
//!
//! - Heads: a slow head gets 408 after `--header-timeout`, a silent
//!   connection is closed without a word; an idle kept-alive connection is
//!   closed after `--keepalive-timeout`; oversized heads get 431, bodies over
//!   the limit 413 and a close; garbage and broken framing a 4xx/5xx (from the
//!   HTTP engine, body possibly empty) and the server lives on.
//! - Capacity: the connection over `--max-connections` or over
//!   `--max-connections-per-ip` gets 503 + `Retry-After: 1` and a close, and
//!   the held connections (idle or kept alive) are untouched; 10,000 idle
//!   connections and 2,000 stalled TLS handshakes cost memory, not capacity,
//!   and the stalled handshakes are closed after the header timeout.
//! - Slow transfers: a body below `--min-rate` and a request past
//!   `--request-timeout` get 408 and a close; answers a client does not drain
//!   are dropped while a normal client downloads the same 64 MiB; a 1 GiB
//!   upload and download at normal speed go through.
//! - The blocking pool: with `--blocking-threads 1` a slowly streamed upload
//!   holds it and a keepalive gets 503 busy after `--queue-timeout`.
//! - Audit: a flood of unauthenticated admin writes is counted
//!   (`manager_audit_unauthenticated_total`), not written one record each;
//!   authenticated writes, 403s included, still are.
//! - Protocol: `Host` (missing or doubled: 400), `Authorization` (any case of
//!   `bearer`; doubled: 400), absolute-form targets, keep-alive, pipelining,
//!   HEAD, HTTP/1.0, `Expect: 100-continue`, and the `Cache-Control`, `ETag`
//!   and length headers of downloads, manifests and keepalives.
//! - SIGTERM exits 0 with idle and half-sent connections open; the new flags
//!   take their documented forms and the `listening on` line is unchanged.
//!
//! The `manager_http_*` metrics are checked where the contract names them.
//! No timing is asserted: waits are bounded generously only to catch hangs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use binproxy_protocol::download_path;
use binproxy_tests::metrics::metric;
use binproxy_tests::tls::TestCa;
use binproxy_tests::{artifact_bytes, sha256_hex, status_counts, Manager, ManagerOptions};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socket2::{Domain, Socket, Type};

/// Generous bound for any single read in these tests (not a timing assertion:
/// a read that waits this long means the server hung).
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Bound for "the server ends this connection by itself" waits.
const CUT_LIMIT: Duration = Duration::from_secs(60);

fn manager(args: &[&str]) -> Manager {
    let opts = args.iter().fold(ManagerOptions::default(), |o, a| o.arg(a));
    Manager::new_with(opts)
}

fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(READ_LIMIT)).unwrap();
    s.set_write_timeout(Some(READ_LIMIT)).unwrap();
    s
}

fn connect(addr: SocketAddr) -> TcpStream {
    with_timeouts(TcpStream::connect(addr).expect("connect to the manager"))
}

/// `127.0.0.{2 + n % count}`: spreads connections over source addresses.
fn source(n: usize, count: usize) -> Ipv4Addr {
    let last = u8::try_from(2 + n % count).expect("at most 253 source addresses");
    Ipv4Addr::new(127, 0, 0, last)
}

/// A connection from source address `from` (bind before connect), with an
/// optional small receive buffer (a small TCP window: a client that does not
/// read stalls the server's answer sooner).
fn connect_socket(from: Ipv4Addr, addr: SocketAddr, recv_buffer: Option<usize>) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    if let Some(size) = recv_buffer {
        s.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    s.bind(&SocketAddr::from((from, 0)).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect_timeout(&addr.into(), READ_LIMIT)
        .unwrap_or_else(|e| panic!("connect from {from} to {addr}: {e}"));
    with_timeouts(s.into())
}

fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    connect_socket(from, addr, None)
}

/// Raises this process's open-file soft limit to the hard limit (managers
/// started afterwards inherit it); fails clearly when the hard limit is below
/// `need`.
fn raise_nofile(need: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit NOFILE");
    assert!(
        hard >= need,
        "this test needs {need} open files but the hard RLIMIT_NOFILE is {hard}: \
         raise it (ulimit -Hn, LimitNOFILE=) to run it"
    );
    if soft < hard {
        rlimit::Resource::NOFILE
            .set(hard, hard)
            .expect("setrlimit NOFILE");
    }
}

/// One parsed answer read off a (possibly kept-alive) connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Status, headers and the body as text (cut at 500 characters).
impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, " | {k}: {v}")?;
        }
        let body: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(500)
            .collect();
        write!(f, " | body ({} bytes): {body:?}", self.body.len())
    }
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_text(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {self:?}"));
        v["error"].as_str().expect("an error string").to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// Reads exactly one answer (head, then Content-Length bytes unless `head_only`).
fn read_answer(r: &mut impl BufRead, head_only: bool) -> Answer {
    let mut line = String::new();
    r.read_line(&mut line).expect("reading the status line");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut h = String::new();
        r.read_line(&mut h).expect("reading a header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("a header with a colon");
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = answer
        .header("content-length")
        .map_or(0, |v| v.parse().expect("numeric Content-Length"));
    if !head_only && status != 100 {
        answer.body = vec![0; len];
        r.read_exact(&mut answer.body).expect("reading the body");
    }
    answer
}

/// Sends raw bytes on a new connection and reads the answer and then the end
/// of the connection. Write errors are ignored (the server may answer and
/// close before taking everything).
fn raw(addr: SocketAddr, bytes: &[u8]) -> (Answer, bool) {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    let mut r = BufReader::new(s);
    let answer = read_answer(&mut r, false);
    (answer, closed(&mut r))
}

/// Sends raw bytes on a new connection and reads one answer (not waiting for
/// the connection to end).
fn raw_answer(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    read_answer(&mut BufReader::new(s), false)
}

/// Whether the server closed the connection (EOF or reset, no more bytes).
fn closed(r: &mut impl Read) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Reads and discards until the server ends the connection (EOF or reset);
/// returns how many bytes came, or `None` if it was still open at `deadline`.
fn read_until_end(s: &mut TcpStream, deadline: Instant) -> Option<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    // Bounded: 64 GiB at most, and the deadline.
    for _ in 0..1_000_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Some(total)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("reading: {e}"),
        }
    }
    None
}

/// Whether nothing has arrived on `s` and it is still open (non-blocking peek).
fn untouched(s: &TcpStream) -> Result<(), String> {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).unwrap();
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Ok(0) => Err("closed by the server".into()),
        Ok(n) => Err(format!(
            "the server sent {:?}",
            String::from_utf8_lossy(&b[..n])
        )),
        Err(e) => Err(format!("error: {e}")),
    }
}

fn health_ok(m: &Manager) {
    m.get("/health").expect(200);
}

/// A node's keepalive, which the server answers 200 when all is well.
fn keepalive_ok(m: &Manager, node: &str) {
    m.keepalive(node, "x86_64", &[]).expect(200);
}

/// `GET /api/v1/audit?limit=1000` with the admin token, newest first.
fn audit(m: &Manager) -> Vec<Value> {
    let r = m.admin_get("/api/v1/audit?limit=1000");
    r.expect(200);
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {r}"))
        .clone()
}

/// A streaming sha256 (sha2 is built at opt-level 3 even in debug builds:
/// see the workspace's Cargo.toml).
fn sha256() -> Sha256 {
    Sha256::new()
}

/// Lower-case hex of a finished [`sha256`].
fn hex_of(ctx: Sha256) -> String {
    binproxy_protocol::hex(&ctx.finalize())
}

/// Size of one generated block.
const BLOCK: usize = 1 << 20;

/// Artifact bytes made block by block without holding them: block `i` is a
/// fixed pseudo-random MiB with `i` in its first 8 bytes, so a lost,
/// repeated or reordered block changes the sha256.
struct Blocks {
    block: Vec<u8>,
}

impl Blocks {
    fn new(seed: &str) -> Blocks {
        Blocks {
            block: artifact_bytes(seed, BLOCK),
        }
    }

    fn block(&mut self, i: u64) -> &[u8] {
        self.block[..8].copy_from_slice(&i.to_le_bytes());
        &self.block
    }

    /// All of `blocks` blocks in one buffer (for the smaller artifacts).
    fn collect(&mut self, blocks: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOCK * usize::try_from(blocks).unwrap());
        for i in 0..blocks {
            out.extend_from_slice(self.block(i));
        }
        out
    }
}

/// `GET path` on a new connection, the body hashed as it streams in: the
/// answer's head, the number of body bytes read and their sha256.
fn download(addr: SocketAddr, path: &str) -> (Answer, u64, String) {
    let mut s = connect(addr);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::with_capacity(256 * 1024, s);
    let head = read_answer(&mut r, true);
    assert_eq!(head.status, 200, "GET {path}: {head:?}");
    let len: u64 = head
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"))
        .parse()
        .unwrap();
    let mut hasher = sha256();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Bounded: every turn reads at least one byte of `len`, or stops.
    while got < len && Instant::now() < deadline {
        let want = usize::try_from((len - got).min(buf.len() as u64)).unwrap();
        let n = r.read(&mut buf[..want]).expect("reading the download");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n as u64;
    }
    (head, got, hex_of(hasher))
}

fn tls_client(config: &Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    rustls::ClientConnection::new(Arc::clone(config), name).unwrap()
}

/// One request over a real TLS connection; its answer.
fn tls_request(config: &Arc<rustls::ClientConfig>, addr: SocketAddr, wire: &str) -> Answer {
    let mut s = rustls::StreamOwned::new(tls_client(config), connect(addr));
    s.write_all(wire.as_bytes()).expect("TLS write");
    s.flush().unwrap();
    read_answer(&mut BufReader::new(s), false)
}

/// Polls (bounded: `CUT_LIMIT`) until `done` holds; returns whether it did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + CUT_LIMIT;
    for _ in 0..1000 {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A fresh connection from `from` asking for `/health` (and to be closed).
fn health_from(from: Ipv4Addr, addr: SocketAddr) -> Answer {
    let mut s = connect_from(from, addr);
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_answer(&mut BufReader::new(s), false)
}

// ---------------------------------------------------------------------------
// Heads

#[test]
fn a_slow_client_is_dropped_after_the_header_timeout_while_others_are_served() {
    // The other timeouts far away: only the header timeout may cut here.
    let m = manager(&[
        "--header-timeout",
        "2s",
        "--keepalive-timeout",
        "300s",
        "--io-timeout",
        "300s",
        "--request-timeout",
        "300s",
    ]);
    // A connection that never sends a byte: closed without a word.
    let mut silent = connect(m.addr);
    // Half a request line, then a byte every 300 ms: each read is quick, the
    // head never completes.
    let slow = connect(m.addr);
    let mut writer = slow.try_clone().unwrap();
    writer.write_all(b"GET /hea").unwrap();
    let trickle = thread::spawn(move || {
        for _ in 0..200 {
            thread::sleep(Duration::from_millis(300));
            if writer.write_all(b"l").is_err() {
                return true;
            }
        }
        false
    });
    // Others are served meanwhile, one connection each.
    for _ in 0..5 {
        health_ok(&m);
    }
    let mut r = BufReader::new(slow);
    let answer = read_answer(&mut r, false);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(!answer.error_text().is_empty(), "{answer:?}");
    assert!(closed(&mut r), "the slow connection stays open");
    assert!(
        trickle.join().unwrap(),
        "the server kept reading the trickle"
    );
    assert_eq!(
        read_until_end(&mut silent, Instant::now() + CUT_LIMIT),
        Some(0),
        "a silent connection must be closed without an answer within {CUT_LIMIT:?} \
         (--header-timeout 2s)"
    );
    health_ok(&m);
    let cut = metric(
        &m,
        "manager_http_cut_total",
        &[("reason", "header_timeout")],
    );
    assert!(cut >= 1.0, "header_timeout cuts: {cut}");
}

#[test]
fn header_floods_are_431_and_close() {
    let m = manager(&[]);
    let fields = |n: usize| {
        (0..n)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<Vec<_>>()
            .concat()
    };
    let many = fields(101);
    let (a, closed) = raw(
        m.addr,
        format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    assert!(closed);
    // 100 fields (98, Host and Connection) are still fine.
    let hundred = fields(98);
    let a = raw_answer(
        m.addr,
        format!("GET /health HTTP/1.1\r\nHost: x\r\n{hundred}Connection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(a.status, 200, "{a:?}");
    // One huge field, and a huge request line.
    let big = "x".repeat(17 * 1024);
    let (a, closed) = raw(
        m.addr,
        format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    assert!(closed);
    let a = raw_answer(
        m.addr,
        format!("GET /{big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    health_ok(&m);
}

#[test]
fn bodies_over_the_limit_are_413_and_close() {
    let m = manager(&[]);
    let limit = binproxy_protocol::MAX_JSON_BODY;
    // Announced too large: refused before reading; the connection closes
    // even though the client asked to keep it.
    let body = vec![b' '; limit + 1];
    let mut wire = format!(
        "POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(&body);
    let (a, closed) = raw(m.addr, &wire);
    assert_eq!(a.status, 413, "{a:?}");
    assert!(!a.error_text().is_empty(), "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(closed, "a 413 must close the connection");
    // Chunked, so the size is only found out while reading.
    let chunk = "x".repeat(4096);
    let mut wire = String::from(
        "POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..(limit / 4096 + 2) {
        wire.push_str("1000\r\n");
        wire.push_str(&chunk);
        wire.push_str("\r\n");
    }
    wire.push_str("0\r\n\r\n");
    let (a, closed) = raw(m.addr, wire.as_bytes());
    assert_eq!(a.status, 413, "{a:?}");
    assert!(closed);
    // An absurd but well-formed length: 413 without waiting for the bytes.
    let a = raw_answer(
        m.addr,
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n",
    );
    assert_eq!(a.status, 413, "{a:?}");
    // The largest u64 is past what the HTTP engine takes at all: a 4xx too.
    let a = raw_answer(
        m.addr,
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
    );
    assert!((400..500).contains(&a.status), "{a:?}");
    health_ok(&m);
}

/// Raw requests the server must refuse, and the statuses it may refuse them with.
const BROKEN: &[(&[u8], &[u16])] = &[
    (b"\x00\x01\x02\xff garbage\r\n\r\n", &[400]),
    (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        &[400],
    ),
    (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", &[400]),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Name: \xc3\x28\r\n\r\n", &[400]),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", &[400]),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nA: b\r\n folded\r\n\r\n", &[400]),
    (b"GET /health HTTP/1.1\rHost: x\r\n\r\n", &[400]),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", &[400]),
    (b"GET health HTTP/1.1\r\nHost: x\r\n\r\n", &[400]),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        &[400, 501],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
        &[400],
    ),
    (
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        &[400],
    ),
];

#[test]
fn garbage_and_broken_framing_get_an_error_and_the_server_lives_on() {
    let m = manager(&[]);
    let mut wrong = Vec::new();
    for (wire, want) in BROKEN {
        let a = raw_answer(m.addr, wire);
        if !want.contains(&a.status) {
            wrong.push(format!(
                "{:?}: want one of {want:?}, got {a:?}",
                String::from_utf8_lossy(wire)
            ));
        }
        health_ok(&m);
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    // A version that does not exist: some 4xx or 5xx.
    let a = raw_answer(m.addr, b"GET /health HTTP/3.0\r\nHost: x\r\n\r\n");
    assert!((400..600).contains(&a.status), "{a:?}");
    // Bytes cut off mid-head, then the client leaves: nothing to answer.
    let mut s = connect(m.addr);
    s.write_all(b"POST /api/v1/keep").unwrap();
    drop(s);
    health_ok(&m);
}

// ---------------------------------------------------------------------------
// Capacity

#[test]
fn the_connection_over_max_connections_gets_503_and_the_held_ones_stay() {
    let m = manager(&[
        "--max-connections",
        "4",
        "--header-timeout",
        "60s",
        "--keepalive-timeout",
        "60s",
    ]);
    // Two kept-alive connections, idle after one request each, and two that
    // never sent a byte: four, the cap.
    let mut kept: Vec<(TcpStream, BufReader<TcpStream>)> = (0..2)
        .map(|_| {
            let s = connect(m.addr);
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_answer(&mut r, false).status, 200);
            (w, r)
        })
        .collect();
    let mut idle: Vec<TcpStream> = (0..2).map(|_| connect(m.addr)).collect();
    let (a, closed) = raw(m.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("1"), "{a:?}");
    assert!(a.error_text().contains("busy"), "{a:?}");
    assert!(closed);
    // Nothing else was disturbed: the held connections are all served.
    for (w, r) in &mut kept {
        w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_answer(r, false).status, 200);
    }
    for s in &mut idle {
        assert_eq!(untouched(s), Ok(()), "an idle held connection");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let a = read_answer(&mut BufReader::new(s.try_clone().unwrap()), false);
        assert_eq!(a.status, 200, "{a:?}");
    }
    // One leaves: a new client is served (the server may take a moment to
    // see the close).
    drop(kept.pop());
    let mut last = None;
    let served = eventually(|| {
        if let Ok(r) = m.try_request("GET", "/health", &[], b"") {
            assert!(matches!(r.status, 200 | 503), "{r}");
            last = Some(r.status);
        }
        last == Some(200)
    });
    assert!(
        served,
        "no client served after a held connection left: {last:?}"
    );
    drop(kept);
    drop(idle);
    let free = eventually(|| {
        m.try_request("GET", "/health", &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
    assert!(free, "no client served after every held connection left");
    let refused = metric(
        &m,
        "manager_http_connections_refused_total",
        &[("reason", "max_connections")],
    );
    assert!(
        refused >= 1.0,
        "refused{{reason=\"max_connections\"}}: {refused}"
    );
}

#[test]
fn ten_thousand_idle_connections_cost_memory_not_capacity() {
    const IDLE: usize = 10_000;
    // 127.0.0.2 to 127.0.0.41: 250 each, under the per-IP default of 256.
    const SOURCES: usize = 40;
    raise_nofile(12_000);
    let m = manager(&["--header-timeout", "120s"]);
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| connect_from(source(i, SOURCES), m.addr))
        .collect();
    // The server holds them all (the scrape's own connection counts too).
    let mut open = 0.0;
    let held = eventually(|| {
        open = metric(&m, "manager_http_connections_open", &[]);
        open >= 10_000.0
    });
    assert!(held, "manager_http_connections_open is {open}, not 10,000+");
    // Legitimate clients are answered as usual.
    health_ok(&m);
    keepalive_ok(&m, "busy-node");
    m.get("/api/v1/keepalive?node_id=busy-node").expect(200);
    // And none of the idle connections was refused or closed.
    for (i, s) in idle.iter().enumerate() {
        if let Err(e) = untouched(s) {
            panic!("idle connection {i} from {}: {e}", source(i, SOURCES));
        }
    }
    drop(idle);
    health_ok(&m);
    let released = eventually(|| metric(&m, "manager_http_connections_open", &[]) < 100.0);
    assert!(released, "the server still counts the closed connections");
}

#[test]
fn stalled_tls_handshakes_cost_nothing_and_are_closed_after_the_header_timeout() {
    const STALLED: usize = 2_000;
    // 200 per source address, under the per-IP default of 256.
    const SOURCES: usize = 10;
    raise_nofile(3_000);
    let ca = TestCa::new("hardening test CA");
    let cert = ca.server_cert("manager");
    let m = Manager::new_with(
        ManagerOptions::default()
            .tls(&cert.cert_file, &cert.key_file)
            .arg("--header-timeout")
            .arg("2s")
            // The other timeouts far away: only the header timeout may cut.
            .arg("--keepalive-timeout")
            .arg("300s")
            .arg("--io-timeout")
            .arg("300s"),
    );
    assert!(m.url.starts_with("https://"), "{}", m.url);
    let config = binproxy_tests::tls::client_config(&ca.ca_file);
    // The first half of a genuine ClientHello.
    let mut hello = Vec::new();
    tls_client(&config).write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100 && hello[0] == 0x16, "{hello:?}");
    let half = &hello[..hello.len() / 2];
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut s = connect_from(source(i, SOURCES), m.addr);
            s.write_all(half).unwrap();
            s
        })
        .collect();
    // A real client is served meanwhile.
    let health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let a = tls_request(&config, m.addr, health);
    assert_eq!(a.status, 200, "{a:?}");
    // The stalled ones are closed by the server (a TLS alert may come first).
    let deadline = Instant::now() + CUT_LIMIT;
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            read_until_end(s, deadline).is_some(),
            "stalled handshake {i} still open {CUT_LIMIT:?} after --header-timeout 2s"
        );
    }
    let a = tls_request(&config, m.addr, health);
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn the_connection_over_the_per_ip_cap_gets_503_and_other_addresses_are_served() {
    let m = manager(&[
        "--max-connections-per-ip",
        "8",
        "--header-timeout",
        "60s",
        "--keepalive-timeout",
        "60s",
    ]);
    let crowd = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect_from(crowd, m.addr)).collect();
    let mut ninth = connect_from(crowd, m.addr);
    let _ = ninth.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut r = BufReader::new(ninth);
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("1"), "{a:?}");
    assert!(
        a.error_text().contains("too many connections from"),
        "{a:?}"
    );
    assert!(closed(&mut r), "the refused connection stays open");
    // Another address is served as usual.
    health_ok(&m);
    keepalive_ok(&m, "other-address");
    // The held ones are untouched and served.
    for s in &mut held[..3] {
        assert_eq!(untouched(s), Ok(()), "a held connection");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let a = read_answer(&mut BufReader::new(s.try_clone().unwrap()), false);
        assert_eq!(a.status, 200, "{a:?}");
    }
    let per_ip = metric(
        &m,
        "manager_http_connections_refused_total",
        &[("reason", "per_ip")],
    );
    assert!(per_ip >= 1.0, "refused{{reason=\"per_ip\"}}: {per_ip}");
    // One of them leaves: the address may connect again.
    drop(held.pop());
    let mut last = None;
    let served = eventually(|| {
        let a = health_from(crowd, m.addr);
        assert!(matches!(a.status, 200 | 503), "{a:?}");
        last = Some(a.status);
        a.status == 200
    });
    assert!(
        served,
        "{crowd} not served after one of its connections left: {last:?}"
    );
}

// ---------------------------------------------------------------------------
// Slow transfers

/// Sends `head`, then `piece` every `every` (at most `pieces` times) from a
/// thread, until a write fails; the thread returns whether one failed.
fn trickle(
    addr: SocketAddr,
    head: &str,
    piece: Vec<u8>,
    every: Duration,
    pieces: usize,
) -> (BufReader<TcpStream>, thread::JoinHandle<bool>) {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    w.write_all(head.as_bytes()).unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..pieces {
            thread::sleep(every);
            if w.write_all(&piece).is_err() {
                return true;
            }
        }
        false
    });
    (BufReader::new(s), writer)
}

#[test]
fn a_body_below_the_min_rate_gets_408_and_a_close() {
    let m = manager(&["--min-rate", "1KiB", "--min-rate-window", "2s"]);
    // 1 byte every 200 ms: 10 bytes in a 2 s window that wants 2 KiB.
    let (mut r, writer) = trickle(
        m.addr,
        "POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 4000\r\n\r\n",
        b" ".to_vec(),
        Duration::from_millis(200),
        150,
    );
    health_ok(&m);
    keepalive_ok(&m, "fast-node");
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(!a.error_text().is_empty(), "{a:?}");
    assert!(closed(&mut r), "the slow connection stays open");
    assert!(
        writer.join().unwrap(),
        "the server kept reading the trickle"
    );
    health_ok(&m);
    let cut = metric(&m, "manager_http_cut_total", &[("reason", "body_too_slow")]);
    assert!(cut >= 1.0, "body_too_slow cuts: {cut}");
}

#[test]
fn a_request_past_the_request_timeout_gets_408_even_at_a_good_rate() {
    let m = manager(&[
        "--request-timeout",
        "2s",
        "--min-rate",
        "500",
        "--min-rate-window",
        "2s",
    ]);
    // 200 bytes every 100 ms: four times the minimum rate, but the 60,000
    // bytes would take 30 s.
    let (mut r, writer) = trickle(
        m.addr,
        "POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 60000\r\n\r\n",
        vec![b' '; 200],
        Duration::from_millis(100),
        300,
    );
    health_ok(&m);
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(!a.error_text().is_empty(), "{a:?}");
    assert!(closed(&mut r), "the timed-out connection stays open");
    assert!(writer.join().unwrap(), "the server kept reading the body");
    health_ok(&m);
    let timed_out = metric(
        &m,
        "manager_http_cut_total",
        &[("reason", "request_timeout")],
    );
    assert!(timed_out >= 1.0, "request_timeout cuts: {timed_out}");
    let too_slow = metric(&m, "manager_http_cut_total", &[("reason", "body_too_slow")]);
    assert!(too_slow < 1.0, "a body at 4x the min rate counted too slow");
}

#[test]
fn a_stalled_body_is_cut_after_the_io_timeout() {
    // The first min-rate window (the grace period) and the request timeout
    // far away: only --io-timeout may cut within the read limit.
    let m = manager(&[
        "--io-timeout",
        "2s",
        "--min-rate-window",
        "60s",
        "--request-timeout",
        "300s",
    ]);
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    w.write_all(
        b"POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 4000\r\n\r\n{\"node_id\":",
    )
    .unwrap();
    let mut r = BufReader::new(s);
    health_ok(&m);
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(!a.error_text().is_empty(), "{a:?}");
    assert!(closed(&mut r), "the stalled connection stays open");
    health_ok(&m);
    let cuts = metric(&m, "manager_http_cut_total", &[]);
    assert!(cuts >= 1.0, "manager_http_cut_total: {cuts}");
}

#[test]
fn answers_a_client_does_not_drain_are_dropped_while_a_normal_download_goes_through() {
    const BLOCKS: u64 = 64;
    const SIZE: u64 = BLOCKS * BLOCK as u64;
    const READERS: usize = 40;
    // --io-timeout far away: only the minimum rate may cut within the wait.
    let m = manager(&[
        "--min-rate",
        "64KiB",
        "--min-rate-window",
        "2s",
        "--io-timeout",
        "300s",
    ]);
    let bytes = Blocks::new("slow-readers").collect(BLOCKS);
    let mut hasher = sha256();
    hasher.update(&bytes);
    let sha = hex_of(hasher);
    m.upload("big", "1.0", None, &bytes).expect(201);
    drop(bytes);
    let path = download_path(&sha);
    // Readers that ask and then read nothing, with small windows.
    let mut readers: Vec<TcpStream> = (0..READERS)
        .map(|_| {
            let mut s = connect_socket(Ipv4Addr::LOCALHOST, m.addr, Some(64 * 1024));
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();
    // A normal client downloads the whole artifact meanwhile.
    let normal = {
        let (addr, path) = (m.addr, path.clone());
        thread::spawn(move || download(addr, &path))
    };
    health_ok(&m);
    // Wait (bounded) for the server to report them cut.
    let mut cut = 0.0;
    eventually(|| {
        cut = metric(
            &m,
            "manager_http_cut_total",
            &[("reason", "answer_too_slow")],
        );
        cut >= 40.0
    });
    let (_, len, got) = normal.join().unwrap();
    assert_eq!((len, got.as_str()), (SIZE, sha.as_str()), "normal download");
    // Now each slow reader drains what is left: a dropped answer ends (EOF or
    // reset) short of the whole artifact.
    for (i, s) in readers.iter_mut().enumerate() {
        match read_until_end(s, Instant::now() + CUT_LIMIT) {
            None => panic!("slow reader {i}: connection still open"),
            Some(n) => assert!(
                n < SIZE,
                "slow reader {i} received all {n} bytes: its answer was not dropped \
                 (answer_too_slow cuts: {cut})"
            ),
        }
    }
    assert!(cut >= 1.0, "answer_too_slow cuts: {cut}");
    health_ok(&m);
}

// ---------------------------------------------------------------------------
// The blocking pool and big transfers

/// Starts an admin upload of `len` bytes of `bin` 1.0 on `w`; the caller
/// streams the body.
fn send_upload_head(w: &mut TcpStream, m: &Manager, bin: &str, len: u64) {
    w.write_all(
        format!(
            "POST /api/v1/bins/{bin}/versions?version=1.0 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {len}\r\n\r\n",
            m.token
        )
        .as_bytes(),
    )
    .unwrap();
}

#[test]
fn a_saturated_blocking_pool_answers_503_busy_and_recovers() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 60;
    let m = manager(&["--blocking-threads", "1", "--queue-timeout", "1s"]);
    keepalive_ok(&m, "known-node");
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let len = CHUNK as u64 * CHUNKS;
    send_upload_head(&mut w, &m, "slow", len);
    // 64 KiB every 100 ms (640 KiB/s, far above the default minimum rate)
    // for 6 s; the test goes on once the first chunks are in.
    let (started_tx, started) = mpsc::channel();
    let uploader = thread::spawn(move || {
        let mut blocks = Blocks::new("blocking-pool");
        let mut hasher = sha256();
        for i in 0..CHUNKS {
            let chunk = &blocks.block(i)[..CHUNK];
            hasher.update(chunk);
            w.write_all(chunk).expect("streaming the upload");
            if i == 4 {
                started_tx.send(()).unwrap();
            }
            thread::sleep(Duration::from_millis(100));
        }
        hex_of(hasher)
    });
    started.recv_timeout(READ_LIMIT).expect("upload started");
    // Handlers that need no blocking thread are served: health, and the
    // keepalive of a known node that changes nothing (the fleet's steady
    // state is answered from memory).
    health_ok(&m);
    keepalive_ok(&m, "known-node");
    // One that needs a write (a new node) waits --queue-timeout, then 503.
    let r = m.keepalive("queued-node", "x86_64", &[]);
    r.expect_error(503);
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    assert!(r.json()["error"].as_str().unwrap().contains("busy"), "{r}");
    let sha = uploader.join().unwrap();
    let a = read_answer(&mut BufReader::new(s), false);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json()["sha256sum"], sha.as_str(), "{a:?}");
    assert_eq!(a.json()["size"], len, "{a:?}");
    keepalive_ok(&m, "queued-node");
    let busy = metric(&m, "manager_http_busy_total", &[]);
    assert!(busy >= 1.0, "manager_http_busy_total: {busy}");
}

#[test]
fn a_one_gib_upload_and_download_go_through() {
    const BLOCKS: u64 = 1024;
    const SIZE: u64 = BLOCKS * BLOCK as u64;
    let m = manager(&[]);
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    send_upload_head(&mut w, &m, "huge", SIZE);
    let mut blocks = Blocks::new("one-gib");
    let mut hasher = sha256();
    let mut write_error = None;
    for i in 0..BLOCKS {
        let block = blocks.block(i);
        hasher.update(block);
        if let Err(e) = w.write_all(block) {
            write_error = Some((i, e));
            break;
        }
    }
    let sha = hex_of(hasher);
    let a = read_answer(&mut BufReader::new(s), false);
    assert_eq!(a.status, 201, "{a:?} (write error: {write_error:?})");
    assert_eq!(a.json()["sha256sum"], sha.as_str(), "{a:?}");
    assert_eq!(a.json()["size"], SIZE, "{a:?}");
    health_ok(&m);
    let (head, len, got) = download(m.addr, &download_path(&sha));
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!((len, got.as_str()), (SIZE, sha.as_str()), "{head:?}");
    health_ok(&m);
}

// ---------------------------------------------------------------------------
// Audit

/// `n` unauthenticated `POST /api/v1/tokens` on kept-alive connections (a
/// new one whenever the server closes one); their statuses.
fn unauthenticated_writes(addr: SocketAddr, n: usize) -> Vec<u16> {
    let body = r#"{"name":"intruder","role":"admin"}"#;
    let wire = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut statuses = Vec::with_capacity(n);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for _ in 0..n {
        let (w, r) = conn.get_or_insert_with(|| {
            let s = connect(addr);
            (s.try_clone().unwrap(), BufReader::new(s))
        });
        let _ = w.write_all(wire.as_bytes());
        let a = read_answer(r, false);
        statuses.push(a.status);
        if a.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            conn = None;
        }
    }
    statuses
}

/// (actor, method, path, status) of an audit record.
fn summary(a: &Value) -> (Option<&str>, &str, &str, u64) {
    (
        a["actor"].as_str(),
        a["method"].as_str().unwrap_or_default(),
        a["path"].as_str().unwrap_or_default(),
        a["status"].as_u64().unwrap_or_default(),
    )
}

#[test]
fn unauthenticated_admin_writes_are_counted_not_audited_one_by_one() {
    const FLOOD: usize = 3_000;
    const THREADS: usize = 4;
    let m = manager(&[]);
    let flooders: Vec<_> = (0..THREADS)
        .map(|_| {
            let addr = m.addr;
            thread::spawn(move || unauthenticated_writes(addr, FLOOD / THREADS))
        })
        .collect();
    health_ok(&m);
    let statuses: Vec<u16> = flooders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let counts = status_counts(&statuses);
    assert_eq!(counts.get(&401), Some(&FLOOD), "{counts:?}");
    // One real admin write, and two refused by role: each audited.
    let r = m.admin_post("/api/v1/tokens", &json!({"name": "v", "role": "viewer"}));
    r.expect(201);
    let viewer = format!("Bearer {}", r.json()["token"].as_str().unwrap());
    for _ in 0..2 {
        m.request(
            "POST",
            "/api/v1/tokens",
            &[
                ("Authorization", &viewer),
                ("Content-Type", "application/json"),
            ],
            br#"{"name":"w","role":"admin"}"#,
        )
        .expect_error(403);
    }
    let records = audit(&m);
    let found = |want: (Option<&str>, &str, &str, u64)| {
        records.iter().filter(|a| summary(a) == want).count()
    };
    assert_eq!(
        found((Some("admin"), "POST", "/api/v1/tokens", 201)),
        1,
        "{records:#?}"
    );
    assert_eq!(
        found((Some("v"), "POST", "/api/v1/tokens", 403)),
        2,
        "{records:#?}"
    );
    let anonymous: Vec<&Value> = records.iter().filter(|a| a["actor"].is_null()).collect();
    assert!(
        anonymous.len() <= 2,
        "{} records without an actor",
        anonymous.len()
    );
    for a in &anonymous {
        assert_eq!(
            (a["method"].as_str(), a["status"].as_u64()),
            (Some("*"), Some(401)),
            "{a}"
        );
    }
    assert_eq!(records.len(), 3 + anonymous.len(), "{records:#?}");
    let counted = metric(&m, "manager_audit_unauthenticated_total", &[]);
    assert!(
        counted >= 3000.0,
        "manager_audit_unauthenticated_total: {counted}"
    );
}

// ---------------------------------------------------------------------------
// Protocol

#[test]
fn host_authorization_and_absolute_form_edges() {
    let m = manager(&[]);
    let a = raw_answer(m.addr, b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(a.status, 400, "no Host: {a:?}");
    for hosts in ["Host: a\r\nHost: b\r\n", "Host: x\r\nHost: x\r\n"] {
        let a = raw_answer(
            m.addr,
            format!("GET /health HTTP/1.1\r\n{hosts}\r\n").as_bytes(),
        );
        assert_eq!(a.status, 400, "{hosts:?}: {a:?}");
    }
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let a = raw_answer(
            m.addr,
            format!(
                "GET /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {}\r\n\
                 Connection: close\r\n\r\n",
                m.token
            )
            .as_bytes(),
        );
        assert_eq!(a.status, 200, "{scheme}: {a:?}");
    }
    let a = raw_answer(
        m.addr,
        format!(
            "GET /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {0}\r\n\
             Authorization: Bearer {0}\r\nConnection: close\r\n\r\n",
            m.token
        )
        .as_bytes(),
    );
    assert_eq!(a.status, 400, "two Authorization headers: {a:?}");
    let a = raw_answer(
        m.addr,
        format!(
            "GET http://{0}/health HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            m.addr
        )
        .as_bytes(),
    );
    assert_eq!(a.status, 200, "absolute form: {a:?}");
    health_ok(&m);
}

#[test]
fn downloads_manifests_and_keepalives_carry_their_cache_headers() {
    let m = manager(&[]);
    let bytes = artifact_bytes("cache", 100_000);
    let sha = sha256_hex(&bytes);
    m.upload("cached", "1.0", None, &bytes).expect(201);
    m.release("cached", "1.0").expect(201);
    let by_sha = download_path(&sha);
    let r = m.get(&by_sha);
    r.expect(200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("content-length"), Some("100000"), "{r}");
    assert_eq!(r.header("transfer-encoding"), None, "{r}");
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()), "{r}");
    assert_eq!(r.header("accept-ranges"), Some("bytes"), "{r}");
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "{r}"
    );
    let r = m.request("GET", &by_sha, &[("Range", "bytes=100-199")], b"");
    r.expect(206);
    assert_eq!(r.body, &bytes[100..200]);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 100-199/100000"),
        "{r}"
    );
    let r = m.get("/api/v1/download/cached");
    r.expect(200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("content-length"), Some("100000"), "{r}");
    assert_eq!(r.header("cache-control"), Some("no-cache"), "{r}");
    let r = m.keepalive("cache-node", "x86_64", &[]);
    r.expect(200);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r}");
    for path in [
        "/api/v1/keepalive?node_id=cache-node",
        "/api/v1/bins/cached?node_id=cache-node",
    ] {
        let r = m.get(path);
        r.expect(200);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}: {r}");
    }
}

#[test]
fn keep_alive_carries_several_requests_and_pipelines() {
    let m = manager(&[]);
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let a = read_answer(&mut r, false);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.header("connection"), None, "{a:?}");
    }
    // HEAD: the length of the body that GET would send, and no body, so the
    // next answer on the same connection parses.
    w.write_all(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_answer(&mut r, true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-length").is_some_and(|l| l != "0"),
        "{head:?}"
    );
    // Two requests in one write, answered in order.
    w.write_all(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    let last = read_answer(&mut r, false);
    assert_eq!(last.status, 404);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(closed(&mut r));
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let m = manager(&[]);
    let (a, closed_after) = raw(m.addr, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(closed_after);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    // The header timeout far away: only the keep-alive timeout may close
    // the idle connection within the read limit.
    let m = manager(&["--keepalive-timeout", "1s", "--header-timeout", "300s"]);
    // Kept alive, then idle past --keepalive-timeout: closed without a word.
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    assert!(
        closed(&mut r),
        "idle kept-alive connection not closed within {READ_LIMIT:?} (--keepalive-timeout 1s)"
    );
}

#[test]
fn a_connection_idle_after_a_request_that_outlived_the_head_deadline_is_still_closed() {
    // The first head's deadline (accept + 2 s) passes while the request's
    // body is still coming; once answered, the idle connection must still
    // be closed (by the keep-alive timeout) rather than live on.
    let m = manager(&["--keepalive-timeout", "1s", "--header-timeout", "2s"]);
    let body = br#"{"node_id":"spanning-node","cpu_arch":"x86_64"}"#;
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(
        format!(
            "POST /api/v1/keepalive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // Half the body, three seconds of silence (within the default minimum
    // rate's first window and request timeout), then the rest.
    w.write_all(&body[..10]).unwrap();
    thread::sleep(Duration::from_secs(3));
    w.write_all(&body[10..]).unwrap();
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        closed(&mut r),
        "idle kept-alive connection not closed within {READ_LIMIT:?} (--keepalive-timeout 1s)"
    );
}

#[test]
fn expect_100_continue_is_answered_only_when_the_body_is_wanted() {
    let m = manager(&[]);
    let bytes = b"0123456789";
    let head = |auth: &str| {
        format!(
            "POST /api/v1/bins/cont/versions?version=1.0 HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            bytes.len()
        )
    };
    // Without a token the answer is final at once: no 100, and a close
    // (the body was never read).
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(head("").as_bytes()).unwrap();
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(!a.error_text().is_empty(), "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    // With it: 100 first, then the body is read and stored.
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let auth = format!("Authorization: Bearer {}\r\n", m.token);
    w.write_all(head(&auth).as_bytes()).unwrap();
    let interim = read_answer(&mut r, false);
    assert_eq!(interim.status, 100, "{interim:?}");
    w.write_all(bytes).unwrap();
    let a = read_answer(&mut r, false);
    assert_eq!(a.status, 201, "{a:?}");
    // And the connection goes on.
    w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
}

#[test]
fn sigterm_exits_0_with_idle_and_half_sent_connections_open() {
    let mut m = manager(&["--keepalive-timeout", "60s", "--header-timeout", "60s"]);
    let idle = connect(m.addr);
    let mut w = idle.try_clone().unwrap();
    let mut r = BufReader::new(idle);
    w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    let mut half = connect(m.addr);
    half.write_all(b"GET /heal").unwrap();
    let status = m.sigterm();
    assert_eq!(status.code(), Some(0), "log:\n{}", m.log());
    assert!(closed(&mut r));
}

#[test]
fn the_new_flags_take_their_documented_forms_and_the_listening_line_stays() {
    // The harness sees the line a moment before the log holds it.
    let logged = |m: &Manager, text: &str| {
        (0..100).any(|_| {
            let found = m.log().contains(text);
            if !found {
                thread::sleep(Duration::from_millis(50));
            }
            found
        })
    };
    let m = manager(&[]);
    assert!(
        logged(&m, "(16384 connections at most)"),
        "default --max-connections: {}",
        m.log()
    );
    for (flags, listed) in [
        (&["--workers", "8"][..], "(8 connections at most)"),
        (
            &["--max-connections", "9", "--min-rate", "500"][..],
            "(9 connections at most)",
        ),
        (&["--min-rate", "16KiB", "--min-rate-window", "10s"][..], ""),
        (&["--min-rate", "1MiB/s", "--io-timeout", "30s"][..], ""),
        (
            &[
                "--blocking-threads",
                "2",
                "--queue-timeout",
                "2s",
                "--shutdown-timeout",
                "10s",
                "--request-timeout",
                "30s",
                "--max-connections-per-ip",
                "256",
            ][..],
            "",
        ),
    ] {
        let m = manager(flags);
        assert!(logged(&m, listed), "{flags:?}: {}", m.log());
        health_ok(&m);
    }
}
