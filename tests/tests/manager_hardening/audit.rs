//! A flood of unauthenticated admin writes is counted, not audited one by
//! one; authenticated writes still are.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use binproxy_tests::metrics::assert_counted;
use binproxy_tests::raw_client::{connect, health_ok, manager, read_answer};
use binproxy_tests::roles::audit;
use binproxy_tests::status_counts;
use serde_json::{json, Value};

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
    let records = audit(&m, Some(1000));
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
    assert_counted(&m, "manager_audit_unauthenticated_total", &[], 3000.0);
}
