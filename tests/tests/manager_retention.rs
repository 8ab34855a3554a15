//! Retention on the real manager: versions are deleted on demand (`DELETE
//! /api/v1/bins/{bin}/versions/{v}`, `manager-lite version delete`) and by
//! `serve --keep-versions N`, never while a release that is not over or a pin
//! needs them; an artifact file goes with the last version that refers to
//! it; `GET /api/v1/bins` and `/metrics` show the bytes stored; and kill -9
//! in the middle of uploads and deletions leaves every version with its file
//! and, after the start-up cleanup, no file without a version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{BinVersions, Version};
use binproxy_tests::{artifact_bytes, sha256_hex, try_request, Manager, ManagerOptions, Response};
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

const BIN: &str = "svc";

fn delete(m: &Manager, version: &str) -> Response {
    let auth = format!("Bearer {}", m.token);
    m.request(
        "DELETE",
        &format!("/api/v1/bins/{BIN}/versions/{version}"),
        &[("Authorization", &auth)],
        b"",
    )
}

fn upload(m: &Manager, version: &str, bytes: &[u8]) -> Version {
    m.upload(BIN, version, None, bytes).expect(201).parse()
}

fn versions(m: &Manager) -> BTreeSet<String> {
    let list: Vec<Version> = m
        .admin_get(&format!("/api/v1/bins/{BIN}/versions"))
        .expect(200)
        .parse();
    list.into_iter().map(|v| v.version).collect()
}

