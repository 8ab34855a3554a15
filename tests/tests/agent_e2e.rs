//! The binproxy agent end to end: the real `manager-lite` and the real
//! `binproxy run --config FILE --now` (or `daemon`), each test with its own
//! manager, node directory and state directory, on 127.0.0.1 only. The
//! assertions are on real outcomes: the bytes at the live path, exit codes,
//! the progress records and installed hashes the manager holds, and the
//! agent's state files. Faults (kill -9, a misbehaving server, reports that
//! cannot be sent) are in `agent_faults.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::{Failed, InProgress, RolledBack, Success};
use binproxy_tests::agent::{
    count, good_script, installed_hash, progress, publish, script, show, snapshot, Agent, ETXTBSY,
    RUN_LIMIT,
};
use binproxy_tests::stub::closed_port_url;
use binproxy_tests::wait_until;
use binproxy_tests::{list_tree, output_within, Manager};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

const BIN: &str = "svc";

/// A health check that runs the live file with `--health`, once.
fn health_flag() -> Value {
    json!({"health": {"command": ["{path}", "--health"], "retries": 1, "timeout": "20s", "interval": "0s"}})
}

/// The sha256 strings of a `quarantined` array of `binproxy status --json`.
fn quarantined_in(status_bin: &Value) -> Vec<String> {
    status_bin["quarantined"]
        .as_array()
        .expect("quarantined is an array")
        .iter()
        .map(|q| q["sha256"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn updates_keep_the_previous_version_and_an_unhealthy_one_is_rolled_back_and_quarantined() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    a.configure(&m.url, &health_flag());

    // v1: a first install.
    let v1 = good_script("v1");
    let s1 = publish(&m, BIN, "1.0.0", &v1);
    a.run().expect_code(0);
    a.assert_live(&v1, "after v1");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s1), 1, "{}", show(&p));
    assert_eq!(count(&p, Success, &s1), 1, "{}", show(&p));
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s1));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none());
    assert!(a.outbox().is_empty(), "undelivered: {:?}", a.outbox());

    // v2: replaces v1, which is kept.
    let v2 = good_script("v2");
    let s2 = publish(&m, BIN, "2.0.0", &v2);
    a.run().expect_code(0);
    a.assert_live(&v2, "after v2");
    assert_eq!(fs::read(a.kept(&s1)).unwrap(), v1, "v1 is kept");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    let ok = p
        .iter()
        .find(|r| r.status == Success && r.target_hash == s2)
        .unwrap();
    assert_eq!(ok.from_hash.as_deref(), Some(&*s1), "{}", show(&p));
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s2));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    // The install filled the hash cache: the very next cycle reads no byte
    // of the live file (it would log "hashed" at debug level if it did).
    let cached = &a.state().unwrap()["bins"][BIN]["hash"];
    assert_eq!(cached["sha256"], s2.as_str(), "{cached}");
    let noop = output_within(
        a.command("run", &["--now"]).env("RUST_LOG", "debug"),
        RUN_LIMIT,
    );
    let noop_log = String::from_utf8_lossy(&noop.stderr);
    assert_eq!(noop.status.code(), Some(0), "{noop_log}");
    assert!(
        !noop_log.contains("hashed"),
        "re-hashed after the update:\n{noop_log}"
    );

    // v3 fails its health check: back on v2, byte for byte.
    let v3 = script("v3", "echo v3 is sick >&2; exit 1", "exit 0");
    let s3 = publish(&m, BIN, "3.0.0", &v3);
    a.run().expect_code(1);
    a.assert_live(&v2, "after the unhealthy v3");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s3), 1, "{}", show(&p));
    assert_eq!(count(&p, RolledBack, &s3), 1, "{}", show(&p));
    assert_eq!(count(&p, Success, &s3), 0, "{}", show(&p));
    let rb = p.iter().find(|r| r.status == RolledBack).unwrap();
    let msg = rb.message.as_deref().unwrap_or_default();
    assert!(
        msg.contains("rolled back") && msg.contains("health"),
        "rolled_back message: {msg:?}"
    );
    assert_eq!(rb.from_hash.as_deref(), Some(&*s2));
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s2));
    assert_eq!(fs::read(a.kept(&s2)).unwrap(), v2, "v2 is kept");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none(), "journal left: {:?}", a.journal());
    assert_eq!(a.quarantined(), [s3.as_str()]);

    // A second run leaves the quarantined v3 alone, and still exits 1 (as
    // every run does until the quarantine clears), so monitoring sees it.
    let records_before = p.len();
    a.run()
        .expect_code(1)
        .expect_log(&["outcome=skipped", "quarantined"]);
    a.assert_live(&v2, "run after the rollback");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(
        p.len(),
        records_before,
        "the run reported again:\n{}",
        show(&p)
    );
    assert_eq!(count(&p, InProgress, &s3), 1, "{}", show(&p));

    // status explains it.
    let st = a.status_json();
    let b = &st["bins"][0];
    assert_eq!(b["name"], BIN);
    assert_eq!(b["sha256"], s2.as_str());
    assert_eq!(b["target"]["sha256sum"], s3.as_str());
    assert_eq!(quarantined_in(b), [s3.as_str()]);
    let reason = b["reason"].as_str().unwrap();
    assert!(reason.contains("quarantine"), "reason: {reason}");

    // unquarantine clears it, and the next run tries v3 again.
    a.exec("unquarantine", &[BIN]).expect_code(0);
    let st = a.status_json();
    let b = &st["bins"][0];
    assert!(quarantined_in(b).is_empty(), "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(!reason.contains("quarantine"), "reason: {reason}");
    a.run().expect_code(1);
    a.assert_live(&v2, "after v3 failed a second time");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s3), 2, "{}", show(&p));
    assert_eq!(count(&p, RolledBack, &s3), 2, "{}", show(&p));
}

