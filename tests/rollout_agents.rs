//! A two-wave rollout (issue #4, contract `/tmp/api4.md`) through real
//! `binproxy` agents: four nodes, each with its own directory, running
//! `binproxy run --now` against the real `manager-lite` (started with
//! `--rollout-interval 100ms`) on 127.0.0.1. Assertions are on the bytes at
//! each live path, exit codes, and what the manager records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::Success;
use binproxy_protocol::ReleaseStatus::{Completed, RollingOut};
use binproxy_protocol::Version;
use binproxy_tests::agent::{count, good_script, installed_hash, progress, show, Agent};
use binproxy_tests::fleet::{
    create_release, in_percent, node_view, rollout_manager, show_release, wait_release,
};
use serde_json::json;

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
    // first: once the inside ones succeed, the 300 ms wait can open the last
    // wave at any moment on a loaded machine, and an outside agent run after
    // that would rightly take v2.
    let (outside_first, inside_last): (Vec<&Agent>, Vec<&Agent>) =
        agents.iter().partition(|a| !inside.contains(&a.node_id));
    for a in outside_first.iter().chain(&inside_last) {
        a.run().expect_code(0);
    }
    for a in &agents {
        let reason = node_view(&m, &a.node_id).bins[BIN].reason.clone();
        if inside.contains(&a.node_id) {
            a.assert_live(&v2, &format!("{} in wave 1 ({reason})", a.node_id));
            assert!(reason.starts_with("in wave"), "{}: {reason}", a.node_id);
        } else {
            a.assert_live(&v1, &format!("{} outside wave 1 ({reason})", a.node_id));
            assert!(
                reason.contains("not yet in a wave"),
                "{}: {reason}",
                a.node_id
            );
        }
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
