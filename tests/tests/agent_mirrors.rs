//! Agents with `mirrors`, end to end: the real `binproxy run` against the
//! real `manager-lite` and a mirror tree (written by the test with the
//! protocol's types, as `mirror sync` lays it out) served by a real nginx,
//! all on 127.0.0.1.
//!
//! 1. Artifacts come from the mirrors first: the manager's own `/metrics`
//!    counts no download, `binproxy status` names the mirror; a mirror that
//!    is down or serves other bytes is passed over for the manager; a mirror
//!    never sees the node's credential.
//! 2. With the manager down, a newer signed release on the mirror installs
//!    (exit 69 all the same), and the reports reach the manager when it is
//!    back; outside the maintenance windows it waits (prestaged).
//! 3. A tampered mirror installs nothing, and the log says why: other bytes
//!    under the right name, bytes that are not the signed ones, an older
//!    signed release, a signature for another bin, no signature.
//! 4. Without `trusted_keys`, nothing is taken from a mirror, and the log
//!    says why.
//!
//! `minisign` and `nginx` must be installed (`tests/run.sh` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::mirror::artifact_file;
use binproxy_protocol::ProgressStatus::Success;
use binproxy_tests::agent::{self, count, good_script, installed_hash, progress, show, Agent};
use binproxy_tests::enrollment;
use binproxy_tests::minisign::Minisign;
use binproxy_tests::mirror::{came_from, configure, downloads_served, target, MirrorTree};
use binproxy_tests::nginx::Nginx;
use binproxy_tests::signed::{
    self, comment, good_comment, host_arch, install_signed_v2, on_v1, signed_timestamp, Setup, BIN,
    T2, T3,
};
use binproxy_tests::stub::{closed_port_url, StubServer};
use binproxy_tests::windows;
use binproxy_tests::{sha256_hex, Manager};
use serde_json::json;

// ---------------------------------------------------------------------------
// 1. Artifacts from the mirrors first

#[test]
fn artifacts_come_from_the_mirror_first_and_status_says_so() {
    let m = Manager::new();
    let nginx = Nginx::files();
    let tree = MirrorTree::on(&nginx, "m1");
    let a = Agent::new(BIN);
    configure(&a, &m.url, &[], &[&tree.url]);
    let v1 = good_script("v1");
    let sha1 = agent::publish(&m, BIN, "1.0.0", &v1);
    tree.put(&artifact_file(&sha1), &v1);

    a.run().expect_code(0);
    a.assert_live(&v1, "v1 from the mirror");
    assert_eq!(downloads_served(&m), 0, "the manager sent the bytes");
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*sha1));
    assert_eq!(
        came_from(&a),
        (Some("manager".into()), Some(tree.url.clone()))
    );
    let text = a.exec("status", &[]);
    text.expect_code(0);
    for line in [
        "target from: manager",
        &format!("bytes from:  {}", tree.url),
    ] {
        assert!(
            text.stdout.contains(line),
            "{line:?} not in:\n{}",
            text.stdout
        );
    }
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
}

#[test]
fn a_mirror_down_or_with_other_bytes_is_passed_over_for_the_manager() {
    let m = Manager::new();
    let nginx = Nginx::files();
    let tree = MirrorTree::on(&nginx, "m1");
    let down = format!("{}/", closed_port_url());
    let a = Agent::new(BIN);
    configure(&a, &m.url, &[], &[&down, &tree.url]);
    let v1 = good_script("v1");
    let sha1 = agent::publish(&m, BIN, "1.0.0", &v1);
    // The same length, one byte off: only the sha256 tells them apart.
    let mut other = v1.clone();
    let last = other.len() - 2;
    other[last] ^= 0x20;
    tree.put(&artifact_file(&sha1), &other);

    let out = a.run();
    out.expect_code(0).expect_log(&[
        &format!("mirror {down}artifacts/{sha1}: unreachable"),
        &format!("svc: download from {}artifacts/{sha1} rejected", tree.url),
        "does not match",
        &format!("trying {}/api/v1/download/{sha1} next", m.url),
    ]);
    a.assert_live(&v1, "v1 from the manager after the mirrors");
    assert_eq!(downloads_served(&m), 1);
    let p = progress(&m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &sha1), 1, "{}", show(&p));
    assert_eq!(
        came_from(&a),
        (
            Some("manager".into()),
            Some(format!("{}/api/v1/download/{sha1}", m.url))
        )
    );
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
}

