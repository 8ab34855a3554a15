//! Delta updates end to end: the real `manager-lite` makes each version's
//! patches and zst form in the background, and the real `binproxy` uses
//! them — a patch from the live file or a kept copy, falling back to the zst
//! form and then to the artifact when a patch is damaged or its base is not
//! on the host — and ends on exactly the version released, whatever failed
//! on the way, with the bytes it downloaded and the method in its reports
//! and action line. A run killed while a patch is applied leaves the old
//! build live and the next run finishes. The same through a `mirror sync`
//! tree served by nginx, with the manager up and with it stopped: a patch
//! from the live file and from a kept copy, a damaged patch, a host without
//! the base, a kill -9 while a patch is applied.
//!
//! The artifacts are build-like (megabytes of machine-code-like words, each
//! version a few changes from the last), so a patch is a small fraction of
//! the artifact and the zst form about half.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::mirror::{artifact_file, bin_file, MirrorBin};
use binproxy_protocol::{Method, Version};
use binproxy_tests::agent::{Agent, Outcome, Spawned};
use binproxy_tests::delta::{
    build, damage, how, next_build, publish_with_forms, success, with_forms,
};
use binproxy_tests::minisign::Minisign;
use binproxy_tests::mirror::{came_from, configure, downloads_served, sync_command};
use binproxy_tests::nginx::Nginx;
use binproxy_tests::signed::{good_comment, put_signature, T1, T2, T3, T4};
use binproxy_tests::{output_within, sha256_hex, Manager, TempDir};
use serde_json::json;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The bin of `binproxy_tests::signed`, whose signatures the mirror test uses.
const BIN: &str = binproxy_tests::signed::BIN;

/// The size of the builds: a patch is tens of KB of it.
const SIZE: usize = 3 << 20;

/// A node of `m` with no hooks: every version is healthy.
fn node(m: &Manager) -> Agent {
    let a = Agent::new(BIN);
    a.configure(&m.url, &json!({}));
    a
}

/// The action line of the bin's update in a run's log.
#[track_caller]
fn action(out: &Outcome) -> String {
    let want = format!("bin={BIN} action=update");
    out.stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no action line in:\n{}", out.stderr))
        .to_owned()
}

/// Runs the node once, expecting exit `code`; its action line.
#[track_caller]
fn run(a: &Agent, code: i32) -> String {
    let out = a.run();
    out.expect_code(code);
    action(&out)
}

/// The size of the patch of `v` from the build `from`.
#[track_caller]
fn patch_size(v: &Version, from: &[u8]) -> u64 {
    let from = sha256_hex(from);
    v.deltas
        .iter()
        .find(|d| d.from == from)
        .unwrap_or_else(|| panic!("no patch from {from}: {:?}", v.deltas))
        .size
}

