//! Node enrollment, end to end: a real manager-lite with
//! `--node-enroll-token-file` and real agents (`binproxy run --now`). Only
//! 127.0.0.1 traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{ProgressStatus::Success, Target};
use binproxy_tests::agent::{count, good_script, installed_hash, progress, publish, show, Agent};
use binproxy_tests::enrollment::{secret_of, secret_path, secured, Secured, BIN};
use binproxy_tests::{
    list_tree, manager_bin, output_within, request, unique, Manager, ManagerOptions, Response,
    TempDir,
};
use serde_json::{json, Value};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// `method path` with `auth` (an `Authorization` value) and a JSON body.
fn call(m: &Manager, method: &str, path: &str, auth: Option<&str>, body: &Value) -> Response {
    call_at(m.addr, method, path, auth, body)
}

fn call_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    request(addr, method, path, &headers, &bytes)
}

fn keepalive_body(node_id: &str) -> Value {
    json!({
        "node_id": node_id,
        "cpu_arch": std::env::consts::ARCH,
        "os": "linux",
        "os_release": "test",
        "node_name": format!("name-{node_id}"),
        "bin_proxy_version": "0.1.0",
        "bins": {BIN: ""},
    })
}

fn progress_body(node_id: &str, target: &str) -> Value {
    json!({"node_id": node_id, "target_hash": target, "status": "success"})
}

fn installed_body(node_id: &str, target: &str) -> Value {
    json!({"node_id": node_id, "sha256sum": target})
}

/// Every byte the manager keeps on disk.
fn data_dir_contains(m: &Manager, needle: &str) -> Vec<PathBuf> {
    list_tree(&m.data_dir)
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            fs::read(p)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[test]
fn an_agent_enrolls_on_its_first_run_then_updates_and_reports_with_its_secret() {
    let s = secured();
    let v1 = good_script("v1");
    let s1 = publish(&s.m, BIN, "1.0.0", &v1);
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);

    let out = a.run();
    out.expect_code(0);
    a.assert_live(&v1, "after the enrolling run");
    let secret = secret_of(&a);
    let mode = fs::metadata(secret_path(&a)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "node.secret mode {mode:o}");
    let p = progress(&s.m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s1), 1, "{}", show(&p));
    assert_eq!(installed_hash(&s.m, &a.node_id, BIN).as_deref(), Some(&*s1));
    assert!(a.outbox().is_empty(), "undelivered: {:?}", a.outbox());
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains(&secret),
            "the agent logged its secret:\n{text}"
        );
        assert!(
            !text.contains(&s.token),
            "the agent logged the token:\n{text}"
        );
    }
    let found = data_dir_contains(&s.m, &secret);
    assert!(found.is_empty(), "the secret in clear in {found:?}");
    assert!(
        !s.m.log().contains(&secret),
        "the manager logged the secret"
    );

    // Enrolled: the token file is not needed any more, the secret is used.
    fs::remove_file(&token_file).unwrap();
    let v2 = good_script("v2");
    let s2 = publish(&s.m, BIN, "2.0.0", &v2);
    let out = a.run();
    out.expect_code(0);
    a.assert_live(&v2, "after v2");
    assert_eq!(secret_of(&a), secret, "the secret is kept");
    let p = progress(&s.m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &s2), 1, "{}", show(&p));
    assert_eq!(installed_hash(&s.m, &a.node_id, BIN).as_deref(), Some(&*s2));
    assert!(!out.stderr.contains(&secret) && !out.stdout.contains(&secret));

    // status asks for the target with the secret too.
    let st = a.status_json();
    assert_eq!(
        st["bins"][0]["target"]["sha256sum"].as_str(),
        Some(&*s2),
        "status got no target: {st:#}"
    );
}

