//! Who may call what: the admin token (from the environment, a file or
//! generated), node endpoints without one, and routing (404s, 405s with
//! `Allow`).

use binproxy_protocol::{download_path, Release};
use binproxy_tests::agent::publish;
use binproxy_tests::api::{assert_stored, progress_body, target};
use binproxy_tests::{artifact_bytes, unique, Manager, ManagerOptions, TempDir, TokenSource};
use serde_json::json;

// ---------------------------------------------------------------------------
// authentication

#[test]
fn admin_endpoints_require_the_token() {
    let m = Manager::new();
    // Something to look at, made with the token.
    m.upload("tool", "1.0", None, b"one").expect(201);
    let rel: Release = m.release("tool", "1.0").expect(201).parse();

    let release_body = serde_json::to_vec(&json!({"bin_name": "tool", "version": "1.0"})).unwrap();
    let endpoints: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "POST",
            "/api/v1/bins/tool/versions?version=2.0".into(),
            b"two".to_vec(),
        ),
        ("GET", "/api/v1/bins".into(), Vec::new()),
        ("GET", "/api/v1/bins/tool/versions".into(), Vec::new()),
        ("POST", "/api/v1/releases".into(), release_body),
        ("GET", "/api/v1/releases".into(), Vec::new()),
        ("GET", "/api/v1/releases?bin_name=tool".into(), Vec::new()),
        ("GET", format!("/api/v1/releases/{}", rel.id), Vec::new()),
        ("GET", "/api/v1/nodes".into(), Vec::new()),
        ("GET", "/api/v1/bins/tool/progress".into(), Vec::new()),
    ];
    let wrong = format!("Bearer {}x", m.token);
    let prefix = format!("Bearer {}", &m.token[..m.token.len() - 1]);
    let basic = format!("Basic {}", m.token);
    let bare = m.token.clone();
    for (method, path, body) in &endpoints {
        let r = m.request(method, path, &[], body);
        r.expect_error(401);
        for auth in [
            wrong.as_str(),
            prefix.as_str(),
            basic.as_str(),
            bare.as_str(),
            "Bearer ",
            "Bearer",
        ] {
            let r = m.request(method, path, &[("Authorization", auth)], body);
            assert_eq!(
                r.status, 401,
                "{method} {path} with Authorization: {auth:?}: {r}"
            );
        }
    }
    // The refused writes changed nothing.
    assert_stored(&m, "tool", 1, 1);
    // And every endpoint answers with the right token.
    let auth = format!("Bearer {}", m.token);
    for (method, path, body) in &endpoints {
        let r = m.request(method, path, &[("Authorization", &auth)], body);
        assert!(r.status < 300, "{method} {path} with the token: {r}");
    }
}

#[test]
fn node_endpoints_need_no_token() {
    let m = Manager::new();
    let bytes = artifact_bytes("open", 64);
    let sha = publish(&m, "tool", "1.0", &bytes);
    m.get("/health").expect(200);
    m.keepalive("n1", "x86_64", &[("tool", "")]).expect(200);
    m.get("/api/v1/keepalive?node_id=n1").expect(200);
    target(&m, "tool", "n1").expect(200);
    m.post_json(
        "/api/v1/bins/tool",
        &json!({"node_id": "n1", "sha256sum": sha}),
    )
    .expect(200);
    m.post_json(
        "/api/v1/bins/tool/progress",
        &progress_body("n1", &sha, "success"),
    )
    .expect(201);
    assert_eq!(m.get(&download_path(&sha)).expect(200).body, bytes);
    assert_eq!(m.get("/api/v1/download/tool").expect(200).body, bytes);
}

#[test]
fn generated_admin_token_is_private_and_works() {
    let opts = ManagerOptions {
        token: TokenSource::Generated,
        env: vec![("RUST_LOG".into(), "debug".into())],
        ..ManagerOptions::default()
    };
    let mut m = Manager::new_with(opts);
    let path = m.data_dir.join("admin.token");
    let meta = std::fs::metadata(&path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} mode",
            path.display()
        );
    }
    assert!(
        m.token.len() >= 16,
        "a generated token should be long: {:?}",
        m.token
    );
    assert!(
        m.token.chars().all(|c| c.is_ascii_graphic()),
        "{:?}",
        m.token
    );
    m.admin_get("/api/v1/nodes").expect(200);
    let wrong = "Bearer not-the-token";
    m.request("GET", "/api/v1/nodes", &[("Authorization", wrong)], b"")
        .expect_error(401);

    // A restart keeps the same token.
    let before = m.token.clone();
    m.restart();
    assert_eq!(m.token, before);
    m.admin_get("/api/v1/nodes").expect(200);
    m.sigterm();
    assert_debug_log_without(&m, &before, "the generated token");
}