#[test]
fn v1_to_v2_by_delta_then_v3_by_delta_from_a_kept_copy_after_a_rollback() {
    let m = Manager::new();
    let a = node(&m);
    let b1 = build(1, SIZE);
    let b2 = next_build(&b1, 2);
    let b3 = next_build(&b2, 3);

    // v1: nothing to patch from; its zst form is the smaller download.
    let v1 = publish_with_forms(&m, BIN, "1", &b1);
    let line = run(&a, 0);
    a.assert_live(&b1, "v1");
    let zst = v1.zst.as_ref().unwrap().size;
    assert!(line.contains("method=zst"), "{line}");
    let r = success(&m, BIN, &a.node_id, &v1.sha256sum);
    assert_eq!(how(&r), (Some(Method::Zst), Some(zst)));

    // v2: a patch from the live v1.
    let v2 = publish_with_forms(&m, BIN, "2", &b2);
    let out = a.run();
    out.expect_code(0)
        .expect_log(&["applying a patch of", "to the live file"]);
    let line = action(&out);
    a.assert_live(&b2, "v2 by delta");
    let patch = patch_size(&v2, &b1);
    assert!(
        patch * 20 < b2.len() as u64,
        "a patch of {patch} bytes for {} is no saving",
        b2.len()
    );
    assert!(line.contains("method=delta"), "{line}");
    assert!(!line.contains("fallback="), "{line}");
    let r = success(&m, BIN, &a.node_id, &v2.sha256sum);
    assert_eq!(how(&r), (Some(Method::Delta), Some(patch)));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    let status = a.status_json();
    assert_eq!(status["bins"][0]["delivery"]["method"], "delta", "{status}");

    // The operator rolls back to v1: v2 stays as a kept copy.
    a.exec("rollback", &[BIN]).expect_code(0);
    a.assert_live(&b1, "rolled back");
    assert_eq!(fs::read(a.kept(&v2.sha256sum)).unwrap(), b2);

    // v3 offers patches from v2 (first: the newest) and v1; the kept v2 is
    // the base, though v1 is the live file.
    let v3 = publish_with_forms(&m, BIN, "3", &b3);
    assert_eq!(v3.deltas.len(), 2, "{:?}", v3.deltas);
    assert_eq!(v3.deltas[0].from, v2.sha256sum, "newest base first");
    let out = a.run();
    let kept = format!("to kept {}", &v2.sha256sum[..12]);
    out.expect_code(0).expect_log(&[&kept]);
    a.assert_live(&b3, "v3 by delta from the kept v2");
    let r = success(&m, BIN, &a.node_id, &v3.sha256sum);
    assert_eq!(how(&r), (Some(Method::Delta), Some(patch_size(&v3, &b2))));
    assert!(action(&out).contains("method=delta"), "{}", action(&out));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
}

#[test]
fn a_damaged_patch_falls_back_to_zst_and_a_damaged_zst_to_the_artifact() {
    let m = Manager::new();
    let a = node(&m);
    let b1 = build(11, SIZE);
    let b2 = next_build(&b1, 12);
    let b3 = next_build(&b2, 13);
    publish_with_forms(&m, BIN, "1", &b1);
    run(&a, 0);
    a.assert_live(&b1, "v1");

    // v2's patch is damaged on the manager's disk: the zst form it is.
    let v2 = with_forms_of(&m, "2", &b2);
    damage(&m, &v2.deltas[0].sha256);
    m.release(BIN, "2").expect(201);
    let line = run(&a, 0);
    a.assert_live(&b2, "v2 by zst after a damaged patch");
    assert!(
        line.contains("method=zst") && line.contains("fallback=\"delta failed ("),
        "{line}"
    );
    let (patch, zst) = (v2.deltas[0].size, v2.zst.as_ref().unwrap().size);
    let r = success(&m, BIN, &a.node_id, &v2.sha256sum);
    assert_eq!(
        how(&r),
        (Some(Method::Zst), Some(patch + zst)),
        "every try counts"
    );
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());

    // v3's patch and zst form are both damaged: the artifact it is.
    let v3 = with_forms_of(&m, "3", &b3);
    damage(&m, &v3.deltas[0].sha256);
    damage(&m, &v3.zst.as_ref().unwrap().sha256);
    m.release(BIN, "3").expect(201);
    let line = run(&a, 0);
    a.assert_live(&b3, "v3 in full after a damaged patch and zst form");
    assert!(
        line.contains("method=full")
            && line.contains("delta failed (")
            && line.contains("; zst failed ("),
        "{line}"
    );
    let (patch, zst) = (v3.deltas[0].size, v3.zst.as_ref().unwrap().size);
    let r = success(&m, BIN, &a.node_id, &v3.sha256sum);
    let all = patch + zst + b3.len() as u64;
    assert_eq!(how(&r), (Some(Method::Full), Some(all)));
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
}

/// Uploads `bytes` as `version` and waits for its forms, unreleased.
fn with_forms_of(m: &Manager, version: &str, bytes: &[u8]) -> Version {
    m.upload(BIN, version, None, bytes).expect(201);
    with_forms(m, BIN, version)
}

