//! Which nodes a release is for: approval gates it, selectors choose nodes,
//! a covering release supersedes, pins override releases.

use binproxy_protocol::ReleaseStatus::{Completed, PendingApproval, RollingOut, Superseded};
use binproxy_protocol::{Pin, Release};
use binproxy_tests::fleet::{
    approve, create_release, drive, drive_fleet, get_release, node_id, node_view, op, pin,
    rollout_manager, show_release, unpin, upload_versions, Fleet, Mode,
};
use binproxy_tests::rollout::{
    assert_reason, baseline, has_action, rounds_then_observe, BIN, V1, V2, V3,
};
use serde_json::json;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// approval, selectors, supersede, pins

#[test]
fn approval_gates_the_rollout() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V2]);
    let aux = upload_versions(&m, "aux", &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN, "aux"], 100);
    let aux1 = baseline(&m, &mut fleet, "aux", V1);

    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "require_approval": true}),
    );
    assert_eq!(
        (rel.status, rel.percent),
        (PendingApproval, 0),
        "{}",
        show_release(&rel)
    );
    let aux2 = create_release(
        &m,
        &json!({"bin_name": "aux", "version": V2, "require_approval": true}),
    );
    // What the nodes are told after rounds and passes of the timer.
    rounds_then_observe(&m, &mut fleet, 3);
    for n in &fleet.nodes {
        assert_eq!(n.target_version(BIN), None, "{}", n.id);
        assert_reason(
            n.reason(BIN),
            &[&format!("release {} awaiting approval", rel.id)],
            &n.id,
        );
        // A release waiting for approval supersedes nothing.
        assert_eq!(n.target_version("aux"), Some(V1), "{}", n.id);
    }
    let view = node_view(&m, "node-00000");
    assert_reason(&view.bins[BIN].reason, &["awaiting approval"], "node view");
    assert_eq!(get_release(&m, rel.id).status, PendingApproval);
    assert!(get_release(&m, aux1.id).status.is_live());
    for o in ["pause", "resume", "promote"] {
        op(&m, rel.id, o).expect_error(409);
    }

    let r: Release = approve(&m, rel.id).expect(200).parse();
    assert_eq!(
        (r.status, r.percent),
        (RollingOut, 100),
        "{}",
        show_release(&r)
    );
    let approval = r
        .history
        .iter()
        .find(|e| e.action.starts_with("approv"))
        .expect("the approval is recorded");
    assert_ne!(
        approval.actor, rel.created_by,
        "four eyes: another token approved"
    );
    approve(&m, rel.id).expect_error(409);
    fleet.round(m.addr, Mode::Observe);
    assert_eq!(fleet.targeted(BIN, V2).len(), 100);

    approve(&m, aux2.id).expect(200);
    assert_eq!(get_release(&m, aux1.id).status, Superseded);
    drive_fleet(&m, &mut fleet, Mode::Update, "aux v2 everywhere", |f| {
        f.running("aux", &aux[V2]).len() == 100
    });
}

/// Nodes `selected` target v2 of `bin` (release `id`, "in wave"); the others
/// keep v1 and are told they are outside the selector.
#[track_caller]
fn check_selector(fleet: &Fleet, bin: &str, id: u64, selected: &dyn Fn(usize) -> bool) {
    for (i, n) in fleet.nodes.iter().enumerate() {
        let (version, reason) = (n.target_version(bin), n.reason(bin));
        if selected(i) {
            assert_eq!(version, Some(V2), "{bin} {}: {reason:?}", n.id);
            assert!(reason.starts_with("in wave"), "{bin} {}: {reason:?}", n.id);
        } else {
            assert_eq!(version, Some(V1), "{bin} {}: {reason:?}", n.id);
            assert_reason(
                reason,
                &[&format!("outside selector of release {id}")],
                &format!("{bin} {}", n.id),
            );
        }
    }
}

