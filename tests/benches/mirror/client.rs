//! The bench's HTTP/1.1 client: one request per connection, the body
//! streamed to a sink (collected, or hashed and counted as an artifact),
//! every byte received counted per server, and a bounded retry after a 503,
//! a 429 or a transport error.

use binproxy_protocol::Target;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::Duration;

/// Socket reads and writes that block longer fail the request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of one request (503, a reset, ...) before the bench gives up.
pub const MAX_TRIES: u32 = 5;
/// Bytes read from a socket at a time.
pub const READ_BUF: usize = 256 * 1024;

/// Which server a request went to.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Manager,
    Mirror,
}

/// Counted by the load generator during one scenario-round.
#[derive(Debug, Default)]
pub struct Tally {
    pub manager_bytes: AtomicU64,
    pub manager_requests: AtomicU64,
    pub mirror_bytes: AtomicU64,
    pub mirror_requests: AtomicU64,
    /// Keepalives refused (the manager stopped).
    pub refused: AtomicU64,
    /// Reports an agent would have queued (the manager stopped).
    pub queued: AtomicU64,
    /// Requests tried again after a 503, 429 or a transport error.
    pub retries: AtomicU64,
    /// Agents whose download was verified.
    pub verified: AtomicU64,
}

impl Tally {
    pub fn count(&self, peer: Peer, bytes: u64) {
        let (b, r) = match peer {
            Peer::Manager => (&self.manager_bytes, &self.manager_requests),
            Peer::Mirror => (&self.mirror_bytes, &self.mirror_requests),
        };
        b.fetch_add(bytes, Relaxed);
        r.fetch_add(1, Relaxed);
    }
}

/// One answer: its status and the bytes received (head and body).
pub struct Answer {
    pub status: u16,
    pub wire: u64,
}

/// Where an answer's body goes as it arrives; started over before each try.
pub trait Sink {
    fn reset(&mut self);
    fn feed(&mut self, piece: &[u8]);
}

/// The body collected (a small JSON answer).
impl Sink for Vec<u8> {
    fn reset(&mut self) {
        self.clear();
    }
    fn feed(&mut self, piece: &[u8]) {
        self.extend_from_slice(piece);
    }
}

/// The body hashed and counted, not kept (an artifact).
pub struct Verifier {
    pub hasher: Sha256,
    pub len: u64,
}

impl Sink for Verifier {
    fn reset(&mut self) {
        self.hasher = Sha256::new();
        self.len = 0;
    }
    fn feed(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.len += piece.len() as u64;
    }
}

/// `method path` on `addr` with `Connection: close`; the body goes to
/// `on_body` piece by piece as it arrives (the answer must carry a
/// `Content-Length`, as every answer of the manager and nginx here does).
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    on_body: &mut dyn FnMut(&[u8]),
) -> io::Result<Answer> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body);
    (&stream).write_all(&wire)?;

    let mut reader = BufReader::with_capacity(READ_BUF, stream);
    let mut received = 0u64;
    let mut line = Vec::new();
    let mut status = 0u16;
    let mut length: Option<u64> = None;
    let mut first = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the head",
            ));
        }
        received += n as u64;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if first {
            first = false;
            status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("bad status line {text:?}")))?;
        } else if text.is_empty() {
            break;
        } else if let Some((k, v)) = text.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
                );
            }
        }
        if received > 64 * 1024 {
            return Err(bad("head over 64 KiB".into()));
        }
    }
    let mut left = if method == "HEAD" || status == 204 || status == 304 {
        0
    } else {
        length.ok_or_else(|| bad(format!("{method} {path}: answer {status} without a length")))?
    };
    while left > 0 {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body cut short, {left} bytes missing"),
            ));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        on_body(&buf[..take]);
        reader.consume(take);
        left -= take as u64;
        received += take as u64;
    }
    Ok(Answer {
        status,
        wire: received,
    })
}

pub fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// [`exchange`], tried again (at most [`MAX_TRIES`]) after a 503, a 429 or a
/// transport error, every try counted (what arrived before an error was
/// served all the same).
pub fn call(
    tally: &Tally,
    peer: Peer,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    sink: &mut dyn Sink,
) -> Answer {
    let mut last = String::new();
    for attempt in 1..=MAX_TRIES {
        sink.reset();
        let mut wire = 0u64;
        let got = exchange(addr, method, path, body, &mut |piece| {
            wire += piece.len() as u64;
            sink.feed(piece);
        });
        match got {
            Ok(a) if a.status != 503 && a.status != 429 => {
                tally.count(peer, a.wire);
                return a;
            }
            Ok(a) => {
                tally.count(peer, a.wire);
                last = format!("HTTP {}", a.status);
            }
            Err(e) => {
                tally.count(peer, wire);
                last = e.to_string();
            }
        }
        if attempt < MAX_TRIES {
            tally.retries.fetch_add(1, Relaxed);
            thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        }
    }
    panic!("{method} {path} on {addr}: {MAX_TRIES} tries, the last: {last}");
}

/// A JSON request; the answer's body collected.
#[track_caller]
pub fn json_call(
    tally: &Tally,
    peer: Peer,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    want: u16,
) -> Vec<u8> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut collected = Vec::new();
    let a = call(tally, peer, addr, method, path, &bytes, &mut collected);
    assert_eq!(
        a.status,
        want,
        "{method} {path}: HTTP {}: {}",
        a.status,
        String::from_utf8_lossy(&collected)
    );
    collected
}

/// Downloads `path` from `addr` and checks size and sha256 against `target`
/// as the bytes stream in.
pub fn download(tally: &Tally, peer: Peer, addr: SocketAddr, path: &str, target: &Target) {
    let mut v = Verifier {
        hasher: Sha256::new(),
        len: 0,
    };
    let a = call(tally, peer, addr, "GET", path, b"", &mut v);
    assert_eq!(a.status, 200, "GET {path} on {addr}: HTTP {}", a.status);
    assert_eq!(v.len, target.size, "GET {path} on {addr}: size");
    assert_eq!(
        hex(&v.hasher.finalize()),
        target.sha256sum,
        "GET {path} on {addr}: sha256"
    );
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