#[test]
fn a_base_the_host_does_not_have_falls_back_to_zst() {
    let m = Manager::new();
    let a = node(&m);
    let b1 = build(21, SIZE);
    let b2 = next_build(&b1, 22);
    // The host runs a build the manager never had.
    a.place(&build(29, SIZE));
    with_forms_of(&m, "1", &b1);
    let v2 = publish_with_forms(&m, BIN, "2", &b2);
    assert_eq!(v2.deltas.len(), 1, "{:?}", v2.deltas);
    let line = run(&a, 0);
    a.assert_live(&b2, "v2 by zst without a base");
    assert!(
        line.contains("method=zst") && line.contains("fallback=\"no delta ("),
        "{line}"
    );
    let r = success(&m, BIN, &a.node_id, &v2.sha256sum);
    assert_eq!(
        how(&r),
        (Some(Method::Zst), Some(v2.zst.as_ref().unwrap().size))
    );
}

/// The temp file a patch is applied into, beside the live file, and its
/// size, once it has some bytes.
fn being_made(a: &Agent) -> Option<u64> {
    let name = a
        .beside()
        .into_iter()
        .find(|n| Path::new(n).extension().is_some_and(|e| e == "new"))?;
    let len = fs::metadata(a.live.with_file_name(name)).ok()?.len();
    (len > 0).then_some(len)
}