#[test]
fn a_mirror_never_sees_the_nodes_credential() {
    let s = enrollment::secured();
    let token_file = s.token_file("node", &s.token);
    let v1 = good_script("v1");
    let sha1 = agent::publish(&s.m, BIN, "1.0.0", &v1);
    let served = v1.clone();
    let want = format!("/artifacts/{sha1}");
    let mirror = StubServer::start(move |x| {
        if x.request.path == want {
            x.respond(200, &[], &served);
        } else {
            x.respond(404, &[], b"");
        }
    });
    let a = Agent::new(BIN);
    let mut c = a.config_json(&s.m.url, &json!({}));
    c["enroll_token_file"] = json!(token_file);
    c["mirrors"] = json!([format!("{}/", mirror.url)]);
    a.write_config(&c);

    a.run().expect_code(0);
    a.assert_live(&v1, "v1 from the mirror");
    let secret = enrollment::secret_of(&a);
    let seen = mirror.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    for r in &seen {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        for (name, value) in &r.headers {
            for credential in [&secret, &s.token] {
                assert!(
                    !value.contains(credential.as_str()),
                    "the mirror got a credential in {name}: {value}"
                );
            }
        }
    }
    assert_eq!(downloads_served(&s.m), 0);
}

// ---------------------------------------------------------------------------
// 2. The manager down: a newer signed release from the mirror

/// A node on v1 (signed at T1, installed from the manager) that lists one
/// mirror and trusts the release key; the mirror is empty.
struct Down {
    s: Setup,
    /// Keeps the mirror's server up.
    _nginx: Nginx,
    tree: MirrorTree,
}

fn down_on_v1() -> Down {
    let s = on_v1();
    let nginx = Nginx::files();
    let tree = MirrorTree::on(&nginx, "m1");
    configure(&s.a, &s.m.url, &[&s.key], &[&tree.url]);
    Down {
        s,
        _nginx: nginx,
        tree,
    }
}

impl Down {
    /// The node's manager is now a loopback port nothing listens on.
    fn manager_gone(&self) {
        let gone = closed_port_url();
        configure(&self.s.a, &gone, &[&self.s.key], &[&self.tree.url]);
    }

    /// Runs the agent, which must install nothing: exit `code`, the live
    /// file still `live`, no journal, no debris, no new signed timestamp,
    /// and a log holding each of `wants`. With `--ignore-backoff`: an
    /// earlier run in the test found the manager down and backs off.
    #[track_caller]
    fn refuses(&self, code: i32, live: &[u8], wants: &[&str], what: &str) {
        let a = &self.s.a;
        let before = signed_timestamp(a);
        let out = a.exec("run", &["--now", "--ignore-backoff"]);
        out.expect_code(code).expect_log(wants);
        a.assert_live(live, what);
        assert!(a.journal().is_none(), "{what}: journal left");
        assert!(a.beside().is_empty(), "{what}: debris: {:?}", a.beside());
        assert_eq!(signed_timestamp(a), before, "{what}");
    }
}

#[test]
fn with_the_manager_down_a_newer_signed_release_installs_from_the_mirror_and_reports_wait() {
    let mut d = down_on_v1();
    let v2 = good_script("v2");
    let sig2 = d.s.key.sign(&v2, &good_comment("2.0.0", T2));
    // Released on the manager, and synced to the mirror; then the manager
    // goes away before the node hears of it.
    let sha2 = signed::publish(&d.s.m, "2.0.0", &v2, Some(&sig2));
    d.tree.release(BIN, "2.0.0", &v2, Some(&sig2));
    d.s.m.kill9();

    let a = &d.s.a;
    let out = a.run();
    out.expect_code(69).expect_log(&[
        "manager unreachable",
        &format!("svc: installing 2.0.0 from mirror {}", d.tree.url),
    ]);
    a.assert_live(&v2, "v2 from the mirror");
    assert_eq!(signed_timestamp(a), Some(T2));
    assert_eq!(
        came_from(a),
        (
            Some(format!("mirror {}", d.tree.url)),
            Some(d.tree.url.clone())
        )
    );
    assert!(
        a.kept(&sha256_hex(&d.s.v1)).exists(),
        "v1 kept for rollback"
    );
    assert!(!a.outbox().is_empty(), "no report queued");

    // The manager is back (on a new port): the next run delivers them.
    d.s.m.restart();
    configure(a, &d.s.m.url, &[&d.s.key], &[&d.tree.url]);
    a.exec("run", &["--now", "--ignore-backoff"]).expect_code(0);
    assert!(a.outbox().is_empty(), "reports still queued");
    let p = progress(&d.s.m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, &sha2), 1, "{}", show(&p));
    assert_eq!(
        installed_hash(&d.s.m, &a.node_id, BIN).as_deref(),
        Some(&*sha2)
    );
    a.assert_live(&v2, "v2 stays");
    assert_eq!(came_from(a).0, Some(format!("mirror {}", d.tree.url)));
}

