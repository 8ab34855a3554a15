//! Progressive rollouts (issue #4, contract `/tmp/api4.md`) against the real
//! `manager-lite`, driven by a simulated fleet of hundreds of node ids that
//! keepalive and "update" over real HTTP on 127.0.0.1 (see
//! `binproxy_tests::fleet`). Each test has its own manager, started with
//! `--rollout-interval 100ms`, and its own temp data dir. Nothing asserts a
//! duration: every wait is a bounded poll, every loop bounded in rounds and time.
//! A check that the rollout did not move first waits for two passes of the
//! rollout timer (`manager_rollout_evaluations_total`), never for a sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::{Failed, RolledBack};
use binproxy_protocol::ReleaseStatus::{
    Cancelled, Completed, Paused, PendingApproval, RolledBack as RelRolledBack, RollingOut,
    Superseded,
};
use binproxy_protocol::{Pin, Release, ReleaseStatus};
use binproxy_tests::fleet::{
    admin, approve, binomial_bounds, bucket, create_release, drive, drive_fleet, get_release,
    in_percent, node_id, node_view, op, pin, rollout_manager, show_release, unpin, upload_versions,
    wait_release, Fleet, Mode, SimNode,
};
use binproxy_tests::metrics::wait_rollout_evaluations;
use binproxy_tests::{is_rfc3339, Manager};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const BIN: &str = "svc";
const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
const V3: &str = "3.0.0";

const OPS: [&str; 6] = [
    "approve", "pause", "resume", "promote", "rollback", "cancel",
];

// ---------------------------------------------------------------------------
// helpers

fn n64(n: usize) -> u64 {
    u64::try_from(n).unwrap()
}

/// Asserts two sets of node ids are equal, showing only the differences.
#[track_caller]
fn assert_same_nodes(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let extra: Vec<&String> = got.difference(want).take(20).collect();
    let missing: Vec<&String> = want.difference(got).take(20).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: {} nodes, wanted {}; unexpected (first 20): {extra:?}; missing (first 20): {missing:?}",
        got.len(),
        want.len()
    );
}

/// The fleet's nodes a release at `percent` reaches by the contract's bucket
/// rule, among those `selected`.
fn expected_wave(
    fleet: &Fleet,
    release_id: u64,
    percent: u32,
    selected: impl Fn(usize) -> bool,
) -> BTreeSet<String> {
    fleet
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| selected(*i) && in_percent(release_id, &n.id, percent))
        .map(|(_, n)| n.id.clone())
        .collect()
}

/// Asserts the size of a wave over `population` nodes is within 5σ of
/// `percent`, and the reached set is the one the bucket rule gives.
#[track_caller]
fn check_wave(
    reached: &BTreeSet<String>,
    expected: &BTreeSet<String>,
    population: usize,
    percent: u32,
) {
    let (lo, hi) = binomial_bounds(population, percent);
    assert!(
        (lo..=hi).contains(&reached.len()),
        "{percent}% of {population} nodes: {} reached, wanted {lo}..={hi}",
        reached.len()
    );
    assert_same_nodes(
        reached,
        expected,
        &format!("nodes reached at {percent}% vs bucket < {}", percent * 100),
    );
}

#[track_caller]
fn assert_reason(got: &str, parts: &[&str], what: &str) {
    for p in parts {
        assert!(
            got.contains(p),
            "{what}: reason {got:?} does not contain {p:?}"
        );
    }
}

fn has_action(r: &Release, word: &str) -> bool {
    r.history.iter().any(|e| e.action.contains(word))
}

/// Asserts the history records `word` (an action containing it) with a time
/// and the admin as actor.
#[track_caller]
fn assert_recorded(r: &Release, word: &str, actor: &str) {
    let e = r
        .history
        .iter()
        .rev()
        .find(|e| e.action.contains(word))
        .unwrap_or_else(|| panic!("no {word:?} in the history of {}", show_release(r)));
    assert!(is_rfc3339(&e.at), "history time {:?}", e.at);
    assert_eq!(e.actor, actor, "actor of {word:?} in {}", show_release(r));
}

/// Releases `version` of `bin` to every node at once and drives the fleet
/// until the release is completed (every node runs it).
#[track_caller]
fn baseline(m: &Manager, fleet: &mut Fleet, bin: &str, version: &str) -> Release {
    let r = create_release(m, &json!({"bin_name": bin, "version": version}));
    drive(m, fleet, r.id, Mode::Update, "baseline completed", |r| {
        r.status == Completed
    })
}

