//! Capacity: the connection over `--max-connections` or the per-address cap
//! gets 503 and the held ones stay; 10,000 idle connections and 2,000
//! stalled TLS handshakes cost memory, not capacity.

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Instant;

use binproxy_tests::metrics::{assert_counted, metric};
use binproxy_tests::raw_client::{
    closed, connect, connect_from, eventually, health_from, health_ok, keepalive_ok, kept_alive,
    manager, raise_nofile, raw, read_answer, read_until_end, source, tls_client, tls_request,
    untouched, CUT_LIMIT,
};
use binproxy_tests::tls::TestCa;
use binproxy_tests::{Manager, ManagerOptions};

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
    let mut kept: Vec<(TcpStream, BufReader<TcpStream>)> =
        (0..2).map(|_| kept_alive(m.addr)).collect();
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
    assert_counted(
        &m,
        "manager_http_connections_refused_total",
        &[("reason", "max_connections")],
        1.0,
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
    assert_counted(
        &m,
        "manager_http_connections_refused_total",
        &[("reason", "per_ip")],
        1.0,
    );
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