/// Spawns `cmd`, retrying while exec says ETXTBSY: a file this (multi-threaded)
/// test process has just written may still be open for writing in a child
/// another test thread is forking.
fn spawn_exec(cmd: &mut Command) -> Child {
    for _ in 0..200 {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
    panic!("spawn {cmd:?}: ETXTBSY for too long");
}

#[test]
fn a_running_native_binary_is_replaced_without_etxtbsy() {
    let m = Manager::new();
    let a = Agent::new("sleeper");
    let elf = fs::read("/bin/sleep").expect("this test needs /bin/sleep");
    assert_eq!(&elf[..4], b"\x7fELF");
    let v1 = elf.clone();
    let s1 = publish(&m, "sleeper", "1", &v1);
    a.place(&v1);
    // Healthy means: the new binary runs (`sleeper 0` exits 0).
    a.configure(
        &m.url,
        &json!({"health": {"command": ["{path}", "0"], "retries": 1, "timeout": "20s"}}),
    );
    a.run().expect_code(0);
    a.assert_live(&v1, "v1 on target");

    let mut running = spawn_exec(
        Command::new(&a.live)
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // The hazard is real: writing into the running binary fails.
    let err = fs::write(&a.live, b"overwritten").expect_err("writing a running ELF must fail");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    a.assert_live(&v1, "after the refused write");

    // v2: still a valid ELF, another hash.
    let mut v2 = elf;
    v2.extend_from_slice(b"\n-- binproxy e2e: appended to make another version --\n");
    let s2 = publish(&m, "sleeper", "2", &v2);
    assert_ne!(s1, s2);
    let out = a.run();
    out.expect_code(0);
    assert!(
        !out.stderr.contains("Text file busy"),
        "agent hit ETXTBSY:\n{}",
        out.stderr
    );
    a.assert_live(&v2, "after the update");
    assert!(
        running.try_wait().unwrap().is_none(),
        "the old process died during the update"
    );
    let p = progress(&m, "sleeper", &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    assert_eq!(fs::read(a.kept(&s1)).unwrap(), v1);
    // The new file is a working binary.
    let st = spawn_exec(Command::new(&a.live).arg("0")).wait().unwrap();
    assert!(st.success(), "new binary: {st}");

    running.kill().unwrap();
    running.wait().unwrap();
}

#[test]
fn two_concurrent_runs_update_once() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    publish(&m, BIN, "1", &v1);
    a.place(&v1);
    // The health check holds the run that got the lock until the test lets it go.
    let go = a.mark("go");
    let wait_for_go =
        "i=0; while [ ! -e \"$0\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done";
    a.configure(
        &m.url,
        &json!({"health": {"command": ["sh", "-c", wait_for_go, go], "retries": 1, "timeout": "60s"}}),
    );
    let v2 = good_script("v2");
    let s2 = publish(&m, BIN, "2", &v2);

    let mut runs = [a.spawn("run", &["--now"]), a.spawn("run", &["--now"])];
    let mut first_done = None;
    wait_until("one of two runs to finish", Duration::from_secs(60), || {
        first_done = (0..2).find(|&i| runs[i].try_exit().is_some());
        first_done.is_some()
    });
    let loser = first_done.unwrap();
    let winner = 1 - loser;
    assert!(
        runs[winner].try_exit().is_none(),
        "both runs ended while one of them should be waiting for its health check\n{}\n{}",
        runs[0].output(),
        runs[1].output()
    );
    let st = runs[loser].wait(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", runs[loser].output());
    assert!(
        runs[loser].output().contains("another binproxy run holds"),
        "{}",
        runs[loser].output()
    );
    fs::write(&go, b"").unwrap();
    let st = runs[winner].wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{}", runs[winner].output());

    a.assert_live(&v2, "after both runs");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s2), 1, "{}", show(&p));
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none());
}

