//! Releases: the `actions` of each state, per-wave counts, the failures list.

use super::*;

const OPS: [&str; 6] = [
    "approve", "pause", "resume", "promote", "cancel", "rollback",
];

/// Asserts release `id` offers the admin token the operations `want`
/// (space separated), in `GET /api/v1/releases/{id}` and in the list, and
/// that each other operation is refused (409; 403 for approving a release
/// the admin token created) and changes nothing.
#[track_caller]
fn check_actions(m: &Manager, id: u64, want: &str) {
    let one = get(m, &format!("/api/v1/releases/{id}"));
    let list = get(m, "/api/v1/releases");
    let listed = list.as_array().unwrap().iter().find(|r| r["id"] == id);
    assert_eq!(one["actions"], listed.unwrap()["actions"], "release {id}");
    let got = one["actions"].as_array().unwrap_or_else(|| panic!("{one}"));
    let got: BTreeSet<&str> = got.iter().map(|a| a.as_str().unwrap()).collect();
    let want: BTreeSet<&str> = want.split_whitespace().collect();
    assert_eq!(got, want, "{one}");
    for name in OPS.into_iter().filter(|o| !want.contains(o)) {
        let r = op(m, id, name);
        let four_eyes = name == "approve" && one["status"] == "pending_approval";
        r.expect_error(if four_eyes { 403 } else { 409 });
    }
    let status = get_release(m, id).status.as_str();
    assert_eq!(one["status"], status, "refusals change nothing");
}

#[test]
fn release_actions_follow_the_state_machine() {
    let m = rollout_manager();
    upload_versions(&m, "svc", &["1.0.0", "2.0.0", "3.0.0"]);
    let mut fleet = Fleet::new(&["svc"], 4);
    fleet.round(m.addr, Mode::Observe);
    let gated = |v| json!({"bin_name": "svc", "version": v, "require_approval": true});
    let completed = |r: &Release| r.status == Completed;
    let v1 = create_release(&m, &gated("1.0.0")).id;
    // Created by the admin token: it may not approve it (four eyes).
    check_actions(&m, v1, "cancel");
    approve(&m, v1).expect(200);
    check_actions(&m, v1, "pause promote cancel");
    op(&m, v1, "pause").expect(200);
    check_actions(&m, v1, "resume promote cancel");
    op(&m, v1, "resume").expect(200);
    drive(&m, &mut fleet, v1, Mode::Update, "completed", completed);
    // Completed without a baseline: nothing to do.
    check_actions(&m, v1, "");
    let raw = get(&m, &format!("/api/v1/releases/{v1}"));
    assert_eq!(raw["counts"].get("waves"), None, "a single wave: {raw}");

    let plan = json!([{"percent": 50, "wait": "1h"}, {"percent": 100}]);
    let v2 = json!({"bin_name": "svc", "version": "2.0.0", "waves": plan});
    let v2 = create_release(&m, &v2);
    assert_eq!(v2.baseline_version.as_deref(), Some("1.0.0"));
    check_actions(&m, v2.id, "pause promote cancel rollback");
    op(&m, v2.id, "pause").expect(200);
    check_actions(&m, v2.id, "resume promote cancel rollback");
    let undo: Release = op(&m, v2.id, "rollback").expect(201).parse();
    check_actions(&m, v2.id, "");
    // Every node runs 1.0.0 already: the rollback completes, and it is
    // live with a baseline.
    wait_release(&m, undo.id, "the rollback completed", completed);
    assert_eq!(undo.baseline_version.as_deref(), Some("1.0.0"));
    check_actions(&m, undo.id, "rollback");
    assert_eq!(get_release(&m, v1).status, Superseded);
    check_actions(&m, v1, "");

    let v3 = create_release(&m, &gated("3.0.0")).id;
    check_actions(&m, v3, "cancel");
    op(&m, v3, "cancel").expect(200);
    check_actions(&m, v3, "");
}