/// Nodes `i % 10 == 0` fail with `failed`, `i % 10 == 5` with `rolled_back`.
fn make_every_fifth_fail(fleet: &mut Fleet) {
    for (i, n) in fleet.nodes.iter_mut().enumerate() {
        n.fails_with = match i % 10 {
            0 => Some(Failed),
            5 => Some(RolledBack),
            _ => None,
        };
    }
}

/// A 20% wave where every fifth node fails, `max_failures` 5%: driven until
/// the release leaves `rolling_out`, which must be `paused`.
#[track_caller]
fn run_until_paused(m: &Manager, fleet: &mut Fleet) -> Release {
    make_every_fifth_fail(fleet);
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        m,
        &json!({"bin_name": BIN, "version": V2, "max_failures": "5%",
                "waves": [{"percent": 20, "wait": "200ms"}, {"percent": 100}]}),
    );
    let r = drive(m, fleet, rel.id, Mode::Update, "leaves rolling_out", |r| {
        r.status != RollingOut
    });
    assert_eq!(r.status, Paused, "{}", show_release(&r));
    r
}

// ---------------------------------------------------------------------------
// waves

/// A release completes once `success_threshold` (95% by default) of the
/// nodes it reached succeeded, which can be before the last few nodes of a
/// round were handed it (a wave advanced mid-round). Agents go on polling
/// after that: a round or two more brings every node to `sha`, bounded
/// like [`drive`].
#[track_caller]
fn all_converge(m: &Manager, fleet: &mut Fleet, sha: &str, n: usize) {
    drive_fleet(m, fleet, Mode::Update, "every node on the release", |f| {
        f.running(BIN, sha).len() == n
    });
    assert_eq!(fleet.running(BIN, sha).len(), n);
}

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
    let wave1 = fleet.targeted(BIN, V2);
    check_wave(
        &wave1,
        &expected_wave(&fleet, rel.id, 10, |_| true),
        400,
        10,
    );
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
    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "wave index 1", |r| {
        r.wave >= 1 || r.status != RollingOut
    });
    assert_eq!(
        (r.status, r.wave, r.percent),
        (RollingOut, 1, 50),
        "{}",
        show_release(&r)
    );
    fleet.round(m.addr, Mode::Observe);
    let wave2 = fleet.targeted(BIN, V2);
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
    assert_eq!(
        (r.status, r.wave, r.percent),
        (RollingOut, 1, 50),
        "{}",
        show_release(&r)
    );

    // Promote: 100%, the last wave.
    let r: Release = op(&m, rel.id, "promote").expect(200).parse();
    assert_eq!(
        (r.status, r.wave, r.percent),
        (RollingOut, 2, 100),
        "{}",
        show_release(&r)
    );
    fleet.round(m.addr, Mode::Observe);
    let all = fleet.targeted(BIN, V2);
    assert_eq!(all.len(), 400, "every node after promote");

    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(r.status, Completed, "{}", show_release(&r));
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
    assert_eq!((r.status, r.wave, r.percent), (RollingOut, 0, 10));
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
        fleet.round(m.addr, Mode::Update);
        wait_rollout_evaluations(&m, 2);
        fleet.round(m.addr, Mode::Observe);
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
    let done = drive(&m, &mut fleet, r2.id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(done.status, Completed, "{}", show_release(&done));
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

    let done = drive(&m, &mut fleet, r.id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(done.status, Completed, "{}", show_release(&done));
    assert_eq!((done.wave, done.percent), (1, 100));
    all_converge(&m, &mut fleet, &shas[V2], 300);
}

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
    assert_eq!(
        (r.status, r.wave, r.percent),
        (RollingOut, 2, 100),
        "{}",
        show_release(&r)
    );
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
    let r = drive(&m, &mut fleet, rel.id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(r.status, Completed, "{}", show_release(&r));
    assert_same_nodes(&fleet.running(BIN, &shas[V2]), &all_prod, "running v2");
}

#[test]
fn unreached_nodes_keep_the_previous_release_target() {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN], 200);
    baseline(&m, &mut fleet, BIN, V1);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": 10, "wait": "1h"}, {"percent": 100}]}),
    );
    fleet.round(m.addr, Mode::Update);
    let reached = fleet.targeted(BIN, V2);
    check_wave(
        &reached,
        &expected_wave(&fleet, rel.id, 10, |_| true),
        200,
        10,
    );
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
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN], 200);
    baseline(&m, &mut fleet, BIN, V1);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    fleet.round(m.addr, Mode::Update);
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
    for _ in 0..3 {
        fleet.round(m.addr, Mode::Update);
        wait_rollout_evaluations(&m, 2);
    }
    // What the nodes are told after those passes of the timer.
    fleet.round(m.addr, Mode::Observe);
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

