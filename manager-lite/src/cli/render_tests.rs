//! Tests of [`super`]: tables and blocks as an operator reads them.

use super::*;

#[test]
fn token_and_audit_tables() {
    let tokens: Vec<TokenInfo> = serde_json::from_value(serde_json::json!([
        {"name": "admin", "role": "admin", "created_at": "t0", "created_by": "admin"},
        {"name": "ci", "role": "publisher", "created_at": "2025-01-01T00:00:00Z", "created_by": "admin"}
    ]))
    .unwrap();
    let out = tokens_table(&tokens);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["NAME", "ROLE", "CREATED", "BY"],
            vec!["admin", "admin", "t0", "admin"],
            vec!["ci", "publisher", "2025-01-01T00:00:00Z", "admin"],
        ]
    );
    let records: Vec<AuditRecord> = serde_json::from_value(serde_json::json!([
        {"id": 2, "at": "t2", "actor": null, "method": "POST", "path": "/api/v1/releases",
         "status": 401, "remote_addr": "127.0.0.1"},
        {"id": 1, "at": "t1", "actor": "ci", "method": "DELETE", "path": "/api/v1/tokens/x\ny",
         "status": 404, "remote_addr": null}
    ]))
    .unwrap();
    let out = audit_table(&records);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"]
    );
    assert_eq!(
        lines[1],
        [
            "2",
            "t2",
            "-",
            "POST",
            "/api/v1/releases",
            "401",
            "127.0.0.1"
        ]
    );
    // A path from the network stays on its line.
    assert_eq!(lines[2].len(), 7, "{out}");
    assert_eq!(lines[2][6], "-");
}

#[test]
fn tables_shorten_hashes() {
    let node = Node {
        node_id: "web-1".into(),
        online: true,
        bins: [
            ("agent".to_owned(), "a".repeat(64)),
            ("db".to_owned(), String::new()),
        ]
        .into(),
        labels: [("env".to_owned(), "prod".to_owned())].into(),
        ..Node::default()
    };
    let out = nodes_table(&[node]);
    let line = out.lines().nth(1).unwrap();
    assert!(
        line.contains(&format!("agent={},db=-", "a".repeat(12))),
        "{out}"
    );
    assert!(line.starts_with("web-1  yes"), "{out}");
    assert!(line.ends_with("env=prod"), "{out}");
}

pub(in crate::cli) fn sample_release() -> Release {
    serde_json::from_value(serde_json::json!({
        "id": 7, "bin_name": "agent", "version": "1.3.0", "note": "canary",
        "status": "paused", "percent": 10, "wave": 1,
        "selector": {"cpu_arch": ["x86_64"], "labels": {"env": ["canary", "staging"]}},
        "waves": [{"percent": 1, "wait": "10m"}, {"percent": 10, "wait": "30m"}, {"percent": 100}],
        "success_threshold": "95%", "max_failures": "5%", "require_approval": false,
        "baseline_version": "1.2.0",
        "paused_reason": "6 failures > 5% of 100 reached nodes",
        "wave_started_at": "2025-01-01T10:00:00Z",
        "counts": {"targeted": 100, "in_progress": 3, "success": 91, "failed": 4, "rolled_back": 2},
        "created_at": "2025-01-01T09:00:00Z", "created_by": "admin",
        "updated_at": "2025-01-01T10:05:00Z",
        "history": (1..=7).map(|i| serde_json::json!({
            "at": format!("2025-01-01T10:0{i}:00Z"), "actor": "admin", "action": format!("step{i}")
        })).collect::<Vec<_>>()
    }))
    .unwrap()
}

