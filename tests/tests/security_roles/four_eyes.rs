//! Four eyes: the creator of a release may not approve it, whoever it is.

use binproxy_protocol::{Release, ReleaseStatus};
use binproxy_tests::roles::{bearer, expect_forbidden, new_token, release_of, send};
use binproxy_tests::{artifact_bytes, Manager};
use serde_json::json;

// ---------------------------------------------------------------------------
// four eyes

fn pending_release(m: &Manager, token: &str, bin: &str) -> Release {
    let auth = bearer(token);
    m.request(
        "POST",
        &format!("/api/v1/bins/{bin}/versions?version=1"),
        &[("Authorization", &auth)],
        &artifact_bytes(bin, 32),
    )
    .expect(201);
    let body = json!({"bin_name": bin, "version": "1", "require_approval": true});
    let r: Release = send(m, "POST", "/api/v1/releases", Some(token), Some(&body))
        .expect(201)
        .parse();
    assert_eq!(r.status, ReleaseStatus::PendingApproval, "{r:?}");
    r
}

#[test]
fn four_eyes_the_creator_of_a_release_may_not_approve_it() {
    let m = Manager::new();
    let lead = new_token(&m, "lead", "admin");
    let checker = new_token(&m, "checker", "approver");
    let r = pending_release(&m, &lead, "tool");
    assert_eq!(r.created_by, "lead");
    assert_eq!(r.history.first().map(|e| e.actor.as_str()), Some("lead"));

    let approve = format!("/api/v1/releases/{}/approve", r.id);
    let answer = send(&m, "POST", &approve, Some(&lead), None);
    answer.expect_error(403);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("four eyes") && error.contains("lead"),
        "the 403 should name four eyes and the creator: {answer}"
    );
    assert_eq!(release_of(&m, r.id).status, ReleaseStatus::PendingApproval);

    let approved: Release = send(&m, "POST", &approve, Some(&checker), None)
        .expect(200)
        .parse();
    assert_eq!(approved.status, ReleaseStatus::RollingOut);
    let last = approved.history.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("checker", "approved"),
        "{approved:?}"
    );
}

#[test]
fn four_eyes_holds_for_the_bootstrap_admin_and_publishers() {
    let m = Manager::new();
    // The bootstrap admin creates: it may not approve, a named admin may.
    let r = pending_release(&m, &m.token, "one");
    assert_eq!(r.created_by, "admin");
    let approve = format!("/api/v1/releases/{}/approve", r.id);
    let answer = send(&m, "POST", &approve, Some(&m.token), None);
    answer.expect_error(403);
    assert!(answer.text().contains("four eyes"), "{answer}");
    let other = new_token(&m, "other-admin", "admin");
    send(&m, "POST", &approve, Some(&other), None).expect(200);

    // A publisher creates: it may not approve (its role), an approver may.
    let publisher = new_token(&m, "ci", "publisher");
    let approver = new_token(&m, "qa", "approver");
    let r = pending_release(&m, &publisher, "two");
    assert_eq!(r.created_by, "ci");
    let approve = format!("/api/v1/releases/{}/approve", r.id);
    expect_forbidden(
        &send(&m, "POST", &approve, Some(&publisher), None),
        "ci",
        "publisher",
    );
    let done: Release = send(&m, "POST", &approve, Some(&approver), None)
        .expect(200)
        .parse();
    assert_eq!(done.status, ReleaseStatus::RollingOut);
    assert!(
        done.history
            .iter()
            .any(|e| e.actor == "qa" && e.action == "approved"),
        "{done:?}"
    );
    // Other operations by the approver carry its name too.
    let paused: Release = send(
        &m,
        "POST",
        &format!("/api/v1/releases/{}/pause", r.id),
        Some(&approver),
        None,
    )
    .expect(200)
    .parse();
    assert_eq!(paused.history.last().unwrap().actor, "qa");
}
