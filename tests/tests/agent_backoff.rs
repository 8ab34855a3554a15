//! The agent's back-off from the manager, across separate `binproxy run`s: a
//! busy manager (a stub server that answers every request 503 or 429 with
//! `Retry-After` and counts the requests), an unreachable one (a closed
//! loopback port), and the real manager-lite that ends it. Assertions
//! are on exit codes, request counts, `state_dir/backoff.json` and
//! `binproxy status`; no test waits out a back-off or measures a sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, publish, Agent};
use binproxy_tests::stub::{closed_port_url, StubServer};
use binproxy_tests::wait_until;
use binproxy_tests::Manager;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

const BIN: &str = "svc";
/// The longest Retry-After the agent honours (its `backoff::MAX_RETRY_AFTER`).
const HOUR: u64 = 3600;

/// A manager too busy to serve anyone: every request gets `status` with
/// `Retry-After: <retry_after>`; its `requests()` counts the requests read.
fn busy(status: u16, retry_after: &str) -> StubServer {
    let retry_after = retry_after.to_owned();
    StubServer::start(move |x| {
        x.respond(
            status,
            &[
                ("Retry-After", retry_after.clone()),
                ("Content-Type", "application/json".into()),
            ],
            br#"{"error":"busy, come back later"}"#,
        );
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
    let busy = busy(status, "120");
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
        let busy = busy(503, asked);
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
    let busy = busy(503, "600");
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
