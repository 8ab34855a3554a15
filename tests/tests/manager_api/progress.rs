//! Progress reports (each status, errors, listing, the per-node bound) and
//! releases (create, supersede, list and look up).

use binproxy_protocol::{ProgressRecord, ProgressStatus, Release, ReleaseStatus, Target};
use binproxy_tests::api::{progress_body, register, target};
use binproxy_tests::{is_rfc3339, sha256_hex, Manager, ManagerOptions};
use serde_json::json;

// ---------------------------------------------------------------------------
// progress

#[test]
fn progress_accepts_each_status() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    let to = sha256_hex(b"to");
    let from = sha256_hex(b"from");
    let mut last_id = 0;
    for (status, want) in [
        ("in_progress", ProgressStatus::InProgress),
        ("success", ProgressStatus::Success),
        ("failed", ProgressStatus::Failed),
        ("rolled_back", ProgressStatus::RolledBack),
    ] {
        let r = m.post_json(
            "/api/v1/bins/tool/progress",
            &json!({"node_id": "n1", "targetHash": to, "status": status, "processingTime": 1234,
                    "fromHash": from, "message": format!("step {status}")}),
        );
        let rec: ProgressRecord = r.expect(201).parse();
        assert_eq!(rec.status, want);
        assert_eq!(rec.node_id, "n1");
        assert_eq!(rec.bin_name, "tool");
        assert_eq!(rec.target_hash, to);
        assert_eq!(rec.from_hash.as_deref(), Some(from.as_str()));
        assert_eq!(rec.processing_time_ms, 1234);
        assert_eq!(
            rec.message.as_deref(),
            Some(format!("step {status}").as_str())
        );
        assert!(is_rfc3339(&rec.received_at), "{}", rec.received_at);
        assert!(
            rec.id > last_id,
            "ids must grow: {} after {last_id}",
            rec.id
        );
        last_id = rec.id;
    }
    let list: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(list.len(), 4);
}

#[test]
fn progress_errors_and_old_node_name() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    let h = sha256_hex(b"t");
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &h, "done"),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &h, "SUCCESS"),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"node_id": "n1", "targetHash": h}),
    )
    .expect_error(400);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"targetHash": h, "status": "success"}),
    )
    .expect_error(400);
    m.request("POST", "/api/v1/bins/tool/progress", &[], b"[1,2")
        .expect_error(400);
    let none: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert!(none.is_empty(), "{none:?}");

    // The old agents' spelling, `nodeName` and snake_case, are accepted.
    let r = m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"nodeName": "n1", "targetHash": h, "status": "success", "processingTime": 5}),
    );
    let rec: ProgressRecord = r.expect(201).parse();
    assert_eq!(rec.node_id, "n1");
    assert_eq!(rec.processing_time_ms, 5);
    let r = m.post_json(
        "/api/v1/bins/tool/progress",
        &json!({"node_id": "n1", "target_hash": h, "status": "failed", "processing_time": 6}),
    );
    r.expect(201);
    let list: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(list.len(), 2);
}

#[test]
fn progress_list_is_newest_first_with_node_filter_and_limit() {
    let m = Manager::new();
    register(&m, "a", "x86_64");
    register(&m, "b", "x86_64");
    let mut ids_a = Vec::new();
    let mut ids_b = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { "a" } else { "b" };
        let rec: ProgressRecord = m
            .post_json(
                "/api/v1/bins/tool/progress",
                &progress_body(node, &sha256_hex(&[i]), "in_progress"),
            )
            .expect(201)
            .parse();
        if node == "a" { &mut ids_a } else { &mut ids_b }.push(rec.id);
    }
    // Another bin's reports stay apart.
    m.post_json(
        "/api/v1/bins/other/progress",
        &progress_body("a", &sha256_hex(b"o"), "success"),
    )
    .expect(201);

    let all: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    let ids: Vec<u64> = all.iter().map(|r| r.id).collect();
    let mut want: Vec<u64> = ids_a.iter().chain(&ids_b).copied().collect();
    want.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(ids, want, "all reports of the bin, newest first");
    assert!(all.iter().all(|r| r.bin_name == "tool"));

    let only_a: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=a")
        .expect(200)
        .parse();
    let got: Vec<u64> = only_a.iter().map(|r| r.id).collect();
    let want_a: Vec<u64> = ids_a.iter().rev().copied().collect();
    assert_eq!(got, want_a);

    let two: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?limit=2")
        .expect(200)
        .parse();
    assert_eq!(
        two.iter().map(|r| r.id).collect::<Vec<_>>(),
        want[..2].to_vec()
    );
    let one_b: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=b&limit=1")
        .expect(200)
        .parse();
    assert_eq!(
        one_b.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![*ids_b.last().unwrap()]
    );

    for bad in ["abc", "-1", "1.5"] {
        m.admin_get(&format!("/api/v1/bins/tool/progress?limit={bad}"))
            .expect_error(400);
    }
    let none: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/never/progress")
        .expect(200)
        .parse();
    assert!(none.is_empty());
}