#[test]
fn releases_table_shows_waves_counts_and_why_paused() {
    let mut r = sample_release();
    let out = releases_table(&[r.clone()]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "BIN", "VERSION", "STATUS", "WAVE", "PERCENT", "TARGETED", "OK", "FAIL", "RB",
            "CREATED", "BY", "NOTE"
        ]
    );
    let row = lines.next().unwrap();
    assert!(
        row.split_whitespace()
            .take(10)
            .eq(["7", "agent", "1.3.0", "paused", "2/3", "10%", "100", "91", "4", "2"]),
        "{out}"
    );
    assert!(
        row.ends_with("paused: 6 failures > 5% of 100 reached nodes; canary"),
        "{out}"
    );
    let mut ended = r.clone();
    ended.status = ReleaseStatus::Superseded;
    let row = releases_table(&[ended]).lines().nth(1).unwrap().to_owned();
    assert!(
        row.ends_with("was paused: 6 failures > 5% of 100 reached nodes; canary"),
        "{row}"
    );
    r.status = ReleaseStatus::PendingApproval;
    r.paused_reason = None;
    let row = releases_table(&[r]).lines().nth(1).unwrap().to_owned();
    assert!(row.contains(" 0/3 "), "{row}");
    assert!(row.ends_with(" canary"), "{row}");
}

#[test]
fn one_release_shows_as_a_block_with_recent_history() {
    let out = release_block(&sample_release());
    for line in [
        "status:      paused",
        "paused:      6 failures > 5% of 100 reached nodes",
        "wave:        2/3 at 10% since 2025-01-01T10:00:00Z",
        "plan:        1%:10m,10%:30m,100%",
        "selector:    arch x86_64; env=canary,staging",
        "counts:      targeted 100, in progress 3, ok 91, failed 4, rolled back 2",
        "baseline:    1.2.0",
        "history (last 5 of 7):",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
    }
    assert!(!out.contains("step2"), "{out}");
    assert!(out.trim_end().ends_with("step7   -"), "{out}");
    assert_eq!(selector_summary(&Selector::default()), "all nodes");
}

#[test]
fn node_view_tells_why() {
    let view: NodeView = serde_json::from_value(serde_json::json!({
        "node": {"node_id": "web-1", "cpu_arch": "x86_64", "os": "linux",
                 "labels": {"env": "prod"}, "bins": {"agent": "b".repeat(64), "db": ""},
                 "registered_at": "t0", "last_seen": "t1", "online": true},
        "bins": {
            "agent": {"target": {"bin_name": "agent", "version": "1.3.0", "sha256sum": "a".repeat(64),
                                 "size": 1, "url": "/x"}, "reason": "in wave 2 of release 7"},
            "db": {"target": null, "reason": "no release"},
            "web": {"target": null, "reason": "outside selector of release 3"}
        }
    }))
    .unwrap();
    let out = node_view(&view);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1]
            .split_whitespace()
            .take(3)
            .eq(["web-1", "yes", "t1"]),
        "{out}"
    );
    assert!(lines[1].ends_with("env=prod"), "{out}");
    assert_eq!(lines[2], "");
    assert!(lines[3].starts_with("BIN "), "{out}");
    let agent = format!("1.3.0@{}  {}", "a".repeat(12), "b".repeat(12));
    assert!(lines[4].contains(&agent), "{out}");
    assert!(lines[4].ends_with("in wave 2 of release 7"), "{out}");
    assert!(
        lines[5].starts_with("db     -") && lines[5].contains("missing"),
        "{out}"
    );
    assert!(lines[6].ends_with("outside selector of release 3"), "{out}");
}

#[test]
fn progress_table_says_how_the_bytes_came() {
    let record = |id, method: Option<&str>, bytes: Option<u64>| -> ProgressRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "node_id": "web-1", "bin_name": "svc", "target_hash": "ab".repeat(32),
            "status": "success", "processing_time_ms": 800, "method": method, "bytes": bytes,
            "received_at": "2026-12-03T00:00:00Z",
        }))
        .unwrap()
    };
    let text = progress_table(&[
        record(1, Some("delta"), Some(130_476)),
        record(2, None, None),
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("BY") && lines[0].contains("BYTES"),
        "{text}"
    );
    assert!(
        lines[1].contains("delta") && lines[1].contains("130476"),
        "{text}"
    );
    assert!(!lines[2].contains("delta"), "an old agent's report: {text}");
}
