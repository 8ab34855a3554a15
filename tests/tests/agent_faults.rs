//! The binproxy agent under faults, end to end: kill -9 of the agent at
//! several points of an update (the next run must converge, and after every
//! kill the live path holds a complete, executable old or new version), a
//! misbehaving manager written here (wrong bytes, a cut download, too many
//! bytes), and progress reports that cannot be delivered. Real `binproxy`,
//! real `manager-lite` where a manager is needed, loopback only, one manager
//! and one set of directories per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::{self, InProgress, RolledBack, Success};
use binproxy_tests::agent::{
    count, good_script, installed_hash, progress, publish, script, show, Agent,
};
use binproxy_tests::fake_manager::{Download, FakeManager};
use binproxy_tests::wait_until;
use binproxy_tests::{sha256_hex, Manager, ManagerOptions};
use serde_json::json;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const BIN: &str = "svc";

/// Shell code that waits (at most ~30 s) for the file `go` to exist.
fn wait_for(go: &std::path::Path) -> String {
    format!(
        "i=0; while [ ! -e {g} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
        g = go.display()
    )
}

/// The `.part` file the agent downloads `sha` into.
fn part_path(a: &Agent, sha: &str) -> PathBuf {
    a.live
        .parent()
        .unwrap()
        .join(format!(".{BIN}.binproxy-{}.part", &sha[..16]))
}

// ---------------------------------------------------------------------------
// kill -9

#[test]
fn kill9_mid_download_keeps_the_old_version_and_the_next_run_installs() {
    // Debug logging shows each request's status: 206 marks a resumed download.
    let m = Manager::new_with(
        ManagerOptions::default().env("RUST_LOG", "info,manager_lite::api::routes=debug"),
    );
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    a.configure(
        &m.url,
        &json!({"health": {"command": ["{path}", "--health"], "retries": 1}}),
    );
    // 64 MiB: a script followed by a long comment.
    let mut v2 = good_script("v2-big");
    let line = format!("# {}\n", "x".repeat(1021));
    while v2.len() < 64 << 20 {
        v2.extend_from_slice(line.as_bytes());
    }
    let s2 = publish(&m, BIN, "2", &v2);
    let part = part_path(&a, &s2);

    let mut run = a.spawn("run", &["--now"]);
    wait_until(
        "a non-empty .part file (or the run's end)",
        Duration::from_secs(20),
        || fs::metadata(&part).is_ok_and(|md| md.len() > 0) || run.try_exit().is_some(),
    );
    a.kill9(&mut run);
    a.assert_live(&v1, "after kill -9 mid-download");
    let have = fs::metadata(&part).map_or(0, |md| md.len());
    assert!(
        have > 0 && have < v2.len() as u64,
        "part file has {have} of {} bytes",
        v2.len()
    );

    let out = a.run();
    out.expect_code(0);
    a.assert_live(&v2, "after the next run");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s2));
    let resumed = format!("GET /api/v1/download/{s2} 206");
    assert!(
        m.log().contains(&resumed),
        "the second run did not resume the download (no {resumed:?} in the manager log)"
    );
}

#[test]
fn kill9_during_preflight_keeps_the_old_version_and_reuses_the_verified_download() {
    let m = Manager::new_with(
        ManagerOptions::default().env("RUST_LOG", "info,manager_lite::api::routes=debug"),
    );
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    let (go, started) = (a.mark("go"), a.mark("preflight-started"));
    let preflight = format!("touch {}; {}", started.display(), wait_for(&go));
    a.configure(
        &m.url,
        &json!({"preflight": ["sh", "-c", preflight, "preflight", "{path}"]}),
    );
    let v2 = good_script("v2");
    let s2 = publish(&m, BIN, "2", &v2);

    let mut run = a.spawn("run", &["--now"]);
    wait_until("the preflight to start", Duration::from_secs(30), || {
        started.exists() || run.try_exit().is_some()
    });
    a.kill9(&mut run);
    a.assert_live(&v1, "after kill -9 during the preflight");
    assert!(
        a.journal().is_none(),
        "journal before the swap: {:?}",
        a.journal()
    );
    // The verified download waits beside the live file.
    assert_eq!(fs::read(part_path(&a, &s2)).unwrap(), v2);

    fs::write(&go, b"").unwrap();
    a.run().expect_code(0);
    a.assert_live(&v2, "after the next run");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    let downloads = m
        .log()
        .matches(&format!("GET /api/v1/download/{s2} "))
        .count();
    assert_eq!(downloads, 1, "the complete download was fetched again");
}