#[test]
fn a_secret_speaks_only_for_its_own_node() {
    let s = secured();
    let s1 = publish(&s.m, BIN, "1.0.0", &good_script("v1"));
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);
    let b = s.agent(&token_file);
    a.run().expect_code(0);
    b.run().expect_code(0);
    let (sa, sb) = (secret_of(&a), secret_of(&b));
    assert_ne!(sa, sb, "one secret per node");
    let (auth_a, auth_b) = (bearer(&sa), bearer(&sb));

    // b's secret cannot report for a.
    let progress_path = format!("/api/v1/bins/{BIN}/progress");
    let installed_path = format!("/api/v1/bins/{BIN}");
    let r = call(
        &s.m,
        "POST",
        &progress_path,
        Some(&auth_b),
        &progress_body(&a.node_id, &s1),
    );
    assert_eq!(r.status, 403, "{r}");
    let r = call(
        &s.m,
        "POST",
        &installed_path,
        Some(&auth_b),
        &installed_body(&a.node_id, &s1),
    );
    assert_eq!(r.status, 403, "{r}");
    // a's own secret can.
    let r = call(
        &s.m,
        "POST",
        &progress_path,
        Some(&auth_a),
        &progress_body(&a.node_id, &s1),
    );
    assert!(r.status < 300, "{r}");
}

#[test]
fn nothing_works_without_a_secret_and_the_enrollment_token_is_checked() {
    let s = secured();
    let s1 = publish(&s.m, BIN, "1.0.0", &good_script("v1"));
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);
    a.run().expect_code(0);
    let auth_a = bearer(&secret_of(&a));
    let progress_path = format!("/api/v1/bins/{BIN}/progress");
    let installed_path = format!("/api/v1/bins/{BIN}");

    // Without a secret (or with a made-up one): 401 everywhere.
    let target_path = format!("/api/v1/bins/{BIN}?node_id={}", a.node_id);
    let target: Target = call(&s.m, "GET", &target_path, Some(&auth_a), &Value::Null)
        .expect(200)
        .parse();
    let download = if target.url.starts_with("http") {
        target
            .url
            .split_once("/api/")
            .map(|(_, p)| format!("/api/{p}"))
            .unwrap()
    } else {
        target.url.clone()
    };
    let bogus = bearer(&"0".repeat(64));
    for auth in [None, Some(bogus.as_str())] {
        for (method, path, body) in [
            ("GET", target_path.as_str(), Value::Null),
            (
                "POST",
                progress_path.as_str(),
                progress_body(&a.node_id, &s1),
            ),
            (
                "POST",
                installed_path.as_str(),
                installed_body(&a.node_id, &s1),
            ),
            ("GET", download.as_str(), Value::Null),
            ("POST", "/api/v1/keepalive", keepalive_body(&a.node_id)),
        ] {
            let r = call(&s.m, method, path, auth, &body);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {r}");
        }
    }
    // The download works with a node secret or the admin token.
    for auth in [auth_a.clone(), format!("Bearer {}", s.m.token)] {
        let r = call(&s.m, "GET", &download, Some(&auth), &Value::Null);
        assert_eq!(r.status, 200, "{r}");
    }
    // /health stays open.
    assert_eq!(s.m.get("/health").status, 200);

    // A wrong enrollment token: 401, raw and through an agent.
    let wrong = bearer("not-the-enroll-token-0123456789");
    let r = call(
        &s.m,
        "POST",
        "/api/v1/keepalive",
        Some(&wrong),
        &keepalive_body(&unique("node")),
    );
    assert_eq!(r.status, 401, "{r}");
    let wrong_agent = s.agent(&s.token_file("wrong", "not-the-enroll-token-0123456789"));
    let out = wrong_agent.run();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("not-the-enroll-token"),
        "{}",
        out.stderr
    );
    assert!(!secret_path(&wrong_agent).exists());
    assert!(wrong_agent.live_bytes().is_none(), "nothing installed");

    // An enrolled node presenting the enrollment token again: 409.
    let r = call(
        &s.m,
        "POST",
        "/api/v1/keepalive",
        Some(&bearer(&s.token)),
        &keepalive_body(&a.node_id),
    );
    assert_eq!(r.status, 409, "{r}");
    assert!(r.text().contains("already enrolled"), "{r}");

    // An unreadable token file: a config error (exit 2) naming the file.
    let missing = s.agent(&s.dir.join("missing.token"));
    let out = missing.run();
    out.expect_code(2);
    assert!(out.stderr.contains("missing.token"), "{}", out.stderr);
    let empty = s.token_file("empty", "");
    let blank = s.agent(&empty);
    let out = blank.run();
    out.expect_code(2);
    assert!(out.stderr.contains("empty.token"), "{}", out.stderr);
}