// ---------------------------------------------------------------------------
// restarts

/// What must survive a restart.
fn durable(r: &Release) -> String {
    format!(
        "status={} wave={} percent={} paused_reason={:?} wave_started_at={:?} counts={:?} waves={:?} selector={:?}",
        r.status.as_str(),
        r.wave,
        r.percent,
        r.paused_reason,
        r.wave_started_at,
        r.counts,
        r.waves,
        r.selector
    )
}

#[test]
fn rollout_state_survives_restarts_and_the_rollout_finishes() {
    let mut m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V2]);
    let mut fleet = Fleet::new(&[BIN], 300);
    fleet.round(m.addr, Mode::Observe);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2, "max_failures": "5%",
                "waves": [{"percent": 10, "wait": "300ms"}, {"percent": 50, "wait": "300ms"}, {"percent": 100}]}),
    );
    let id = rel.id;

    // Only the first wave's nodes update; every other node is stuck, so the
    // second wave cannot meet its success threshold and stays where it is.
    fleet.round(m.addr, Mode::Observe);
    let wave1 = fleet.targeted(BIN, V2);
    assert!(!wave1.is_empty());
    for n in &mut fleet.nodes {
        n.stalled = !wave1.contains(&n.id);
    }
    let r = drive(&m, &mut fleet, id, Mode::Update, "wave index 1", |r| {
        r.wave >= 1 || r.status != RollingOut
    });
    assert_eq!(
        (r.status, r.wave, r.percent),
        (RollingOut, 1, 50),
        "{}",
        show_release(&r)
    );
    fleet.round(m.addr, Mode::Observe);
    let wave2 = fleet.targeted(BIN, V2);
    let before = wait_release(&m, id, "counts.targeted = the second wave", |r| {
        r.counts.targeted == n64(wave2.len())
    });

    // SIGTERM, restart: the same state.
    let st = m.sigterm();
    assert!(st.success(), "SIGTERM exit: {st}\n{}", m.log());
    m.restart();
    let after = get_release(&m, id);
    assert_eq!(durable(&after), durable(&before), "after SIGTERM + restart");
    fleet.round(m.addr, Mode::Observe);
    assert_same_nodes(&fleet.targeted(BIN, V2), &wave2, "targeted after restart");

    // Enough second-wave nodes fail to pause it; the rest update.
    let fresh: Vec<String> = wave2.difference(&wave1).cloned().collect();
    let need = wave2.len() * 5 / 100 + 3;
    assert!(fresh.len() >= need, "{} new nodes in wave 2", fresh.len());
    fleet.fix_all();
    for (k, nid) in fresh.iter().take(need).enumerate() {
        fleet.node_mut(nid).fails_with = Some(if k % 2 == 0 { Failed } else { RolledBack });
    }
    let paused = drive(&m, &mut fleet, id, Mode::Update, "paused", |r| {
        r.status != RollingOut
    });
    assert_eq!(paused.status, Paused, "{}", show_release(&paused));
    assert_eq!((paused.wave, paused.percent), (1, 50));
    fleet.round(m.addr, Mode::Update);
    let before = get_release(&m, id);
    fleet.round(m.addr, Mode::Observe);
    let engaged = fleet.targeted(BIN, V2);
    assert!(engaged.is_subset(&wave2), "{engaged:?}");

    // kill -9, restart: still paused, same counts, no node added.
    m.kill9();
    m.restart();
    let after = get_release(&m, id);
    assert_eq!(durable(&after), durable(&before), "after kill -9 + restart");
    for _ in 0..3 {
        fleet.round(m.addr, Mode::Update);
        wait_rollout_evaluations(&m, 2);
    }
    fleet.round(m.addr, Mode::Observe);
    assert_same_nodes(
        &fleet.targeted(BIN, V2),
        &engaged,
        "targeted while paused, after restart",
    );
    assert_eq!(get_release(&m, id).status, Paused);

    // Fixed, resumed: the restarted manager's timer finishes the rollout.
    fleet.fix_all();
    op(&m, id, "resume").expect(200);
    let done = drive(&m, &mut fleet, id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(done.status, Completed, "{}", show_release(&done));
    assert_eq!((done.wave, done.percent), (2, 100));
    all_converge(&m, &mut fleet, &shas[V2], 300);
    let actions: Vec<&str> = done.history.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.iter().any(|a| a.contains("pause")) && actions.iter().any(|a| a.contains("resum")),
        "history: {actions:?}"
    );
}

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
