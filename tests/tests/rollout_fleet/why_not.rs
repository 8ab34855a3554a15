//! Why-not: the reason for every case, the same in the node view and in the
//! keepalive.

use binproxy_tests::fleet::{
    admin, bucket, create_release, in_percent, node_id, node_view, op, pin, rollout_manager,
    upload_versions, Fleet, Mode, SimNode,
};
use binproxy_tests::rollout::{assert_reason, V1, V2};
use binproxy_tests::Manager;
use serde_json::json;

// ---------------------------------------------------------------------------
// why-not

/// `GET /api/v1/nodes/{id}` gives, for each of `bins`, the reason and target
/// of the node's last keepalive.
#[track_caller]
fn assert_view_matches_keepalive(m: &Manager, n: &SimNode, bins: &[&str]) {
    let who = &n.id;
    let view = node_view(m, who);
    assert_eq!(view.node.node_id, *who);
    for bin in bins {
        let v = view
            .bins
            .get(*bin)
            .unwrap_or_else(|| panic!("{who}: node view has no {bin}: {view:?}"));
        assert_eq!(
            v.reason,
            n.reason(bin),
            "{who} {bin}: node view vs keepalive"
        );
        assert_eq!(
            v.target.as_ref().map(|t| &t.sha256sum),
            n.targets[*bin].as_ref().map(|t| &t.sha256sum),
            "{who} {bin}: node view target vs keepalive"
        );
    }
}

#[test]
fn why_not_names_every_case_in_the_node_view_and_the_keepalive() {
    let m = rollout_manager();
    let bins = [
        "w-in", "w-bucket", "w-sel", "w-pin", "w-paused", "w-appr", "w-none",
    ];
    for b in &bins[..6] {
        upload_versions(&m, b, &[V1]);
    }
    upload_versions(&m, "w-pin", &[V2]);
    let mut fleet = Fleet::new(&bins, 30);
    fleet.round(m.addr, Mode::Observe);
    let one_percent = json!([{"percent": 1, "wait": "1h"}, {"percent": 100}]);
    let r_in = create_release(&m, &json!({"bin_name": "w-in", "version": V1}));
    let r_bucket = create_release(
        &m,
        &json!({"bin_name": "w-bucket", "version": V1, "waves": one_percent}),
    );
    let r_sel = create_release(
        &m,
        &json!({"bin_name": "w-sel", "version": V1, "selector": {"node_ids": ["elsewhere"]}}),
    );
    let pinned_rel = create_release(&m, &json!({"bin_name": "w-pin", "version": V2}));
    pin(&m, &node_id(0), "w-pin", V1).expect(200);
    let r_paused = create_release(
        &m,
        &json!({"bin_name": "w-paused", "version": V1, "waves": one_percent}),
    );
    op(&m, r_paused.id, "pause").expect(200);
    let r_appr = create_release(
        &m,
        &json!({"bin_name": "w-appr", "version": V1, "require_approval": true}),
    );
    // A bin the nodes do not report, released: in the view all the same.
    upload_versions(&m, "w-extra", &[V1]);
    create_release(&m, &json!({"bin_name": "w-extra", "version": V1}));
    let view = node_view(&m, &node_id(1));
    assert!(view.bins.contains_key("w-extra"), "{view:?}");

    fleet.round(m.addr, Mode::Observe);
    let mut unreached = 0;
    for n in &fleet.nodes {
        let who = &n.id;
        let in_wave = format!("of release {}", r_in.id);
        assert_eq!(n.target_version("w-in"), Some(V1), "{who}");
        assert!(
            n.reason("w-in").starts_with("in wave"),
            "{who}: {:?}",
            n.reason("w-in")
        );
        assert_reason(n.reason("w-in"), &[&in_wave], who);

        let b = bucket(r_bucket.id, who);
        if b >= 100 {
            unreached += 1;
            assert_eq!(n.target_version("w-bucket"), None, "{who}");
            assert_reason(
                n.reason("w-bucket"),
                &[
                    &format!("not yet in a wave of release {}", r_bucket.id),
                    &format!("bucket {b}"),
                ],
                who,
            );
        }

        assert_eq!(n.target_version("w-sel"), None, "{who}");
        assert_reason(
            n.reason("w-sel"),
            &[&format!("outside selector of release {}", r_sel.id)],
            who,
        );

        if who == &node_id(0) {
            assert_eq!(n.target_version("w-pin"), Some(V1), "{who}");
            assert_reason(n.reason("w-pin"), &["pinned to 1.0.0"], who);
        } else {
            assert_eq!(n.target_version("w-pin"), Some(V2), "{who}");
            assert_reason(
                n.reason("w-pin"),
                &[&format!("release {}", pinned_rel.id)],
                who,
            );
        }

        if !in_percent(r_paused.id, who, 1) {
            assert_eq!(n.target_version("w-paused"), None, "{who}");
            assert_reason(
                n.reason("w-paused"),
                &[&format!("release {} paused", r_paused.id)],
                who,
            );
        }

        assert_eq!(n.target_version("w-appr"), None, "{who}");
        assert_reason(
            n.reason("w-appr"),
            &[&format!("release {} awaiting approval", r_appr.id)],
            who,
        );

        assert_eq!(n.target_version("w-none"), None, "{who}");
        assert_reason(n.reason("w-none"), &["no release"], who);

        assert_view_matches_keepalive(&m, n, &bins);
    }
    assert!(unreached > 0, "every node in a 1% wave?");
    admin(&m, "GET", "/api/v1/nodes/never-seen", None).expect_error(404);
}