#[test]
fn selectors_choose_the_nodes_and_the_others_keep_their_target() {
    let m = rollout_manager();
    let bins = ["by-label", "by-arch", "by-ids", "by-excl", "by-and"];
    for b in bins {
        upload_versions(&m, b, &[V1, V2]);
    }
    let mut fleet = Fleet::new(&bins, 240);
    let env = |i: usize| match i % 4 {
        0 => "canary",
        1 => "staging",
        _ => "prod",
    };
    let arm = |i: usize| i.is_multiple_of(3);
    for (i, n) in fleet.nodes.iter_mut().enumerate() {
        n.labels.insert("env".into(), env(i).into());
        n.labels.insert("region".into(), "eu".into());
        n.arch = if arm(i) { "aarch64" } else { "x86_64" }.into();
    }
    fleet.round(m.addr, Mode::Observe);
    let mut old = BTreeMap::new();
    for b in bins {
        old.insert(
            b,
            create_release(&m, &json!({"bin_name": b, "version": V1})),
        );
    }
    drive_fleet(
        &m,
        &mut fleet,
        Mode::Update,
        "v1 of every bin everywhere",
        |f| {
            f.nodes.iter().all(|n| {
                bins.iter()
                    .all(|b| n.target_version(b) == Some(V1) && !n.installed[*b].is_empty())
            })
        },
    );

    let ids = [node_id(3), node_id(10), node_id(100)];
    let excluded = [node_id(0), node_id(1), node_id(2), node_id(3), node_id(4)];
    let selectors = [
        json!({"labels": {"env": ["canary", "staging"]}}),
        json!({"cpu_arch": ["aarch64"]}),
        json!({"node_ids": ids}),
        json!({"exclude_node_ids": excluded}),
        json!({"labels": {"env": ["canary"], "region": ["eu", "us"]}, "cpu_arch": ["aarch64"]}),
    ];
    let selected: [&dyn Fn(usize) -> bool; 5] = [
        &|i| matches!(env(i), "canary" | "staging"),
        &|i| arm(i),
        &|i| ids.contains(&node_id(i)),
        &|i| !excluded.contains(&node_id(i)),
        &|i| env(i) == "canary" && arm(i),
    ];
    let mut new = BTreeMap::new();
    for (b, sel) in bins.iter().zip(&selectors) {
        new.insert(
            *b,
            create_release(&m, &json!({"bin_name": b, "version": V2, "selector": sel})),
        );
    }
    fleet.round(m.addr, Mode::Observe);
    for (k, b) in bins.iter().enumerate() {
        assert!(
            get_release(&m, old[b].id).status.is_live(),
            "{b}: a selector release must not supersede the release for all"
        );
        check_selector(&fleet, b, new[b].id, selected[k]);
    }
    // The why-not view agrees.
    let outside = node_view(&m, &node_id(2)); // prod
    assert_reason(
        &outside.bins["by-label"].reason,
        &[&format!(
            "outside selector of release {}",
            new["by-label"].id
        )],
        "node view",
    );
}

