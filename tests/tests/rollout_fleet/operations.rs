//! Operator actions: promote, cancel and rollback, and the previous
//! release's target for the nodes a release did not reach.

use binproxy_protocol::Release;
use binproxy_protocol::ReleaseStatus::{
    Cancelled, Completed, RolledBack as RelRolledBack, RollingOut,
};
use binproxy_tests::fleet::{
    admin, create_release, drive, drive_fleet, get_release, node_id, op, rollout_manager,
    show_release, upload_versions, Fleet, Mode,
};
use binproxy_tests::rollout::{
    all_converge, assert_reason, assert_recorded, assert_same_nodes, assert_state, baseline,
    check_wave, drive_to_completed, expected_wave, first_wave, v2_first_wave_over_v1, BIN, OPS, V1,
    V2,
};
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn promote_reaches_every_selected_node() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 300);
    let prod = |i: usize| !i.is_multiple_of(3);
    for (i, n) in fleet.nodes.iter_mut().enumerate() {
        let env = if prod(i) { "prod" } else { "staging" };
        n.labels.insert("env".into(), env.into());
    }
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "selector": {"labels": {"env": ["prod"]}},
                "waves": [{"percent": 5, "wait": "1h"}, {"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    fleet.round(m.addr, Mode::Observe);
    check_wave(
        &fleet.targeted(BIN, V2),
        &expected_wave(&fleet, rel.id, 5, prod),
        200,
        5,
    );

    let r: Release = op(&m, rel.id, "promote").expect(200).parse();
    assert_state(&r, RollingOut, 2, 100);
    assert_recorded(&r, "promot", &rel.created_by);
    fleet.round(m.addr, Mode::Observe);
    let all_prod: BTreeSet<String> = (0..300).filter(|i| prod(*i)).map(node_id).collect();
    assert_same_nodes(
        &fleet.targeted(BIN, V2),
        &all_prod,
        "targeted after promote",
    );
    for (i, n) in fleet.nodes.iter().enumerate() {
        if !prod(i) {
            assert_reason(
                n.reason(BIN),
                &[&format!("outside selector of release {}", rel.id)],
                &n.id,
            );
        }
    }
    let _r = drive_to_completed(&m, &mut fleet, rel.id);
    assert_same_nodes(&fleet.running(BIN, &shas[V2]), &all_prod, "running v2");
}

#[test]
fn unreached_nodes_keep_the_previous_release_target() {
    let (_m, shas, fleet, rel) = v2_first_wave_over_v1(200, 10);
    let reached = first_wave(&fleet, rel.id, 200, 10);
    for n in &fleet.nodes {
        if !reached.contains(&n.id) {
            assert_eq!(
                n.target_version(BIN),
                Some(V1),
                "{} (not reached by release {}) keeps the older release's target; reason {:?}",
                n.id,
                rel.id,
                n.reason(BIN)
            );
            assert_eq!(n.installed[BIN], shas[V1], "{}", n.id);
        }
    }
    assert_same_nodes(&fleet.running(BIN, &shas[V2]), &reached, "running v2");
}

#[test]
fn cancel_falls_back_to_the_previous_release() {
    let (m, shas, mut fleet, rel) = v2_first_wave_over_v1(200, 50);
    let on_v2 = fleet.running(BIN, &shas[V2]);
    assert!(!on_v2.is_empty(), "the 50% wave updated nobody");

    let r: Release = op(&m, rel.id, "cancel").expect(200).parse();
    assert_eq!(r.status, Cancelled, "{}", show_release(&r));
    assert_recorded(&r, "cancel", &rel.created_by);
    fleet.round(m.addr, Mode::Observe);
    for n in &fleet.nodes {
        assert_eq!(
            n.target_version(BIN),
            Some(V1),
            "{} after the cancel of release {}: reason {:?}",
            n.id,
            rel.id,
            n.reason(BIN)
        );
    }
    drive_fleet(&m, &mut fleet, Mode::Update, "every node back on v1", |f| {
        f.running(BIN, &shas[V1]).len() == 200
    });
    for o in OPS {
        op(&m, rel.id, o).expect_error(409);
    }
    assert_eq!(get_release(&m, rel.id).status, Cancelled);
}

#[test]
fn rollback_releases_the_baseline_version() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN], 200);
    let r1 = baseline(&m, &mut fleet, BIN, V1);
    op(&m, r1.id, "rollback").expect_error(409); // no baseline

    let r2 = create_release(&m, &json!({"bin_name": BIN, "version": V2}));
    assert_eq!(
        r2.baseline_version.as_deref(),
        Some(V1),
        "{}",
        show_release(&r2)
    );
    drive(&m, &mut fleet, r2.id, Mode::Update, "v2 completed", |r| {
        r.status == Completed
    });
    all_converge(&m, &mut fleet, &shas[V2], 200);

    let r3: Release = op(&m, r2.id, "rollback").expect(201).parse();
    assert!(r3.id > r2.id, "{}", show_release(&r3));
    assert_eq!((r3.bin_name.as_str(), r3.version.as_str()), (BIN, V1));
    assert_eq!(r3.selector, r2.selector);
    assert_eq!(r3.percent, 100, "{}", show_release(&r3));
    assert!(r3.status.is_live(), "{}", show_release(&r3));
    let r2_now = get_release(&m, r2.id);
    assert_eq!(r2_now.status, RelRolledBack, "{}", show_release(&r2_now));
    assert_recorded(&r2_now, "roll", &r2.created_by);

    fleet.round(m.addr, Mode::Observe);
    assert_eq!(fleet.targeted(BIN, V1).len(), 200, "every node targets v1");
    let r3 = drive(
        &m,
        &mut fleet,
        r3.id,
        Mode::Update,
        "rollback release completed",
        |r| r.status == Completed,
    );
    assert_eq!(r3.version, V1);
    assert_eq!(fleet.running(BIN, &shas[V1]).len(), 200);
    op(&m, r2.id, "rollback").expect_error(409); // already rolled back

    // A rollback may carry its own plan.
    let r4 = create_release(&m, &json!({"bin_name": BIN, "version": V2}));
    let r5: Release = admin(
        &m,
        "POST",
        &format!("/api/v1/releases/{}/rollback", r4.id),
        Some(&json!({"waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}]})),
    )
    .expect(201)
    .parse();
    assert_eq!(
        (r5.version.as_str(), r5.wave, r5.percent, r5.waves.len()),
        (V1, 0, 50, 2),
        "{}",
        show_release(&r5)
    );

    // The same plan sent chunked is read, not ignored.
    let r6 = create_release(&m, &json!({"bin_name": BIN, "version": V2}));
    let plan = br#"{"waves": [{"percent": 30, "wait": "1h"}, {"percent": 100}]}"#;
    let mut chunked = format!("{:x}\r\n", plan.len()).into_bytes();
    chunked.extend_from_slice(plan);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let auth = format!("Bearer {}", m.token);
    let r7: Release = binproxy_tests::request(
        m.addr,
        "POST",
        &format!("/api/v1/releases/{}/rollback", r6.id),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    )
    .expect(201)
    .parse();
    assert_eq!(
        (r7.version.as_str(), r7.percent, r7.waves.len()),
        (V1, 30, 2),
        "{}",
        show_release(&r7)
    );
}
