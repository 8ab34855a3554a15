//! Slow and big transfers: bodies below `--min-rate` or past
//! `--request-timeout` (408), a stalled body (`--io-timeout`), answers a
//! client does not drain, a saturated blocking pool (503 busy), a 1 GiB
//! upload and download.

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use binproxy_protocol::download_path;
use binproxy_tests::metrics::{assert_counted, metric};
use binproxy_tests::raw_client::{
    closed, connect, connect_socket, download, eventually, health_ok, hex_of, keepalive_ok,
    manager, read_answer, read_until_end, sha256, Blocks, BLOCK, CUT_LIMIT, READ_LIMIT,
};
use binproxy_tests::Manager;
use sha2::Digest;

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
    assert_counted(
        &m,
        "manager_http_cut_total",
        &[("reason", "body_too_slow")],
        1.0,
    );
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
    assert_counted(
        &m,
        "manager_http_cut_total",
        &[("reason", "request_timeout")],
        1.0,
    );
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
    assert_counted(&m, "manager_http_cut_total", &[], 1.0);
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
    assert_counted(&m, "manager_http_busy_total", &[], 1.0);
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
