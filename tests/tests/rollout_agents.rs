//! Rollouts through real `binproxy` agents, each with its own directory,
//! running `binproxy run --now` against the real `manager-lite` (started with
//! `--rollout-interval 100ms`) on 127.0.0.1: a two-wave rollout over four
//! nodes, and a pause that contains a failing version among 200. Assertions
//! are on the bytes at each live path, exit codes, and what the manager
//! records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::Success;
use binproxy_protocol::ReleaseStatus::{Completed, Paused, RollingOut, Superseded};
use binproxy_protocol::{ProgressRecord, Version};
use binproxy_tests::agent::{
    count, good_script, installed_hash, progress, publish, script, show, Agent,
};
use binproxy_tests::fleet::{
    create_release, get_release, in_percent, node_view, rollout_manager, show_release, wait_release,
};
use binproxy_tests::Manager;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const BIN: &str = "svc";

#[test]
fn two_waves_reach_half_the_agents_then_all() {
    let m = rollout_manager();
    let v1 = good_script("v1");
    let v2 = good_script("v2");
    let up1: Version = m.upload(BIN, "1.0.0", None, &v1).expect(201).parse();
    let r1 = create_release(&m, &json!({"bin_name": BIN, "version": "1.0.0"}));

    // Node ids such that the next release's 50% wave takes exactly two of
    // four (by the contract's bucket rule).
    let next = r1.id + 1;
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for k in 0..1000 {
        let id = format!("agent-{k}");
        if in_percent(next, &id, 50) {
            if inside.len() < 2 {
                inside.push(id);
            }
        } else if outside.len() < 2 {
            outside.push(id);
        }
        if inside.len() == 2 && outside.len() == 2 {
            break;
        }
    }
    let ids: Vec<String> = inside.iter().chain(&outside).cloned().collect();
    assert_eq!(ids.len(), 4);
    let agents: Vec<Agent> = ids
        .iter()
        .map(|id| {
            let mut a = Agent::new(BIN);
            a.node_id.clone_from(id);
            a.configure(&m.url, &json!({}));
            a
        })
        .collect();

    for a in &agents {
        a.run().expect_code(0);
        a.assert_live(&v1, &format!("{} on v1", a.node_id));
    }
    wait_release(&m, r1.id, "v1 completed", |r| r.status == Completed);

    let up2: Version = m.upload(BIN, "2.0.0", None, &v2).expect(201).parse();
    let r2 = create_release(
        &m,
        &json!({"bin_name": BIN, "version": "2.0.0",
                "waves": [{"percent": 50, "wait": "300ms"}, {"percent": 100}]}),
    );
    assert_eq!(r2.id, next, "{}", show_release(&r2));
    assert_eq!((r2.status, r2.wave, r2.percent), (RollingOut, 0, 50));

    // Wave 1: only the two agents in it move to v2. The agents outside run
    // and are checked first: once the inside ones succeed, the 300 ms wait
    // can open the last wave at any moment on a loaded machine, and an
    // outside agent run or asked about after that would rightly take v2.
    let (outside_first, inside_last): (Vec<&Agent>, Vec<&Agent>) =
        agents.iter().partition(|a| !inside.contains(&a.node_id));
    for a in &outside_first {
        a.run().expect_code(0);
    }
    for a in &outside_first {
        let reason = node_view(&m, &a.node_id).bins[BIN].reason.clone();
        a.assert_live(&v1, &format!("{} outside wave 1 ({reason})", a.node_id));
        assert!(
            reason.contains("not yet in a wave"),
            "{}: {reason}",
            a.node_id
        );
    }
    for a in &inside_last {
        a.run().expect_code(0);
    }
    for a in &inside_last {
        let reason = node_view(&m, &a.node_id).bins[BIN].reason.clone();
        a.assert_live(&v2, &format!("{} in wave 1 ({reason})", a.node_id));
        assert!(reason.starts_with("in wave"), "{}: {reason}", a.node_id);
    }

    // Their success and the wait open the last wave.
    let r = wait_release(&m, r2.id, "the 100% wave", |r| {
        r.percent == 100 || r.status != RollingOut
    });
    assert!(
        r.wave == 1 && r.percent == 100 && matches!(r.status, RollingOut | Completed),
        "{}",
        show_release(&r)
    );
    for a in &agents {
        a.run().expect_code(0);
        a.assert_live(&v2, &format!("{} after the advance", a.node_id));
        let p = progress(&m, BIN, &a.node_id);
        assert_eq!(count(&p, Success, &up2.sha256sum), 1, "{}", show(&p));
        assert_eq!(count(&p, Success, &up1.sha256sum), 1, "{}", show(&p));
        assert_eq!(
            installed_hash(&m, &a.node_id, BIN).as_deref(),
            Some(up2.sha256sum.as_str())
        );
    }
    let done = wait_release(&m, r2.id, "completed", |r| r.status != RollingOut);
    assert_eq!(done.status, Completed, "{}", show_release(&done));
    assert_eq!(done.counts.success, 4, "{}", show_release(&done));
}

