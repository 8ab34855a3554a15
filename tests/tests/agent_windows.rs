//! Agent maintenance windows end to end (issue #6 item 8): the real
//! `manager-lite` and the real `binproxy run`. Outside every window the agent
//! still keepalives (the manager records the node and what it runs) but
//! downloads, swaps and reports nothing, and `binproxy status` says until
//! when; inside a window it installs. With `prestage` the new version is
//! downloaded and verified beside the live file ahead of the window. A bad
//! window is a config error naming it. Windows are placed relative to the
//! real clock (`binproxy_tests::windows`): no clock is faked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::Node;
use binproxy_protocol::ProgressStatus::Success;
use binproxy_tests::agent::{count, good_script, progress, publish, show, Agent};
use binproxy_tests::windows::{open_now, opens_later};
use binproxy_tests::{is_rfc3339, sha256_hex, Manager};
use serde_json::{json, Value};
use std::fs;

const BIN: &str = "svc";

/// The agent's config with `windows` (and `extra` top-level fields).
fn configure(a: &Agent, m: &Manager, windows: &[&str], extra: &Value) {
    let mut config = a.config_json(&m.url, &json!({}));
    config["windows"] = json!(windows);
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    a.write_config(&config);
}

/// A manager that released v2, and a node running v1 (installed before the
/// agent ever ran): the manager, the node, v1, v2 and v2's sha256.
fn on_v1_with_v2_released() -> (Manager, Agent, Vec<u8>, Vec<u8>, String) {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    let v2 = good_script("v2");
    let s2 = publish(&m, BIN, "2.0.0", &v2);
    (m, a, v1, v2, s2)
}

/// The manager's record of the node.
fn node(m: &Manager, id: &str) -> Option<Node> {
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    nodes.into_iter().find(|n| n.node_id == id)
}

#[test]
fn outside_the_window_it_keepalives_and_installs_nothing_inside_it_installs() {
    let (m, a, v1, v2, s2) = on_v1_with_v2_released();

    let (later, opens) = opens_later();
    let closed = format!("outside maintenance window until {opens}");
    configure(&a, &m, &[&later], &json!({}));
    let out = a.run();
    out.expect_code(0);
    a.assert_live(&v1, "outside the window");
    assert!(out.stderr.contains(&closed), "log:\n{}", out.stderr);
    // The keepalive went out: the manager knows the node and what it runs.
    let seen = node(&m, &a.node_id).expect("the manager saw the keepalive");
    assert!(is_rfc3339(&seen.last_seen), "{seen:?}");
    assert_eq!(seen.bins.get(BIN), Some(&sha256_hex(&v1)));
    // Nothing downloaded, nothing reported.
    assert!(a.beside().is_empty(), "downloaded: {:?}", a.beside());
    let p = progress(&m, BIN, &a.node_id);
    assert!(p.is_empty(), "reported:\n{}", show(&p));
    assert!(a.outbox().is_empty());

    let st = a.status_json();
    assert_eq!(st["maintenance"], closed.as_str());
    let reason = st["bins"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with(&closed), "{reason}");
    let human = a.exec("status", &[]);
    human.expect_code(0);
    assert!(human.stdout.contains(&closed), "{}", human.stdout);

    // Inside a window (one of two): installed and reported.
    configure(&a, &m, &[&later, &open_now()], &json!({}));
    a.run().expect_code(0);
    a.assert_live(&v2, "inside the window");
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    assert_eq!(a.status_json()["maintenance"], Value::Null);
}

#[test]
fn prestage_downloads_and_verifies_ahead_and_swaps_inside_the_window() {
    let (m, a, v1, v2, s2) = on_v1_with_v2_released();

    let (later, _) = opens_later();
    configure(&a, &m, &[&later], &json!({"prestage": true}));
    for round in 0..2 {
        a.run().expect_code(0);
        a.assert_live(&v1, "outside the window");
        let part = format!(".{BIN}.binproxy-{}.part", &s2[..16]);
        assert_eq!(a.beside(), std::slice::from_ref(&part), "round {round}");
        let staged = fs::read(a.live.parent().unwrap().join(&part)).unwrap();
        assert!(staged == v2, "round {round}: the staged file is not v2");
        let p = progress(&m, BIN, &a.node_id);
        assert!(p.is_empty(), "reported:\n{}", show(&p));
    }
    let reason = a.status_json()["bins"][0]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("already staged"), "{reason}");

    configure(&a, &m, &[&open_now()], &json!({"prestage": true}));
    a.run().expect_code(0);
    a.assert_live(&v2, "inside the window");
    assert!(a.beside().is_empty(), "left: {:?}", a.beside());
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
}

#[test]
fn a_bad_window_is_a_config_error_naming_it() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    for (bad, why) in [
        ("Mon-Fri 01:00-05:00", "expected DAYS"),
        ("Mon 01:00-05:00 +8", "is not a UTC offset"),
        ("Funday 01:00-05:00 +00:00", "is not a day"),
    ] {
        configure(&a, &m, &["Sat 00:00-24:00 +00:00", bad], &json!({}));
        for sub in ["run", "status"] {
            let out = a.exec(sub, &[]);
            out.expect_code(2);
            assert!(
                out.stderr.contains("windows[1]") && out.stderr.contains(why),
                "{sub} {bad}: {}",
                out.stderr
            );
            assert!(out.stderr.contains(&format!("{bad:?}")), "{}", out.stderr);
        }
    }
    assert!(node(&m, &a.node_id).is_none(), "a bad config still talked");
}