#[test]
fn a_back_off_of_the_manager_still_reads_the_mirrors_and_is_left_as_it_is() {
    let d = down_on_v1();
    d.manager_gone();
    let a = &d.s.a;
    // The mirror has nothing newer yet: this run finds the manager down
    // and backs off.
    a.run().expect_code(69);
    let backoff = a.state_dir.join("backoff.json");
    let before = std::fs::read(&backoff).expect("a back-off after the manager was down");

    let v2 = good_script("v2");
    let sig2 = d.s.key.sign(&v2, &good_comment("2.0.0", T2));
    d.tree.release(BIN, "2.0.0", &v2, Some(&sig2));
    // Within the back-off: the manager is not contacted, the mirror is.
    a.run().expect_code(69).expect_log(&[
        "backing off until",
        "reading the mirrors",
        &format!("svc: installing 2.0.0 from mirror {}", d.tree.url),
    ]);
    a.assert_live(&v2, "v2 from the mirror during the back-off");
    assert_eq!(
        std::fs::read(&backoff).unwrap(),
        before,
        "a run that did not contact the manager changed its back-off"
    );
}

#[test]
fn with_the_manager_and_the_mirror_down_nothing_changes_and_the_run_exits_69() {
    let d = down_on_v1();
    let gone = format!("{}/", closed_port_url());
    configure(&d.s.a, &closed_port_url(), &[&d.s.key], &[&gone]);
    d.refuses(
        69,
        &d.s.v1,
        &[
            "manager unreachable",
            &format!("mirror {gone}bins/svc.json: unreachable"),
            "no target from the mirrors",
        ],
        "everything down",
    );
}

#[test]
fn with_the_manager_down_a_closed_window_holds_a_mirror_release_and_prestage_fetches_it() {
    let d = down_on_v1();
    let v2 = good_script("v2");
    let sig2 = d.s.key.sign(&v2, &good_comment("2.0.0", T2));
    let t = d.tree.release(BIN, "2.0.0", &v2, Some(&sig2));
    d.manager_gone();
    let (later, opens) = windows::opens_later();
    set(
        &d.s.a,
        &[("windows", json!([later])), ("prestage", json!(true))],
    );

    let out = d.s.a.run();
    out.expect_code(69).expect_log(&[
        &format!("outside maintenance window until {opens}"),
        "the new version is downloaded, verified and staged",
    ]);
    d.s.a.assert_live(&d.s.v1, "v1 until the window opens");
    assert_eq!(d.s.a.beside().len(), 1, "staged: {:?}", d.s.a.beside());

    // Inside the window the staged file goes in, though the mirror has lost it.
    std::fs::remove_file(d.tree.path(&artifact_file(&t.sha256sum))).unwrap();
    set(&d.s.a, &[("windows", json!([windows::open_now()]))]);
    let out = d.s.a.exec("run", &["--now", "--ignore-backoff"]);
    out.expect_code(69)
        .expect_log(&["svc: installing 2.0.0 from mirror"]);
    d.s.a.assert_live(&v2, "v2 from the staged file");
    assert_eq!(
        came_from(&d.s.a),
        (
            Some(format!("mirror {}", d.tree.url)),
            Some(d.tree.url.clone())
        )
    );
    assert!(d.s.a.beside().is_empty(), "debris: {:?}", d.s.a.beside());
}

/// Sets top-level fields of the node's config.
fn set(a: &Agent, fields: &[(&str, serde_json::Value)]) {
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&a.config).unwrap()).unwrap();
    for (k, v) in fields {
        c[*k] = v.clone();
    }
    a.write_config(&c);
}

// ---------------------------------------------------------------------------
// 3. A tampered mirror

