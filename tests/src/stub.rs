//! One small HTTP/1.1 server for the tests that need a server other than the
//! real manager: one that answers wrongly on purpose (a manager that sends
//! other bytes, cuts or drips a download, asks to come back later) or one
//! that receives what the manager sends (webhooks). [`StubServer::start`]
//! takes a handler; the server records every request it reads, in order,
//! and hands each to the handler on the connection's own thread, with
//! `Connection: close` after. [`closed_port_url`] is the opposite: a
//! loopback port nothing listens on.
//!
//! Every loop is bounded: the server stops when dropped, after
//! [`MAX_LIFETIME`] or after [`MAX_REQUESTS`] requests, whichever is first.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a stub server accepts connections.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// Most requests a stub server reads.
pub const MAX_REQUESTS: usize = 10_000;
/// How long a read or write on one connection may block.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// One request a stub server read.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request in the hands of a handler: what was asked, its place among
/// the requests read (0 for the first), and the connection to answer on.
pub struct Exchange<'a> {
    pub request: &'a Request,
    pub index: usize,
    stream: TcpStream,
    stop: &'a AtomicBool,
}

impl Exchange<'_> {
    /// Whether the server is stopping (a long answer should end).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Writes a response head: the status line, `Connection: close`,
    /// `headers` and a `Content-Length` of `len` (which the body that
    /// follows may fall short of or exceed, on purpose).
    pub fn head(&mut self, status: u16, headers: &[(&str, String)], len: usize) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} Stub\r\nConnection: close\r\n");
        for (k, v) in headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        let _ = write!(head, "Content-Length: {len}\r\n\r\n");
        self.stream.write_all(head.as_bytes())
    }

    /// Writes (and flushes) part of a body; an error means the client hung up.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A whole answer: head and `body`, its length announced.
    pub fn respond(&mut self, status: u16, headers: &[(&str, String)], body: &[u8]) {
        let _ = self
            .head(status, headers, body.len())
            .and_then(|()| self.write(body));
    }

    /// A whole JSON answer.
    pub fn json(&mut self, status: u16, v: &Value) {
        let body = serde_json::to_vec(v).expect("JSON");
        self.respond(
            status,
            &[("Content-Type", "application/json".into())],
            &body,
        );
    }
}

type Handler = dyn Fn(&mut Exchange) + Send + Sync;

/// A running stub server on `127.0.0.1:<ephemeral>`; dropping it stops it
/// (connections being answered finish on their own threads).
pub struct StubServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Serves every request with `handler`. A request is recorded as soon
    /// as it is read (head and `Content-Length` body), before the handler
    /// answers it: a client that got an answer finds its request counted.
    pub fn start(handler: impl Fn(&mut Exchange) + Send + Sync + 'static) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a stub server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("stub server address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            let handler: Arc<Handler> = Arc::new(handler);
            thread::spawn(move || accept_loop(&listener, &handler, &seen, &stop))
        };
        StubServer {
            addr,
            url: format!("http://{addr}"),
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The requests read so far, in order.
    pub fn seen(&self) -> Vec<Request> {
        lock(&self.seen).clone()
    }

    /// How many requests were read so far.
    pub fn requests(&self) -> usize {
        lock(&self.seen).len()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback URL nothing listens on (a port bound, then released).
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address");
    drop(l);
    format!("http://{addr}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(
    listener: &TcpListener,
    handler: &Arc<Handler>,
    seen: &Arc<Mutex<Vec<Request>>>,
    stop: &Arc<AtomicBool>,
) {
    let deadline = Instant::now() + MAX_LIFETIME;
    while !stop.load(Ordering::Relaxed)
        && Instant::now() < deadline
        && lock(seen).len() < MAX_REQUESTS
    {
        match listener.accept() {
            Ok((stream, _)) => {
                let (handler, seen, stop) =
                    (Arc::clone(handler), Arc::clone(seen), Arc::clone(stop));
                // A broken connection is the client's business; keep serving.
                thread::spawn(move || {
                    let _ = connection(stream, &*handler, &seen, &stop);
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn connection(
    mut stream: TcpStream,
    handler: &Handler,
    seen: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CONNECTION_TIMEOUT))?;
    stream.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
    let request = read_request(&mut stream)?;
    let index = {
        let mut seen = lock(seen);
        seen.push(request.clone());
        seen.len() - 1
    };
    let mut exchange = Exchange {
        request: &request,
        index,
        stream,
        stop,
    };
    handler(&mut exchange);
    let _ = exchange.stream.flush();
    let _ = exchange.stream.shutdown(Shutdown::Write);
    Ok(())
}

fn read_request(stream: &mut TcpStream) -> io::Result<Request> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no head"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(len);
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}
