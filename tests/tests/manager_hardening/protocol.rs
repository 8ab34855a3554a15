//! Protocol edges: `Host`, `Authorization` and absolute-form targets, cache
//! headers, keep-alive and pipelining, HTTP/1.0, idle connections closed,
//! `Expect: 100-continue`, SIGTERM with connections open, the flags' forms.

use std::io::{BufReader, Write};
use std::thread;
use std::time::Duration;

use binproxy_protocol::download_path;
use binproxy_tests::raw_client::{
    closed, connect, health_ok, kept_alive, manager, raw, raw_answer, read_answer, READ_LIMIT,
};
use binproxy_tests::{artifact_bytes, sha256_hex, Manager};

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
    // `GET /api/v1/tokens` with these header lines.
    let tokens = |authorization: &str| {
        let wire = format!(
            "GET /api/v1/tokens HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n"
        );
        raw_answer(m.addr, wire.as_bytes())
    };
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let a = tokens(&format!("Authorization: {scheme} {}\r\n", m.token));
        assert_eq!(a.status, 200, "{scheme}: {a:?}");
    }
    let a = tokens(&format!(
        "Authorization: Bearer {0}\r\nAuthorization: Bearer {0}\r\n",
        m.token
    ));
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
fn every_kind_of_answer_carries_its_cache_headers() {
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
    // A token's answers are its own: no shared cache keeps them, and a
    // browser never reuses one for another token; their 304s say so too.
    let auth = format!("Bearer {}", m.token);
    for path in [
        "/api/v1/releases",
        "/api/v1/nodes?limit=10",
        "/api/v1/fleet",
    ] {
        let r = m.admin_get(path);
        r.expect(200);
        assert_eq!(
            r.header("cache-control"),
            Some("private, no-cache"),
            "{path}: {r}"
        );
        assert_eq!(r.header("vary"), Some("Authorization"), "{path}: {r}");
        let etag = r.header("etag").unwrap_or_else(|| panic!("{path}: {r}"));
        let again = [("Authorization", auth.as_str()), ("If-None-Match", etag)];
        let r = m.request("GET", path, &again, b"");
        r.expect(304);
        assert_eq!(
            r.header("cache-control"),
            Some("private, no-cache"),
            "{path}: {r}"
        );
        assert_eq!(r.header("vary"), Some("Authorization"), "{path}: {r}");
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
    let (_w, mut r) = kept_alive(m.addr);
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
