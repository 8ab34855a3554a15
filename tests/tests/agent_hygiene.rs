//! What the agent leaves behind and what its exit status says, across runs:
//! temp files a kill -9 left in the state directory are removed by the next
//! run, partial downloads of hashes that are no longer the target go once the
//! bin is on target, `--ignore-backoff` lifts a download's back-off too, and
//! a bin held off its target by a failure still in force (a download backing
//! off) exits 1 on every run, not 0. The server is the fake manager of
//! `src/fake_manager.rs`; real files in temp dirs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, Agent};
use binproxy_tests::fake_manager::{Download, FakeManager};
use serde_json::json;
use std::fs;

const BIN: &str = "svc";

#[test]
fn temp_files_a_killed_run_left_in_the_state_dir_are_removed_by_the_next_run() {
    let fake = FakeManager::start(BIN, "2", good_script("v2"), Download::Exact);
    let a = Agent::new(BIN);
    a.configure(&fake.url, &json!({}));
    a.run().expect_code(0);
    // What a run killed -9 in the middle of atomic writes leaves.
    let debris = [
        ".state.json.binproxy-write-4242.tmp",
        ".backoff.json.binproxy-write-4242.tmp",
        "journal/.svc.json.binproxy-write-4242.tmp",
        "outbox/.000000000000000000000001-000001.json.binproxy-write-4242.tmp",
        &format!("kept/{BIN}/.{}.binproxy-keep-4242.tmp", "ab".repeat(32)),
    ];
    // Files that look alike but are not ours, or not temp files.
    let foreign = [
        "notes.tmp",
        ".state.json.binproxy-write-4242.tmp.bak",
        "journal/README",
        "outbox/.hidden",
    ];
    for f in debris.iter().chain(&foreign) {
        let p = a.state_dir.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"{\"half\":").unwrap();
    }
    a.run()
        .expect_code(0)
        .expect_log(&["removed 5 temp file(s)"]);
    for f in debris {
        assert!(!a.state_dir.join(f).exists(), "{f} stayed");
    }
    for f in foreign {
        assert!(a.state_dir.join(f).exists(), "{f} was removed");
    }
}

#[test]
fn partial_downloads_of_old_targets_go_once_the_bin_is_on_target() {
    let v2 = good_script("v2");
    let fake = FakeManager::start(BIN, "2", v2.clone(), Download::Exact);
    let a = Agent::new(BIN);
    a.configure(&fake.url, &json!({}));
    a.place(&v2);
    let dir = a.live.parent().unwrap();
    let stale = dir.join(format!(".{BIN}.binproxy-0123456789abcdef.part"));
    fs::write(&stale, vec![7u8; 40_000]).unwrap();
    let other = dir.join("unrelated.part");
    fs::write(&other, b"not ours").unwrap();
    a.run().expect_code(0);
    a.assert_live(&v2, "on target all along");
    assert!(!stale.exists(), "{:?}", a.beside());
    assert!(other.exists(), "a file not ours went");
}

#[test]
fn a_download_back_off_exits_1_on_every_run_and_ignore_backoff_lifts_it() {
    let v2 = good_script("v2");
    let fake = FakeManager::start(BIN, "2", v2.clone(), Download::WrongBytes);
    let a = Agent::new(BIN);
    a.place(&good_script("v1"));
    a.configure(&fake.url, &json!({}));
    // Wrong bytes: refused, and this hash backs off (no manager back-off:
    // the manager answered).
    a.run().expect_code(1).expect_log(&["does not match"]);

    // The server is fixed, but the download still backs off: held, exit 1.
    fake.set_download(Download::Exact);
    a.run()
        .expect_code(1)
        .expect_log(&["outcome=skipped", "failed before"]);
    assert_eq!(fake.downloads().len(), 1, "no second download while held");

    // --ignore-backoff lifts every back-off, the per-download one included.
    a.exec("run", &["--now", "--ignore-backoff"]).expect_code(0);
    a.assert_live(&v2, "after --ignore-backoff");
    assert_eq!(fake.downloads().len(), 2);
    a.run().expect_code(0);
}