/// Spawns a run and kills it -9 as soon as it has written some of the
/// patched build; `None` when the run finished first.
fn kill_while_applying(a: &Agent) -> Option<u64> {
    let mut run: Spawned = a.spawn("run", &["--now"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(len) = being_made(a) {
            a.kill9(&mut run);
            return Some(len);
        }
        if run.try_exit().is_some() {
            return None;
        }
        std::thread::yield_now();
    }
    panic!(
        "the run neither applied a patch nor ended:\n{}",
        run.output()
    );
}

#[test]
fn kill_9_while_a_patch_is_applied_keeps_the_old_build_and_the_next_run_finishes() {
    let m = Manager::new();
    // Big enough that applying takes a while on the debug build.
    let b1 = build(31, 6 << 20);
    let b2 = next_build(&b1, 32);
    with_forms_of(&m, "1", &b1);
    let v2 = publish_with_forms(&m, BIN, "2", &b2);
    assert_eq!(v2.deltas.len(), 1, "{:?}", v2.deltas);
    // A fresh node for each try, until one is caught in the act.
    let (a, made) = (0..5)
        .find_map(|_| {
            let a = node(&m);
            a.place(&b1);
            kill_while_applying(&a).map(|made| (a, made))
        })
        .expect("five runs applied the patch before they could be killed");
    eprintln!("killed with {made} of {} bytes made", b2.len());
    a.assert_live(&b1, "after the kill -9");
    assert!(a.journal().is_none(), "the half-made file was journaled");

    // The next run removes the half-made file and finishes by delta (the
    // patch downloaded before the kill is used as it is).
    let line = run(&a, 0);
    a.assert_live(&b2, "the run after the kill");
    assert!(line.contains("method=delta"), "{line}");
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
    assert!(a.journal().is_none());
    let r = success(&m, BIN, &a.node_id, &v2.sha256sum);
    assert_eq!(r.method, Some(Method::Delta));
}

// ---------------------------------------------------------------------------
// Through a mirror

/// Uploads `bytes` as `version` signed by `key` at `timestamp`, waits for
/// its forms and releases it.
fn publish_signed(m: &Manager, key: &Minisign, version: &str, bytes: &[u8], at: u64) -> Version {
    let sig = key.sign(bytes, &good_comment(version, at));
    m.upload(BIN, version, None, bytes).expect(201);
    put_signature(m, version, &sig).expect(200);
    let v = with_forms(m, BIN, version);
    m.release(BIN, version).expect(201);
    v
}

/// `manager-lite mirror sync --to tree`; the tree then offers `v`'s forms.
#[track_caller]
fn sync(m: &Manager, token: &Path, tree: &Path, v: &Version) {
    let out = output_within(
        &mut sync_command(&m.url, token, tree, &[]),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "mirror sync: {out:?}");
    let doc: MirrorBin =
        serde_json::from_slice(&fs::read(tree.join(bin_file(BIN))).unwrap()).unwrap();
    let t = doc.target_for(std::env::consts::ARCH).expect("a target");
    assert_eq!(t.sha256sum, v.sha256sum, "the tree offers another version");
    assert_eq!(t.deltas.len(), v.deltas.len(), "{t:?}");
    assert_eq!(t.zst.is_some(), v.zst.is_some(), "{t:?}");
    for d in &t.deltas {
        assert_eq!(d.url, artifact_file(&d.sha256), "{t:?}");
        assert!(tree.join(&d.url).is_file(), "{} not synced", d.url);
    }
}

/// A manager's mirror: the tree `mirror sync` writes (with v1, signed by
/// the fixture's key, published and synced) served by nginx.
struct MirrorFixture {
    key: Minisign,
    token: std::path::PathBuf,
    tree: std::path::PathBuf,
    /// The mirror's base URL, as agents list it.
    url: String,
    /// Kept for the test's length: nginx stops and the tree goes on drop.
    _nginx: Nginx,
    _tmp: TempDir,
}

impl MirrorFixture {
    fn start(m: &Manager, name: &str, b1: &[u8]) -> MirrorFixture {
        let key = Minisign::generate();
        let tmp = TempDir::new(name);
        let token = tmp.join("admin.token");
        fs::write(&token, format!("{}\n", m.token)).unwrap();
        let tree = tmp.join("mirror");
        let v1 = publish_signed(m, &key, "1", b1, T1);
        sync(m, &token, &tree, &v1);
        let nginx = Nginx::serve(&tree);
        let url = format!("{}/", nginx.url);
        MirrorFixture {
            key,
            token,
            tree,
            url,
            _nginx: nginx,
            _tmp: tmp,
        }
    }

    /// A node of `m` that lists this mirror and trusts its key.
    fn node(&self, m: &Manager) -> Agent {
        let a = Agent::new(BIN);
        configure(&a, &m.url, &[&self.key], &[&self.url]);
        a
    }

    /// Publishes, signs and releases `version` on `m`, then syncs the tree.
    fn release(&self, m: &Manager, version: &str, bytes: &[u8], at: u64) -> Version {
        let v = publish_signed(m, &self.key, version, bytes, at);
        sync(m, &self.token, &self.tree, &v);
        v
    }
}

#[test]
fn the_same_through_a_mirror_sync_tree_on_nginx() {
    let mut m = Manager::new();
    let b1 = build(41, SIZE);
    let b2 = next_build(&b1, 42);
    let b3 = next_build(&b2, 43);
    let b4 = next_build(&b3, 44);

    let fx = MirrorFixture::start(&m, "delta-mirror", &b1);
    let mirror = fx.url.clone();
    let a = fx.node(&m);
    run(&a, 0);
    a.assert_live(&b1, "v1");

    // v2 with the manager up: its patch comes from the mirror, and the
    // manager sends no byte.
    let v2 = fx.release(&m, "2", &b2, T2);
    let served = downloads_served(&m);
    let line = run(&a, 0);
    a.assert_live(&b2, "v2 by delta from the mirror");
    assert!(line.contains("method=delta"), "{line}");
    assert_eq!(downloads_served(&m), served, "the manager sent bytes");
    assert_eq!(came_from(&a).1.as_deref(), Some(mirror.as_str()));
    let r = success(&m, BIN, &a.node_id, &v2.sha256sum);
    assert_eq!(how(&r), (Some(Method::Delta), Some(patch_size(&v2, &b1))));

    // v3 and v4 synced, then the manager stops: v3 from the mirror's own
    // target, by a patch from the live v2.
    let v3 = fx.release(&m, "3", &b3, T3);
    m.kill9();
    let line = run(&a, 69);
    a.assert_live(&b3, "v3 by delta from the mirror, the manager down");
    assert!(line.contains("method=delta"), "{line}");
    assert_eq!(
        came_from(&a),
        (Some(format!("mirror {mirror}")), Some(mirror.clone()))
    );

    // v4's patch is damaged on the mirror: its zst form, from the mirror.
    // (The manager restarts on another port, which the node does not know.)
    m.restart();
    let v4 = fx.release(&m, "4", &b4, T4);
    m.kill9();
    let patch = fx.tree.join(artifact_file(&v4.deltas[0].sha256));
    let mut bytes = fs::read(&patch).unwrap();
    bytes[60] ^= 0xff;
    fs::write(&patch, bytes).unwrap();
    let line = run(&a, 69);
    a.assert_live(&b4, "v4 by zst from the mirror after a damaged patch");
    assert!(
        line.contains("method=zst") && line.contains("fallback=\"delta failed ("),
        "{line}"
    );
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());

    // The manager back (on a new port): the queued reports say how the
    // bytes came.
    m.restart();
    configure(&a, &m.url, &[&fx.key], &[&mirror]);
    a.exec("run", &["--now", "--ignore-backoff"]).expect_code(0);
    assert!(a.outbox().is_empty(), "undelivered: {:?}", a.outbox());
    let r = success(&m, BIN, &a.node_id, &v4.sha256sum);
    let zst = v4.zst.as_ref().unwrap().size;
    assert_eq!(how(&r), (Some(Method::Zst), Some(v4.deltas[0].size + zst)));
    let r = success(&m, BIN, &a.node_id, &v3.sha256sum);
    assert_eq!(how(&r), (Some(Method::Delta), Some(patch_size(&v3, &b2))));
}