/// Asserts the manager logged at debug level (`RUST_LOG=debug`) and that
/// `secret` (`what`) is nowhere in its log.
#[track_caller]
fn assert_debug_log_without(m: &Manager, secret: &str, what: &str) {
    let log = m.log();
    assert!(log.contains("listening on http://"), "{log}");
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug was not honoured:\n{log}"
    );
    assert!(!log.contains(secret), "{what} appears in the log:\n{log}");
}

#[test]
fn admin_token_file_wins_over_env() {
    let tmp = TempDir::new("tokenfile");
    let file = tmp.join("token");
    let from_file = unique("file-token");
    std::fs::write(&file, format!("{from_file}\n")).unwrap();
    let from_env = unique("env-token");
    let opts = ManagerOptions {
        token: TokenSource::File {
            path: file,
            token: from_file.clone(),
        },
        env: vec![("MANAGER_ADMIN_TOKEN".into(), from_env.clone())],
        ..ManagerOptions::default()
    };
    let m = Manager::start(&tmp.join("data"), opts);
    m.admin_get("/api/v1/nodes").expect(200);
    let env_auth = format!("Bearer {from_env}");
    m.request("GET", "/api/v1/nodes", &[("Authorization", &env_auth)], b"")
        .expect_error(401);
    assert!(
        !m.data_dir.join("admin.token").exists(),
        "no token is generated when one is given"
    );
}

#[test]
fn env_token_works_and_is_never_logged() {
    let opts = ManagerOptions::default().env("RUST_LOG", "debug");
    let mut m = Manager::new_with(opts);
    let token = m.token.clone();
    // Requests of every kind, authorised and not.
    m.upload("tool", "1.0", None, b"bytes").expect(201);
    m.release("tool", "1.0").expect(201);
    m.admin_get("/api/v1/nodes").expect(200);
    m.admin_get("/api/v1/releases").expect(200);
    let almost = format!("Bearer {token}-wrong");
    m.request("GET", "/api/v1/nodes", &[("Authorization", &almost)], b"")
        .expect_error(401);
    m.keepalive("n1", "x86_64", &[("tool", "")]).expect(200);
    assert!(
        !m.data_dir.join("admin.token").exists(),
        "no token is generated when env gives one"
    );
    let status = m.sigterm();
    assert!(status.success(), "{status}");
    assert_debug_log_without(&m, &token, "the admin token");
}

// ---------------------------------------------------------------------------
// routing

#[test]
fn unknown_routes_are_404() {
    let m = Manager::new();
    for path in [
        "/nope",
        "/ui",
        "/ui/nope",
        "/ui/app.js/x",
        "/api",
        "/api/v1",
        "/api/v1/nope",
        "/api/v2/bins",
        "/api/v1/bins/tool/nope",
        "/api/v1/bins/tool/versions/1.0/extra",
        "/api/v1/releases/1/extra",
        "/healthz",
    ] {
        let r = m.admin_get(path);
        assert_eq!(r.status, 404, "GET {path}: {r}");
        r.expect_error(404);
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let m = Manager::new();
    // With the token, so that a 401 cannot stand in for the 405.
    let auth = format!("Bearer {}", m.token);
    for (method, path, allowed) in [
        ("DELETE", "/health", "GET"),
        ("POST", "/health", "GET"),
        ("POST", "/", "GET"),
        ("PUT", "/ui/app.js", "GET"),
        ("PUT", "/api/v1/keepalive", "POST"),
        ("DELETE", "/api/v1/keepalive", "GET"),
        ("PUT", "/api/v1/releases", "POST"),
        ("DELETE", "/api/v1/releases", "GET"),
        ("PATCH", "/api/v1/nodes", "GET"),
        ("PUT", "/api/v1/bins/tool/versions", "POST"),
        ("POST", "/api/v1/download/tool", "GET"),
    ] {
        let r = m.request(method, path, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 405, "{method} {path}: {r}");
        r.expect_error(405);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header: {r}"));
        assert!(
            allow.contains(allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
        assert!(
            !allow.contains(method),
            "{method} {path}: Allow {allow:?} lists the refused method"
        );
    }
}
