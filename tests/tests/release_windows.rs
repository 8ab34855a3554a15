//! Release maintenance windows against the real `manager-lite` (issue #6
//! item 8): a release whose windows are closed does not offer its version to
//! a node that does not run it yet, which keeps the target an older release
//! gave it; with its windows open it does; a bad window is a 400 naming the
//! entry, from the API and from the CLI. Windows are placed relative to the
//! real clock (`binproxy_tests::windows`): no clock is faked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{KeepaliveReply, Release, ReleaseStatus};
use binproxy_tests::windows::{open_now, opens_later};
use binproxy_tests::{sha256_hex, Manager, TempDir};
use serde_json::json;

const BIN: &str = "svc";

/// Uploads `version` of [`BIN`] and returns its sha256.
fn upload(m: &Manager, version: &str) -> String {
    let bytes = format!("#!/bin/sh\necho {version}\n").into_bytes();
    m.upload(BIN, version, None, &bytes).expect(201);
    sha256_hex(&bytes)
}

fn create(m: &Manager, version: &str, windows: &[&str]) -> Release {
    m.admin_post(
        "/api/v1/releases",
        &json!({"bin_name": BIN, "version": version, "windows": windows}),
    )
    .expect(201)
    .parse()
}

/// The node's keepalive answer for [`BIN`]: (target sha or None, reason).
fn offered(m: &Manager, node: &str, running: &str) -> (Option<String>, String) {
    let reply: KeepaliveReply = m
        .keepalive(node, "x86_64", &[(BIN, running)])
        .expect(200)
        .parse();
    let target = reply.targets[BIN].as_ref().map(|t| t.sha256sum.clone());
    (target, reply.reasons[BIN].clone())
}

#[test]
fn a_closed_window_keeps_nodes_on_their_previous_target_and_an_open_one_does_not() {
    let m = Manager::new();
    let s1 = upload(&m, "1.0.0");
    let s2 = upload(&m, "2.0.0");
    let s3 = upload(&m, "3.0.0");
    let r1 = create(&m, "1.0.0", &[]);
    assert_eq!(offered(&m, "n1", "").0.as_deref(), Some(&*s1));

    // Release 2 at 100% with its only window three hours away.
    let (later, opens) = opens_later();
    let r2 = create(&m, "2.0.0", &[&later]);
    assert_eq!(r2.windows, std::slice::from_ref(&later));
    assert_eq!(r2.status, ReleaseStatus::RollingOut);
    let (target, reason) = offered(&m, "n1", &s1);
    assert_eq!(target.as_deref(), Some(&*s1), "reason: {reason}");
    let closed = format!(
        "release {} outside its maintenance windows until {opens}",
        r2.id
    );
    assert!(reason.contains(&closed), "{reason}\nwanted: {closed}");
    assert!(reason.contains(&format!("release {}", r1.id)), "{reason}");
    // The older release stays live while the newer one is closed.
    let older: Release = m
        .admin_get(&format!("/api/v1/releases/{}", r1.id))
        .expect(200)
        .parse();
    assert!(older.status.is_live(), "{:?}", older.status);
    // A new node, with nothing installed, is offered the older version too.
    assert_eq!(offered(&m, "n-new", "").0.as_deref(), Some(&*s1));
    // The node view says the same.
    let view = m.admin_get("/api/v1/nodes/n1").expect(200).json();
    let why = view["bins"][BIN]["reason"].as_str().unwrap();
    assert!(why.contains(&closed), "{why}");

    // A node already on release 2's artifact keeps it as its target.
    let (target, reason) = offered(&m, "n2", &s2);
    assert_eq!(target.as_deref(), Some(&*s2), "reason: {reason}");
    assert!(reason.contains("installed"), "{reason}");

    // Release 3 with a window open now: offered at once, and it supersedes.
    let r3 = create(&m, "3.0.0", &[&open_now(), &later]);
    let (target, reason) = offered(&m, "n1", &s1);
    assert_eq!(target.as_deref(), Some(&*s3), "reason: {reason}");
    assert!(reason.contains(&format!("release {}", r3.id)), "{reason}");
    for id in [r1.id, r2.id] {
        let r: Release = m
            .admin_get(&format!("/api/v1/releases/{id}"))
            .expect(200)
            .parse();
        assert_eq!(r.status, ReleaseStatus::Superseded, "release {id}");
    }
}

#[test]
fn a_closed_release_without_an_older_one_offers_nothing() {
    let m = Manager::new();
    upload(&m, "1.0.0");
    let (later, opens) = opens_later();
    let r = create(&m, "1.0.0", &[&later]);
    let (target, reason) = offered(&m, "n1", "");
    assert_eq!(target, None, "{reason}");
    assert_eq!(
        reason,
        format!(
            "release {} outside its maintenance windows until {opens}",
            r.id
        )
    );
    // The old agents' `GET /api/v1/bins/{bin}` answers 404 with the reason.
    let answer = m.get(&format!("/api/v1/bins/{BIN}?node_id=n1"));
    answer.expect_error(404);
    assert!(answer.text().contains("maintenance windows"), "{answer}");
}

#[test]
fn bad_windows_are_refused_naming_the_entry() {
    let m = Manager::new();
    upload(&m, "1.0.0");
    for (bad, why) in [
        ("Mon 01:00-05:00", "expected DAYS"),
        ("Mon-Fry 01:00-05:00 +00:00", "\\\"Fry\\\" is not a day"),
        ("Mon 01:00-24:30 +00:00", "is not a time"),
        ("Mon 01:00-05:00 +15:00", "at most 14:00"),
        ("Mon 05:00-05:00 +00:00", "is empty"),
    ] {
        let answer = m.admin_post(
            "/api/v1/releases",
            &json!({"bin_name": BIN, "version": "1.0.0", "windows": ["* 00:00-24:00 +00:00", bad]}),
        );
        answer.expect_error(400);
        let text = answer.text();
        assert!(text.contains("windows[1]"), "{bad}: {text}");
        assert!(text.contains(why), "{bad}: {text}");
    }
    let none: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert!(none.is_empty(), "a refused release was stored: {none:?}");

    // The CLI refuses it before sending, naming the option and the entry.
    let dir = TempDir::new("release-windows-cli");
    let token = dir.join("token");
    std::fs::write(&token, &m.token).unwrap();
    let out = m.cli(
        &token,
        &["release", BIN, "1.0.0", "--window", "Mon 01:00-05:00"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--window \"Mon 01:00-05:00\""), "{err}");

    // And sends a good one, which the release then shows.
    let (later, _) = opens_later();
    let out = m.cli(
        &token,
        &["release", BIN, "1.0.0", "--window", &later, "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let r: Release = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.windows, [later]);
}
