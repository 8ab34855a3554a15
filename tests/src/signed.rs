//! What the agent's signature tests (`tests/signatures_agent/`) share:
//! trusted comments, signatures stored on and released by the real manager,
//! an agent configured with `trusted_keys`, and the checks that a node
//! installed a version or refused it having touched nothing.

use crate::agent::{count, good_script, installed_hash, progress, show, snapshot, Agent};
use crate::minisign::Minisign;
use crate::{sha256_hex, Manager, ManagerOptions, Response};
use binproxy_protocol::ProgressStatus::{Failed, Success};
use binproxy_protocol::{ProgressRecord, Target, Version};
use serde_json::json;
use std::path::PathBuf;

pub const BIN: &str = "svc";

/// Signed timestamps, in the order the versions are released.
pub const T1: u64 = 1_700_000_100;
pub const T2: u64 = 1_700_000_200;
pub const T3: u64 = 1_700_000_300;
pub const T4: u64 = 1_700_000_400;

/// This host's arch as the agent names it.
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// An arch that is not this host's.
pub fn foreign_arch() -> &'static str {
    if host_arch() == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    }
}

/// The trusted comment the agent expects.
pub fn comment(bin: &str, version: &str, arch: &str, timestamp: u64) -> String {
    format!("bin={bin} version={version} arch={arch} timestamp={timestamp}")
}

/// For this bin and host.
pub fn good_comment(version: &str, timestamp: u64) -> String {
    comment(BIN, version, host_arch(), timestamp)
}

// ---------------------------------------------------------------------------
// The manager

/// `PUT /api/v1/bins/BIN/versions/{version}/signature` with the admin token.
pub fn put_signature(m: &Manager, version: &str, sig: &str) -> Response {
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
pub fn release(m: &Manager, version: &str, sig: Option<&str>) {
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
pub fn publish(m: &Manager, version: &str, bytes: &[u8], sig: Option<&str>) -> String {
    let v: Version = m.upload(BIN, version, None, bytes).expect(201).parse();
    assert_eq!(v.sha256sum, sha256_hex(bytes), "manager stored other bytes");
    if let Some(sig) = sig {
        put_signature(m, version, sig).expect(200);
    }
    release(m, version, sig);
    v.sha256sum
}

/// A new signature for an uploaded `version` (replacing the old one), released.
pub fn resign(m: &Manager, version: &str, sig: &str) {
    put_signature(m, version, sig).expect(200);
    release(m, version, Some(sig));
}

// ---------------------------------------------------------------------------
// The node

/// Writes the node's config: `trusted_keys` and `allow_downgrade` set.
pub fn configure(a: &Agent, m: &Manager, keys: &[&Minisign], allow_downgrade: bool) {
    let mut c = a.config_json(&m.url, &json!({}));
    c["trusted_keys"] = json!(keys.iter().map(|k| k.public.as_str()).collect::<Vec<_>>());
    c["allow_downgrade"] = json!(allow_downgrade);
    a.write_config(&c);
}

/// The newest signed timestamp the node's state records for the bin.
pub fn signed_timestamp(a: &Agent) -> Option<u64> {
    a.state()
        .and_then(|s| s["bins"][BIN]["signed_timestamp"].as_u64())
}

pub fn records(
    m: &Manager,
    a: &Agent,
    status: binproxy_protocol::ProgressStatus,
    sha: &str,
) -> usize {
    count(&progress(m, BIN, &a.node_id), status, sha)
}

/// Runs the agent, which must install `bytes` (sha `sha`) and report it.
#[track_caller]
pub fn installs(m: &Manager, a: &Agent, bytes: &[u8], what: &str) {
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
pub struct Untouched {
    pub live: Option<Vec<u8>>,
    pub kept: Vec<(PathBuf, Option<Vec<u8>>)>,
    pub signed_timestamp: Option<u64>,
    pub installed: Option<String>,
}

pub fn untouched(m: &Manager, a: &Agent) -> Untouched {
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
pub fn refuses(m: &Manager, a: &Agent, sha: &str, wants: &[&str], what: &str) -> String {
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

pub fn describe(u: &Untouched) -> String {
    format!(
        "live sha {:?}, kept {:?}, signed_timestamp {:?}, manager shows {:?}",
        u.live.as_deref().map(sha256_hex),
        u.kept.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        u.signed_timestamp,
        u.installed
    )
}

/// `binproxy unquarantine --config F BIN`: clears the back-off of a refusal.
pub fn clear_back_off(a: &Agent) {
    a.exec("unquarantine", &[BIN]).expect_code(0);
}

/// A manager and a node trusting `key` that installed v1 signed at `T1`.
pub struct Setup {
    pub m: Manager,
    pub a: Agent,
    pub key: Minisign,
    pub v1: Vec<u8>,
    /// v1's signature, as stored on the manager.
    pub sig1: String,
}

pub fn on_v1() -> Setup {
    // Debug logging lists each request: the tests see what was downloaded.
    let m = Manager::new_with(
        ManagerOptions::default().env("RUST_LOG", "info,manager_lite::api::routes=debug"),
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

/// On a [`Setup`]'s node: `good_script("v2")` published as 2.0.0, signed by
/// its key at [`T2`], and installed (checked); returns v2's bytes.
pub fn install_signed_v2(s: &Setup) -> Vec<u8> {
    let v2 = good_script("v2");
    let sig = s.key.sign(&v2, &good_comment("2.0.0", T2));
    publish(&s.m, "2.0.0", &v2, Some(&sig));
    installs(&s.m, &s.a, &v2, "signed v2");
    v2
}

/// How often the manager (started by [`on_v1`]) served the artifact `sha`.
pub fn downloads(m: &Manager, sha: &str) -> usize {
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
pub fn assert_not_downloaded(m: &Manager, sha: &str, what: &str) {
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
pub fn refused_v2(
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
