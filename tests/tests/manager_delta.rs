//! The manager's forms on the real binary: after an upload it makes, in the
//! background, the zst form of the artifact and patches to it from the
//! newest `--delta-from` earlier builds; targets and version listings offer
//! them; the files download like artifacts and make exactly the version;
//! they survive a restart, go with their versions, and are not made for
//! small artifacts or past `--delta-from 0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{KeepaliveReply, Version};
use binproxy_tests::delta::{self, build, next_build};
use binproxy_tests::{sha256_hex, wait_until, Manager, ManagerOptions};
use std::fs::File;
use std::time::Duration;

const BIN: &str = "svc";

fn version(m: &Manager, v: &str) -> Version {
    delta::version(m, BIN, v)
}

fn with_forms(m: &Manager, v: &str) -> Version {
    delta::with_forms(m, BIN, v)
}

fn download(m: &Manager, url: &str) -> Vec<u8> {
    m.get(url).expect(200).body.clone()
}

/// Applies `patch` to `base` with the crate the agent uses.
fn apply(base: &[u8], patch: &[u8], size: u64) -> Vec<u8> {
    let dir = binproxy_tests::TempDir::new("delta-apply");
    let (b, p) = (dir.path().join("base"), dir.path().join("patch"));
    std::fs::write(&b, base).unwrap();
    std::fs::write(&p, patch).unwrap();
    let mut out = Vec::new();
    binproxy_delta::apply(
        &File::open(&b).unwrap(),
        &File::open(&p).unwrap(),
        &mut out,
        size,
    )
    .unwrap();
    out
}

#[test]
fn a_new_version_gets_a_zst_form_and_patches_that_make_it() {
    let m = Manager::new();
    let b1 = build(1, 600_000);
    let b2 = next_build(&b1, 3);
    let b3 = next_build(&b2, 5);
    m.upload(BIN, "1", None, &b1).expect(201);
    m.upload(BIN, "2", None, &b2).expect(201);
    let v2 = with_forms(&m, "2");
    let zst = v2.zst.clone().unwrap();
    assert!(
        zst.size * 4 < b2.len() as u64 * 3,
        "a build compresses: {} of {}",
        zst.size,
        b2.len()
    );
    assert_eq!(v2.deltas.len(), 1, "one earlier build: {:?}", v2.deltas);
    let d = &v2.deltas[0];
    assert_eq!(d.from, sha256_hex(&b1));
    assert!(
        d.size * 100 < zst.size * 70,
        "kept only when small: {} vs zst {}",
        d.size,
        zst.size
    );
    // The files download like artifacts and are what they say.
    let patch = download(&m, &d.url);
    assert_eq!(sha256_hex(&patch), d.sha256);
    assert_eq!(apply(&b1, &patch, b2.len() as u64), b2);
    let packed = download(&m, &zst.url);
    assert_eq!(sha256_hex(&packed), zst.sha256);
    let mut unpacked = Vec::new();
    binproxy_delta::zst::decompress(packed.as_slice(), &mut unpacked, b2.len() as u64).unwrap();
    assert_eq!(unpacked, b2);

    // v3 gets patches from the two newest earlier builds (the default 2).
    m.upload(BIN, "3", None, &b3).expect(201);
    let v3 = with_forms(&m, "3");
    let froms: Vec<&str> = v3.deltas.iter().map(|d| d.from.as_str()).collect();
    assert_eq!(froms, [sha256_hex(&b2), sha256_hex(&b1)], "newest first");
    for (d, base) in v3.deltas.iter().zip([&b2, &b1]) {
        assert_eq!(apply(base, &download(&m, &d.url), b3.len() as u64), b3);
    }

    // A node's target offers them.
    m.release(BIN, "3").expect(201);
    let reply: KeepaliveReply = m
        .keepalive("n1", "x86_64", &[(BIN, &sha256_hex(&b1))])
        .expect(200)
        .parse();
    let target = reply.targets[BIN].clone().unwrap();
    assert_eq!(target.deltas, v3.deltas);
    assert_eq!(target.zst, v3.zst);
}

