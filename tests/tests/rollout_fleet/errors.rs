//! The rollout API's errors: the token, a valid state, a known release, and
//! validated release plans.

use binproxy_protocol::ReleaseStatus::{Cancelled, Paused, PendingApproval, RollingOut};
use binproxy_protocol::{Release, ReleaseStatus};
use binproxy_tests::fleet::{
    admin, approve, create_release, get_release, node_id, op, rollout_manager, show_release, unpin,
    upload_versions, Fleet, Mode,
};
use binproxy_tests::rollout::{assert_recorded, BIN, OPS, V1, V2};
use serde_json::json;

// ---------------------------------------------------------------------------
// the admin API's errors

#[test]
fn rollout_operations_need_the_token_a_valid_state_and_a_known_release() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN], 20);
    fleet.round(m.addr, Mode::Observe);
    let plan = json!([{"percent": 10, "wait": "1h"}, {"percent": 100}]);
    let r1 = create_release(&m, &json!({"bin_name": BIN, "version": V1, "waves": plan}));
    let actor = r1.created_by.clone();

    // 401 before anything else, and nothing changes.
    for o in OPS {
        let path = format!("/api/v1/releases/{}/{o}", r1.id);
        m.request("POST", &path, &[], b"").expect_error(401);
        m.request(
            "POST",
            &path,
            &[("Authorization", "Bearer wrong-token")],
            b"",
        )
        .expect_error(401);
        m.request("POST", "/api/v1/releases/999999/pause", &[], b"")
            .expect_error(401);
    }
    let pin_path = format!("/api/v1/nodes/{}/pins/{BIN}", node_id(1));
    m.request(
        "PUT",
        &pin_path,
        &[("Content-Type", "application/json")],
        br#"{"version":"1.0.0"}"#,
    )
    .expect_error(401);
    m.request("DELETE", &pin_path, &[], b"").expect_error(401);
    m.request("GET", &format!("/api/v1/nodes/{}", node_id(1)), &[], b"")
        .expect_error(401);
    let unchanged = get_release(&m, r1.id);
    assert_eq!((unchanged.status, unchanged.percent), (RollingOut, 10));
    unpin(&m, &node_id(1), BIN).expect_error(404); // the refused PUT pinned nothing

    // 404 for an unknown release.
    for o in OPS {
        op(&m, 999_999, o).expect_error(404);
    }
    admin(&m, "GET", "/api/v1/releases/999999", None).expect_error(404);

    // 409 for an operation the state does not allow; the release is unchanged.
    let conflict = |id: u64, o: &str, status: ReleaseStatus| {
        op(&m, id, o).expect_error(409);
        let r = get_release(&m, id);
        assert_eq!(r.status, status, "{o} refused: {}", show_release(&r));
    };
    conflict(r1.id, "approve", RollingOut);
    conflict(r1.id, "resume", RollingOut);
    conflict(r1.id, "rollback", RollingOut); // no baseline
    let r: Release = op(&m, r1.id, "pause").expect(200).parse();
    assert_eq!(r.status, Paused);
    assert_eq!(r.percent, 10);
    conflict(r1.id, "pause", Paused);
    conflict(r1.id, "approve", Paused);
    let r: Release = op(&m, r1.id, "resume").expect(200).parse();
    assert_eq!(r.status, RollingOut);
    let r: Release = op(&m, r1.id, "promote").expect(200).parse();
    assert_eq!((r.status, r.percent), (RollingOut, 100));
    let r: Release = op(&m, r1.id, "cancel").expect(200).parse();
    assert_eq!(r.status, Cancelled);
    for o in OPS {
        conflict(r1.id, o, Cancelled);
    }
    let r = get_release(&m, r1.id);
    for word in ["pause", "resum", "promot", "cancel"] {
        assert_recorded(&r, word, &actor);
    }

    let r2 = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "require_approval": true}),
    );
    for o in ["pause", "resume", "promote"] {
        conflict(r2.id, o, PendingApproval);
    }
    approve(&m, r2.id).expect(200);
    let r3 = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V1, "require_approval": true}),
    );
    let r: Release = op(&m, r3.id, "cancel").expect(200).parse();
    assert_eq!(r.status, Cancelled, "pending → cancelled");
    conflict(r3.id, "approve", Cancelled);
    conflict(r2.id, "approve", RollingOut);
    // A paused release may be promoted.
    op(&m, r2.id, "pause").expect(200);
    let r: Release = op(&m, r2.id, "promote").expect(200).parse();
    assert_eq!(
        (r.status, r.percent),
        (RollingOut, 100),
        "{}",
        show_release(&r)
    );
}

#[test]
fn release_plans_are_validated() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V1]);
    let refused = [
        (
            json!({"waves": [{"percent": 50}, {"percent": 10}, {"percent": 100}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 10}, {"percent": 10}, {"percent": 100}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 10}, {"percent": 50}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 0}, {"percent": 100}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 50}, {"percent": 101}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 10, "wait": "soon"}, {"percent": 100}]}),
            "wait",
        ),
        (json!({"success_threshold": "120%"}), "success_threshold"),
        (json!({"success_threshold": "most"}), "success_threshold"),
        (json!({"max_failures": "x%"}), "max_failures"),
        (json!({"max_failures": "-1"}), "max_failures"),
        (json!({"max_failures": -1}), "max_failures"),
        (json!({"max_failures": 2.5}), "max_failures"),
        (json!({"success_threshold": true}), "success_threshold"),
    ];
    for (extra, field) in &refused {
        let mut body = json!({"bin_name": BIN, "version": V1});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = admin(&m, "POST", "/api/v1/releases", Some(&body));
        r.expect_error(400);
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.contains(field),
            "{body}: error {msg:?} does not name {field}"
        );
    }
    let list: Vec<Release> = admin(&m, "GET", "/api/v1/releases", None)
        .expect(200)
        .parse();
    assert!(list.is_empty(), "refused plans were stored: {list:?}");

    let ok = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V1, "success_threshold": "90%", "max_failures": "3",
                "waves": [{"percent": 1, "wait": "10m"}, {"percent": 10, "wait": "30m"}, {"percent": 100}]}),
    );
    assert_eq!(ok.success_threshold.as_deref(), Some("90%"));
    assert_eq!(ok.max_failures.as_deref(), Some("3"));
    assert_eq!((ok.wave, ok.percent, ok.waves.len()), (0, 1, 3));
    assert_eq!(ok.waves[1].wait.as_deref(), Some("30m"));
    assert!(!ok.require_approval);
    // JSON users write counts as numbers: stored and shown as the strings.
    let numbers = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V1, "success_threshold": 2, "max_failures": 5}),
    );
    assert_eq!(numbers.success_threshold.as_deref(), Some("2"));
    assert_eq!(numbers.max_failures.as_deref(), Some("5"));
    // No plan: one wave of 100%.
    let whole = create_release(&m, &json!({"bin_name": BIN, "version": V1}));
    assert_eq!(whole.percent, 100, "{}", show_release(&whole));
}
