//! The agent's back-off from the manager, across separate `binproxy run`s: a
//! busy manager (a small server written here that answers every request 503
//! or 429 with `Retry-After` and counts the requests), an unreachable one (a
//! closed loopback port), and the real manager-lite that ends it. Assertions
//! are on exit codes, request counts, `state_dir/backoff.json` and
//! `binproxy status`; no test waits out a back-off or measures a sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, publish, Agent};
use binproxy_tests::wait_until;
use binproxy_tests::Manager;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = "svc";
/// The longest Retry-After the agent honours (its `backoff::MAX_RETRY_AFTER`).
const HOUR: u64 = 3600;

/// A manager too busy to serve anyone: every request gets `status` with
/// `Retry-After: <retry_after>`. Counts the requests it read.
struct Busy {
    url: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Busy {
    fn start(status: u16, retry_after: &str) -> Busy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s, value) = (
            Arc::clone(&requests),
            Arc::clone(&stop),
            retry_after.to_owned(),
        );
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if serve(stream, status, &value).is_ok() {
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Busy {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head and `Content-Length` body, bounded) and refuses it.
fn serve(mut stream: TcpStream, status: u16, retry_after: &str) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 || raw.len() > 64 * 1024 {
            return Err(io::Error::other("no request head"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = raw.len() - end;
    while have < len.min(1 << 20) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    let body = br#"{"error":"busy, come back later"}"#;
    let reply = format!(
        "HTTP/1.1 {status} Busy\r\nRetry-After: {retry_after}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    stream.write_all(body)?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// `state_dir/backoff.json`, parsed, if present.
fn backoff_file(a: &Agent) -> Option<Value> {
    let bytes = std::fs::read(a.state_dir.join("backoff.json")).ok()?;
    Some(serde_json::from_slice(&bytes).expect("backoff.json is JSON"))
}

/// `binproxy status --json --offline` (no request), parsed.
fn offline_status(a: &Agent) -> Value {
    let out = a.exec("status", &["--json", "--offline"]);
    out.expect_code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

/// Runs the agent once, returning the outcome and the unix-second window
/// around it.
fn timed_run(a: &Agent, args: &[&str]) -> (binproxy_tests::agent::Outcome, u64, u64) {
    let before = now();
    let mut all = vec!["--now"];
    all.extend_from_slice(args);
    let out = a.exec("run", &all);
    (out, before, now())
}

fn retry_after_keeps_later_runs_away(status: u16) {
    let busy = Busy::start(status, "120");
    let a = Agent::new(BIN);
    let v0 = good_script("v0");
    a.place(&v0);
    a.configure(&busy.url, &json!({}));

    let (out, t0, t1) = timed_run(&a, &[]);
    out.expect_code(69);
    assert_eq!(busy.requests(), 1, "one keepalive");
    assert!(
        out.stderr.contains("manager asked to retry after 120s"),
        "{}",
        out.stderr
    );
    let b = backoff_file(&a).expect("backoff.json written");
    let not_before = b["not_before"].as_u64().unwrap();
    assert!(
        (t0 + 120..=t1 + 120).contains(&not_before),
        "not_before {not_before} is not 120s after the run ({t0}..{t1})"
    );
    assert_eq!(b["retry_after"]["status"], status);

    // A run right after: no request, exit 69, one line saying until when.
    let out = a.run();
    out.expect_code(69);
    assert_eq!(
        busy.requests(),
        1,
        "a run during the back-off made a request"
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("backing off until"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    let st = offline_status(&a);
    let utc = st["backoff"]["not_before_utc"].as_str().unwrap().to_owned();
    assert!(lines[0].contains(&utc), "{} lacks {utc}", lines[0]);
    assert_eq!(st["backoff"]["not_before"], not_before);
    assert!(
        st["backoff"]["reason"]
            .as_str()
            .unwrap()
            .contains("manager asked to retry after 120s"),
        "{st}"
    );
    let text = a.exec("status", &["--offline"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains(&format!(
            "not before {utc}: manager asked to retry after 120s"
        )),
        "{}",
        text.stdout
    );

    // The operator's override asks again.
    a.exec("run", &["--now", "--ignore-backoff"])
        .expect_code(69);
    assert_eq!(busy.requests(), 2, "--ignore-backoff made no request");
    a.assert_live(&v0, "busy manager");
}

#[test]
fn a_503_with_retry_after_keeps_later_runs_away_until_then() {
    retry_after_keeps_later_runs_away(503);
}

#[test]
fn a_429_with_retry_after_keeps_later_runs_away_until_then() {
    retry_after_keeps_later_runs_away(429);
}

#[test]
fn a_retry_after_beyond_an_hour_is_capped() {
    for asked in ["31536000", "Fri, 01 Jan 2100 00:00:00 GMT"] {
        let busy = Busy::start(503, asked);
        let a = Agent::new(BIN);
        a.configure(&busy.url, &json!({}));
        let (out, t0, t1) = timed_run(&a, &[]);
        out.expect_code(69);
        let not_before = backoff_file(&a).unwrap()["not_before"].as_u64().unwrap();
        assert!(
            (t0 + HOUR..=t1 + HOUR).contains(&not_before),
            "{asked}: not_before {not_before}, run at {t0}..{t1}"
        );
        let st = offline_status(&a);
        let reason = st["backoff"]["reason"].as_str().unwrap();
        assert!(reason.contains("capped at 1h"), "{asked}: {reason}");
    }
}

#[test]
fn an_unreachable_manager_backs_off_longer_each_time_and_success_clears_it() {
    let a = Agent::new(BIN);
    a.configure(&closed_port_url(), &json!({}));

    let (out, t0, t1) = timed_run(&a, &[]);
    out.expect_code(69);
    let first = backoff_file(&a).expect("backoff.json after a failure");
    let nb1 = first["not_before"].as_u64().unwrap();
    assert_eq!(first["failures"], 1);
    assert!(
        (t0 + 30..=t1 + 60).contains(&nb1),
        "first wait out of 30..60s: {nb1} for a run at {t0}..{t1}"
    );

    let out = a.run();
    out.expect_code(69);
    assert!(
        out.stderr
            .contains("backing off after 1 failure: manager unreachable"),
        "{}",
        out.stderr
    );
    assert_eq!(backoff_file(&a).unwrap(), first, "a skipped run changed it");

    let (out, t0, t1) = timed_run(&a, &["--ignore-backoff"]);
    out.expect_code(69);
    let second = backoff_file(&a).unwrap();
    let nb2 = second["not_before"].as_u64().unwrap();
    assert_eq!(second["failures"], 2);
    assert!(
        (t0 + 60..=t1 + 120).contains(&nb2),
        "second wait out of 60..120s: {nb2} for a run at {t0}..{t1}"
    );
    assert!(nb2 >= nb1, "the back-off shrank: {nb1} then {nb2}");
    let st = offline_status(&a);
    assert_eq!(st["backoff"]["failures"], 2);
    assert!(
        st["backoff"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("backing off after 2 failures: manager unreachable"),
        "{st}"
    );

    // The manager is back: a run still waits, one that overrides succeeds
    // and clears the back-off, and later runs go ahead.
    let m = Manager::new();
    let v1 = good_script("v1");
    publish(&m, BIN, "1", &v1);
    a.configure(&m.url, &json!({}));
    a.run().expect_code(69);
    assert!(a.live_bytes().is_none(), "installed during the back-off");
    a.exec("run", &["--now", "--ignore-backoff"]).expect_code(0);
    a.assert_live(&v1, "after the manager came back");
    assert!(
        backoff_file(&a).is_none(),
        "success left {:?}",
        backoff_file(&a)
    );
    assert!(offline_status(&a)["backoff"].is_null());
    a.run().expect_code(0);
}

#[test]
fn the_daemon_sleeps_through_a_back_off_without_requests() {
    let busy = Busy::start(503, "600");
    let a = Agent::new(BIN);
    a.configure(&busy.url, &json!({}));
    a.run().expect_code(69);
    assert_eq!(busy.requests(), 1);

    let mut d = a.spawn("daemon", &["--interval", "1s"]);
    wait_until(
        "the daemon to say it backs off",
        Duration::from_secs(60),
        || d.output().contains("backing off until"),
    );
    assert!(d.output().contains("sleeping"), "{}", d.output());
    // The back-off check comes before any request of a cycle.
    assert_eq!(busy.requests(), 1, "the daemon asked during the back-off");
    d.signal("TERM");
    let st = d.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{}", d.output());
    assert!(d.output().contains("daemon stopped"), "{}", d.output());
    assert_eq!(busy.requests(), 1);
}
