//! A real nginx cache in front of the real manager, configured with the
//! README's recipe as written (section "A cache in front of the manager";
//! only its ports and cache path are swapped for this test's): artifacts
//! leave the manager once however many agents fetch them, a resumed
//! download is served from the cache, and everything else passes through
//! to the manager uncached. The manager's own `/metrics` counts what
//! reached it. nginx comes from `tests/run.sh`, which installs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{publish, Agent};
use binproxy_tests::http::request;
use binproxy_tests::metrics::metric;
use binproxy_tests::nginx::Nginx;
use binproxy_tests::values::{artifact_bytes, sha256_hex};
use binproxy_tests::{Manager, ManagerOptions};
use serde_json::json;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;

const BIN: &str = "cached";

/// The README's recipe in front of `manager_url`.
fn cache_in_front(manager_url: &str) -> Nginx {
    Nginx::start(|dir, addr| readme_block(dir, addr, manager_url))
}

/// The README's nginx block with this test's ports and paths.
fn readme_block(dir: &Path, listen: SocketAddr, manager_url: &str) -> String {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let section = readme
        .find("### A cache in front of the manager")
        .expect("the README's cache section");
    let start = section
        + readme[section..]
            .find("```nginx\n")
            .expect("its nginx block")
        + 9;
    let end = start + readme[start..].find("```").expect("the block's end");
    let block = &readme[start..end];
    for placeholder in [
        "/var/cache/nginx/binproxy",
        "listen 8080;",
        "http://127.0.0.1:38012",
    ] {
        assert!(block.contains(placeholder), "{placeholder} not in {block}");
    }
    block
        .replace(
            "/var/cache/nginx/binproxy",
            &format!("{}cache", dir.display()),
        )
        .replace("listen 8080;", &format!("listen {listen};"))
        .replace("http://127.0.0.1:38012", manager_url.trim_end_matches('/'))
}

/// Requests of `route` the manager answered (any status).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn answered(m: &Manager, route: &str) -> u64 {
    // A counter: a whole number, well inside f64's exact range.
    metric(m, "manager_http_requests_total", &[("route", route)]) as u64
}

#[test]
fn a_cache_in_front_keeps_artifacts_once_and_passes_the_rest_through() {
    let m = Manager::new();
    let bytes = artifact_bytes("cached", 1 << 20);
    let sha = publish(&m, BIN, "1.0.0", &bytes);
    let cache = cache_in_front(&m.url);
    let path = format!("/api/v1/download/{sha}");
    let before = answered(&m, "Download");

    // 100 downloads, 10 at a time: the manager sends the bytes once.
    let statuses: Vec<String> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| {
                            let r = cache.get(&path, &[]);
                            assert_eq!(r.status, 200, "{}", cache.log());
                            assert_eq!(sha256_hex(&r.body), sha, "other bytes from the cache");
                            r.header("x-cache-status").unwrap_or("none").to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert_eq!(statuses.len(), 100);
    assert_eq!(
        answered(&m, "Download") - before,
        1,
        "the manager served the artifact more than once; cache statuses: {statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == "HIT"), "{statuses:?}");

    // A resumed download, as an agent's after a cut: the rest, from the cache.
    let r = cache.get(&path, &[("Range", "bytes=1000-")]);
    assert_eq!(r.status, 206, "{}", cache.log());
    assert_eq!(r.body, bytes[1000..]);
    assert_eq!(r.header("x-cache-status"), Some("HIT"));
    assert_eq!(answered(&m, "Download") - before, 1);

    // Keepalives and manifests reach the manager every time.
    let (keepalives, manifests) = (answered(&m, "Keepalive"), answered(&m, "Bin"));
    let keepalive = serde_json::to_vec(&json!({
        "node_id": "through-cache", "cpu_arch": "x86_64", "os": "linux",
        "bins": {BIN: ""},
    }))
    .unwrap();
    for _ in 0..3 {
        let r = request(
            cache.addr,
            "POST",
            "/api/v1/keepalive",
            &[("Content-Type", "application/json")],
            &keepalive,
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-cache-status"), None);
        let r = cache.get(&format!("/api/v1/bins/{BIN}?node_id=through-cache"), &[]);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains(&sha));
    }
    assert_eq!(answered(&m, "Keepalive") - keepalives, 3);
    assert_eq!(answered(&m, "Bin") - manifests, 3);

    // By name (the old agents' route) the bytes change with the next
    // release: no-cache, so each request reaches the manager.
    for _ in 0..2 {
        let r = cache.get(&format!("/api/v1/download/{BIN}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(sha256_hex(&r.body), sha);
    }
    assert_eq!(answered(&m, "Download") - before, 3);

    // An agent whose manager_url is the cache updates through it, and its
    // download is one the manager does not see.
    let a = Agent::new(BIN);
    a.configure(&cache.url, &json!({}));
    a.run().expect_code(0);
    a.assert_live(&bytes, "updated through the cache");
    assert_eq!(answered(&m, "Download") - before, 3, "{}", m.log());
}

/// `serve --artifact-url-base`: targets send agents to another server for
/// the bytes (here nginx serving plain files named by sha256, as a CDN or a
/// bucket would); the agent verifies them as from the manager, so a wrong
/// file there is refused and the host keeps what runs.
#[test]
fn targets_point_at_the_artifact_url_base_and_agents_verify_what_it_serves() {
    let mirror = Nginx::files();
    fs::create_dir(mirror.files_dir().join("artifacts")).unwrap();
    let base = format!("{}/artifacts/", mirror.url);
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--artifact-url-base")
            .arg(&base),
    );
    let v1 = artifact_bytes("url-base-1", 300_000);
    let sha1 = publish(&m, BIN, "1.0.0", &v1);
    fs::write(mirror.files_dir().join(format!("artifacts/{sha1}")), &v1).unwrap();

    let r = m.get(&format!("/api/v1/bins/{BIN}?node_id=n1"));
    let target: binproxy_protocol::Target = r.expect(200).parse();
    assert_eq!(target.url, format!("{base}{sha1}"));
    let a = Agent::new(BIN);
    a.configure(&m.url, &json!({}));
    a.run().expect_code(0);
    a.assert_live(&v1, "v1 from the artifact URL base");
    assert_eq!(answered(&m, "Download"), 0, "the manager sent the bytes");
    // The manager's own route still serves everyone else.
    let r = m.get(&format!("/api/v1/download/{sha1}"));
    assert_eq!(sha256_hex(&r.expect(200).body), sha1);

    // Other bytes under the next version's name: refused, v1 stays.
    let v2 = artifact_bytes("url-base-2", 300_000);
    let sha2 = publish(&m, BIN, "2.0.0", &v2);
    fs::write(
        mirror.files_dir().join(format!("artifacts/{sha2}")),
        artifact_bytes("not-v2", 300_000),
    )
    .unwrap();
    // Exit 1: the download was refused (its sha256 is not the target's).
    a.run().expect_code(1);
    a.assert_live(&v1, "v1 kept after the wrong bytes");
}
