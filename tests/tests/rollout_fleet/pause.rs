//! Failures pause a rollout; a paused release adds no node; a resume accepts
//! the failures so far and new ones pause it again; only this release's
//! failures count.

use binproxy_protocol::ProgressStatus::{Failed, RolledBack};
use binproxy_protocol::Release;
use binproxy_protocol::ReleaseStatus::{Paused, RollingOut};
use binproxy_tests::fleet::{
    create_release, drive, get_release, op, rollout_manager, show_release, upload_versions,
    wait_release, Fleet, Mode,
};
use binproxy_tests::metrics::wait_rollout_evaluations;
use binproxy_tests::rollout::{
    all_converge, assert_reason, assert_recorded, assert_same_nodes, drive_to_completed,
    expected_wave, has_action, make_every_fifth_fail, n64, rounds_then_observe, run_until_paused,
    BIN, V2,
};
use serde_json::json;

// ---------------------------------------------------------------------------
// pause, resume, promote, cancel, rollback

#[test]
fn failures_pause_the_rollout_and_a_paused_release_adds_no_node() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 400);
    let r = run_until_paused(&m, &mut fleet);
    let id = r.id;
    let reason = r.paused_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("failure"),
        "paused_reason: {}",
        show_release(&r)
    );
    assert_eq!((r.wave, r.percent), (0, 20), "{}", show_release(&r));
    assert!(has_action(&r, "pause"), "{}", show_release(&r));

    fleet.round(m.addr, Mode::Observe);
    let wave = expected_wave(&fleet, id, 20, |_| true);
    // A pause contains: of the wave, only the nodes that took the release up
    // (reported progress for it) keep its target.
    let reached = fleet.targeted(BIN, V2);
    assert!(
        !reached.is_empty() && reached.is_subset(&wave),
        "{reached:?}"
    );
    for n in fleet.nodes.iter().filter(|n| wave.contains(&n.id)) {
        if !reached.contains(&n.id) {
            assert_reason(n.reason(BIN), &["had not started it"], &n.id);
        }
    }

    // Rounds go on (every node acts, failing nodes report their failure, the
    // timer runs): the set of targeted nodes does not grow or shrink.
    for round in 0..5 {
        rounds_then_observe(&m, &mut fleet, 1);
        assert_same_nodes(
            &fleet.targeted(BIN, V2),
            &reached,
            &format!("targeted nodes while paused, round {round}"),
        );
        let now = get_release(&m, id);
        assert_eq!(
            (now.status, now.wave, now.percent, now.counts.targeted),
            (Paused, 0, 20, n64(wave.len())),
            "{}",
            show_release(&now)
        );
    }
    // Counted once per reached node, by its latest report.
    let failing = |st| {
        fleet
            .nodes
            .iter()
            .filter(|n| reached.contains(&n.id) && n.fails_with == Some(st))
            .count()
    };
    let (failed, rolled_back) = (n64(failing(Failed)), n64(failing(RolledBack)));
    let ok = n64(reached.len()) - failed - rolled_back;
    let r = wait_release(&m, id, "counts match the fleet's reports", |r| {
        (r.counts.failed, r.counts.rolled_back, r.counts.success) == (failed, rolled_back, ok)
    });
    assert_eq!(r.status, Paused);

    // Why-not: the reached keep the target; the others are told it is paused.
    for n in &fleet.nodes {
        if !reached.contains(&n.id) {
            assert_eq!(n.target_version(BIN), None, "{}", n.id);
            assert_reason(n.reason(BIN), &[&format!("release {id} paused")], &n.id);
        }
    }
}

#[test]
fn after_a_resume_new_failures_pause_again() {
    let m = rollout_manager();
    upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 400);
    make_every_fifth_fail(&mut fleet);
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "max_failures": "5%", "success_threshold": "70%",
                "waves": [{"percent": 20, "wait": "200ms"}, {"percent": 100}]}),
    );
    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "paused", |r| {
        r.status != RollingOut
    });
    assert_eq!((r.status, r.wave), (Paused, 0), "{}", show_release(&r));

    // Not fixed: the failures so far are forgiven; the rest of the wave (the
    // pause held it back) and then the next one take it up, and their new
    // failures pause it again.
    let forgiven = r.counts.failed + r.counts.rolled_back;
    op(&m, rel.id, "resume").expect(200);
    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "paused again", |r| {
        r.status != RollingOut
    });
    assert_eq!(r.status, Paused, "{}", show_release(&r));
    assert!(
        r.counts.failed + r.counts.rolled_back > forgiven,
        "paused again by new failures: {}",
        show_release(&r)
    );
    let actions: Vec<&str> = r.history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| a.contains("paused")).count(),
        2,
        "{actions:?}"
    );
}

#[test]
fn only_this_releases_failures_count() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 200);
    make_every_fifth_fail(&mut fleet);
    fleet.round(m.addr, Mode::Observe);

    // No max_failures: failures never pause.
    let r1 = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    for _ in 0..3 {
        fleet.round(m.addr, Mode::Update);
        wait_rollout_evaluations(&m, 2);
    }
    wait_release(&m, r1.id, "failures counted", |r| {
        r.counts.failed + r.counts.rolled_back > 0
    });
    // The timer has seen them since, and did not pause.
    wait_rollout_evaluations(&m, 2);
    let r = get_release(&m, r1.id);
    assert_eq!(r.status, RollingOut, "{}", show_release(&r));
    op(&m, r1.id, "cancel").expect(200);

    // The same version again, fixed, with max_failures 1: the failures
    // reported before this release started do not count.
    fleet.fix_all();
    let r2 = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "max_failures": "1",
                "waves": [{"percent": 50, "wait": "200ms"}, {"percent": 100}]}),
    );
    let _done = drive_to_completed(&m, &mut fleet, r2.id);
    all_converge(&m, &mut fleet, &shas[V2], 200);
}

#[test]
fn resume_continues_the_rollout_to_completed() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 300);
    let r = run_until_paused(&m, &mut fleet);
    op(&m, r.id, "pause").expect_error(409);

    // The bug is fixed: the failed nodes try again and succeed.
    fleet.fix_all();
    let resumed: Release = op(&m, r.id, "resume").expect(200).parse();
    assert_eq!(resumed.status, RollingOut, "{}", show_release(&resumed));
    assert_eq!(resumed.paused_reason, None, "{}", show_release(&resumed));
    assert_recorded(&resumed, "resum", &r.created_by);

    let done = drive_to_completed(&m, &mut fleet, r.id);
    assert_eq!((done.wave, done.percent), (1, 100));
    all_converge(&m, &mut fleet, &shas[V2], 300);
}