/// Agents run at once; the bound on the hosts a paused release reaches
/// counts every one of them as possibly in flight when it pauses.
const CONCURRENT: usize = 8;

/// A pause contains, through 200 real agents: a release of a version whose
/// health check fails, one wave of 100%, `max_failures` 3. It pauses itself
/// at the fourth failure, and from then on only the agents that had already
/// taken it up try it: the hosts that tried it are at most the failures until
/// the pause (4) plus the agents in flight at that moment. Every host ends on
/// the version it ran. A newer release then supersedes the paused one, whose
/// pause and reason stay visible.
#[test]
fn a_paused_release_stops_spreading_through_200_agents() {
    let m = rollout_manager();
    let v1 = good_script("v1");
    let bad = script("v2", "exit 1", "exit 0");
    publish(&m, BIN, "1.0.0", &v1);
    let up2: Version = m.upload(BIN, "2.0.0", None, &bad).expect(201).parse();
    let health =
        json!({"health": {"command": ["{path}", "--health"], "retries": 1, "interval": "0s"}});
    let agents: Vec<Agent> = (0..200)
        .map(|_| {
            let a = Agent::new(BIN);
            a.configure(&m.url, &health);
            a.place(&v1);
            a
        })
        .collect();
    let r = create_release(
        &m,
        &json!({"bin_name": BIN, "version": "2.0.0", "max_failures": 3}),
    );

    // Each agent runs once, CONCURRENT at a time, in a bounded pool.
    let next = AtomicUsize::new(0);
    let codes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(a) = agents.get(i) else { break };
                let out = a.run();
                codes.lock().unwrap().push((i, out.code));
            });
        }
    });
    let codes = codes.into_inner().unwrap();
    assert!(
        codes.iter().all(|(_, c)| matches!(c, Some(0 | 1))),
        "{codes:?}"
    );

    let tried: Vec<&Agent> = agents
        .iter()
        .filter(|a| !progress_for(&m, a, &up2.sha256sum).is_empty())
        .collect();
    let paused = get_release(&m, r.id);
    eprintln!(
        "a pause contains: {} of 200 agents tried the failing version ({})",
        tried.len(),
        show_release(&paused)
    );
    assert_eq!(paused.status, Paused, "{}", show_release(&paused));
    assert!(
        tried.len() <= 4 + CONCURRENT,
        "{} hosts tried it, more than 4 failures + {CONCURRENT} in flight: {}",
        tried.len(),
        show_release(&paused)
    );
    for a in &agents {
        a.assert_live(&v1, &format!("{} keeps what it ran", a.node_id));
    }
    let untouched = agents
        .iter()
        .find(|a| !tried.iter().any(|t| t.node_id == a.node_id))
        .expect("an agent that did not try it");
    let reason = node_view(&m, &untouched.node_id).bins[BIN].reason.clone();
    assert!(
        reason.contains(&format!("release {} paused", r.id)),
        "{reason}"
    );

    // A fixed version supersedes it; the pause stays on record.
    publish(&m, BIN, "2.0.1", &good_script("v2.0.1"));
    let old = get_release(&m, r.id);
    assert_eq!(old.status, Superseded, "{}", show_release(&old));
    assert_eq!(old.paused_reason, paused.paused_reason);
}

/// The progress reports of `a` for the artifact `sha`.
fn progress_for(m: &Manager, a: &Agent, sha: &str) -> Vec<ProgressRecord> {
    progress(m, BIN, &a.node_id)
        .into_iter()
        .filter(|p| p.target_hash == sha)
        .collect()
}
