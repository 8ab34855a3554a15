//! The manager's own HTTP server under hostile or sloppy clients, over raw
//! TCP on loopback: slow heads are cut off by `--header-timeout` while
//! others are served; oversized heads get 431, oversized bodies 413 and a
//! close; garbage and broken framing get a 4xx/5xx and the server lives on;
//! a full pool answers 503 with `Retry-After` at once; keep-alive, pipelining,
//! HEAD, HTTP/1.0 and `Expect: 100-continue` behave; SIGTERM still exits 0
//! with idle and half-sent connections open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use binproxy_tests::{Manager, ManagerOptions};

/// Generous bound for any single read in these tests (not a timing assertion:
/// a read that waits this long means the server hung).
const READ_LIMIT: Duration = Duration::from_secs(30);

fn manager(args: &[&str]) -> Manager {
    let opts = args.iter().fold(ManagerOptions::default(), |o, a| o.arg(a));
    Manager::new_with(opts)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the manager");
    s.set_read_timeout(Some(READ_LIMIT)).unwrap();
    s.set_write_timeout(Some(READ_LIMIT)).unwrap();
    s
}

/// One parsed answer read off a kept-alive connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_text(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {self:?}"));
        v["error"].as_str().expect("an error string").to_owned()
    }
}

/// Reads exactly one answer (head, then Content-Length bytes unless `head_only`).
fn read_answer(r: &mut BufReader<TcpStream>, head_only: bool) -> Answer {
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

/// Whether the server closed the connection (EOF or reset, no more bytes).
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn health_ok(m: &Manager) {
    m.get("/health").expect(200);
}

#[test]
fn a_slow_client_is_dropped_after_the_header_timeout_while_others_are_served() {
    let m = manager(&["--max-connections", "2", "--header-timeout", "2s"]);
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
    // The other slot serves requests meanwhile, one connection each.
    for _ in 0..5 {
        health_ok(&m);
    }
    let mut r = BufReader::new(slow);
    let answer = read_answer(&mut r, false);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(closed(&mut r), "the slow connection stays open");
    assert!(
        trickle.join().unwrap(),
        "the server kept reading the trickle"
    );
    health_ok(&m);
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
    assert!(a.error_text().contains("100"), "{a:?}");
    assert!(closed);
    // 100 fields (98, Host and Connection) are still fine.
    let hundred = fields(98);
    let (a, _) = raw(
        m.addr,
        format!("GET /health HTTP/1.1\r\nHost: x\r\n{hundred}Connection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(a.status, 200, "{a:?}");
    // One huge field, and a huge request line.
    let big = "x".repeat(17 * 1024);
    let (a, closed) = raw(
        m.addr,
        format!("GET /health HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    assert!(closed);
    let (a, _) = raw(m.addr, format!("GET /{big} HTTP/1.1\r\n\r\n").as_bytes());
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
    let (a, _) = raw(
        m.addr,
        b"POST /api/v1/keepalive HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
    );
    assert_eq!(a.status, 413, "{a:?}");
    health_ok(&m);
}

#[test]
fn garbage_and_broken_framing_get_an_error_and_the_server_lives_on() {
    let m = manager(&[]);
    let cases: &[(&[u8], u16)] = &[
        (b"\x00\x01\x02\xff garbage\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX-Name: \xc3\x28\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nBad Name: v\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\rX: y\r\n\r\n", 400),
        (b"GET /health HTTP/3.0\r\n\r\n", 505),
        (b"GET health HTTP/1.1\r\n\r\n", 400),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /api/v1/keepalive HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            400,
        ),
    ];
    for (wire, want) in cases {
        let (a, _) = raw(m.addr, wire);
        assert_eq!(
            a.status,
            *want,
            "{:?}: {a:?}",
            String::from_utf8_lossy(wire)
        );
        assert!(!a.error_text().is_empty());
        health_ok(&m);
    }
    // Bytes cut off mid-head, then the client leaves: nothing to answer.
    let mut s = connect(m.addr);
    s.write_all(b"POST /api/v1/keep").unwrap();
    drop(s);
    health_ok(&m);
}

#[test]
fn a_full_pool_answers_503_with_retry_after_at_once() {
    let m = manager(&["--max-connections", "2", "--header-timeout", "60s"]);
    // Two connections hold both workers with heads that never finish.
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(m.addr);
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let (a, closed) = raw(m.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("1"), "{a:?}");
    assert!(a.error_text().contains("busy"), "{a:?}");
    assert!(closed);
    // A holder finishing its request frees its worker for the next client.
    holders[0].write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(holders.remove(0));
    assert_eq!(read_answer(&mut r, false).status, 200);
    let mut served = false;
    for _ in 0..100 {
        if let Ok(r) = m.try_request("GET", "/health", &[], b"") {
            if r.status == 200 {
                served = true;
                break;
            }
            assert_eq!(r.status, 503, "{r}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "no worker came free");
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
    w.write_all(b"GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    let last = read_answer(&mut r, false);
    assert_eq!(last.status, 404);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(closed(&mut r));
}

#[test]
fn http_1_0_closes_and_idle_connections_time_out() {
    let m = manager(&["--keepalive-timeout", "1s"]);
    let (a, closed_after) = raw(m.addr, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("connection"), Some("close"));
    assert!(closed_after);
    // Kept alive, then idle past --keepalive-timeout: closed without a word.
    let s = connect(m.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    assert!(closed(&mut r), "idle connection not closed");
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
    w.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
}

#[test]
fn sigterm_exits_0_with_idle_and_half_sent_connections_open() {
    let mut m = manager(&["--keepalive-timeout", "60s", "--header-timeout", "60s"]);
    let idle = connect(m.addr);
    let mut w = idle.try_clone().unwrap();
    let mut r = BufReader::new(idle);
    w.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut r, false).status, 200);
    let mut half = connect(m.addr);
    half.write_all(b"GET /heal").unwrap();
    let status = m.sigterm();
    assert_eq!(status.code(), Some(0), "log:\n{}", m.log());
    assert!(closed(&mut r));
}
