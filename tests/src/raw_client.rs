//! The hostile client of the hardening tests (`tests/manager_hardening/`):
//! connections from chosen loopback source addresses with small receive
//! windows, bytes written exactly as given, one answer at a time read off a
//! kept-alive connection ([`Answer`]), checks that a connection was closed or
//! left untouched, downloads hashed as they stream in, artifacts generated
//! block by block ([`Blocks`]), TLS requests, and the open-file limit raised
//! for ten thousand connections.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{artifact_bytes, Manager, ManagerOptions};
use rustls::pki_types::ServerName;
use serde_json::Value;
use sha2::{Digest, Sha256};
use socket2::{Domain, Socket, Type};

/// Generous bound for any single read in these tests (not a timing assertion:
/// a read that waits this long means the server hung).
pub const READ_LIMIT: Duration = Duration::from_secs(30);

/// Bound for "the server ends this connection by itself" waits.
pub const CUT_LIMIT: Duration = Duration::from_secs(60);

pub fn manager(args: &[&str]) -> Manager {
    let opts = args.iter().fold(ManagerOptions::default(), |o, a| o.arg(a));
    Manager::new_with(opts)
}

pub fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(READ_LIMIT)).unwrap();
    s.set_write_timeout(Some(READ_LIMIT)).unwrap();
    s
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    with_timeouts(TcpStream::connect(addr).expect("connect to the manager"))
}

/// `127.0.0.{2 + n % count}`: spreads connections over source addresses.
pub fn source(n: usize, count: usize) -> Ipv4Addr {
    let last = u8::try_from(2 + n % count).expect("at most 253 source addresses");
    Ipv4Addr::new(127, 0, 0, last)
}

/// A connection from source address `from` (bind before connect), with an
/// optional small receive buffer (a small TCP window: a client that does not
/// read stalls the server's answer sooner).
pub fn connect_socket(from: Ipv4Addr, addr: SocketAddr, recv_buffer: Option<usize>) -> TcpStream {
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

pub fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    connect_socket(from, addr, None)
}

/// Raises this process's open-file soft limit to the hard limit (managers
/// started afterwards inherit it); fails clearly when the hard limit is below
/// `need`.
pub fn raise_nofile(need: u64) {
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
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn error_text(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {self:?}"));
        v["error"].as_str().expect("an error string").to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// Reads exactly one answer (head, then Content-Length bytes unless `head_only`).
pub fn read_answer(r: &mut impl BufRead, head_only: bool) -> Answer {
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
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> (Answer, bool) {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    let mut r = BufReader::new(s);
    let answer = read_answer(&mut r, false);
    (answer, closed(&mut r))
}

/// Sends raw bytes on a new connection and reads one answer (not waiting for
/// the connection to end).
pub fn raw_answer(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    read_answer(&mut BufReader::new(s), false)
}

/// Whether the server closed the connection (EOF or reset, no more bytes).
pub fn closed(r: &mut impl Read) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Reads and discards until the server ends the connection (EOF or reset);
/// returns how many bytes came, or `None` if it was still open at `deadline`.
pub fn read_until_end(s: &mut TcpStream, deadline: Instant) -> Option<u64> {
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
pub fn untouched(s: &TcpStream) -> Result<(), String> {
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

pub fn health_ok(m: &Manager) {
    m.get("/health").expect(200);
}

/// A node's keepalive, which the server answers 200 when all is well.
pub fn keepalive_ok(m: &Manager, node: &str) {
    m.keepalive(node, "x86_64", &[]).expect(200);
}

/// A streaming sha256 (sha2 is built at opt-level 3 even in debug builds:
/// see the workspace's Cargo.toml).
pub fn sha256() -> Sha256 {
    Sha256::new()
}

/// Lower-case hex of a finished [`sha256`].
pub fn hex_of(ctx: Sha256) -> String {
    binproxy_protocol::hex(&ctx.finalize())
}

/// Size of one generated block.
pub const BLOCK: usize = 1 << 20;

/// Artifact bytes made block by block without holding them: block `i` is a
/// fixed pseudo-random MiB with `i` in its first 8 bytes, so a lost,
/// repeated or reordered block changes the sha256.
pub struct Blocks {
    pub block: Vec<u8>,
}

impl Blocks {
    pub fn new(seed: &str) -> Blocks {
        Blocks {
            block: artifact_bytes(seed, BLOCK),
        }
    }

    pub fn block(&mut self, i: u64) -> &[u8] {
        self.block[..8].copy_from_slice(&i.to_le_bytes());
        &self.block
    }

    /// All of `blocks` blocks in one buffer (for the smaller artifacts).
    pub fn collect(&mut self, blocks: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOCK * usize::try_from(blocks).unwrap());
        for i in 0..blocks {
            out.extend_from_slice(self.block(i));
        }
        out
    }
}

/// `GET path` on a new connection, the body hashed as it streams in: the
/// answer's head, the number of body bytes read and their sha256.
pub fn download(addr: SocketAddr, path: &str) -> (Answer, u64, String) {
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

pub fn tls_client(config: &Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    rustls::ClientConnection::new(Arc::clone(config), name).unwrap()
}

/// One request over a real TLS connection; its answer.
pub fn tls_request(config: &Arc<rustls::ClientConfig>, addr: SocketAddr, wire: &str) -> Answer {
    let mut s = rustls::StreamOwned::new(tls_client(config), connect(addr));
    s.write_all(wire.as_bytes()).expect("TLS write");
    s.flush().unwrap();
    read_answer(&mut BufReader::new(s), false)
}

/// Polls (bounded: `CUT_LIMIT`) until `done` holds; returns whether it did.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
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
pub fn health_from(from: Ipv4Addr, addr: SocketAddr) -> Answer {
    let mut s = connect_from(from, addr);
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_answer(&mut BufReader::new(s), false)
}

/// A connection that had one `GET /health` answered 200 and is kept alive:
/// its write half and a reader on it.
pub fn kept_alive(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    (w, r)
}