#[test]
fn progress_history_is_bounded_per_node() {
    let m = Manager::new_with(ManagerOptions::default().arg("--progress-keep").arg("5"));
    register(&m, "busy", "x86_64");
    register(&m, "quiet", "x86_64");
    let mut busy_ids = Vec::new();
    for i in 0..12u8 {
        let rec: ProgressRecord = m
            .post_json(
                "/api/v1/bins/tool/progress",
                &progress_body("busy", &sha256_hex(&[i]), "success"),
            )
            .expect(201)
            .parse();
        busy_ids.push(rec.id);
    }
    for i in 0..3u8 {
        m.post_json(
            "/api/v1/bins/tool/progress",
            &progress_body("quiet", &sha256_hex(&[i, i]), "failed"),
        )
        .expect(201);
    }
    let busy: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=busy")
        .expect(200)
        .parse();
    let want: Vec<u64> = busy_ids.iter().rev().take(5).copied().collect();
    assert_eq!(
        busy.iter().map(|r| r.id).collect::<Vec<_>>(),
        want,
        "the newest 5 are kept"
    );
    let quiet: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress?node_id=quiet")
        .expect(200)
        .parse();
    assert_eq!(quiet.len(), 3);
    let all: Vec<ProgressRecord> = m
        .admin_get("/api/v1/bins/tool/progress")
        .expect(200)
        .parse();
    assert_eq!(all.len(), 8);
}

// ---------------------------------------------------------------------------
// releases

#[test]
fn release_create_and_unknown_version() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"one").expect(201);
    let r = m.admin_post(
        "/api/v1/releases",
        &json!({"bin_name": "tool", "version": "1.0", "note": "first"}),
    );
    let rel: Release = r.expect(201).parse();
    assert_eq!(rel.bin_name, "tool");
    assert_eq!(rel.version, "1.0");
    assert_eq!(rel.note.as_deref(), Some("first"));
    assert_eq!(rel.status, ReleaseStatus::RollingOut);
    assert_eq!(rel.percent, 100);
    assert!(
        is_rfc3339(&rel.created_at) && is_rfc3339(&rel.updated_at),
        "{rel:?}"
    );
    assert!(
        !rel.history.is_empty(),
        "creation is recorded in the history"
    );
    assert!(is_rfc3339(&rel.history[0].at));

    m.release("tool", "9.9").expect_error(404);
    m.release("never-uploaded", "1.0").expect_error(404);
    m.admin_post("/api/v1/releases", &json!({"bin_name": "tool"}))
        .expect_error(400);
    let auth = format!("Bearer {}", m.token);
    m.request(
        "POST",
        "/api/v1/releases",
        &[("Authorization", &auth)],
        b"{bad json",
    )
    .expect_error(400);

    let list: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(list.len(), 1, "refused releases are not stored: {list:?}");
    assert_eq!(list[0].id, rel.id);
}

#[test]
fn a_second_release_supersedes_the_first() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"one").expect(201);
    m.upload("tool", "2.0", None, b"two").expect(201);
    m.upload("other", "1.0", None, b"other").expect(201);
    let r1: Release = m.release("tool", "1.0").expect(201).parse();
    let o1: Release = m.release("other", "1.0").expect(201).parse();
    let r2: Release = m.release("tool", "2.0").expect(201).parse();
    assert!(r2.id > r1.id);

    let r1_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", r1.id))
        .expect(200)
        .parse();
    assert_eq!(r1_now.status, ReleaseStatus::Superseded);
    assert!(
        r1_now.history.len() > r1.history.len(),
        "the supersede is recorded in the history: {:?}",
        r1_now.history
    );
    let r2_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", r2.id))
        .expect(200)
        .parse();
    assert_eq!(r2_now.status, ReleaseStatus::RollingOut);
    // Another bin's release is untouched.
    let o1_now: Release = m
        .admin_get(&format!("/api/v1/releases/{}", o1.id))
        .expect(200)
        .parse();
    assert_eq!(o1_now.status, ReleaseStatus::RollingOut);

    register(&m, "n1", "x86_64");
    let t: Target = target(&m, "tool", "n1").expect(200).parse();
    assert_eq!(t.version, "2.0");
    let t: Target = target(&m, "other", "n1").expect(200).parse();
    assert_eq!(t.version, "1.0");
}

#[test]
fn release_listing_filter_and_lookup() {
    let m = Manager::new();
    m.upload("a", "1", None, b"a1").expect(201);
    m.upload("a", "2", None, b"a2").expect(201);
    m.upload("b", "1", None, b"b1").expect(201);
    let ra1: Release = m.release("a", "1").expect(201).parse();
    let rb1: Release = m.release("b", "1").expect(201).parse();
    let ra2: Release = m.release("a", "2").expect(201).parse();

    let all: Vec<Release> = m.admin_get("/api/v1/releases").expect(200).parse();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ra2.id, rb1.id, ra1.id],
        "newest first"
    );
    let only_a: Vec<Release> = m
        .admin_get("/api/v1/releases?bin_name=a")
        .expect(200)
        .parse();
    assert_eq!(
        only_a.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ra2.id, ra1.id]
    );
    let none: Vec<Release> = m
        .admin_get("/api/v1/releases?bin_name=zzz")
        .expect(200)
        .parse();
    assert!(none.is_empty());

    let got: Release = m
        .admin_get(&format!("/api/v1/releases/{}", rb1.id))
        .expect(200)
        .parse();
    assert_eq!(got, rb1);
    m.admin_get("/api/v1/releases/999999").expect_error(404);
    for bad in ["abc", "-1", "1.0", "0x10"] {
        m.admin_get(&format!("/api/v1/releases/{bad}"))
            .expect_error(400);
    }
}
