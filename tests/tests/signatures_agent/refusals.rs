//! Signed versions install one after another; every kind of bad signature
//! (none, an untrusted key, another bin, version or arch, no timestamp,
//! other bytes, an edited comment) is refused the same way.

use binproxy_protocol::Version;
use binproxy_tests::agent::{good_script, progress};
use binproxy_tests::minisign::Minisign;
use binproxy_tests::sha256_hex;
use binproxy_tests::signed::{
    assert_not_downloaded, clear_back_off, comment, configure, foreign_arch, good_comment,
    host_arch, install_signed_v2, installs, on_v1, publish, put_signature, refused_v2, refuses,
    release, resign, signed_timestamp, BIN, T1, T2, T3, T4,
};
use std::fs;

// ---------------------------------------------------------------------------
// 1. Signed versions install

#[test]
fn signed_versions_install_one_after_another() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let s1 = sha256_hex(&s.v1);

    install_signed_v2(&s);
    assert_eq!(fs::read(a.kept(&s1)).unwrap(), s.v1, "v1 is kept");
    assert_eq!(signed_timestamp(a), Some(T2));

    // Signed for every arch.
    for (version, arch, t) in [("3.0.0", "any", T3), ("4.0.0", "all", T4)] {
        let v = good_script(version);
        let sig = key.sign(&v, &comment(BIN, version, arch, t));
        publish(m, version, &v, Some(&sig));
        installs(m, a, &v, &format!("signed with arch={arch}"));
        assert_eq!(signed_timestamp(a), Some(t));
    }
}

// ---------------------------------------------------------------------------
// 2. Refusals

#[test]
fn an_unsigned_artifact_is_refused_until_it_is_signed() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let v2 = good_script("v2");
    let s2 = publish(m, "2.0.0", &v2, None);
    refuses(m, a, &s2, &["no signature", "trusted_keys"], "unsigned v2");
    assert_not_downloaded(m, &s2, "unsigned v2");

    // It backs off: the next run neither downloads nor reports, and exits 1
    // while held off its target.
    let reports = progress(m, BIN, &a.node_id).len();
    a.run().expect_code(1);
    a.assert_live(&s.v1, "during the back-off");
    assert_eq!(
        progress(m, BIN, &a.node_id).len(),
        reports,
        "reported again"
    );

    // The publisher signs it; once the back-off is cleared it installs.
    resign(m, "2.0.0", &key.sign(&v2, &good_comment("2.0.0", T2)));
    clear_back_off(a);
    installs(m, a, &v2, "v2 once signed");
    assert_eq!(signed_timestamp(a), Some(T2));
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let other = Minisign::generate();
    refused_v2(
        |_, v2| Some(other.sign(v2, &good_comment("2.0.0", T2))),
        &["not in trusted_keys"],
        true,
        "signed by another key",
    );
}

#[test]
fn a_signature_for_another_bin_is_refused() {
    refused_v2(
        |k, v2| Some(k.sign(v2, &comment("othersvc", "2.0.0", host_arch(), T2))),
        &["bin=", "othersvc"],
        true,
        "signed for bin othersvc",
    );
}

#[test]
fn a_signature_for_another_version_is_refused() {
    refused_v2(
        |k, v2| Some(k.sign(v2, &good_comment("3.0.0", T2))),
        &["version=", "3.0.0"],
        true,
        "signed for version 3.0.0",
    );
}

#[test]
fn a_signature_for_another_arch_is_refused() {
    refused_v2(
        |k, v2| Some(k.sign(v2, &comment(BIN, "2.0.0", foreign_arch(), T2))),
        &["arch=", foreign_arch()],
        true,
        "signed for another arch",
    );
}

#[test]
fn a_signature_without_a_timestamp_is_refused() {
    refused_v2(
        |k, v2| Some(k.sign(v2, &format!("bin={BIN} version=2.0.0 arch={}", host_arch()))),
        &["timestamp"],
        true,
        "signed without timestamp=",
    );
}

