//! Signed releases, manager side (issue #5 item 6):
//! `PUT /api/v1/bins/{bin}/versions/{version}/signature[?arch=A]` and the CLI's
//! `publish --signature` and `signature`, against the real server binary.
//!
//! The manager holds no key: it checks a signature's shape, stores it with
//! the artifact's version record and hands it to nodes in their target,
//! byte for byte. Tests marked "real minisign" sign with the `minisign` CLI
//! and verify what a node receives with it; without `minisign` on the PATH
//! they fail and say how to install it (`tests/run.sh` does). The others use
//! a well-formed (not valid) signature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{KeepaliveReply, Target, Version};
use binproxy_tests::minisign::{Minisign, WELL_FORMED};
use binproxy_tests::{artifact_bytes, Manager, Response, TempDir};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// helpers

fn sig_path(bin: &str, version: &str, arch: Option<&str>) -> String {
    let mut path = format!("/api/v1/bins/{bin}/versions/{version}/signature");
    if let Some(a) = arch {
        path.push_str("?arch=");
        path.push_str(a);
    }
    path
}

/// `METHOD` on the signature path with an optional token and a raw body.
fn send_sig(m: &Manager, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "text/plain")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    m.request(method, path, &headers, body)
}

/// `PUT` a signature as the bootstrap admin.
fn put_sig(m: &Manager, bin: &str, version: &str, arch: Option<&str>, body: &[u8]) -> Response {
    send_sig(
        m,
        "PUT",
        &sig_path(bin, version, arch),
        Some(&m.token),
        body,
    )
}

/// Creates a named token with the bootstrap token; returns its secret.
fn new_token(m: &Manager, name: &str, role: &str) -> String {
    let r = m.admin_post("/api/v1/tokens", &json!({"name": name, "role": role}));
    r.expect(201);
    r.json()["token"].as_str().unwrap().to_owned()
}

/// The stored versions of `bin`, as the admin API shows them.
fn versions(m: &Manager, bin: &str) -> Vec<Version> {
    let r = m.admin_get(&format!("/api/v1/bins/{bin}/versions"));
    r.expect(200);
    r.parse()
}

fn stored_signature(m: &Manager, bin: &str, version: &str, arch: Option<&str>) -> Option<String> {
    versions(m, bin)
        .into_iter()
        .find(|v| v.version == version && v.arch.as_deref() == arch)
        .unwrap_or_else(|| panic!("no {bin} {version} {arch:?}"))
        .signature
}

/// Asserts the signature stored for tool 1.0 (no arch) is `want`.
#[track_caller]
fn assert_tool_signature(m: &Manager, want: &str) {
    assert_eq!(
        stored_signature(m, "tool", "1.0", None).as_deref(),
        Some(want)
    );
}

/// The error text of an error answer.
fn error_of(r: &Response) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