/// An agent that enrolled with the enrollment token and installed v1 of
/// [`BIN`], and v1's bytes.
fn enrolled_on_v1(s: &Secured) -> (Agent, Vec<u8>) {
    let v1 = good_script("v1");
    publish(&s.m, BIN, "1.0.0", &v1);
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);
    a.run().expect_code(0);
    (a, v1)
}

#[test]
fn a_revoked_node_is_refused_until_it_enrolls_again() {
    let s = secured();
    let (a, v1) = enrolled_on_v1(&s);
    let old = secret_of(&a);

    let admin = format!("Bearer {}", s.m.token);
    let revoke = format!("/api/v1/nodes/{}/secret", a.node_id);
    let r = call(&s.m, "DELETE", &revoke, Some(&bearer(&old)), &Value::Null);
    assert!(
        matches!(r.status, 401 | 403),
        "a node secret cannot revoke: {r}"
    );
    let r = call(&s.m, "DELETE", &revoke, Some(&admin), &Value::Null);
    assert!(r.status < 300, "{r}");

    let target_path = format!("/api/v1/bins/{BIN}?node_id={}", a.node_id);
    let r = call(&s.m, "GET", &target_path, Some(&bearer(&old)), &Value::Null);
    assert_eq!(r.status, 401, "{r}");
    let out = a.run();
    assert_ne!(
        out.code,
        Some(0),
        "the revoked secret still worked: {out:?}"
    );
    assert!(!out.stderr.contains(&old), "{}", out.stderr);
    a.assert_live(&v1, "a refused run changes nothing");

    // Forgetting the old secret lets the node enroll again.
    fs::remove_file(secret_path(&a)).unwrap();
    let v2 = good_script("v2");
    let s2 = publish(&s.m, BIN, "2.0.0", &v2);
    a.run().expect_code(0);
    let new = secret_of(&a);
    assert_ne!(new, old, "a fresh secret");
    a.assert_live(&v2, "after enrolling again");
    assert_eq!(installed_hash(&s.m, &a.node_id, BIN).as_deref(), Some(&*s2));
    let r = call(&s.m, "GET", &target_path, Some(&bearer(&new)), &Value::Null);
    assert_eq!(r.status, 200, "{r}");
}