fn files(m: &Manager) -> BTreeSet<String> {
    fs::read_dir(m.data_dir.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn versions_in_use_are_kept_and_the_rest_deleted_with_their_files() {
    let m = Manager::new();
    let b1 = artifact_bytes("r1", 5000);
    let v1 = upload(&m, "1", &b1);
    m.release(BIN, "1").expect(201);
    let v2 = upload(&m, "2", &artifact_bytes("r2", 6000));
    m.release(BIN, "2").expect(201);
    upload(&m, "3", &artifact_bytes("r3", 7000));

    for (version, why) in [
        ("2", "target of release 2"),
        ("1", "rollback target of release 2"),
    ] {
        let r = delete(&m, version);
        r.expect_error(409);
        assert!(r.text().contains(why), "{version}: {r}");
    }
    m.keepalive("n1", "x86_64", &[]).expect(200);
    let auth = format!("Bearer {}", m.token);
    let pin = |method: &str, body: &[u8]| {
        m.request(
            method,
            &format!("/api/v1/nodes/n1/pins/{BIN}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };
    pin("PUT", br#"{"version":"3"}"#).expect(200);
    let r = delete(&m, "3");
    r.expect_error(409);
    assert!(r.text().contains("node n1 is pinned to it"), "{r}");
    pin("DELETE", b"").expect(200);

    // Unreferenced now: deleted through the CLI, with its file.
    let token_file = m.data_dir.join("cli.token");
    fs::write(&token_file, &m.token).unwrap();
    let out = m.cli(&token_file, &["version", "delete", BIN, "3"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("deleted {BIN} 3")));
    assert_eq!(versions(&m), set(&["1", "2"]));
    assert_eq!(files(&m), set(&[&v1.sha256sum, &v2.sha256sum]));
    let out = m.cli(&token_file, &["version", "delete", BIN, "3"]);
    assert_eq!(out.status.code(), Some(1), "unknown now: {out:?}");
    delete(&m, "3").expect_error(404);

    // Two versions of the same bytes share one file: it goes with the last.
    let same = artifact_bytes("same", 3000);
    let sha = upload(&m, "4", &same).sha256sum;
    upload(&m, "5", &same);
    delete(&m, "4").expect(200);
    assert!(files(&m).contains(&sha), "still needed by 5");
    assert_eq!(
        m.get(&format!("/api/v1/download/{sha}")).expect(200).body,
        same
    );
    delete(&m, "5").expect(200);
    assert!(!files(&m).contains(&sha));
    m.get(&format!("/api/v1/download/{sha}")).expect_error(404);

    // What is stored, in bytes.
    let bins: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    assert_eq!(bins[0].bytes, 5000 + 6000, "{bins:?}");
    let metrics = m.admin_get("/metrics").expect(200).text();
    assert!(
        metrics.contains("manager_data_bytes{part=\"artifacts\"} 11000"),
        "{metrics}"
    );
    assert!(metrics.contains("manager_data_bytes{part=\"database\"}"));
    // Deleting an old version after its release is superseded and no
    // release rolls back to it: release 3 of 2 makes 1 free.
    let b6 = artifact_bytes("r6", 100);
    upload(&m, "6", &b6);
    m.release(BIN, "6").expect(201);
    delete(&m, "1").expect(200);
    assert_eq!(
        m.get(&format!("/api/v1/download/{}", v1.sha256sum)).status,
        404
    );
}

#[test]
fn keep_versions_prunes_the_oldest_that_nothing_needs() {
    let m = Manager::new_with(ManagerOptions::default().arg("--keep-versions=2"));
    let mut shas = Vec::new();
    for i in 1..=5 {
        let v = format!("1.0.{i}");
        shas.push(upload(&m, &v, &artifact_bytes(&v, 1000 + i)).sha256sum);
        if i == 2 {
            m.release(BIN, &v).expect(201);
        }
    }
    // The newest two, and 1.0.2 which a release targets.
    assert_eq!(versions(&m), set(&["1.0.2", "1.0.4", "1.0.5"]));
    assert_eq!(files(&m), set(&[&shas[1], &shas[3], &shas[4]]));
    let audit = m.admin_get("/api/v1/audit").expect(200).text();
    for gone in ["1.0.1", "1.0.3"] {
        assert!(
            audit.contains(&format!(
                "/api/v1/bins/{BIN}/versions/{gone} (any arch): beyond --keep-versions 2"
            )),
            "{audit}"
        );
    }
}

/// Uploads (reusing bytes) and deletions run while the manager is killed:
/// after each restart every listed version downloads with its own hash,
/// and every file in `artifacts/` belongs to a version.
#[test]
fn kill_9_during_uploads_and_deletions_leaves_no_dangling_version_or_orphan() {
    let mut m = Manager::new();
    let pool: Vec<Vec<u8>> = (0..4)
        .map(|i| artifact_bytes(&format!("p{i}"), 200_000))
        .collect();
    for round in 0..3u64 {
        let (addr, auth) = (m.addr, format!("Bearer {}", m.token));
        let done = std::thread::scope(|s| {
            let worker = s.spawn(|| {
                let call = |method: &str, path: String, body: &[u8]| {
                    try_request(addr, method, &path, &[("Authorization", &auth)], body).is_ok()
                };
                // Bounded: at most 400 operations; ends at the first refused call.
                let mut done = 0;
                for i in 0..400 {
                    let version = format!("{round}.{i}");
                    let path = format!("/api/v1/bins/{BIN}/versions?version={version}");
                    if !call("POST", path, &pool[i % pool.len()]) {
                        break;
                    }
                    done += 1;
                    let old = format!(
                        "/api/v1/bins/{BIN}/versions/{round}.{}",
                        i.saturating_sub(1)
                    );
                    if i % 2 == 1 && !call("DELETE", old, b"") {
                        break;
                    }
                }
                done
            });
            std::thread::sleep(Duration::from_millis(300 + 200 * round));
            m.kill9();
            worker.join().unwrap()
        });
        assert!(
            done > 0,
            "round {round}: nothing was uploaded before the kill"
        );
        m.restart();
        let listed: Vec<Version> = m
            .admin_get(&format!("/api/v1/bins/{BIN}/versions"))
            .expect(200)
            .parse();
        let mut wanted = BTreeSet::new();
        for v in &listed {
            let got = m.get(&format!("/api/v1/download/{}", v.sha256sum));
            let body = &got.expect(200).body;
            assert_eq!(
                sha256_hex(body),
                v.sha256sum,
                "round {round}: {}",
                v.version
            );
            wanted.insert(v.sha256sum.clone());
        }
        assert_eq!(files(&m), wanted, "round {round}: files without a version");
    }
}
