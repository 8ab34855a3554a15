//! The command line's `token` and `audit` commands against the real server.

use binproxy_tests::roles::send;
use binproxy_tests::{Manager, TempDir};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// the command line

#[test]
fn cli_creates_lists_revokes_tokens_and_shows_the_audit() {
    let m = Manager::new();
    let tmp = TempDir::new("cli-tokens");
    let admin_file = tmp.join("admin");
    std::fs::write(&admin_file, format!("{}\n", m.token)).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out = m.cli(&admin_file, &["token", "create", "ci", "publisher"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let secret = text(&out.stdout).trim_end().to_owned();
    assert_eq!(
        text(&out.stdout),
        format!("{secret}\n"),
        "only the secret on stdout"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not be shown again"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    send(&m, "GET", "/api/v1/releases", Some(&secret), None).expect(200);

    let out = m.cli(
        &admin_file,
        &["token", "create", "qa", "approver", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&created["name"], &created["role"]),
        (&json!("qa"), &json!("approver"))
    );
    assert!(created["token"].as_str().is_some_and(|t| !t.is_empty()));

    let out = m.cli(&admin_file, &["token", "create", "x", "root"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("\"root\""), "{out:?}");
    let out = m.cli(&admin_file, &["token", "create", "ci", "viewer"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("409"), "{out:?}");

    let out = m.cli(&admin_file, &["token", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let list = text(&out.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "ROLE", "CREATED", "BY"], "{list}");
    assert!(
        rows.iter()
            .any(|r| r[..2] == ["ci", "publisher"] && r[3] == "admin"),
        "{list}"
    );
    assert!(rows.iter().any(|r| r[..2] == ["admin", "admin"]), "{list}");
    assert!(!list.contains(&secret), "{list}");

    // A publisher's token file: refused with 403, exit 1.
    let ci_file = tmp.join("ci");
    std::fs::write(&ci_file, &secret).unwrap();
    let out = m.cli(&ci_file, &["token", "revoke", "qa"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("403"), "{out:?}");

    let out = m.cli(&admin_file, &["token", "revoke", "ci"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("revoked token ci"), "{out:?}");
    let out = m.cli(&ci_file, &["token", "list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("401"), "{out:?}");

    let out = m.cli(&admin_file, &["audit", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"],
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    // Newest first: the refused `token list` was a read; the last write was
    // the revocation, and before it the refused revocation by ci.
    assert_eq!(
        rows[1][2..],
        ["admin", "DELETE", "/api/v1/tokens/ci", "200", "127.0.0.1"],
        "{table}"
    );
    assert_eq!(
        rows[2][2..],
        ["ci", "DELETE", "/api/v1/tokens/qa", "403", "127.0.0.1"],
        "{table}"
    );
    let out = m.cli(&admin_file, &["audit", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two creations, the duplicate, the refused and the done revocation;
    // the bad role never left the client.
    assert_eq!(records.as_array().unwrap().len(), 5, "{records:#}");
}