/// `manager-lite node delete`: the node's record, pins and secret go, its
/// progress reports stay; a host still running its agent enrolls again.
#[test]
fn a_deleted_node_is_forgotten_with_its_pins_and_secret() {
    let s = secured();
    let (a, _) = enrolled_on_v1(&s);
    let old = secret_of(&a);
    let admin = format!("Bearer {}", s.m.token);
    let pin = format!("/api/v1/nodes/{}/pins/{BIN}", a.node_id);
    let r = call(
        &s.m,
        "PUT",
        &pin,
        Some(&admin),
        &json!({"version": "1.0.0"}),
    );
    assert_eq!(r.status, 200, "{r}");
    let node_path = format!("/api/v1/nodes/{}", a.node_id);
    let view = call(&s.m, "GET", &node_path, Some(&admin), &Value::Null);
    assert!(view.text().contains("pinned"), "{view}");
    let reports_before = progress(&s.m, BIN, &a.node_id).len();
    assert!(reports_before > 0);

    let admin_file = s.dir.join("admin.token");
    fs::write(&admin_file, &s.m.token).unwrap();
    let out = s.m.cli(&admin_file, &["node", "delete", &a.node_id]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted node"),
        "{out:?}"
    );
    assert_eq!(
        call(&s.m, "GET", &node_path, Some(&admin), &Value::Null).status,
        404
    );
    let nodes = call(&s.m, "GET", "/api/v1/nodes", Some(&admin), &Value::Null);
    assert!(!nodes.text().contains(&a.node_id), "{nodes}");
    let target_path = format!("/api/v1/bins/{BIN}?node_id={}", a.node_id);
    let r = call(&s.m, "GET", &target_path, Some(&bearer(&old)), &Value::Null);
    assert_eq!(r.status, 401, "the secret went with the node: {r}");
    assert_eq!(
        progress(&s.m, BIN, &a.node_id).len(),
        reports_before,
        "reports stay"
    );
    // Deleting it again: 404, exit 1.
    let out = s.m.cli(&admin_file, &["node", "delete", &a.node_id]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // The host still runs its agent: it enrolls afresh, with no pin left.
    fs::remove_file(secret_path(&a)).unwrap();
    a.run().expect_code(0);
    assert_ne!(secret_of(&a), old);
    let view = call(&s.m, "GET", &node_path, Some(&admin), &Value::Null);
    assert_eq!(view.status, 200, "{view}");
    assert!(!view.text().contains("pinned"), "{view}");
}

/// `serve --forget-offline-after`: a node silent that long is deleted, with
/// an audit record; a node still keepaliving stays. Shorter than
/// `--offline-after` is refused.
#[test]
fn nodes_silent_past_forget_offline_after_are_deleted() {
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--offline-after=1s")
            .arg("--forget-offline-after=2s")
            .arg("--flush-interval=100ms"),
    );
    m.keepalive("gone", "x86_64", &[]).expect(200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = |id: &str| {
        m.admin_get("/api/v1/nodes")
            .expect(200)
            .text()
            .contains(&format!("\"{id}\""))
    };
    while listed("gone") {
        assert!(std::time::Instant::now() < deadline, "never forgotten");
        m.keepalive("alive", "x86_64", &[]).expect(200);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(listed("alive"), "a node that keeps calling stays");
    let audit = m.admin_get("/api/v1/audit").expect(200).text();
    assert!(
        audit.contains("/api/v1/nodes/gone: not seen for 2s (--forget-offline-after)"),
        "{audit}"
    );

    let dir = TempDir::new("forget-flags");
    let out = output_within(
        Command::new(manager_bin()).args([
            "serve",
            "--listen=127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
            "--offline-after=10m",
            "--forget-offline-after=5m",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shorter than --offline-after"),
        "{out:?}"
    );
}

#[test]
fn serving_off_loopback_needs_node_authentication_or_an_explicit_opt_out() {
    let dir = TempDir::new("open");
    let out = output_within(
        Command::new(manager_bin())
            .args(["serve", "--listen", "0.0.0.0:0", "--data"])
            .arg(dir.join("data"))
            .env("MANAGER_ADMIN_TOKEN", unique("admin-token-Xq7"))
            .env_remove("RUST_LOG"),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--node-enroll-token-file") && stderr.contains("--insecure-open-nodes"),
        "says why and what to do: {stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");

    // --insecure-open-nodes: it starts, and nodes need no secret.
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--listen")
            .arg("0.0.0.0:0")
            .arg("--insecure-open-nodes"),
    );
    let local = SocketAddr::from(([127, 0, 0, 1], m.addr.port()));
    assert!(m.addr.ip().is_unspecified(), "bound {}", m.addr);
    let r = call_at(
        local,
        "POST",
        "/api/v1/keepalive",
        None,
        &keepalive_body(&unique("node")),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(r.json().get("node_secret").is_none(), "{r}");
    assert!(m.log().contains("insecure-open-nodes"), "{}", m.log());
}
