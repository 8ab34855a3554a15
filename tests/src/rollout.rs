//! What the rollout tests over a simulated fleet (`tests/rollout_fleet/`)
//! share: their bin and versions, the waves a release should reach (by the
//! contract's buckets), the reasons and history a release records, a
//! baseline release every node runs, and nodes told to fail.

use crate::fleet::{
    binomial_bounds, create_release, drive, drive_fleet, in_percent, rollout_manager, show_release,
    upload_versions, Fleet, Mode,
};
use crate::metrics::wait_rollout_evaluations;
use crate::{is_rfc3339, Manager};
use binproxy_protocol::ProgressStatus::{Failed, RolledBack};
use binproxy_protocol::ReleaseStatus::{Completed, Paused, RollingOut};
use binproxy_protocol::{Release, ReleaseStatus};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// The bin the rollout tests release, and its versions.
pub const BIN: &str = "svc";
pub const V1: &str = "1.0.0";
pub const V2: &str = "2.0.0";
pub const V3: &str = "3.0.0";

/// The operations on a release (`POST /api/v1/releases/{id}/{op}`).
pub const OPS: [&str; 6] = [
    "approve", "pause", "resume", "promote", "rollback", "cancel",
];

pub fn n64(n: usize) -> u64 {
    u64::try_from(n).unwrap()
}

/// Asserts two sets of node ids are equal, showing only the differences.
#[track_caller]
pub fn assert_same_nodes(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
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
pub fn expected_wave(
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
pub fn check_wave(
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
pub fn assert_reason(got: &str, parts: &[&str], what: &str) {
    for p in parts {
        assert!(
            got.contains(p),
            "{what}: reason {got:?} does not contain {p:?}"
        );
    }
}

pub fn has_action(r: &Release, word: &str) -> bool {
    r.history.iter().any(|e| e.action.contains(word))
}

/// Asserts the history records `word` (an action containing it) with a time
/// and the admin as actor.
#[track_caller]
pub fn assert_recorded(r: &Release, word: &str, actor: &str) {
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
pub fn baseline(m: &Manager, fleet: &mut Fleet, bin: &str, version: &str) -> Release {
    let r = create_release(m, &json!({"bin_name": bin, "version": version}));
    drive(m, fleet, r.id, Mode::Update, "baseline completed", |r| {
        r.status == Completed
    })
}

/// Nodes `i % 10 == 0` fail with `failed`, `i % 10 == 5` with `rolled_back`.
pub fn make_every_fifth_fail(fleet: &mut Fleet) {
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
pub fn run_until_paused(m: &Manager, fleet: &mut Fleet) -> Release {
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

/// A release completes once `success_threshold` (95% by default) of the
/// nodes it reached succeeded, which can be before the last few nodes of a
/// round were handed it (a wave advanced mid-round). Agents go on polling
/// after that: a round or two more brings every node to `sha`, bounded
/// like [`crate::fleet::drive`].
#[track_caller]
pub fn all_converge(m: &Manager, fleet: &mut Fleet, sha: &str, n: usize) {
    drive_fleet(m, fleet, Mode::Update, "every node on the release", |f| {
        f.running(BIN, sha).len() == n
    });
    assert_eq!(fleet.running(BIN, sha).len(), n);
}

/// Asserts the release's status, wave index and percent, showing the
/// release when they differ.
#[track_caller]
pub fn assert_state(r: &Release, status: ReleaseStatus, wave: usize, percent: u32) {
    assert_eq!(
        (r.status, r.wave, r.percent),
        (status, wave, percent),
        "{}",
        show_release(r)
    );
}

/// Runs update rounds until the release leaves `rolling_out`; asserts it
/// completed and returns it.
#[track_caller]
pub fn drive_to_completed(m: &Manager, fleet: &mut Fleet, id: u64) -> Release {
    let done = drive(m, fleet, id, Mode::Update, "completed", |r| {
        r.status != RollingOut
    });
    assert_eq!(done.status, Completed, "{}", show_release(&done));
    done
}

/// Runs update rounds until the release (of waves 10% or so, 50%, ...) is
/// in its second wave, at 50%; then one keepalive-only round. Returns the
/// nodes targeted with [`V2`] then.
#[track_caller]
pub fn drive_to_second_wave(m: &Manager, fleet: &mut Fleet, id: u64) -> BTreeSet<String> {
    let r = drive(m, fleet, id, Mode::Update, "wave index 1", |r| {
        r.wave >= 1 || r.status != RollingOut
    });
    assert_state(&r, RollingOut, 1, 50);
    fleet.round(m.addr, Mode::Observe);
    fleet.targeted(BIN, V2)
}

/// The nodes targeted with [`V2`] as of the last round, checked to be the
/// release's first wave of `percent` over all `n` nodes.
#[track_caller]
pub fn first_wave(fleet: &Fleet, id: u64, n: usize, percent: u32) -> BTreeSet<String> {
    let reached = fleet.targeted(BIN, V2);
    check_wave(
        &reached,
        &expected_wave(fleet, id, percent, |_| true),
        n,
        percent,
    );
    reached
}

/// `rounds` update rounds, each followed by two passes of the rollout timer,
/// then a keepalive-only round: what the nodes are told once the timer has
/// had its say about what they did.
pub fn rounds_then_observe(m: &Manager, fleet: &mut Fleet, rounds: usize) {
    for _ in 0..rounds {
        fleet.round(m.addr, Mode::Update);
        wait_rollout_evaluations(m, 2);
    }
    fleet.round(m.addr, Mode::Observe);
}

/// A manager with [`V1`] and [`V2`] of [`BIN`], `nodes` nodes running V1
/// (a baseline release), and a release of V2 whose first wave of `percent`
/// waits an hour, after one round of updates.
pub fn v2_first_wave_over_v1(
    nodes: usize,
    percent: u32,
) -> (Manager, BTreeMap<String, String>, Fleet, Release) {
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &[V1, V2]);
    let mut fleet = Fleet::new(&[BIN], nodes);
    baseline(&m, &mut fleet, BIN, V1);
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": V2,
                "waves": [{"percent": percent, "wait": "1h"}, {"percent": 100}]}),
    );
    fleet.round(m.addr, Mode::Update);
    (m, shas, fleet, rel)
}