/// v1 is live; v2's health check waits for the `go` marker, then passes if
/// the `ok` marker exists. The agent is killed while it waits, after the swap.
fn kill9_after_the_swap(v2_healthy: bool) {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    let s1 = sha256_hex(&v1);
    a.place(&v1);
    let (go, ok) = (a.mark("go"), a.mark("ok"));
    a.configure(
        &m.url,
        &json!({"health": {"command": ["{path}", "--health"], "retries": 1, "timeout": "60s"}}),
    );
    let v2 = script(
        "v2",
        &format!("{}; test -e {}", wait_for(&go), ok.display()),
        "exit 0",
    );
    let s2 = publish(&m, BIN, "2", &v2);

    let mut run = a.spawn("run", &["--now"]);
    wait_until(
        "the journal to say swapped",
        Duration::from_secs(30),
        || a.journal_phase().as_deref() == Some("swapped") || run.try_exit().is_some(),
    );
    a.kill9(&mut run);
    a.assert_live(&v2, "after kill -9 in the swapped phase");
    assert_eq!(a.journal_phase().as_deref(), Some("swapped"));

    if v2_healthy {
        fs::write(&ok, b"").unwrap();
    }
    fs::write(&go, b"").unwrap();
    let out = a.run();
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s2), 1, "{}", show(&p));
    if v2_healthy {
        out.expect_code(0);
        a.assert_live(&v2, "after recovery (healthy)");
        assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
        assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s2));
    } else {
        out.expect_code(1);
        a.assert_live(&v1, "after recovery (unhealthy)");
        assert_eq!(count(&p, RolledBack, &s2), 1, "{}", show(&p));
        assert_eq!(count(&p, Success, &s2), 0, "{}", show(&p));
        assert_eq!(a.quarantined(), [s2.as_str()]);
        assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s1));
    }
    assert_eq!(fs::read(a.kept(&s1)).unwrap(), v1, "v1 is kept");
    assert!(a.journal().is_none(), "journal left: {:?}", a.journal());
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());

    // Converged: the next run has nothing to do, yet exits 0 only when on
    // target (after a rollback the quarantined target keeps it at 1).
    let n = p.len();
    a.run().expect_code(i32::from(!v2_healthy));
    assert_eq!(progress(&m, BIN, &a.node_id).len(), n);
}

#[test]
fn kill9_after_the_swap_then_a_healthy_check_commits() {
    kill9_after_the_swap(true);
}

#[test]
fn kill9_after_the_swap_then_a_failed_check_rolls_back() {
    kill9_after_the_swap(false);
}

/// v2 is unhealthy; the restart hook, when the live file is v1 again (that is,
/// during the rollback), touches `restarting` and waits for `go`. The agent
/// is killed once the journal says rolling_back (and, when `after_restore`,
/// once the hook runs, so the old file is certainly back).
fn kill9_during_rollback(after_restore: bool) {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    let s1 = sha256_hex(&v1);
    a.place(&v1);
    let (go, restarting) = (a.mark("go"), a.mark("restarting"));
    let hook = format!(
        "if grep -q 'artifact v1$' \"$1\"; then touch {}; {}; fi",
        restarting.display(),
        wait_for(&go)
    );
    a.configure(
        &m.url,
        &json!({
            "restart": ["sh", "-c", hook, "restart-hook", "{path}"],
            "health": {"command": ["{path}", "--health"], "retries": 1, "timeout": "20s"},
        }),
    );
    let v2 = script("v2", "echo v2 is sick >&2; exit 1", "exit 0");
    let s2 = publish(&m, BIN, "2", &v2);

    let mut run = a.spawn("run", &["--now"]);
    wait_until(
        "the journal to say rolling_back",
        Duration::from_secs(30),
        || {
            let phase = a.journal_phase().as_deref() == Some("rolling_back");
            (phase && (!after_restore || restarting.exists())) || run.try_exit().is_some()
        },
    );
    a.kill9(&mut run);
    let which = a.assert_live_one_of(&[&v1, &v2], "after kill -9 while rolling back");
    if after_restore {
        assert_eq!(which, 0, "the hook saw v1, so v1 is back");
    }
    assert_eq!(a.journal_phase().as_deref(), Some("rolling_back"));

    fs::write(&go, b"").unwrap();
    let out = a.run();
    out.expect_code(1);
    a.assert_live(&v1, "after the rollback finished");
    assert_eq!(fs::read(a.kept(&s1)).unwrap(), v1);
    assert_eq!(a.quarantined(), [s2.as_str()]);
    assert!(a.journal().is_none(), "journal left: {:?}", a.journal());
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s2), 1, "{}", show(&p));
    assert_eq!(count(&p, RolledBack, &s2), 1, "{}", show(&p));
    assert_eq!(count(&p, Success, &s2), 0, "{}", show(&p));
    let st = a.status_json();
    let reason = st["bins"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("quarantine"), "{reason}");

    // Not tried again, and exit 1 while the quarantine holds it off target.
    let n = p.len();
    a.run().expect_code(1);
    a.assert_live(&v1, "run after recovery");
    assert_eq!(progress(&m, BIN, &a.node_id).len(), n);
}

#[test]
fn kill9_when_the_rollback_begins_then_the_next_run_finishes_it() {
    kill9_during_rollback(false);
}

#[test]
fn kill9_during_the_rollback_restart_then_the_next_run_finishes_it() {
    kill9_during_rollback(true);
}

// ---------------------------------------------------------------------------
// A misbehaving manager