#[test]
fn other_bytes_under_the_signed_releases_name_are_refused() {
    let d = down_on_v1();
    let v2 = good_script("v2");
    let sig2 = d.s.key.sign(&v2, &good_comment("2.0.0", T2));
    let t = d.tree.release(BIN, "2.0.0", &v2, Some(&sig2));
    let mut other = v2.clone();
    let last = other.len() - 2;
    other[last] ^= 0x20;
    d.tree.put(&artifact_file(&t.sha256sum), &other);
    d.manager_gone();
    d.refuses(
        1,
        &d.s.v1,
        &["rejected", "does not match the target"],
        "other bytes",
    );

    // The file now names the other bytes' own sha256 and size, and keeps
    // v2's signature: the signature does not cover them.
    let lying = target(BIN, "2.0.0", &other, Some(&sig2));
    d.tree.put(&artifact_file(&lying.sha256sum), &other);
    d.tree.put_bin(BIN, "2.0.0", &[(host_arch(), lying)]);
    d.refuses(
        1,
        &d.s.v1,
        &["the signature does not match the bytes"],
        "bytes that are not the signed ones",
    );
}

#[test]
fn an_older_signed_release_on_the_mirror_is_not_installed() {
    let d = down_on_v1();
    let v2 = install_signed_v2(&d.s);
    // The mirror offers v1 again, validly signed at T1 (a lagging mirror,
    // or one replaying the old release).
    d.tree.release(BIN, "1.0.0", &d.s.v1, Some(&d.s.sig1));
    d.manager_gone();
    d.refuses(
        69,
        &v2,
        &[
            &format!("mirror {} offers", d.tree.url),
            "is not newer than",
            "never downgrades or replays",
        ],
        "an older signed release",
    );
    // allow_downgrade is for the manager's targets, not a mirror's.
    set(&d.s.a, &[("allow_downgrade", json!(true))]);
    d.refuses(69, &v2, &["is not newer than"], "with allow_downgrade");
}

#[test]
fn a_signature_made_for_another_bin_is_refused() {
    let d = down_on_v1();
    let v2 = good_script("v2");
    let sig =
        d.s.key
            .sign(&v2, &comment("other", "2.0.0", host_arch(), T3));
    d.tree.release(BIN, "2.0.0", &v2, Some(&sig));
    d.manager_gone();
    d.refuses(
        1,
        &d.s.v1,
        &["refused", "the signature is for bin="],
        "signed for another bin",
    );
}

#[test]
fn an_unsigned_target_on_the_mirror_is_refused() {
    let d = down_on_v1();
    let v2 = good_script("v2");
    d.tree.release(BIN, "2.0.0", &v2, None);
    d.manager_gone();
    d.refuses(1, &d.s.v1, &["refused", "no signature"], "unsigned");
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let d = down_on_v1();
    let v2 = good_script("v2");
    let stranger = Minisign::generate();
    let sig = stranger.sign(&v2, &good_comment("2.0.0", T2));
    d.tree.release(BIN, "2.0.0", &v2, Some(&sig));
    d.manager_gone();
    d.refuses(1, &d.s.v1, &["not in trusted_keys"], "another key");
}

// ---------------------------------------------------------------------------
// 4. Mirrors without trusted_keys

#[test]
fn without_trusted_keys_nothing_is_taken_from_a_mirror_and_the_log_says_why() {
    let m = Manager::new();
    let nginx = Nginx::files();
    let tree = MirrorTree::on(&nginx, "m1");
    let a = Agent::new(BIN);
    configure(&a, &m.url, &[], &[&tree.url]);
    let v1 = good_script("v1");
    agent::publish(&m, BIN, "1.0.0", &v1);
    a.run().expect_code(0);
    a.assert_live(&v1, "v1");

    let v2 = good_script("v2");
    tree.release(BIN, "2.0.0", &v2, None);
    configure(&a, &closed_port_url(), &[], &[&tree.url]);
    let out = a.run();
    out.expect_code(69);
    let why = "the manager is unreachable and mirrors are set, but targets are taken from a \
               mirror only with trusted_keys (a mirror is not trusted); nothing updated";
    assert_eq!(out.stderr.matches(why).count(), 1, "{}", out.stderr);
    a.assert_live(&v1, "v1 stays");
    assert!(a.outbox().is_empty(), "reports queued: {:?}", a.outbox());
    assert!(a.beside().is_empty(), "debris: {:?}", a.beside());
}
