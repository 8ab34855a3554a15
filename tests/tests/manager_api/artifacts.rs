//! Artifacts: the target a node gets (`GET /api/v1/bins/{bin}`, per arch,
//! with its ETag), downloads (by hash and by name, ranges, HEAD) and uploads
//! with their version listings.

use binproxy_protocol::{download_path, BinVersions, KeepaliveReply, Target, Version};
use binproxy_tests::agent::publish;
use binproxy_tests::api::{register, target};
use binproxy_tests::{artifact_bytes, is_rfc3339, sha256_hex, Manager, ManagerOptions};

// ---------------------------------------------------------------------------
// GET /api/v1/bins/{bin}

#[test]
fn target_is_404_before_release_and_then_downloads_exact_bytes() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    target(&m, "tool", "n1").expect_error(404);

    // Uploaded but not released: still no target.
    let bytes = artifact_bytes("target-test", 4096 + 17);
    m.upload("tool", "2.1.0", None, &bytes).expect(201);
    target(&m, "tool", "n1").expect_error(404);

    m.release("tool", "2.1.0").expect(201);
    let r = target(&m, "tool", "n1");
    let t: Target = r.expect(200).parse();
    assert_eq!(t.bin_name, "tool");
    assert_eq!(t.version, "2.1.0");
    assert_eq!(t.sha256sum, sha256_hex(&bytes));
    assert_eq!(t.size, bytes.len() as u64);
    assert_eq!(t.url, download_path(&t.sha256sum));

    let d = m.get(&t.url);
    d.expect(200);
    assert_eq!(d.body, bytes, "downloaded bytes differ");
    assert_eq!(sha256_hex(&d.body), t.sha256sum);

    // Another bin of the same node is still 404.
    target(&m, "other", "n1").expect_error(404);
}

#[test]
fn target_picks_the_artifact_of_the_nodes_arch() {
    let m = Manager::new();
    let x86 = artifact_bytes("x86", 500);
    let arm = artifact_bytes("arm", 600);
    let any = artifact_bytes("any", 700);
    let vx: Version = m
        .upload("agent", "1.0", Some("x86_64"), &x86)
        .expect(201)
        .parse();
    assert_eq!(vx.arch.as_deref(), Some("x86_64"));
    let va: Version = m
        .upload("agent", "1.0", Some("aarch64"), &arm)
        .expect(201)
        .parse();
    assert_eq!(va.arch.as_deref(), Some("aarch64"));
    let vn: Version = m.upload("agent", "2.0", None, &any).expect(201).parse();
    assert_eq!(vn.arch, None);
    m.release("agent", "1.0").expect(201);

    register(&m, "n-x86", "x86_64");
    register(&m, "n-arm", "aarch64");
    register(&m, "n-rv", "riscv64");

    let t: Target = target(&m, "agent", "n-x86").expect(200).parse();
    assert_eq!((t.sha256sum.as_str(), t.size), (vx.sha256sum.as_str(), 500));
    let t: Target = target(&m, "agent", "n-arm").expect(200).parse();
    assert_eq!((t.sha256sum.as_str(), t.size), (va.sha256sum.as_str(), 600));
    // The `arch` query wins over the registered arch.
    let sha_for = |query: &str| {
        m.get(&format!("/api/v1/bins/agent?{query}"))
            .expect(200)
            .parse::<Target>()
            .sha256sum
    };
    assert_eq!(sha_for("node_id=n-x86&arch=aarch64"), va.sha256sum);
    assert_eq!(sha_for("node_id=n-arm&arch=x86_64"), vx.sha256sum);
    // No artifact for riscv64 in 1.0.
    target(&m, "agent", "n-rv").expect_error(404);
    m.get("/api/v1/bins/agent?node_id=n-x86&arch=riscv64")
        .expect_error(404);

    // Each download is the bytes of its arch.
    assert_eq!(m.get(&download_path(&vx.sha256sum)).expect(200).body, x86);
    assert_eq!(m.get(&download_path(&va.sha256sum)).expect(200).body, arm);

    // 2.0 has one arch-less artifact: it serves every arch.
    m.release("agent", "2.0").expect(201);
    for node in ["n-x86", "n-arm", "n-rv"] {
        let t: Target = target(&m, "agent", node).expect(200).parse();
        assert_eq!(
            (t.version.as_str(), t.sha256sum.as_str()),
            ("2.0", vn.sha256sum.as_str()),
            "{node}"
        );
    }
    assert_eq!(sha_for("node_id=n-x86&arch=mips"), vn.sha256sum);

    // The keepalive reply agrees with GET /bins/{bin}.
    let reply: KeepaliveReply = m
        .keepalive("n-rv", "riscv64", &[("agent", "")])
        .expect(200)
        .parse();
    assert_eq!(
        reply.targets["agent"]
            .as_ref()
            .map(|t| t.sha256sum.as_str()),
        Some(vn.sha256sum.as_str())
    );
}