#[test]
fn a_failing_preflight_leaves_the_live_file_and_quarantines_the_target() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let seen = a.mark("preflight-saw");
    a.configure(&m.url, &json!({"preflight": ["{path}", "--selftest"]}));
    let v1 = good_script("v1");
    let s1 = publish(&m, BIN, "1", &v1);
    a.run().expect_code(0);
    a.assert_live(&v1, "v1");

    let v2 = script(
        "v2",
        "exit 0",
        &format!(
            "echo \"$0\" > {}; echo selftest says no >&2; exit 1",
            seen.display()
        ),
    );
    let s2 = publish(&m, BIN, "2", &v2);
    a.run().expect_code(1);
    a.assert_live(&v1, "after the refused v2");
    assert!(a.beside().is_empty(), "staged file left: {:?}", a.beside());
    // The preflight ran on the staged file beside the live one, not on the live file.
    let staged = fs::read_to_string(&seen).expect("preflight ran");
    let staged = Path::new(staged.trim());
    assert_eq!(staged.parent(), a.live.parent(), "{}", staged.display());
    assert_ne!(staged, a.live);
    assert!(
        staged
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".svc.binproxy-"),
        "{}",
        staged.display()
    );
    assert!(!a.kept(&s1).exists(), "nothing was swapped, nothing kept");
    assert!(a.journal().is_none());
    assert_eq!(a.quarantined(), [s2.as_str()]);
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Failed, &s2), 1, "{}", show(&p));
    let failed = p.iter().find(|r| r.status == Failed).unwrap();
    let msg = failed.message.as_deref().unwrap_or_default();
    assert!(
        msg.contains("preflight") && msg.contains("selftest says no"),
        "{msg:?}"
    );
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s1));

    // Not tried again, and still exit 1: the quarantine holds it off target.
    a.run().expect_code(1);
    a.assert_live(&v1, "second run");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, InProgress, &s2), 1, "{}", show(&p));
    let st = a.status_json();
    assert_eq!(quarantined_in(&st["bins"][0]), [s2]);
}

#[test]
fn daemon_converges_to_a_new_release_and_stops_on_sigterm() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    a.configure(&m.url, &health_flag());
    let v1 = good_script("v1");
    publish(&m, BIN, "1", &v1);
    let mut d = a.spawn("daemon", &["--interval", "1s"]);
    wait_until("the daemon installs v1", Duration::from_secs(30), || {
        a.live_bytes().as_deref() == Some(&v1[..])
    });
    let v2 = good_script("v2");
    let s2 = publish(&m, BIN, "2", &v2);
    wait_until(
        "the daemon installs v2 and reports success",
        Duration::from_secs(30),
        || count(&progress(&m, BIN, &a.node_id), Success, &s2) == 1,
    );
    a.assert_live(&v2, "daemon after v2");
    assert!(d.try_exit().is_none(), "daemon exited: {}", d.output());
    d.signal("TERM");
    let st = d.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.output());
    assert!(d.output().contains("daemon stopped"), "{}", d.output());
    assert!(a.journal().is_none());
}