#[test]
fn forms_survive_a_restart_and_go_with_their_versions() {
    let mut m = Manager::new();
    let b1 = build(7, 300_000);
    let b2 = next_build(&b1, 9);
    m.upload(BIN, "1", None, &b1).expect(201);
    m.upload(BIN, "2", None, &b2).expect(201);
    let v2 = with_forms(&m, "2");
    let patch_url = v2.deltas[0].url.clone();
    m.restart();
    assert_eq!(
        version(&m, "2").deltas,
        v2.deltas,
        "kept, not cleaned as orphans"
    );
    download(&m, &patch_url);

    // Deleting the base drops the patch from it (and its file).
    let auth = format!("Bearer {}", m.token);
    m.request(
        "DELETE",
        &format!("/api/v1/bins/{BIN}/versions/1"),
        &[("Authorization", &auth)],
        b"",
    )
    .expect(200);
    let after = version(&m, "2");
    assert!(after.deltas.is_empty(), "{:?}", after.deltas);
    assert!(after.zst.is_some());
    m.get(&patch_url).expect(404);
    // Deleting the version drops its zst form.
    let zst_url = after.zst.unwrap().url;
    m.request(
        "DELETE",
        &format!("/api/v1/bins/{BIN}/versions/2"),
        &[("Authorization", &auth)],
        b"",
    )
    .expect(200);
    m.get(&zst_url).expect(404);
    let left: Vec<_> = std::fs::read_dir(m.data_dir.join("artifacts"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no file left: {left:?}");
}

#[test]
fn delta_from_zero_makes_no_patches_and_small_artifacts_no_forms() {
    let m = Manager::new_with(ManagerOptions::default().arg("--delta-from").arg("0"));
    let b1 = build(11, 200_000);
    m.upload(BIN, "1", None, &b1).expect(201);
    m.upload(BIN, "2", None, &next_build(&b1, 2)).expect(201);
    let v2 = with_forms(&m, "2");
    assert!(v2.deltas.is_empty());
    // An artifact under 64 KiB: forms are recorded as made, and empty.
    m.upload(BIN, "3", None, &build(3, 10_000)).expect(201);
    wait_until("forms of 3 looked at", Duration::from_secs(60), || {
        m.admin_get("/metrics")
            .text()
            .contains("manager_delta_versions_total 3")
    });
    let v3 = version(&m, "3");
    assert!(v3.zst.is_none() && v3.deltas.is_empty());
}

#[test]
fn mirror_sync_copies_the_forms_and_offers_them_in_bins_files() {
    let m = Manager::new();
    let b1 = build(21, 400_000);
    let b2 = next_build(&b1, 4);
    m.upload(BIN, "1", None, &b1).expect(201);
    m.upload(BIN, "2", None, &b2).expect(201);
    let v2 = with_forms(&m, "2");
    m.release(BIN, "2").expect(201);
    let dir = binproxy_tests::TempDir::new("delta-mirror");
    let tree = dir.path().join("mirror");
    let token = dir.path().join("admin.token");
    std::fs::write(&token, &m.token).unwrap();
    let mut cmd = binproxy_tests::mirror::sync_command(&m.url, &token, &tree, &[]);
    let out = binproxy_tests::output_within(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin: binproxy_protocol::mirror::MirrorBin =
        serde_json::from_slice(&std::fs::read(tree.join("bins/svc.json")).unwrap()).unwrap();
    let target = bin.target_for("x86_64").unwrap();
    let d = &target.deltas[0];
    assert_eq!(
        (d.from.as_str(), d.url.as_str()),
        (
            v2.deltas[0].from.as_str(),
            format!("artifacts/{}", d.sha256).as_str()
        )
    );
    let z = target.zst.as_ref().unwrap();
    assert_eq!(z.url, format!("artifacts/{}", z.sha256));
    for sha in [&d.sha256, &z.sha256] {
        let bytes = std::fs::read(tree.join("artifacts").join(sha)).unwrap();
        assert_eq!(&sha256_hex(&bytes), sha);
    }
    assert_eq!(
        apply(
            &b1,
            &std::fs::read(tree.join(&d.url)).unwrap(),
            b2.len() as u64
        ),
        b2
    );
}

#[test]
fn reports_count_the_bytes_each_node_downloaded_once_per_release() {
    let m = Manager::new();
    let b1 = build(31, 100_000);
    let b2 = next_build(&b1, 6);
    m.upload(BIN, "1", None, &b1).expect(201);
    m.upload(BIN, "2", None, &b2).expect(201);
    let r: binproxy_protocol::Release = m.release(BIN, "2").expect(201).parse();
    m.keepalive("n1", "x86_64", &[(BIN, &sha256_hex(&b1))])
        .expect(200);
    let report = serde_json::json!({
        "node_id": "n1", "targetHash": sha256_hex(&b2), "fromHash": sha256_hex(&b1),
        "status": "success", "processingTime": 5, "bytes": 4_000, "method": "delta",
    });
    for _ in 0..2 {
        m.post_json(&format!("/api/v1/bins/{BIN}/progress"), &report)
            .expect(201);
    }
    let records: Vec<binproxy_protocol::ProgressRecord> = m
        .admin_get(&format!("/api/v1/bins/{BIN}/progress"))
        .expect(200)
        .parse();
    assert!(records
        .iter()
        .all(|p| p.bytes == Some(4_000) && p.method == Some(binproxy_protocol::Method::Delta)));
    let metrics = m.admin_get("/metrics").text();
    assert!(
        metrics.contains("binproxy_update_bytes_total{bin=\"svc\",method=\"delta\"} 8000"),
        "{metrics}"
    );
    // The release counts each node's first success only.
    wait_until(
        "the release counts the bytes",
        Duration::from_secs(30),
        || {
            let now: binproxy_protocol::Release = m
                .admin_get(&format!("/api/v1/releases/{}", r.id))
                .expect(200)
                .parse();
            now.counts.bytes_downloaded == 4_000 && now.counts.bytes_full == b2.len() as u64
        },
    );
}
