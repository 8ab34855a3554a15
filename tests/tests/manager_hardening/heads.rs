//! Heads: slow heads (408 after `--header-timeout`, silent connections
//! closed), header floods (431), bodies over the limit (413), garbage and
//! broken framing (a 4xx/5xx, the server lives on).

use std::io::{BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use binproxy_tests::metrics::assert_counted;
use binproxy_tests::raw_client::{
    closed, connect, health_ok, manager, raw, raw_answer, read_answer, read_until_end, CUT_LIMIT,
};

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
    assert_counted(
        &m,
        "manager_http_cut_total",
        &[("reason", "header_timeout")],
        1.0,
    );
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
