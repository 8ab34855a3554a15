//! Rollout state survives kill -9 and restarts, and the restarted manager's
//! timer finishes the rollout.

use binproxy_protocol::ProgressStatus::{Failed, RolledBack};
use binproxy_protocol::Release;
use binproxy_protocol::ReleaseStatus::{Paused, RollingOut};
use binproxy_tests::fleet::{
    create_release, drive, get_release, op, rollout_manager, show_release, upload_versions,
    wait_release, Fleet, Mode,
};
use binproxy_tests::rollout::{
    all_converge, assert_same_nodes, drive_to_completed, drive_to_second_wave, n64,
    rounds_then_observe, BIN, V2,
};
use serde_json::json;

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
    let wave2 = drive_to_second_wave(&m, &mut fleet, id);
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
    rounds_then_observe(&m, &mut fleet, 3);
    assert_same_nodes(
        &fleet.targeted(BIN, V2),
        &engaged,
        "targeted while paused, after restart",
    );
    assert_eq!(get_release(&m, id).status, Paused);

    // Fixed, resumed: the restarted manager's timer finishes the rollout.
    fleet.fix_all();
    op(&m, id, "resume").expect(200);
    let done = drive_to_completed(&m, &mut fleet, id);
    assert_eq!((done.wave, done.percent), (2, 100));
    all_converge(&m, &mut fleet, &shas[V2], 300);
    let actions: Vec<&str> = done.history.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.iter().any(|a| a.contains("pause")) && actions.iter().any(|a| a.contains("resum")),
        "history: {actions:?}"
    );
}