/// A node with v1 live, configured against a fake manager that targets v2.
fn fake_setup(download: Download) -> (FakeManager, Agent, Vec<u8>, Vec<u8>) {
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    let v2 = good_script("v2");
    let fake = FakeManager::start(BIN, "2", v2.clone(), download);
    a.configure(&fake.url, &json!({}));
    (fake, a, v1, v2)
}

fn statuses(fake: &FakeManager) -> Vec<ProgressStatus> {
    fake.progress().iter().map(|p| p.status).collect()
}

/// The one `failed` report's message.
#[track_caller]
fn failed_message(fake: &FakeManager) -> String {
    let p = fake.progress();
    assert_eq!(
        statuses(fake),
        [InProgress, ProgressStatus::Failed],
        "{p:?}"
    );
    assert_eq!(p[1].target_hash, fake.target.sha256sum);
    p[1].message.clone().unwrap_or_default()
}

#[test]
fn wrong_bytes_are_refused_and_leave_nothing_behind() {
    let (fake, a, v1, _) = fake_setup(Download::WrongBytes);
    let out = a.run();
    out.expect_code(1);
    a.assert_live(&v1, "after wrong bytes");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none());
    assert!(!a.state_dir.join("kept").exists(), "something was swapped");
    let msg = failed_message(&fake);
    assert!(msg.contains("sha256"), "{msg:?}");
    assert!(fake.installed().is_empty());
}

#[test]
fn too_many_bytes_are_refused_and_leave_nothing_behind() {
    let (fake, a, v1, _) = fake_setup(Download::Excess);
    a.run().expect_code(1);
    a.assert_live(&v1, "after an overlong download");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none());
    assert!(!a.state_dir.join("kept").exists(), "something was swapped");
    let msg = failed_message(&fake);
    assert!(msg.contains("more bytes"), "{msg:?}");
    assert!(fake.installed().is_empty());
}

#[test]
fn a_cut_download_changes_nothing_and_is_resumed_later() {
    let (fake, a, v1, v2) = fake_setup(Download::Truncated);
    a.run().expect_code(1);
    a.assert_live(&v1, "after a cut download");
    assert!(a.journal().is_none());
    assert!(!a.state_dir.join("kept").exists(), "something was swapped");
    failed_message(&fake);
    // Only the partial download may stay, for a resume.
    let part = part_path(&a, &fake.target.sha256sum);
    let part_name = part.file_name().unwrap().to_string_lossy().into_owned();
    let beside = a.beside();
    assert!(
        beside.is_empty() || beside == [part_name.clone()],
        "debris: {beside:?}"
    );
    // What arrived before the cut stays, for a resume.
    let have = fs::metadata(&part).map_or(0, |m| m.len());
    assert!(
        have > 0 && have <= v2.len() as u64 / 2,
        "part has {have} bytes of {}",
        v2.len()
    );

    // The server is fixed, but the failed download backs off: the whole
    // agent first (a cut download is the server's or the network's trouble),
    // so a plain run does not even send a keepalive...
    fake.set_download(Download::Exact);
    let downloads = fake.downloads().len();
    let requests = fake.seen().len();
    a.run().expect_code(69);
    assert_eq!(fake.seen().len(), requests, "a request during the back-off");
    // ...and this bin's download; --ignore-backoff lifts both, and the
    // download resumes from the part file.
    assert_eq!(fake.downloads().len(), downloads);
    a.exec("run", &["--now", "--ignore-backoff"]).expect_code(0);
    a.assert_live(&v2, "after the resumed download");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let last = fake.downloads().pop().unwrap();
    assert_eq!(
        last.as_deref(),
        Some(format!("bytes={have}-").as_str()),
        "the download was not resumed from the part file"
    );
    assert_eq!(statuses(&fake).last(), Some(&Success));
    assert_eq!(fake.installed().len(), 1);
}

#[test]
fn reports_survive_a_manager_that_refuses_them() {
    let (fake, a, v1, v2) = fake_setup(Download::Exact);
    let s1 = sha256_hex(&v1);
    let s2 = fake.target.sha256sum.clone();
    fake.set_refuse_reports(true);
    a.run().expect_code(0);
    a.assert_live(&v2, "reports refused");
    assert!(
        !fake.progress().is_empty(),
        "the agent did not even try to report"
    );
    // in_progress, success, installed.
    let queued = a.outbox().len();
    assert_eq!(queued, 3, "outbox: {:?}", a.outbox());
    let st = a.exec("status", &["--json", "--offline"]);
    st.expect_code(0);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["queued_reports"], 3);

    // The real manager, with the same release: the queue drains into it.
    let m = Manager::new();
    assert_eq!(publish(&m, BIN, "2", &v2), s2);
    a.configure(&m.url, &json!({}));
    a.run().expect_code(0);
    assert!(a.outbox().is_empty(), "outbox: {:?}", a.outbox());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s2), 1, "{}", show(&p));
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    let ok = p.iter().find(|r| r.status == Success).unwrap();
    assert_eq!(ok.from_hash.as_deref(), Some(&*s1));
    let order: Vec<ProgressStatus> = p.iter().map(|r| r.status).collect();
    assert_eq!(order, [InProgress, Success], "{}", show(&p));
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s2));
}
