//! Waves: each reaches its share of the fleet (within binomial bounds, also
//! over 10,000 nodes) and keeps it, and the rollout advances through every
//! wave to completed.

use binproxy_protocol::Release;
use binproxy_protocol::ReleaseStatus::{Completed, RollingOut};
use binproxy_tests::fleet::{
    bucket, create_release, drive, get_release, op, rollout_manager, show_release, upload_versions,
    wait_release, Fleet, Mode,
};
use binproxy_tests::metrics::wait_rollout_evaluations;
use binproxy_tests::rollout::{
    all_converge, assert_reason, assert_same_nodes, assert_state, check_wave, drive_to_completed,
    drive_to_second_wave, expected_wave, first_wave, n64, BIN, V2,
};
use serde_json::json;

// ---------------------------------------------------------------------------
// waves

#[test]
fn waves_reach_their_share_and_are_sticky() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 400);
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "require_approval": false,
                "waves": [{"percent": 10, "wait": "300ms"}, {"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    assert_eq!(
        (rel.status, rel.wave, rel.percent, rel.waves.len()),
        (RollingOut, 0, 10, 3),
        "{}",
        show_release(&rel)
    );

    // Wave 1: 10%.
    fleet.round(m.addr, Mode::Observe);
    let wave1 = first_wave(&fleet, rel.id, 400, 10);
    wait_release(&m, rel.id, "counts.targeted = the nodes reached", |r| {
        r.counts.targeted == n64(wave1.len())
    });
    for n in &fleet.nodes {
        let reason = n.reason(BIN);
        if wave1.contains(&n.id) {
            assert!(reason.starts_with("in wave"), "{}: reason {reason:?}", n.id);
            assert_reason(reason, &[&format!("of release {}", rel.id)], &n.id);
        } else {
            assert_eq!(n.target_version(BIN), None, "{}: no older release", n.id);
            assert_reason(
                reason,
                &[
                    &format!("not yet in a wave of release {}", rel.id),
                    &format!("bucket {}", bucket(rel.id, &n.id)),
                ],
                &n.id,
            );
        }
    }

    // The reached nodes succeed, the 300ms wait passes: wave 2, 50%.
    let wave2 = drive_to_second_wave(&m, &mut fleet, rel.id);
    let lost: Vec<&String> = wave1.difference(&wave2).collect();
    assert!(
        lost.is_empty(),
        "sticky: wave-1 nodes lost the target: {lost:?}"
    );
    check_wave(
        &wave2,
        &expected_wave(&fleet, rel.id, 50, |_| true),
        400,
        50,
    );

    // Every reached node succeeds, but the wave's 1h wait holds it at 50%.
    fleet.round(m.addr, Mode::Update);
    assert_same_nodes(&fleet.running(BIN, &shas[V2]), &wave2, "running v2");
    wait_release(&m, rel.id, "every reached node counted as success", |r| {
        r.counts.success == n64(wave2.len())
    });
    // The timer has run since: the 1h wait still holds the wave.
    wait_rollout_evaluations(&m, 2);
    let r = get_release(&m, rel.id);
    assert_state(&r, RollingOut, 1, 50);

    // Promote: 100%, the last wave.
    let r: Release = op(&m, rel.id, "promote").expect(200).parse();
    assert_state(&r, RollingOut, 2, 100);
    fleet.round(m.addr, Mode::Observe);
    let all = fleet.targeted(BIN, V2);
    assert_eq!(all.len(), 400, "every node after promote");

    let _r = drive_to_completed(&m, &mut fleet, rel.id);
    all_converge(&m, &mut fleet, &shas[V2], 400);
}

#[test]
fn ten_thousand_nodes_ten_percent_wave_is_within_one_percent() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V2]);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": 10, "wait": "1h"}, {"percent": 100}]}),
    );
    let mut fleet = Fleet::new(&[BIN], 10_000);
    fleet.threads = 16;
    // Registers all 10,000 and reads each node's target.
    fleet.round(m.addr, Mode::Observe);
    let reached = fleet.targeted(BIN, V2);
    assert!(
        (900..=1100).contains(&reached.len()),
        "10% of 10,000 nodes: {} reached, wanted 1000 ± 100",
        reached.len()
    );
    assert_same_nodes(
        &reached,
        &expected_wave(&fleet, rel.id, 10, |_| true),
        "reached vs bucket < 1000",
    );
    let r = wait_release(&m, rel.id, "counts.targeted = keepalive targets", |r| {
        r.counts.targeted == n64(reached.len())
    });
    assert_state(&r, RollingOut, 0, 10);
}

#[test]
fn advances_through_every_wave_to_completed() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 300);
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": 10, "wait": "200ms"}, {"percent": 50, "wait": "200ms"}, {"percent": 100}]}),
    );
    let mut seen = vec![(rel.wave, rel.percent)];
    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "completed", |r| {
        seen.push((r.wave, r.percent));
        r.status != RollingOut
    });
    assert_eq!(r.status, Completed, "{}", show_release(&r));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "(wave, percent) went back: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| [(0, 10), (1, 50), (2, 100)].contains(s)),
        "(wave, percent) off the plan: {seen:?}"
    );
    assert_eq!((r.wave, r.percent), (2, 100));
    // The last wave completes at the success threshold (95%): nodes whose
    // keepalive came before it opened take the target in one more round.
    fleet.round(m.addr, Mode::Update);
    let r = wait_release(&m, rel.id, "every node counted as success", |r| {
        r.counts.success == 300
    });
    assert_eq!(
        (
            r.counts.targeted,
            r.counts.failed,
            r.counts.rolled_back,
            r.counts.in_progress
        ),
        (300, 0, 0, 0),
        "{}",
        show_release(&r)
    );
    assert_eq!(r.paused_reason, None);
    assert_eq!(fleet.running(BIN, &shas[V2]).len(), 300);
    fleet.round(m.addr, Mode::Observe);
    for n in &fleet.nodes {
        assert_eq!(n.target_version(BIN), Some(V2), "{}", n.id);
        assert_reason(n.reason(BIN), &[&format!("release {}", rel.id)], &n.id);
    }
}