#[test]
fn target_etag_and_if_none_match() {
    let m = Manager::new();
    register(&m, "n1", "x86_64");
    publish(&m, "tool", "1.0", &artifact_bytes("etag-1", 100));
    let r = target(&m, "tool", "n1");
    r.expect(200);
    let etag = r.header("etag").expect("ETag header").to_string();
    assert!(!etag.is_empty());

    let r304 = m.get_with("/api/v1/bins/tool?node_id=n1", &[("If-None-Match", &etag)]);
    r304.expect(304);
    assert!(r304.body.is_empty(), "{r304}");

    // A different tag gets the full answer.
    let r = m.get_with(
        "/api/v1/bins/tool?node_id=n1",
        &[("If-None-Match", "\"other\"")],
    );
    r.expect(200);

    // A new release changes the target, so the old tag no longer matches.
    publish(&m, "tool", "1.1", &artifact_bytes("etag-2", 100));
    let r = m.get_with("/api/v1/bins/tool?node_id=n1", &[("If-None-Match", &etag)]);
    let t: Target = r.expect(200).parse();
    assert_eq!(t.version, "1.1");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
}

// ---------------------------------------------------------------------------
// downloads

#[test]
fn download_by_sha_and_by_bin_name() {
    let m = Manager::new();
    let bytes = artifact_bytes("dl", 1000);
    let sha = publish(&m, "dl", "1.0", &bytes);
    for path in [download_path(&sha), "/api/v1/download/dl".to_string()] {
        let r = m.get(&path);
        r.expect(200);
        assert_eq!(r.body, bytes, "{path}");
        assert_eq!(r.header("content-length"), Some("1000"), "{path}: {r}");
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{sha}\"").as_str()),
            "{path}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
    }
    // After a new release the bin name serves the new version; the sha the old one.
    let bytes2 = artifact_bytes("dl2", 1200);
    let sha2 = publish(&m, "dl", "2.0", &bytes2);
    assert_eq!(m.get("/api/v1/download/dl").expect(200).body, bytes2);
    assert_eq!(m.get(&download_path(&sha)).expect(200).body, bytes);
    assert_eq!(m.get(&download_path(&sha2)).expect(200).body, bytes2);
}

