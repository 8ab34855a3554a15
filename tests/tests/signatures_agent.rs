//! Signed releases, end to end on the agent side: artifacts signed with the
//! real `minisign` CLI, the signature stored on the real `manager-lite`
//! (`PUT /api/v1/bins/{bin}/versions/{version}/signature`) and handed out in
//! the targets, and the real `binproxy run --config FILE --now` configured
//! with `trusted_keys` (and `allow_downgrade`) deciding whether to install.
//! Each test has its own manager, node directory and state directory, on
//! 127.0.0.1 only.
//!
//! Every refusal is checked the same way: exit code 1, the live file still
//! holds the previous version byte for byte, nothing was swapped (no kept
//! copy, no journal, no temp file beside the live one), the manager records
//! `failed` for the target with a message naming the problem, and still
//! shows the previous hash as installed.
//!
//! `minisign` must be installed (`tests/run.sh`, the README's test command,
//! installs it): without it these tests fail, they are not skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::{Failed, Success};
use binproxy_protocol::{ProgressRecord, Target, Version};
use binproxy_tests::agent::{count, good_script, installed_hash, progress, show, snapshot, Agent};
use binproxy_tests::minisign::Minisign;
use binproxy_tests::{sha256_hex, Manager, ManagerOptions, Response};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

const BIN: &str = "svc";

/// Signed timestamps, in the order the versions are released.
const T1: u64 = 1_700_000_100;
const T2: u64 = 1_700_000_200;
const T3: u64 = 1_700_000_300;
const T4: u64 = 1_700_000_400;

/// This host's arch as the agent names it.
fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// An arch that is not this host's.
fn foreign_arch() -> &'static str {
    if host_arch() == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    }
}

/// The trusted comment the agent expects.
fn comment(bin: &str, version: &str, arch: &str, timestamp: u64) -> String {
    format!("bin={bin} version={version} arch={arch} timestamp={timestamp}")
}

/// For this bin and host.
fn good_comment(version: &str, timestamp: u64) -> String {
    comment(BIN, version, host_arch(), timestamp)
}

// ---------------------------------------------------------------------------
// The manager

/// `PUT /api/v1/bins/BIN/versions/{version}/signature` with the admin token.
fn put_signature(m: &Manager, version: &str, sig: &str) -> Response {
    let auth = format!("Bearer {}", m.token);
    m.request(
        "PUT",
        &format!("/api/v1/bins/{BIN}/versions/{version}/signature"),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        sig.as_bytes(),
    )
}

/// Releases `version` (already uploaded) and checks that the target the
/// manager now hands out carries exactly `sig`.
fn release(m: &Manager, version: &str, sig: Option<&str>) {
    m.release(BIN, version).expect(201);
    let t: Target = m.get(&format!("/api/v1/bins/{BIN}")).expect(200).parse();
    assert_eq!(t.version, version, "the target is not the new release");
    assert_eq!(
        t.signature.as_deref(),
        sig,
        "the manager's target does not carry the uploaded signature byte for byte"
    );
}

/// Uploads `bytes` as `version` (any arch), stores `sig` for it when given,
/// releases it; returns its sha256.
fn publish(m: &Manager, version: &str, bytes: &[u8], sig: Option<&str>) -> String {
    let v: Version = m.upload(BIN, version, None, bytes).expect(201).parse();
    assert_eq!(v.sha256sum, sha256_hex(bytes), "manager stored other bytes");
    if let Some(sig) = sig {
        put_signature(m, version, sig).expect(200);
    }
    release(m, version, sig);
    v.sha256sum
}

/// A new signature for an uploaded `version` (replacing the old one), released.
fn resign(m: &Manager, version: &str, sig: &str) {
    put_signature(m, version, sig).expect(200);
    release(m, version, Some(sig));
}

// ---------------------------------------------------------------------------
// The node