/// (actor, method, path, status) of the audit records, oldest first.
fn audited(m: &Manager) -> Vec<(Option<String>, String, String, u64)> {
    let r = m.admin_get("/api/v1/audit?limit=1000");
    r.expect(200);
    let mut out: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["actor"].as_str().map(str::to_owned),
                a["method"].as_str().unwrap().to_owned(),
                a["path"].as_str().unwrap().to_owned(),
                a["status"].as_u64().unwrap(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// The target of `node` (registered as an x86_64 node) for `bin` through
/// the manifest, and its ETag.
fn manifest(m: &Manager, bin: &str, node: &str) -> (Target, String) {
    m.keepalive(node, "x86_64", &[]).expect(200);
    let r = m.get(&format!("/api/v1/bins/{bin}?node_id={node}"));
    r.expect(200);
    (r.parse(), r.header("etag").unwrap().to_owned())
}

/// The target of `node` for `bin` through a keepalive.
fn keepalive_target(m: &Manager, bin: &str, node: &str) -> Target {
    let reply: KeepaliveReply = m
        .keepalive(node, "x86_64", &[(bin, "")])
        .expect(200)
        .parse();
    reply.targets[bin].clone().expect("a target")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// real minisign

#[test]
fn a_real_signature_reaches_nodes_byte_for_byte_and_a_resignature_replaces_it() {
    let keys = Minisign::generate();
    let mut m = Manager::new();
    let bytes = artifact_bytes("signed-tool-1.0", 5000);
    let first = keys.sign(
        &bytes,
        "bin=tool version=1.0 arch=x86_64 timestamp=1700000000",
    );

    m.upload("tool", "1.0", Some("x86_64"), &bytes).expect(201);
    assert_eq!(stored_signature(&m, "tool", "1.0", Some("x86_64")), None);
    let r = put_sig(&m, "tool", "1.0", Some("x86_64"), first.as_bytes());
    r.expect(200);
    let v: Version = r.parse();
    assert_eq!(v.signature.as_deref(), Some(first.as_str()));
    assert_eq!((v.arch.as_deref(), v.size), (Some("x86_64"), 5000));
    m.release("tool", "1.0").expect(201);

    // Both ways a node learns its target carry the exact text, and it
    // verifies the bytes the node downloads.
    let (target, etag) = manifest(&m, "tool", "n1");
    assert_eq!(target.signature.as_deref(), Some(first.as_str()));
    assert_eq!(keepalive_target(&m, "tool", "n1"), target);
    let download = m.get(&target.url);
    download.expect(200);
    assert!(keys.verifies(&download.body, target.signature.as_deref().unwrap()));
    assert!(!keys.verifies(b"other bytes", &first));

    // A legacy signature (`-l`) verifies with minisign, but agents verify
    // while streaming, which it does not allow: refused, naming the fix.
    let legacy = keys.sign_with(
        &["-l"],
        &bytes,
        "bin=tool version=1.0 arch=x86_64 timestamp=1700000050",
    );
    assert!(keys.verifies(&bytes, &legacy));
    let r = put_sig(&m, "tool", "1.0", Some("x86_64"), legacy.as_bytes());
    r.expect_error(400);
    assert!(error_of(&r).contains("without -l"), "{r}");
    assert_eq!(manifest(&m, "tool", "n1").0, target);

    // A re-signature (a fresh timestamp, for a legitimate rollback, say)
    // replaces the first: nodes see it at once, and their ETag changes.
    let second = keys.sign(
        &bytes,
        "bin=tool version=1.0 arch=x86_64 timestamp=1700000100",
    );
    assert_ne!(first, second);
    let r = put_sig(&m, "tool", "1.0", Some("amd64"), second.as_bytes());
    r.expect(200);
    assert_eq!(
        r.parse::<Version>().signature.as_deref(),
        Some(second.as_str())
    );
    let stale = m.request(
        "GET",
        "/api/v1/bins/tool?node_id=n1",
        &[("If-None-Match", &etag)],
        b"",
    );
    stale.expect(200);
    assert_eq!(
        stale.parse::<Target>().signature.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(
        keepalive_target(&m, "tool", "n1").signature.as_deref(),
        Some(second.as_str())
    );
    assert!(keys.verifies(&bytes, &second));

    // Durable: acknowledged means on disk, even through kill -9.
    m.kill9();
    m.restart();
    let (target, _) = manifest(&m, "tool", "n1");
    assert_eq!(target.signature.as_deref(), Some(second.as_str()));
    assert_eq!(
        stored_signature(&m, "tool", "1.0", Some("x86_64")).as_deref(),
        Some(second.as_str())
    );
}

#[test]
fn cli_publishes_with_a_signature_before_the_release_and_resigns() {
    let keys = Minisign::generate();
    let m = Manager::new();
    let admin = keys.dir.join("admin.token");
    std::fs::write(&admin, format!("{}\n", m.token)).unwrap();
    let file = keys.dir.join("tool");
    let bytes = artifact_bytes("signed-tool-2.0", 3000);
    std::fs::write(&file, &bytes).unwrap();
    let trusted = "bin=tool version=2.0 arch=x86_64 timestamp=1700000000";
    let sig = keys.sign_file(&[], &file, trusted);
    let first = std::fs::read_to_string(&sig).unwrap();
    let (file_arg, sig_arg) = (file.to_str().unwrap(), sig.to_str().unwrap());

    let out = m.cli(
        &admin,
        &[
            "publish",
            "tool",
            "2.0",
            file_arg,
            "--arch",
            "x86_64",
            "--signature",
            sig_arg,
            "--release",
            "--note",
            "signed",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("signature stored (trusted comment: {trusted})")),
        "{stdout}"
    );
    assert!(stdout.contains("release:"), "{stdout}");
    let (target, _) = manifest(&m, "tool", "n1");
    assert_eq!(target.signature.as_deref(), Some(first.as_str()));
    assert!(keys.verifies(&bytes, target.signature.as_deref().unwrap()));
    // Upload, signature, release: in this order.
    let records = audited(&m);
    let writes: Vec<(&str, &str, u64)> = records
        .iter()
        .map(|(_, method, path, status)| (method.as_str(), path.as_str(), *status))
        .collect();
    assert_eq!(
        writes,
        [
            ("POST", "/api/v1/bins/tool/versions", 201),
            ("PUT", "/api/v1/bins/tool/versions/2.0/signature", 200),
            ("POST", "/api/v1/releases", 201),
        ]
    );

    // `signature` re-signs; --json prints the server's Version.
    let later_path = keys.sign_file(
        &[],
        &file,
        "bin=tool version=2.0 arch=x86_64 timestamp=1700000999",
    );
    let later = std::fs::read_to_string(&later_path).unwrap();
    let out = m.cli(
        &admin,
        &[
            "signature",
            "tool",
            "2.0",
            later_path.to_str().unwrap(),
            "--arch",
            "x86_64",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Version = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.signature.as_deref(), Some(later.as_str()));
    assert_eq!(
        manifest(&m, "tool", "n1").0.signature.as_deref(),
        Some(later.as_str())
    );
}

// ---------------------------------------------------------------------------
// always run

#[test]
fn cli_refuses_a_bad_signature_file_before_uploading_and_viewers_cannot_sign() {
    let m = Manager::new();
    let tmp = TempDir::new("cli-sig");
    let admin = tmp.join("admin.token");
    std::fs::write(&admin, format!("{}\n", m.token)).unwrap();
    let file = tmp.join("tool");
    std::fs::write(&file, b"tool 3.0").unwrap();
    let file_arg = file.to_str().unwrap();

    // A bad signature file uploads nothing (exit 2, before any request).
    let bad = tmp.join("bad.minisig");
    std::fs::write(&bad, "untrusted comment: x\nnot a signature\n").unwrap();
    let out = m.cli(
        &admin,
        &[
            "publish",
            "tool",
            "3.0",
            file_arg,
            "--signature",
            bad.to_str().unwrap(),
            "--release",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.minisig") && stderr.contains("2 lines"),
        "{stderr}"
    );
    assert!(audited(&m).is_empty(), "nothing may be sent");
    m.admin_get("/api/v1/bins/tool/versions").expect_error(404);

    // A viewer may not sign: 403, exit 1, nothing stored.
    m.upload("tool", "3.0", None, b"tool 3.0").expect(201);
    let good = tmp.join("good.minisig");
    std::fs::write(&good, WELL_FORMED).unwrap();
    let viewer = tmp.join("viewer.token");
    std::fs::write(&viewer, new_token(&m, "watcher", "viewer")).unwrap();
    let out = m.cli(
        &viewer,
        &["signature", "tool", "3.0", good.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("403"), "{out:?}");
    assert_eq!(stored_signature(&m, "tool", "3.0", None), None);
    let out = m.cli(
        &admin,
        &["signature", "tool", "3.0", good.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stored_signature(&m, "tool", "3.0", None).as_deref(),
        Some(WELL_FORMED)
    );
}

#[test]
fn only_publishers_and_admins_may_sign_and_every_attempt_is_audited() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"tool 1.0").expect(201);
    let path = sig_path("tool", "1.0", None);
    let viewer = new_token(&m, "v", "viewer");
    let approver = new_token(&m, "a", "approver");
    let publisher = new_token(&m, "p", "publisher");
    let admin = new_token(&m, "root", "admin");
    let before = audited(&m).len();

    for (token, status) in [
        (None, 401),
        (Some("not-a-token"), 401),
        (Some(viewer.as_str()), 403),
        (Some(approver.as_str()), 403),
    ] {
        let r = send_sig(&m, "PUT", &path, token, WELL_FORMED.as_bytes());
        r.expect_error(status);
        assert_eq!(stored_signature(&m, "tool", "1.0", None), None, "{r}");
    }
    let r = send_sig(&m, "PUT", &path, Some(&viewer), WELL_FORMED.as_bytes());
    assert!(error_of(&r).contains("admin or publisher"), "{r}");

    let by_publisher = WELL_FORMED.replace("timestamp=1700000000", "timestamp=1");
    send_sig(&m, "PUT", &path, Some(&publisher), by_publisher.as_bytes()).expect(200);
    assert_tool_signature(&m, by_publisher.as_str());
    send_sig(&m, "PUT", &path, Some(&admin), WELL_FORMED.as_bytes()).expect(200);
    put_sig(&m, "tool", "1.0", None, WELL_FORMED.as_bytes()).expect(200);
    assert_tool_signature(&m, WELL_FORMED);

    let records = audited(&m);
    let got: Vec<(Option<&str>, u64)> = records[before..]
        .iter()
        .filter(|(_, method, p, _)| method == "PUT" && *p == path)
        .map(|(actor, _, _, status)| (actor.as_deref(), *status))
        .collect();
    assert_eq!(
        got,
        // The two 401s are counted, not audited one by one (an anonymous
        // flood must not push real actions out of the audit log).
        [
            (Some("v"), 403),
            (Some("a"), 403),
            (Some("v"), 403),
            (Some("p"), 200),
            (Some("root"), 200),
            (Some("admin"), 200),
        ]
    );
}

#[test]
fn a_signature_that_does_not_look_like_minisign_is_refused_naming_the_fault() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"tool 1.0").expect(201);
    let lines: Vec<&str> = WELL_FORMED.lines().collect();
    let with = |n: usize, line: &str| {
        let mut l = lines.clone();
        l[n] = line;
        l.join("\n")
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (b"\xff\xfe".to_vec(), "not UTF-8"),
        (lines[..3].join("\n").into_bytes(), "3 lines"),
        (format!("{WELL_FORMED}\n").into_bytes(), "5 lines"),
        (lines.join("\r\n").into_bytes(), "carriage return"),
        (with(0, "comment: x").into_bytes(), "line 1 must start with"),
        (with(2, "comment: x").into_bytes(), "line 3 must start with"),
        (with(1, "***").into_bytes(), "line 2 is not base64"),
        (
            with(3, lines[1]).into_bytes(),
            "line 4 is base64 of 74 bytes",
        ),
        (
            with(1, &lines[1].replacen("RUS", "AAA", 1)).into_bytes(),
            "not minisign's Ed25519",
        ),
        (b"{\"signature\": \"x\"}".to_vec(), "1 line;"),
    ];
    for (body, want) in cases {
        let r = put_sig(&m, "tool", "1.0", None, &body);
        r.expect_error(400);
        let error = error_of(&r);
        assert!(
            error.starts_with("invalid signature: ") && error.contains(want),
            "{want:?}: {r}"
        );
    }
    assert_eq!(stored_signature(&m, "tool", "1.0", None), None);
    // Without the last newline is fine.
    put_sig(&m, "tool", "1.0", None, WELL_FORMED.trim_end().as_bytes()).expect(200);
    assert_tool_signature(&m, WELL_FORMED.trim_end());
}

#[test]
fn a_signature_over_4_kib_is_413() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"tool 1.0").expect(201);
    // 4096 bytes are read and judged (400); 4097 are not (413).
    let padded = WELL_FORMED.replacen(
        "trusted comment: ",
        &format!("trusted comment: {}", "x".repeat(4096 - WELL_FORMED.len())),
        1,
    );
    assert_eq!(padded.len(), 4096);
    put_sig(&m, "tool", "1.0", None, padded.as_bytes()).expect(200);
    let r = put_sig(&m, "tool", "1.0", None, format!("{padded}x").as_bytes());
    r.expect_error(413);
    assert!(error_of(&r).contains("4096"), "{r}");
    let r = put_sig(&m, "tool", "1.0", None, &vec![b'a'; 1 << 20]);
    r.expect_error(413);
    assert_tool_signature(&m, padded.as_str());
}

#[test]
fn unknown_bins_versions_and_arches_are_404_and_bad_names_400() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"tool 1.0 any").expect(201);
    m.upload("tool", "2.0", Some("x86_64"), b"tool 2.0 x86_64")
        .expect(201);
    for (bin, version, arch, want) in [
        ("nope", "1.0", None, "unknown version 1.0 of nope"),
        ("tool", "9.9", None, "unknown version 9.9 of tool"),
        // Exactly the artifact of that arch: no fallback to the arch-less one.
        ("tool", "1.0", Some("x86_64"), "no artifact for arch x86_64"),
        (
            "tool",
            "2.0",
            Some("aarch64"),
            "no artifact for arch aarch64",
        ),
        ("tool", "2.0", None, "no arch-less artifact"),
    ] {
        let r = put_sig(&m, bin, version, arch, WELL_FORMED.as_bytes());
        r.expect_error(404);
        assert!(error_of(&r).contains(want), "{want:?}: {r}");
    }
    for (bin, version, arch) in [
        ("%2e%2e", "1.0", None),
        ("tool", "1%2f0", None),
        ("tool", "1.0", Some("x%20y")),
    ] {
        put_sig(&m, bin, version, arch, WELL_FORMED.as_bytes()).expect_error(400);
    }
    // The arch is normalised as uploads are: arm64 is aarch64.
    m.upload("tool", "3.0", Some("arm64"), b"tool 3.0 arm")
        .expect(201);
    put_sig(&m, "tool", "3.0", Some("arm64"), WELL_FORMED.as_bytes()).expect(200);
    assert_eq!(
        stored_signature(&m, "tool", "3.0", Some("aarch64")).as_deref(),
        Some(WELL_FORMED)
    );
    // Nothing else was signed.
    let signed: Vec<(String, Option<String>)> = versions(&m, "tool")
        .into_iter()
        .filter(|v| v.signature.is_some())
        .map(|v| (v.version, v.arch))
        .collect();
    assert_eq!(signed, [("3.0".to_owned(), Some("aarch64".to_owned()))]);
}

#[test]
fn other_methods_on_the_signature_path_are_405() {
    let m = Manager::new();
    m.upload("tool", "1.0", None, b"tool 1.0").expect(201);
    let path = sig_path("tool", "1.0", None);
    for method in ["GET", "HEAD", "POST", "DELETE", "PATCH"] {
        let r = send_sig(&m, method, &path, Some(&m.token), b"");
        r.expect(405);
        assert_eq!(r.header("allow"), Some("PUT"), "{method}: {r}");
    }
    // An unsigned version's record has no signature field at all.
    let v: Value = m.admin_get("/api/v1/bins/tool/versions").json();
    assert!(v[0].get("signature").is_none(), "{v}");
}