/// The `actions` a token of each role is shown for release `id`, in the
/// one release's answer and in the list: what its state accepts and the
/// role may do; each other operation is refused that token (403 or 409).
#[track_caller]
fn check_role_actions(m: &Manager, tokens: &[(&str, String)], id: u64, want: &[&str]) {
    for ((role, token), want) in tokens.iter().zip(want) {
        let path = format!("/api/v1/releases/{id}");
        let one = send(m, "GET", &path, Some(token), None).expect(200).json();
        let list = send(m, "GET", "/api/v1/releases", Some(token), None);
        let list = list.expect(200).json();
        let listed = list.as_array().unwrap().iter().find(|r| r["id"] == id);
        assert_eq!(one["actions"], listed.unwrap()["actions"], "{role}");
        let got: Vec<&str> = one["actions"]
            .as_array()
            .unwrap_or_else(|| panic!("{role}: {one}"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(got.join(" "), *want, "{role} on release {id}: {one}");
        for name in OPS.into_iter().filter(|o| !got.contains(o)) {
            let r = send(m, "POST", &format!("{path}/{name}"), Some(token), None);
            assert!(matches!(r.status, 403 | 409), "{role} {name}: {r}");
        }
    }
}

/// A viewer is shown no buttons, a publisher only pause, an approver what
/// approvers may do, nobody the approval of their own release: the offered
/// actions are those the caller's token would be allowed, so a page never
/// offers a 403.
#[test]
fn release_actions_follow_the_callers_role() {
    let m = rollout_manager();
    upload_versions(&m, "svc", &["1.0.0", "2.0.0"]);
    let mut fleet = Fleet::new(&["svc"], 2);
    fleet.round(m.addr, Mode::Observe);
    let v1 = create_release(&m, &json!({"bin_name": "svc", "version": "1.0.0"})).id;
    let completed = |r: &Release| r.status == Completed;
    drive(&m, &mut fleet, v1, Mode::Update, "completed", completed);
    let plan = json!([{"percent": 50, "wait": "1h"}, {"percent": 100}]);
    let v2 = json!({"bin_name": "svc", "version": "2.0.0", "waves": plan});
    let v2 = create_release(&m, &v2).id;
    let tokens: Vec<(&str, String)> = ["viewer", "publisher", "approver", "admin"]
        .into_iter()
        .map(|role| match role {
            "admin" => (role, m.token.clone()),
            _ => (role, new_token(&m, &format!("{role}-1"), role)),
        })
        .collect();
    let rolling = [
        "",
        "pause",
        "pause promote rollback",
        "pause promote cancel rollback",
    ];
    check_role_actions(&m, &tokens, v2, &rolling);
    // The publisher's one button works.
    let pause = format!("/api/v1/releases/{v2}/pause");
    send(&m, "POST", &pause, Some(&tokens[1].1), None).expect(200);
    let paused = [
        "",
        "",
        "resume promote rollback",
        "resume promote cancel rollback",
    ];
    check_role_actions(&m, &tokens, v2, &paused);
    let resume = format!("/api/v1/releases/{v2}/resume");
    send(&m, "POST", &resume, Some(&tokens[2].1), None).expect(200);
    check_role_actions(&m, &tokens, v2, &rolling);
    // Waiting for approval, created by the admin token: four eyes leave
    // the admin only cancel, and the approver's approve works. Both nodes
    // run 1.0.0 already: it completes, and a rollback to 2.0.0 stays.
    let gated = json!({"bin_name": "svc", "version": "1.0.0", "require_approval": true});
    let v3 = create_release(&m, &gated).id;
    check_role_actions(&m, &tokens, v3, &["", "", "approve", "cancel"]);
    let approve = format!("/api/v1/releases/{v3}/approve");
    send(&m, "POST", &approve, Some(&tokens[2].1), None).expect(200);
    wait_release(&m, v3, "completed", completed);
    check_role_actions(&m, &tokens, v3, &["", "", "rollback", "rollback"]);
}

/// The plan of [`failing_rollout`]: cumulative percents.
/// `GET /api/v1/releases?status=…&limit=N`: the states asked for, newest
/// first, at most N; a state it does not know is a 400 naming the states.
#[test]
fn releases_list_by_state_and_limit() {
    let s = small_fleet(ManagerOptions::default());
    let first = create_release(&s.m, &json!({"bin_name": "svc", "version": "1.0.0"})).id;
    let second = create_release(&s.m, &json!({"bin_name": "svc", "version": "3.0.0"})).id;
    let gated = json!({"bin_name": "web", "version": "1.0.0", "require_approval": true});
    let pending = create_release(&s.m, &gated).id;
    let ids = |query: &str| -> Vec<u64> {
        let all = get(&s.m, &format!("/api/v1/releases{query}"));
        let all = all.as_array().unwrap();
        all.iter().map(|r| r["id"].as_u64().unwrap()).collect()
    };
    assert_eq!(ids(""), [pending, second, first]);
    assert_eq!(ids("?status=superseded"), [first]);
    assert_eq!(ids("?status=pending_approval,superseded"), [pending, first]);
    assert_eq!(
        ids("?status=pending_approval,rolling_out,paused"),
        [pending, second]
    );
    assert_eq!(ids("?limit=2"), [pending, second]);
    assert_eq!(
        ids("?status=superseded,pending_approval&limit=1"),
        [pending]
    );
    assert_eq!(ids("?bin_name=svc&status=superseded"), [first]);
    assert_eq!(ids("?status=cancelled"), Vec::<u64>::new());
    for bad in ["?status=live", "?status=paused,", "?limit=0", "?limit=x"] {
        let r = s.m.admin_get(&format!("/api/v1/releases{bad}"));
        let text = r.expect_error(400).text();
        assert!(
            text.contains("status") || text.contains("limit"),
            "{bad}: {text}"
        );
    }
}

const PLAN: [u32; 3] = [20, 50, 100];

/// A rollout of svc 2.0.0 to the 40 `env=prod` nodes of 80, in the waves of
/// [`PLAN`] (an hour apart), its first wave done: two of its nodes failed,
/// one rolled back, the rest succeeded.
struct Rollout {
    m: Manager,
    fleet: Fleet,
    id: u64,
    sha: String,
    selected: BTreeSet<String>,
    failing: BTreeMap<String, ProgressStatus>,
}

fn failing_rollout() -> Rollout {
    let m = rollout_manager();
    let sha = upload_versions(&m, "svc", &["2.0.0"])["2.0.0"].clone();
    let mut fleet = Fleet::new(&["svc"], 80);
    let mut selected = BTreeSet::new();
    for n in fleet.nodes.iter_mut().step_by(2) {
        n.labels.insert("env".into(), "prod".into());
        selected.insert(n.id.clone());
    }
    fleet.round(m.addr, Mode::Observe);
    let waves = PLAN.map(|p| json!({"percent": p, "wait": "1h"}));
    let body = json!({"bin_name": "svc", "version": "2.0.0", "max_failures": "50",
                      "selector": {"labels": {"env": ["prod"]}}, "waves": waves});
    let id = create_release(&m, &body).id;
    let first: Vec<&String> = selected
        .iter()
        .filter(|n| in_percent(id, n, PLAN[0]))
        .collect();
    assert!(first.len() >= 4, "the first wave reaches {first:?}");
    let first_three = first.iter().map(|n| (*n).clone());
    let failing: BTreeMap<_, _> = first_three.zip([Failed, Failed, RolledBack]).collect();
    for (node, status) in &failing {
        fleet.node_mut(node).fails_with = Some(*status);
    }
    let ok = first.len() as u64 - 3;
    let done = |r: &Release| {
        let c = &r.counts;
        c.success == ok && c.failed == 2 && c.rolled_back == 1
    };
    drive(&m, &mut fleet, id, Mode::Update, "wave 1 done", done);
    Rollout {
        m,
        fleet,
        id,
        sha,
        selected,
        failing,
    }
}

impl Rollout {
    /// What `counts.waves` must say once the first `started` waves started.
    fn expected_waves(&self, started: usize) -> Vec<WaveCounts> {
        let mut below = 0;
        let mut waves = Vec::new();
        for (i, percent) in PLAN.into_iter().enumerate() {
            let slice = u64::from(below) * 100..u64::from(percent) * 100;
            let slice: Vec<&String> = (self.selected.iter())
                .filter(|n| slice.contains(&bucket(self.id, n)))
                .collect();
            below = percent;
            let ended = |s| {
                slice
                    .iter()
                    .filter(|n| self.failing.get(**n) == Some(&s))
                    .count() as u64
            };
            let target = slice.len() as u64;
            let mut w = WaveCounts {
                percent,
                target,
                ..WaveCounts::default()
            };
            if i < started {
                w.reached = target;
                (w.failed, w.rolled_back) = (ended(Failed), ended(RolledBack));
                w.success = target - w.failed - w.rolled_back;
            }
            waves.push(w);
        }
        waves
    }

    /// Asserts `counts.waves` once `started` waves started, and that the
    /// waves' numbers add up to the release's.
    #[track_caller]
    fn check_waves(&self, r: &Release, started: usize) {
        let c = &r.counts;
        assert_eq!(c.waves, self.expected_waves(started), "{started} started");
        let sum = |f: fn(&WaveCounts) -> u64| c.waves.iter().map(f).sum::<u64>();
        assert_eq!(sum(|w| w.target), self.selected.len() as u64, "{c:?}");
        assert_eq!(sum(|w| w.reached), c.targeted, "{c:?}");
        assert_eq!(sum(|w| w.success), c.success, "{c:?}");
        assert_eq!(sum(|w| w.failed), c.failed, "{c:?}");
        assert_eq!(sum(|w| w.rolled_back), c.rolled_back, "{c:?}");
        assert_eq!(sum(|w| w.in_progress), c.in_progress, "{c:?}");
    }
}

#[test]
fn wave_counts_split_the_selected_nodes_by_wave() {
    let mut w = failing_rollout();
    w.check_waves(&get_release(&w.m, w.id), 1);
    let raw = get(&w.m, &format!("/api/v1/releases/{}", w.id));
    let waves = raw["counts"]["waves"].as_array().map(Vec::len);
    assert_eq!(waves, Some(3), "{raw}");

    op(&w.m, w.id, "promote").expect(200);
    let all = w.selected.len() as u64;
    let done = |r: &Release| r.counts.success == all - 3 && r.counts.targeted == all;
    let r = drive(&w.m, &mut w.fleet, w.id, Mode::Update, "all done", done);
    w.check_waves(&r, 3);
}

/// `GET /api/v1/releases/{id}/failures{query}`: the list and `X-Total-Count`.
#[track_caller]
fn failures(m: &Manager, id: u64, query: &str) -> (Vec<Value>, String) {
    let r = m.admin_get(&format!("/api/v1/releases/{id}/failures{query}"));
    let total = r.expect(200).header("x-total-count").unwrap_or_default();
    (r.json().as_array().unwrap().clone(), total.to_owned())
}

#[test]
fn failures_list_the_nodes_whose_last_report_failed() {
    let mut w = failing_rollout();
    let (all, total) = failures(&w.m, w.id, "");
    assert_eq!((all.len(), total.as_str()), (3, "3"), "{all:?}");
    for f in &all {
        let id = f["node_id"].as_str().unwrap();
        assert_eq!(f["status"], w.failing[id].as_str(), "{f}");
        assert_eq!(f["node_name"], format!("sim-{id}"));
        assert_eq!(f["message"], "simulated failure");
        assert_eq!(f["target_hash"], w.sha.as_str());
        assert!(is_rfc3339(f["received_at"].as_str().unwrap()), "{f}");
    }
    let field = |k: &str| {
        all.iter()
            .map(|f| f[k].as_str().unwrap())
            .collect::<Vec<_>>()
    };
    let listed: BTreeSet<&str> = field("node_id").into_iter().collect();
    assert_eq!(listed, w.failing.keys().map(String::as_str).collect());
    let at = field("received_at");
    assert!(at.windows(2).all(|p| p[0] >= p[1]), "newest first: {at:?}");
    let two = failures(&w.m, w.id, "?limit=2");
    assert_eq!(two, (all[..2].to_vec(), "3".into()));

    let path = format!("/api/v1/releases/{}/failures", w.id);
    w.m.get(&path).expect_error(401);
    w.m.admin_get(&format!("{path}?limit=0")).expect_error(400);
    w.m.admin_get("/api/v1/releases/999/failures")
        .expect_error(404);
    w.m.admin_get("/api/v1/releases/abc/failures")
        .expect_error(400);

    // The rolled-back node is fixed and succeeds: it is no longer listed.
    let fixed = w.failing.iter().find(|f| *f.1 == RolledBack).unwrap().0;
    let node = w.fleet.node_mut(fixed);
    node.fails_with = None;
    node.quarantined.clear();
    let done = |r: &Release| r.counts.rolled_back == 0;
    drive(&w.m, &mut w.fleet, w.id, Mode::Update, "fixed", done);
    let (left, total) = failures(&w.m, w.id, "");
    let left: Vec<[&Value; 2]> = left.iter().map(|f| [&f["node_id"], &f["status"]]).collect();
    assert_eq!(total, "2");
    assert!(
        left.iter().all(|[n, s]| *s == "failed" && *n != fixed),
        "{left:?}"
    );
}
