//! Legacy signatures, downgrades (refused, or allowed), key rotation, no
//! `trusted_keys` at all, and the minisign helper itself.

use binproxy_tests::agent::{good_script, Agent};
use binproxy_tests::minisign::Minisign;
use binproxy_tests::signed::{
    configure, good_comment, installs, publish, refuses, signed_timestamp, BIN, T1, T2, T3,
};
use binproxy_tests::{sha256_hex, Manager};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

// ---------------------------------------------------------------------------
// 3. Minisign rotation

#[test]
fn with_two_trusted_keys_either_signs_and_a_retired_key_is_refused() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    let (old, new) = (Minisign::generate(), Minisign::generate());
    configure(&a, &m, &[&old, &new], false);

    let v1 = good_script("v1");
    publish(
        &m,
        "1.0.0",
        &v1,
        Some(&old.sign(&v1, &good_comment("1.0.0", T1))),
    );
    installs(&m, &a, &v1, "signed by the first key");
    let v2 = good_script("v2");
    publish(
        &m,
        "2.0.0",
        &v2,
        Some(&new.sign(&v2, &good_comment("2.0.0", T2))),
    );
    installs(&m, &a, &v2, "signed by the second key");

    // The old key is retired from the config.
    configure(&a, &m, &[&new], false);
    let v3 = good_script("v3");
    let s3 = publish(
        &m,
        "3.0.0",
        &v3,
        Some(&old.sign(&v3, &good_comment("3.0.0", T3))),
    );
    refuses(
        &m,
        &a,
        &s3,
        &["not in trusted_keys"],
        "signed by the retired key",
    );
    a.assert_live(&v2, "after the retired key's v3");
}

// ---------------------------------------------------------------------------
// 4. Without trusted_keys: as before

#[test]
fn without_trusted_keys_unsigned_artifacts_install_as_before() {
    let m = Manager::new();
    let a = Agent::new(BIN);
    a.configure(&m.url, &json!({}));
    let config: Value = serde_json::from_slice(&fs::read(&a.config).unwrap()).unwrap();
    assert!(config.get("trusted_keys").is_none());

    let v1 = good_script("v1");
    publish(&m, "1.0.0", &v1, None);
    installs(&m, &a, &v1, "unsigned v1");
    let v2 = good_script("v2");
    publish(&m, "2.0.0", &v2, None);
    installs(&m, &a, &v2, "unsigned v2");
    assert_eq!(
        fs::read(a.kept(&sha256_hex(&v1))).unwrap(),
        v1,
        "v1 is kept"
    );
    assert_eq!(signed_timestamp(&a), None);
}

/// The helpers themselves: a key's public line is what `trusted_keys` takes.
#[test]
fn minisign_makes_keys_and_prehashed_signatures() {
    let k = Minisign::generate();
    assert!(
        k.public.starts_with("RW") && k.public.len() == 56,
        "{}",
        k.public
    );
    let sig = k.sign(b"x", &good_comment("1", T1));
    let lines: Vec<&str> = sig.lines().collect();
    assert_eq!(lines.len(), 4, "{sig}");
    // base64 of "ED" (prehashed) starts "RU"; of "Ed" (legacy), "RW".
    assert!(lines[1].starts_with("RU"), "not prehashed (ED): {sig}");
    assert_eq!(
        lines[2],
        format!("trusted comment: {}", good_comment("1", T1))
    );
    assert!(Path::new(&k.secret).is_file());
}