/// A compromised manager serves its own bytes (announcing their real
/// sha256) with a genuine signature made over other bytes.
#[test]
fn bytes_other_than_the_signed_ones_are_refused() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let good = good_script("v2");
    let sig = key.sign(&good, &good_comment("evil", T2));
    let evil = good_script("evil");
    let s_evil = publish(m, "evil", &evil, Some(&sig));
    let message = refuses(m, a, &s_evil, &["signature does not match"], "evil bytes");
    assert!(
        !message.contains("sha256"),
        "the sha256 did match: {message}"
    );
    a.assert_live(&s.v1, "after the evil bytes");
}

/// A genuine signature whose trusted comment was edited after signing.
#[test]
fn an_edited_trusted_comment_is_refused() {
    refused_v2(
        |k, v2| {
            let sig = k.sign(v2, &good_comment("1.0.0", T2));
            let forged = sig.replace("version=1.0.0", "version=2.0.0");
            assert_ne!(sig, forged);
            Some(forged)
        },
        &["signature does not match"],
        false,
        "trusted comment edited",
    );
}

/// `minisign -S -l` (the legacy format, not prehashed, which the agent's
/// streaming check cannot verify) by a trusted key: the manager refuses to
/// store it, saying why; released without a signature, the node refuses it.
#[test]
fn a_legacy_signature_never_reaches_the_node() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let v2 = good_script("v2");
    let sig = key.sign_with(&["-l"], &v2, &good_comment("2.0.0", T2));
    let v: Version = m.upload(BIN, "2.0.0", None, &v2).expect(201).parse();
    let answer = put_signature(m, "2.0.0", &sig);
    answer.expect_error(400);
    assert!(answer.text().contains("legacy"), "{answer}");
    release(m, "2.0.0", None);
    refuses(
        m,
        a,
        &v.sha256sum,
        &["no signature"],
        "v2 without its legacy signature",
    );
    assert_not_downloaded(m, &v.sha256sum, "v2 without its legacy signature");
    a.assert_live(&s.v1, "after v2 without a signature");
}

#[test]
fn an_older_signature_is_refused_and_a_re_signed_rollback_is_accepted() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let s1 = sha256_hex(&s.v1);
    let v2 = good_script("v2");
    let sig2 = key.sign(&v2, &good_comment("2.0.0", T2));
    let s2 = publish(m, "2.0.0", &v2, Some(&sig2));
    installs(m, a, &v2, "signed v2");

    // v1 released again with its old signature (T1 < T2): a downgrade or a replay.
    release(m, "1.0.0", Some(&s.sig1));
    refuses(
        m,
        a,
        &s1,
        &["downgrade", &T1.to_string()],
        "v1 signed at T1",
    );
    a.assert_live(&v2, "after the replayed v1");

    // The publisher re-signs v1 with a fresh timestamp: a legitimate rollback.
    resign(m, "1.0.0", &key.sign(&s.v1, &good_comment("1.0.0", T3)));
    clear_back_off(a);
    installs(m, a, &s.v1, "v1 re-signed at T3");
    assert_eq!(signed_timestamp(a), Some(T3));

    // Now v2's signature (T2 < T3) is the stale one.
    release(m, "2.0.0", Some(&sig2));
    refuses(
        m,
        a,
        &s2,
        &["downgrade"],
        "v2 signed at T2 after the rollback",
    );
    a.assert_live(&s.v1, "after the replayed v2");
}

#[test]
fn allow_downgrade_accepts_an_older_signature() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let s1 = sha256_hex(&s.v1);
    let _v2 = install_signed_v2(&s);

    release(m, "1.0.0", Some(&s.sig1));
    refuses(m, a, &s1, &["downgrade"], "v1 signed at T1");

    configure(a, m, &[key], true);
    clear_back_off(a);
    installs(m, a, &s.v1, "v1 signed at T1 with allow_downgrade");
    assert_eq!(
        signed_timestamp(a),
        Some(T2),
        "the newest signed timestamp installed is still v2's"
    );
}