#[test]
fn manager_unreachable_on_a_new_node_exits_69_and_writes_no_state() {
    let a = Agent::new(BIN);
    let v0 = good_script("v0");
    a.place(&v0);
    a.configure(&closed_port_url(), &health_flag());
    let out = a.run();
    out.expect_code(69);
    assert!(out.stderr.contains("unreachable"), "{}", out.stderr);
    a.assert_live(&v0, "manager down");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let state: Vec<String> = list_tree(&a.state_dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    // The lock, and the back-off record that keeps the next runs away.
    assert!(
        state
            .iter()
            .all(|p| p == "binproxy.lock" || p == "backoff.json"),
        "the state dir of a run that reached no manager holds {state:?}; state.json: {:?}",
        a.state()
    );
    assert!(state.iter().any(|p| p == "backoff.json"), "{state:?}");
}

/// Waits (bounded) until the live file's last change is more than `age` ago,
/// so the agent's hash cache (which skips files changed in the last two
/// seconds) has settled.
fn wait_until_aged(path: &Path, age: Duration) {
    wait_until("the live file to age", Duration::from_secs(30), || {
        let meta = fs::metadata(path).unwrap();
        let ctime = std::os::unix::fs::MetadataExt::ctime(&meta);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        now.saturating_sub(u64::try_from(ctime).unwrap()) > age.as_secs()
    });
}

#[test]
fn manager_unreachable_after_updates_exits_69_and_changes_nothing() {
    let mut m = Manager::new();
    let a = Agent::new(BIN);
    a.configure(&m.url, &health_flag());
    let v1 = good_script("v1");
    publish(&m, BIN, "1", &v1);
    a.run().expect_code(0);
    let v2 = good_script("v2");
    publish(&m, BIN, "2", &v2);
    a.run().expect_code(0);
    a.assert_live(&v2, "v2");
    wait_until_aged(&a.live, Duration::from_secs(3));
    a.run().expect_code(0);

    let before = (snapshot(&a.state_dir), snapshot(a.live.parent().unwrap()));
    assert!(a.state().is_some());
    m.kill9();
    let out = a.run();
    out.expect_code(69);
    a.assert_live(&v2, "manager down");
    let after = (snapshot(&a.state_dir), snapshot(a.live.parent().unwrap()));
    let changed: Vec<_> = before
        .0
        .iter()
        .chain(&before.1)
        .filter(|f| !after.0.contains(f) && !after.1.contains(f))
        .chain(
            after
                .0
                .iter()
                .chain(&after.1)
                .filter(|f| !before.0.contains(f) && !before.1.contains(f)),
        )
        .map(|(p, _)| p.display().to_string())
        // The back-off record is the one file an unreachable run writes.
        .filter(|p| p != "backoff.json")
        .collect();
    assert!(
        changed.is_empty(),
        "the unreachable run changed, added or removed: {changed:?}"
    );
    assert!(a.state_dir.join("backoff.json").exists());
}

#[test]
fn a_bin_path_in_a_missing_directory_fails_naming_the_path() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let missing_dir = a.dir.join("no-such-dir");
    let path = missing_dir.join(BIN);
    let mut cfg = a.config_json(&m.url, &json!({}));
    cfg["bins"][0]["path"] = json!(path);
    a.write_config(&cfg);
    let v1 = good_script("v1");
    let s1 = publish(&m, BIN, "1", &v1);
    let tree_before = list_tree(a.dir.path());

    let out = a.run();
    out.expect_code(1);
    assert!(
        out.stderr.contains(&missing_dir.display().to_string()),
        "the error should name {}:\n{}",
        missing_dir.display(),
        out.stderr
    );
    assert!(
        !missing_dir.exists(),
        "the agent created {}",
        missing_dir.display()
    );
    // Only the state dir is new.
    let new: Vec<_> = list_tree(a.dir.path())
        .into_iter()
        .filter(|p| !tree_before.contains(p) && !p.starts_with("state"))
        .collect();
    assert!(new.is_empty(), "new files: {new:?}");
    assert!(!a.state_dir.join("kept").exists());
    assert!(a.journal().is_none());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Failed, &s1), 1, "{}", show(&p));
}

#[test]
fn config_errors_exit_2_and_name_the_field() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let base = a.config_json(&m.url, &json!({}));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "unknown bin field",
            with(&|c| c["bins"][0]["colour"] = json!("red")),
            vec!["unknown field `colour`"],
        ),
        (
            "unknown top-level field",
            with(&|c| c["splay_seconds"] = json!(5)),
            vec!["unknown field `splay_seconds`"],
        ),
        (
            "bad timeout",
            with(&|c| c["timeout"] = json!("soon")),
            vec!["timeout", "\"soon\""],
        ),
        (
            "bad splay",
            with(&|c| c["splay"] = json!("10 parsecs")),
            vec!["splay"],
        ),
        (
            "bad health interval",
            with(&|c| {
                c["bins"][0]["health"] = json!({"command": ["true"], "interval": "fast"});
            }),
            vec!["bins[0].health.interval"],
        ),
        (
            "relative bin path",
            with(&|c| c["bins"][0]["path"] = json!("rel/svc")),
            vec!["bins[0].path"],
        ),
        (
            "empty restart argv",
            with(&|c| c["bins"][0]["restart"] = json!([])),
            vec!["bins[0].restart"],
        ),
    ];
    for (what, cfg, wants) in cases {
        a.write_config(&cfg);
        let out = a.run();
        assert_eq!(out.code, Some(2), "{what}: {out:?}");
        for want in wants {
            assert!(
                out.stderr.contains(want),
                "{what}: stderr does not name {want:?}:\n{}",
                out.stderr
            );
        }
        assert!(!a.state_dir.exists(), "{what}: state dir created");
    }
    // No config file at all.
    fs::remove_file(&a.config).unwrap();
    let out = a.run();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&a.config.display().to_string()),
        "{}",
        out.stderr
    );
    // Usage: no --config.
    let out: binproxy_tests::agent::Outcome = binproxy_tests::output_within(
        Command::new(binproxy_tests::binproxy_bin()).arg("run"),
        Duration::from_secs(60),
    )
    .into();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
    // None of it reached the manager.
    let nodes = m.admin_get("/api/v1/nodes").expect(200).json();
    assert_eq!(nodes, json!([]), "a bad config still talked to the manager");
}