/// Writes the node's config: `trusted_keys` and `allow_downgrade` set.
fn configure(a: &Agent, m: &Manager, keys: &[&Minisign], allow_downgrade: bool) {
    let mut c = a.config_json(&m.url, &json!({}));
    c["trusted_keys"] = json!(keys.iter().map(|k| k.public.as_str()).collect::<Vec<_>>());
    c["allow_downgrade"] = json!(allow_downgrade);
    a.write_config(&c);
}

/// The newest signed timestamp the node's state records for the bin.
fn signed_timestamp(a: &Agent) -> Option<u64> {
    a.state()
        .and_then(|s| s["bins"][BIN]["signed_timestamp"].as_u64())
}

fn records(m: &Manager, a: &Agent, status: binproxy_protocol::ProgressStatus, sha: &str) -> usize {
    count(&progress(m, BIN, &a.node_id), status, sha)
}

/// Runs the agent, which must install `bytes` (sha `sha`) and report it.
#[track_caller]
fn installs(m: &Manager, a: &Agent, bytes: &[u8], what: &str) {
    let sha = sha256_hex(bytes);
    let ok_before = records(m, a, Success, &sha);
    let out = a.run();
    out.expect_code(0);
    a.assert_live(bytes, what);
    let p = progress(m, BIN, &a.node_id);
    assert_eq!(
        count(&p, Success, &sha),
        ok_before + 1,
        "{what}: no new success report\n{}\nagent:\n{}",
        show(&p),
        out.stderr
    );
    assert_eq!(
        installed_hash(m, &a.node_id, BIN).as_deref(),
        Some(sha.as_str()),
        "{what}: the manager does not show it installed"
    );
    assert!(a.beside().is_empty(), "{what}: debris: {:?}", a.beside());
    assert!(a.journal().is_none(), "{what}: journal left");
}

/// Everything a refused update must leave as it was.
#[derive(Debug, PartialEq)]
struct Untouched {
    live: Option<Vec<u8>>,
    kept: Vec<(PathBuf, Option<Vec<u8>>)>,
    signed_timestamp: Option<u64>,
    installed: Option<String>,
}

fn untouched(m: &Manager, a: &Agent) -> Untouched {
    Untouched {
        live: a.live_bytes(),
        kept: snapshot(&a.state_dir.join("kept")),
        signed_timestamp: signed_timestamp(a),
        installed: installed_hash(m, &a.node_id, BIN),
    }
}

/// Runs the agent, which must refuse the target `sha`: exit 1, nothing
/// swapped, one new `failed` record whose message contains each of `wants`
/// (and which the agent's state records too). Returns that message.
#[track_caller]
fn refuses(m: &Manager, a: &Agent, sha: &str, wants: &[&str], what: &str) -> String {
    let before = untouched(m, a);
    let failed_before = records(m, a, Failed, sha);
    let ok_before = records(m, a, Success, sha);
    let out = a.run();
    out.expect_code(1);
    let p = progress(m, BIN, &a.node_id);
    assert_eq!(
        count(&p, Failed, sha),
        failed_before + 1,
        "{what}: no new failed report for {}\n{}\nagent:\n{}",
        &sha[..8],
        show(&p),
        out.stderr
    );
    assert_eq!(
        count(&p, Success, sha),
        ok_before,
        "{what}: installed\n{}",
        show(&p)
    );
    let after = untouched(m, a);
    assert!(
        after == before,
        "{what}: something changed on the node\nbefore: {}\nafter:  {}",
        describe(&before),
        describe(&after)
    );
    assert!(a.beside().is_empty(), "{what}: debris: {:?}", a.beside());
    assert!(a.journal().is_none(), "{what}: journal left");
    let failed: &ProgressRecord = p
        .iter()
        .rev()
        .find(|r| r.status == Failed && r.target_hash == sha)
        .unwrap();
    let message = failed.message.clone().unwrap_or_default();
    for want in wants {
        assert!(
            message.contains(want),
            "{what}: the failed report's message does not name the problem ({want:?}): \
             {message:?}"
        );
    }
    let last = &a.state().expect("state.json")["bins"][BIN]["last"];
    assert_eq!(
        last["status"], "failed",
        "{what}: state's last outcome: {last}"
    );
    assert_eq!(
        last["message"].as_str(),
        Some(message.as_str()),
        "{what}: state and report disagree"
    );
    message
}

