//! The agent's log lines, from the real `binproxy run` against the real
//! manager-lite: under journald (`JOURNAL_STREAM` naming the very file stderr
//! is) each line starts with its syslog priority and has no timestamp;
//! anywhere else (no variable, or one naming another stream) it starts with an
//! RFC 3339 timestamp; and each update ends in exactly one `key=value` action
//! line with the bin, the short hashes and the outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, publish, script, Agent, RUN_LIMIT};
use binproxy_tests::stub::closed_port_url;
use binproxy_tests::{is_rfc3339, sha256_hex, Manager};
use serde_json::json;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = "svc";

/// Runs `cmd` (bounded) with stderr into a new file; with `journal`, sets
/// `JOURNAL_STREAM` to that file's `dev:inode` as systemd does. Returns the
/// exit code and what stderr got.
fn run_to_file(a: &Agent, mut cmd: Command, journal: Option<&str>) -> (Option<i32>, String) {
    let path = a.dir.join(&binproxy_tests::unique("stderr"));
    let file = File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    cmd.env_remove("JOURNAL_STREAM");
    match journal {
        Some("self") => {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        Some(other) => {
            cmd.env("JOURNAL_STREAM", other);
        }
        None => {}
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("binproxy still running after {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&path).unwrap())
}

fn run(a: &Agent, journal: Option<&str>) -> (Option<i32>, String) {
    run_to_file(a, a.command("run", &["--now"]), journal)
}

/// Whether a line starts with `2024-01-02T03:04:05Z `.
fn timestamped(line: &str) -> bool {
    line.get(..20).is_some_and(is_rfc3339) && line[20..].starts_with(' ')
}

fn short(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..12].to_owned()
}

#[test]
fn under_the_journal_lines_carry_priorities_and_no_timestamp() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    a.configure(&m.url, &json!({}));
    let v1 = good_script("v1");
    publish(&m, BIN, "1", &v1);

    let (code, err) = run(&a, Some("self"));
    assert_eq!(code, Some(0), "{err}");
    a.assert_live(&v1, "v1");
    let want = format!(
        "<6>bin={BIN} action=update from=none to={} outcome=ok took=",
        short(&v1)
    );
    assert!(
        err.lines().any(|l| l.starts_with(&want)),
        "no {want:?} in:\n{err}"
    );

    // A manager gone: an error and a warning, each with its priority.
    a.configure(&closed_port_url(), &json!({}));
    let (code, more) = run(&a, Some("self"));
    assert_eq!(code, Some(69), "{more}");
    assert!(
        more.lines()
            .any(|l| l.starts_with("<3>manager unreachable")),
        "{more}"
    );
    assert!(
        more.lines().any(|l| l.starts_with("<4>backing off")),
        "{more}"
    );

    for line in err.lines().chain(more.lines()) {
        let rest = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("line without a priority: {line:?}"));
        assert!(!timestamped(rest), "timestamp under the journal: {line:?}");
    }
}

#[test]
fn elsewhere_lines_start_with_a_timestamp() {
    let a = Agent::new(BIN);
    a.configure(&closed_port_url(), &json!({}));
    // No variable; then one naming another stream (a child of a unit whose
    // stderr went elsewhere).
    for journal in [None, Some("1:1")] {
        let (code, err) = a_run_ignoring_backoff(&a, journal);
        assert_eq!(code, Some(69), "{err}");
        assert!(!err.trim().is_empty());
        for line in err.lines() {
            assert!(timestamped(line), "{journal:?}: no timestamp: {line:?}");
            assert!(!line.starts_with('<'), "{journal:?}: {line:?}");
        }
        assert!(
            err.lines()
                .any(|l| l[21..].starts_with("ERROR manager unreachable")),
            "{err}"
        );
    }
}

fn a_run_ignoring_backoff(a: &Agent, journal: Option<&str>) -> (Option<i32>, String) {
    run_to_file(a, a.command("run", &["--now", "--ignore-backoff"]), journal)
}

/// The lines of `err` holding `action=`.
fn actions(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains(" action=")).collect()
}

#[test]
fn each_update_ends_in_one_action_line() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let health = json!({"health": {"command": ["{path}", "--health"], "retries": 1, "timeout": "20s", "interval": "0s"}});
    a.configure(&m.url, &health);
    let v1 = good_script("v1");
    a.place(&v1);
    let v2 = good_script("v2");
    publish(&m, BIN, "2", &v2);

    let (code, err) = run(&a, None);
    assert_eq!(code, Some(0), "{err}");
    let lines = actions(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let want = format!(
        "INFO  bin={BIN} action=update from={} to={} outcome=ok took=",
        short(&v1),
        short(&v2)
    );
    assert!(
        lines[0][21..].starts_with(&want),
        "{} is not {want}",
        lines[0]
    );
    let took = lines[0].rsplit("took=").next().unwrap();
    let secs = took.strip_suffix('s').unwrap();
    assert!(secs.parse::<f64>().is_ok(), "took={took}");

    // Nothing to do: a check, no update.
    let (code, err) = run(&a, None);
    assert_eq!(code, Some(0), "{err}");
    let lines = actions(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!(
            "bin={BIN} action=check from={} to={} outcome=on_target",
            short(&v2),
            short(&v2)
        )),
        "{}",
        lines[0]
    );

    // An unhealthy version: rolled back, with the reason quoted.
    let v3 = script("v3", "exit 1", "exit 0");
    publish(&m, BIN, "3", &v3);
    let (code, err) = run(&a, None);
    assert_eq!(code, Some(1), "{err}");
    let lines = actions(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let want = format!(
        "ERROR bin={BIN} action=update from={} to={} outcome=rolled_back took=",
        short(&v2),
        short(&v3)
    );
    assert!(
        lines[0][21..].starts_with(&want),
        "{} is not {want}",
        lines[0]
    );
    assert!(lines[0].contains(" reason=\""), "{}", lines[0]);
    a.assert_live(&v2, "after the rollback");
}