#[test]
fn with_the_manager_stopped_a_mirror_patches_from_a_kept_copy_sends_the_zst_form_and_survives_kill_9(
) {
    let mut m = Manager::new();
    let b1 = build(51, SIZE);
    let b2 = next_build(&b1, 52);
    let b3 = next_build(&b2, 53);

    let fx = MirrorFixture::start(&m, "delta-mirror-down", &b1);
    let mirror = fx.url.clone();
    // Node a: v1, then v2 by a patch from the mirror, then rolled back to
    // v1 by the operator: v2 stays as a kept copy.
    let a = fx.node(&m);
    run(&a, 0);
    let v2 = fx.release(&m, "2", &b2, T2);
    run(&a, 0);
    a.assert_live(&b2, "v2");
    a.exec("rollback", &[BIN]).expect_code(0);
    a.assert_live(&b1, "rolled back");
    // Node b runs a build the manager never had.
    let b = fx.node(&m);
    b.place(&build(59, SIZE));

    // v3 synced, then the manager stops: both take it from the mirror.
    let v3 = fx.release(&m, "3", &b3, T3);
    assert_eq!(v3.deltas[0].from, v2.sha256sum, "newest base first");
    m.kill9();

    let out = a.run();
    let kept = format!("to kept {}", &v2.sha256sum[..12]);
    out.expect_code(69).expect_log(&[&kept]);
    a.assert_live(&b3, "v3 by delta from the kept v2, from the mirror");
    assert!(action(&out).contains("method=delta"), "{}", action(&out));
    assert_eq!(
        came_from(&a),
        (Some(format!("mirror {mirror}")), Some(mirror.clone()))
    );

    let line = run(&b, 69);
    b.assert_live(&b3, "v3 by zst from the mirror, no base on the host");
    assert!(
        line.contains("method=zst") && line.contains("fallback=\"no delta ("),
        "{line}"
    );
    for node in [&a, &b] {
        assert!(node.beside().is_empty(), "debris: {:?}", node.beside());
    }

    // A node on v1 killed -9 while it applies the mirror's patch: v1 stays
    // live, and the next run finishes by delta, the manager still down.
    let (c, made) = (0..5)
        .find_map(|_| {
            let c = fx.node(&m);
            c.place(&b1);
            kill_while_applying(&c).map(|made| (c, made))
        })
        .expect("five runs applied the patch before they could be killed");
    eprintln!("killed with {made} of {} bytes made", b3.len());
    c.assert_live(&b1, "after the kill -9");
    assert!(c.journal().is_none(), "the half-made file was journaled");
    let line = run(&c, 69);
    c.assert_live(&b3, "the run after the kill, from the mirror");
    assert!(line.contains("method=delta"), "{line}");
    assert!(c.beside().is_empty(), "debris: {:?}", c.beside());
}