fn describe(u: &Untouched) -> String {
    format!(
        "live sha {:?}, kept {:?}, signed_timestamp {:?}, manager shows {:?}",
        u.live.as_deref().map(sha256_hex),
        u.kept.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        u.signed_timestamp,
        u.installed
    )
}

/// `binproxy unquarantine --config F BIN`: clears the back-off of a refusal.
fn clear_back_off(a: &Agent) {
    a.exec("unquarantine", &[BIN]).expect_code(0);
}

/// A manager and a node trusting `key` that installed v1 signed at `T1`.
struct Setup {
    m: Manager,
    a: Agent,
    key: Minisign,
    v1: Vec<u8>,
    /// v1's signature, as stored on the manager.
    sig1: String,
}

fn on_v1() -> Setup {
    // Debug logging lists each request: the tests see what was downloaded.
    let m = Manager::new_with(
        ManagerOptions::default().env("RUST_LOG", "info,manager_lite::routes=debug"),
    );
    let a = Agent::new(BIN);
    let key = Minisign::generate();
    configure(&a, &m, &[&key], false);
    let v1 = good_script("v1");
    let sig1 = key.sign(&v1, &good_comment("1.0.0", T1));
    publish(&m, "1.0.0", &v1, Some(&sig1));
    installs(&m, &a, &v1, "signed v1");
    assert_eq!(signed_timestamp(&a), Some(T1));
    Setup {
        m,
        a,
        key,
        v1,
        sig1,
    }
}

/// How often the manager (started by [`on_v1`]) served the artifact `sha`.
fn downloads(m: &Manager, sha: &str) -> usize {
    let log = m.log();
    assert!(
        log.contains("POST /api/v1/keepalive"),
        "the manager does not log requests; cannot tell what was downloaded:\n{log}"
    );
    log.matches(&format!("GET /api/v1/download/{sha} ")).count()
}

/// Asserts that the manager served no byte of `sha`: what the trusted
/// comment alone rules out is refused before the download.
#[track_caller]
fn assert_not_downloaded(m: &Manager, sha: &str, what: &str) {
    assert_eq!(
        downloads(m, sha),
        0,
        "{what}: downloaded although the signature was refused up front:\n{}",
        m.log()
    );
}

/// On a node running v1, v2 is published with what `sign` makes of it; the
/// agent must refuse it naming `wants` (before downloading it, when
/// `up_front`), and keep v1.
fn refused_v2(
    sign: impl FnOnce(&Minisign, &[u8]) -> Option<String>,
    wants: &[&str],
    up_front: bool,
    what: &str,
) {
    let s = on_v1();
    let v2 = good_script("v2");
    let sig = sign(&s.key, &v2);
    let s2 = publish(&s.m, "2.0.0", &v2, sig.as_deref());
    refuses(&s.m, &s.a, &s2, wants, what);
    s.a.assert_live(&s.v1, what);
    if up_front {
        assert_not_downloaded(&s.m, &s2, what);
    }
}

// ---------------------------------------------------------------------------
// 1. Signed versions install

#[test]
fn signed_versions_install_one_after_another() {
    let s = on_v1();
    let (m, a, key) = (&s.m, &s.a, &s.key);
    let s1 = sha256_hex(&s.v1);

    let v2 = good_script("v2");
    publish(
        m,
        "2.0.0",
        &v2,
        Some(&key.sign(&v2, &good_comment("2.0.0", T2))),
    );
    installs(m, a, &v2, "signed v2");
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
    let v2 = good_script("v2");
    publish(
        m,
        "2.0.0",
        &v2,
        Some(&key.sign(&v2, &good_comment("2.0.0", T2))),
    );
    installs(m, a, &v2, "signed v2");

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