#[test]
fn large_downloads_carry_content_length() {
    // An agent wants the length (to resume, and to refuse more bytes than
    // announced), and HEAD must give it too.
    let m = Manager::new();
    let bytes = artifact_bytes("big", 3 << 20);
    let sha = publish(&m, "big", "1.0", &bytes);
    let r = m.get(&download_path(&sha));
    assert_eq!(r.body.len(), bytes.len());
    assert_eq!(r.header("content-length"), Some("3145728"), "{r}");
    assert_eq!(r.header("transfer-encoding"), None, "{r}");
    let head = m.request("HEAD", &download_path(&sha), &[], b"");
    assert_eq!(head.header("content-length"), Some("3145728"), "{head}");
    let part = m.get_with(&download_path(&sha), &[("Range", "bytes=1000-")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-length"), Some("3144728"), "{part}");
}

#[test]
fn download_ranges() {
    let m = Manager::new();
    let bytes = artifact_bytes("range", 100);
    let sha = publish(&m, "rng", "1.0", &bytes);
    let path = download_path(&sha);
    let range = |spec: &str| m.get_with(&path, &[("Range", spec)]);

    let r = range("bytes=10-19");
    r.expect(206);
    assert_eq!(r.body, &bytes[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100"), "{r}");
    assert_eq!(r.header("content-length"), Some("10"), "{r}");

    let r = range("bytes=-5");
    r.expect(206);
    assert_eq!(r.body, &bytes[95..]);
    assert_eq!(r.header("content-range"), Some("bytes 95-99/100"), "{r}");

    let r = range("bytes=90-");
    r.expect(206);
    assert_eq!(r.body, &bytes[90..]);
    assert_eq!(r.header("content-range"), Some("bytes 90-99/100"), "{r}");

    let r = range("bytes=0-0");
    r.expect(206);
    assert_eq!(r.body, &bytes[..1]);

    // An end past the last byte is clamped (RFC 9110 14.1.2).
    let r = range("bytes=95-500");
    r.expect(206);
    assert_eq!(r.body, &bytes[95..]);
    assert_eq!(r.header("content-range"), Some("bytes 95-99/100"), "{r}");

    for spec in ["bytes=100-", "bytes=200-300", "bytes=100-100"] {
        let r = range(spec);
        r.expect(416);
    }

    // Range by bin name too.
    let r = m.get_with("/api/v1/download/rng", &[("Range", "bytes=10-19")]);
    r.expect(206);
    assert_eq!(r.body, &bytes[10..20]);
}

#[test]
fn download_unknown_and_head() {
    let m = Manager::new();
    let bytes = artifact_bytes("head", 321);
    let sha = publish(&m, "hd", "1.0", &bytes);

    m.get(&download_path(&"0".repeat(64))).expect_error(404);
    m.get("/api/v1/download/no-such-bin").expect_error(404);

    let r = m.request("HEAD", &download_path(&sha), &[], b"");
    r.expect(200);
    assert!(r.body.is_empty(), "HEAD has no body: {r}");
    assert_eq!(r.header("content-length"), Some("321"), "{r}");
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let r = m.request("HEAD", "/api/v1/download/hd", &[], b"");
    r.expect(200);
    assert!(r.body.is_empty());
    let r = m.request("HEAD", &download_path(&"1".repeat(64)), &[], b"");
    r.expect(404);
}

// ---------------------------------------------------------------------------
// uploads and versions

#[test]
fn upload_is_idempotent_and_refuses_other_bytes() {
    let m = Manager::new();
    let bytes = artifact_bytes("up", 2048);
    let r = m.upload("svc", "1.0.0", None, &bytes);
    let v: Version = r.expect(201).parse();
    assert_eq!(v.bin_name, "svc");
    assert_eq!(v.version, "1.0.0");
    assert_eq!(v.arch, None);
    assert_eq!(v.sha256sum, sha256_hex(&bytes));
    assert_eq!(v.size, 2048);
    assert!(is_rfc3339(&v.created_at), "{}", v.created_at);
    assert!(
        m.data_dir.join("artifacts").join(&v.sha256sum).is_file(),
        "artifact stored by sha"
    );

    let again: Version = m.upload("svc", "1.0.0", None, &bytes).expect(200).parse();
    assert_eq!(again.sha256sum, v.sha256sum);

    m.upload("svc", "1.0.0", None, &artifact_bytes("other", 2048))
        .expect_error(409);
    // The same version for an arch is another artifact.
    m.upload(
        "svc",
        "1.0.0",
        Some("x86_64"),
        &artifact_bytes("other", 2048),
    )
    .expect(201);

    let list: Vec<Version> = m.admin_get("/api/v1/bins/svc/versions").expect(200).parse();
    assert_eq!(list.len(), 2, "{list:?}");
    let plain = list
        .iter()
        .find(|x| x.arch.is_none())
        .expect("arch-less version listed");
    assert_eq!(
        plain.sha256sum, v.sha256sum,
        "the 409 must not replace the stored artifact"
    );
    assert_eq!(m.get(&download_path(&v.sha256sum)).expect(200).body, bytes);
}

#[test]
fn upload_over_the_size_limit_is_413_and_stores_nothing() {
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--max-artifact-size")
            .arg("1000"),
    );
    let ok = artifact_bytes("limit-ok", 1000);
    m.upload("lim", "1.0", None, &ok).expect(201);
    let big = artifact_bytes("limit-big", 1001);
    m.upload("lim", "2.0", None, &big).expect_error(413);
    let bigger = artifact_bytes("limit-bigger", 50_000);
    m.upload("lim", "3.0", None, &bigger).expect_error(413);

    let list: Vec<Version> = m.admin_get("/api/v1/bins/lim/versions").expect(200).parse();
    assert_eq!(
        list.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(),
        ["1.0"]
    );
    assert!(!m.data_dir.join("artifacts").join(sha256_hex(&big)).exists());
    assert!(!m
        .data_dir
        .join("artifacts")
        .join(sha256_hex(&bigger))
        .exists());
    m.get(&download_path(&sha256_hex(&big))).expect_error(404);
    m.release("lim", "2.0").expect_error(404);
}

#[test]
fn upload_without_version_is_400() {
    let m = Manager::new();
    let auth = format!("Bearer {}", m.token);
    for path in [
        "/api/v1/bins/tool/versions",
        "/api/v1/bins/tool/versions?version=",
        "/api/v1/bins/tool/versions?arch=x86_64",
        "/api/v1/bins/tool/versions?vers=1.0",
    ] {
        m.request("POST", path, &[("Authorization", &auth)], b"bytes")
            .expect_error(400);
    }
    m.admin_get("/api/v1/bins/tool/versions").expect_error(404);
}

#[test]
fn version_listings() {
    let m = Manager::new();
    let none: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    assert!(none.is_empty());
    m.admin_get("/api/v1/bins/nothing/versions")
        .expect_error(404);

    let a1: Version = m.upload("alpha", "1.0", None, b"a1").expect(201).parse();
    let a2: Version = m
        .upload("alpha", "2.0", Some("aarch64"), b"a2")
        .expect(201)
        .parse();
    let b1: Version = m.upload("beta", "0.1", None, b"b1").expect(201).parse();

    let mut bins: Vec<BinVersions> = m.admin_get("/api/v1/bins").expect(200).parse();
    bins.sort_by(|x, y| x.bin_name.cmp(&y.bin_name));
    let names: Vec<&str> = bins.iter().map(|b| b.bin_name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let mut alpha: Vec<Version> = bins[0].versions.clone();
    alpha.sort_by(|x, y| x.version.cmp(&y.version));
    assert_eq!(alpha, vec![a1.clone(), a2.clone()]);
    assert_eq!(bins[1].versions, vec![b1]);

    let mut list: Vec<Version> = m
        .admin_get("/api/v1/bins/alpha/versions")
        .expect(200)
        .parse();
    list.sort_by(|x, y| x.version.cmp(&y.version));
    assert_eq!(list, vec![a1, a2]);
}