#[test]
fn a_covering_release_supersedes_and_a_narrower_one_does_not() {
    let m = rollout_manager();
    upload_versions(&m, "whole", &[V1, V2]);
    upload_versions(&m, "part", &[V1, V2, V3]);
    let mut fleet = Fleet::new(&["whole", "part"], 100);
    let canary = |i: usize| i.is_multiple_of(2);
    for (i, n) in fleet.nodes.iter_mut().enumerate() {
        let env = if canary(i) { "canary" } else { "prod" };
        n.labels.insert("env".into(), env.into());
    }

    let a = baseline(&m, &mut fleet, "whole", V1);
    let b = create_release(&m, &json!({"bin_name": "whole", "version": V2}));
    let a_now = get_release(&m, a.id);
    assert_eq!(a_now.status, Superseded, "{}", show_release(&a_now));
    assert!(has_action(&a_now, "supersed"), "{}", show_release(&a_now));
    assert!(
        a_now.history.iter().any(|e| e
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(&b.id.to_string())),
        "the supersede names release {}: {}",
        b.id,
        show_release(&a_now)
    );
    fleet.round(m.addr, Mode::Observe);
    assert_eq!(fleet.targeted("whole", V2).len(), 100);

    let pa = baseline(&m, &mut fleet, "part", V1);
    let canary_sel = json!({"labels": {"env": ["canary"]}});
    let pb = create_release(
        &m,
        &json!({"bin_name": "part", "version": V2, "selector": canary_sel}),
    );
    assert!(
        get_release(&m, pa.id).status.is_live(),
        "the release for all stays live"
    );
    fleet.round(m.addr, Mode::Observe);
    for (i, n) in fleet.nodes.iter().enumerate() {
        let want = if canary(i) { V2 } else { V1 };
        assert_eq!(
            n.target_version("part"),
            Some(want),
            "{}: {:?}",
            n.id,
            n.reason("part")
        );
    }
    // An equal selector supersedes.
    let pc = create_release(
        &m,
        &json!({"bin_name": "part", "version": V3, "selector": canary_sel}),
    );
    assert_eq!(get_release(&m, pb.id).status, Superseded);
    assert!(get_release(&m, pa.id).status.is_live());
    // An empty one supersedes everything of the bin.
    let pd = create_release(&m, &json!({"bin_name": "part", "version": V2}));
    for old in [pa.id, pc.id] {
        let r = get_release(&m, old);
        assert_eq!(r.status, Superseded, "{}", show_release(&r));
    }
    assert!(get_release(&m, pd.id).status.is_live());
    fleet.round(m.addr, Mode::Observe);
    assert_eq!(fleet.targeted("part", V2).len(), 100);
}

#[test]
fn pins_override_releases_until_removed() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V1, V2, V3]);
    let mut fleet = Fleet::new(&[BIN], 50);
    baseline(&m, &mut fleet, BIN, V2);
    let pinned = node_id(7);

    let p: Pin = pin(&m, &pinned, BIN, V1).expect(200).parse();
    assert_eq!(
        p,
        Pin {
            node_id: pinned.clone(),
            bin_name: BIN.into(),
            version: V1.into()
        }
    );
    pin(&m, &pinned, BIN, "9.9.9").expect_error(404);
    fleet.round(m.addr, Mode::Update);
    let n = fleet.node(&pinned);
    assert_eq!(n.target_version(BIN), Some(V1));
    assert_reason(n.reason(BIN), &["pinned to 1.0.0"], &pinned);
    assert_eq!(
        n.installed[BIN], shas[V1],
        "the pinned node installs its pin"
    );
    assert_reason(
        &node_view(&m, &pinned).bins[BIN].reason,
        &["pinned to 1.0.0"],
        "node view",
    );
    assert_eq!(fleet.targeted(BIN, V2).len(), 49);

    // A new release does not move the pinned node.
    let r3 = create_release(&m, &json!({"bin_name": BIN, "version": V3}));
    fleet.round(m.addr, Mode::Update);
    assert_eq!(fleet.node(&pinned).target_version(BIN), Some(V1));
    assert_eq!(fleet.targeted(BIN, V3).len(), 49);

    unpin(&m, &pinned, BIN).expect(200);
    unpin(&m, &pinned, BIN).expect_error(404);
    fleet.round(m.addr, Mode::Update);
    let n = fleet.node(&pinned);
    assert_eq!(
        n.target_version(BIN),
        Some(V3),
        "unpinned: {:?}",
        n.reason(BIN)
    );
    assert_reason(n.reason(BIN), &[&format!("release {}", r3.id)], &pinned);
    drive(&m, &mut fleet, r3.id, Mode::Update, "v3 completed", |r| {
        r.status == Completed
    });
    assert_eq!(fleet.running(BIN, &shas[V3]).len(), 50);
}
