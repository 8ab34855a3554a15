//! Enrollment under kill -9: a real manager-lite with node authentication
//! and a real agent, stopped at each point of its first enrollment — before
//! it has made its secret, with the secret on disk but the request not yet
//! at the manager, after the manager enrolled it but before the answer
//! arrived, and after the answer. Each time the next run enrolls (or goes
//! on) by itself and installs the target. A relay in front of the manager
//! (`src/relay.rs`) holds requests or swallows answers, and shows what went
//! over the wire: the node's secret goes from the agent to the manager,
//! never back. A second agent with the enrollment token and another secret
//! for an enrolled node id is refused and changes nothing; so is a proposed
//! secret that is another node's, a token of the manager, or malformed.
//! Loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ProgressStatus::Success;
use binproxy_tests::agent::{count, good_script, installed_hash, progress, publish, show, Agent};
use binproxy_tests::enrollment::{secret_of, secret_path, secured, Secured, BIN};
use binproxy_tests::relay::{Mode, Relay};
use binproxy_tests::{request, Response};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn pending_path(a: &Agent) -> PathBuf {
    a.state_dir.join("node.secret.pending")
}

/// The proposal on disk, checked: 64 lowercase hex digits, mode 0600.
fn pending_of(a: &Agent) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = pending_path(a);
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no proposed secret on disk before the request: {e}"));
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} mode {mode:o}", path.display());
    assert!(
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "not 64 hex digits: {}",
        path.display()
    );
    text
}

/// `method path` on the manager with `Authorization: auth` and a JSON body.
fn call(s: &Secured, method: &str, path: &str, auth: &str, body: &Value) -> Response {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth),
    ];
    request(s.m.addr, method, path, &headers, &bytes)
}

/// The manager's record of a node (404 while it has never been seen).
fn node_record(s: &Secured, node: &str) -> Response {
    let admin = format!("Bearer {}", s.m.token);
    call(
        s,
        "GET",
        &format!("/api/v1/nodes/{node}"),
        &admin,
        &Value::Null,
    )
}

/// A manager with v1 of the bin published, a relay in front of it, and an
/// agent that talks to the manager through the relay; `bin` goes into the
/// agent's bin entry, `top` into the config itself.
fn setup(mode: Mode, bin: &Value, top: &Value) -> (Secured, Relay, Agent, String) {
    let s = secured();
    let relay = Relay::start(s.m.addr, mode);
    let a = Agent::new(BIN);
    a.place(&good_script("v0"));
    let mut config = a.config_json(&relay.url, bin);
    config["enroll_token_file"] = json!(s.token_file("agent", &s.token));
    for (k, v) in top.as_object().unwrap() {
        config[k] = v.clone();
    }
    a.write_config(&config);
    let s1 = publish(&s.m, BIN, "1.0.0", &good_script("v1"));
    (s, relay, a, s1)
}

/// After the run that followed a kill: v1 is installed and reported, the
/// node authenticates with the secret it made itself (`proposed`, when the
/// killed run had made one): the agent proposed it over the wire, the
/// manager never sent a secret back, nobody logged it.
fn assert_enrolled_by_itself(
    s: &Secured,
    relay: &Relay,
    a: &Agent,
    s1: &str,
    proposed: Option<&str>,
) {
    a.assert_live(&good_script("v1"), "after the run that followed the kill");
    let p = progress(&s.m, BIN, &a.node_id);
    assert_eq!(count(&p, Success, s1), 1, "{}", show(&p));
    assert_eq!(installed_hash(&s.m, &a.node_id, BIN).as_deref(), Some(s1));
    let secret = secret_of(a);
    if let Some(proposed) = proposed {
        assert_eq!(
            secret, proposed,
            "the secret on disk before the kill is the node's"
        );
    }
    assert!(!pending_path(a).exists(), "the proposal stays pending");
    assert!(
        relay
            .from_clients()
            .contains(&format!("\"proposed_secret\":\"{secret}\"")),
        "the agent did not propose the secret it keeps"
    );
    assert!(
        !relay.from_backend().contains("node_secret"),
        "the manager sent a secret: the node's secret must be made on the node"
    );
    assert!(
        !s.m.log().contains(&secret),
        "the manager logged the secret"
    );
    let target = format!("/api/v1/bins/{BIN}?node_id={}", a.node_id);
    let r = call(s, "GET", &target, &format!("Bearer {secret}"), &Value::Null);
    assert_eq!(r.status, 200, "the node's own secret is refused: {r}");
}

/// Killed in its splay delay, before it made its secret: nothing is on
/// disk and the manager has seen nothing; the next run enrolls.
#[test]
fn kill9_before_the_secret_is_made_then_the_next_run_enrolls_and_updates() {
    let (s, relay, mut a, s1) = setup(Mode::Forward, &json!({}), &json!({"splay": "1h"}));
    // A node id whose splay offset leaves the run asleep for the whole test.
    let base = a.node_id.clone();
    let asleep = |id: &str| binproxy::cycle::splay_offset(id, Duration::from_secs(3600));
    a.node_id = (0..100)
        .map(|n| format!("{base}-{n}"))
        .find(|id| asleep(id) > Duration::from_secs(60))
        .expect("a node id with a splay offset over a minute");
    let mut config: Value = serde_json::from_slice(&fs::read(&a.config).unwrap()).unwrap();
    config["node_id"] = json!(a.node_id);
    a.write_config(&config);
    let mut run = a.spawn("run", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run.try_exit().is_none(),
        "the run ended in its splay: {}",
        run.output()
    );
    assert!(!pending_path(&a).exists() && !secret_path(&a).exists());
    a.kill9(&mut run);
    assert_eq!(relay.connections(), 0, "the killed run reached the manager");
    assert_eq!(node_record(&s, &a.node_id).status, 404);

    a.run().expect_code(0);
    assert_enrolled_by_itself(&s, &relay, &a, &s1, None);
}

/// Killed with its secret on disk and its request not yet at the manager
/// (the relay holds it): the next run proposes the same secret.
#[test]
fn kill9_with_the_secret_on_disk_before_the_manager_saw_it_then_the_next_run_proposes_it_again() {
    let (s, relay, a, s1) = setup(Mode::Hold, &json!({}), &json!({}));
    let mut run = a.spawn("run", &["--now"]);
    wait_until_sent(&relay, &mut run);
    let proposed = pending_of(&a);
    assert!(!secret_path(&a).exists());
    a.kill9(&mut run);
    assert_eq!(
        node_record(&s, &a.node_id).status,
        404,
        "the manager saw it"
    );

    relay.set_mode(Mode::Forward);
    a.run().expect_code(0);
    assert_enrolled_by_itself(&s, &relay, &a, &s1, Some(&proposed));
}

/// Killed after the manager enrolled it, before the answer arrived (the
/// relay swallows it): the manager holds the secret's hash, the agent only
/// its pending proposal. Before the change this node was locked out (409).
#[test]
fn kill9_after_the_manager_enrolled_it_but_before_the_answer_then_the_next_run_enrolls_again() {
    let (s, relay, a, s1) = setup(Mode::DropAnswers, &json!({}), &json!({}));
    let mut run = a.spawn("run", &["--now"]);
    wait_until_sent(&relay, &mut run);
    wait_for("the manager's answer (dropped)", &mut run, || {
        relay.from_backend().contains("HTTP/1.1 200")
    });
    // Read now, checked after the next run: the lock-out shows first.
    let proposed = fs::read_to_string(pending_path(&a)).ok();
    assert!(!secret_path(&a).exists());
    a.kill9(&mut run);
    let r = node_record(&s, &a.node_id);
    assert_eq!(r.status, 200, "the manager did not enroll it: {r}");

    relay.set_mode(Mode::Forward);
    let out = a.run();
    assert_eq!(
        out.code,
        Some(0),
        "locked out after the enrollment answer was lost: {out:?}"
    );
    let proposed = proposed.expect("no proposed secret on disk before the request");
    assert_enrolled_by_itself(&s, &relay, &a, &s1, Some(&proposed));
}

/// Killed after the answer, in the update that follows (a preflight that
/// waits): the secret is kept, and the next run goes on with it.
#[test]
fn kill9_after_the_answer_then_the_next_run_goes_on_with_its_secret() {
    let dir = binproxy_tests::TempDir::new("marks");
    let (go, started) = (dir.join("go"), dir.join("started"));
    let preflight = format!(
        "touch {}; i=0; while [ ! -e {g} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
        started.display(),
        g = go.display()
    );
    let bin = json!({"preflight": ["sh", "-c", preflight, "preflight", "{path}"]});
    let (s, relay, a, s1) = setup(Mode::Forward, &bin, &json!({}));
    let mut run = a.spawn("run", &["--now"]);
    wait_for("the preflight to start", &mut run, || started.exists());
    let secret = secret_of(&a);
    assert!(!pending_path(&a).exists());
    a.kill9(&mut run);

    fs::write(&go, b"").unwrap();
    a.run().expect_code(0);
    assert_eq!(secret_of(&a), secret, "the secret changed");
    assert_enrolled_by_itself(&s, &relay, &a, &s1, Some(&secret));
}

/// The enrollment token with another secret for an enrolled node id: 409,
/// and neither the manager's record nor the node's secret changes; the
/// same secret again is accepted (it proves the node). A node that lost
/// its secret needs an admin's revoke, as documented.
#[test]
fn another_secret_for_an_enrolled_node_is_refused_and_changes_nothing() {
    let s = secured();
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);
    let labelled = |agent: &Agent, owner: &str| {
        let mut c = agent.config_json(&s.m.url, &json!({}));
        c["enroll_token_file"] = json!(token_file);
        c["labels"] = json!({"owner": owner});
        agent.write_config(&c);
    };
    labelled(&a, "a");
    let s1 = publish(&s.m, BIN, "1.0.0", &good_script("v1"));
    a.run().expect_code(0);
    let secret = secret_of(&a);
    let before = node_record(&s, &a.node_id).json();

    // A second host claiming the same node id with the token.
    let mut b = Agent::new(BIN);
    b.node_id.clone_from(&a.node_id);
    labelled(&b, "b");
    let out = b.run();
    assert_ne!(out.code, Some(0), "the second agent was accepted: {out:?}");
    assert!(out.stderr.contains("409"), "{}", out.stderr);
    assert!(
        !secret_path(&b).exists(),
        "the refused agent stored a secret"
    );
    let theirs = pending_of(&b);
    assert!(
        b.live_bytes().is_none(),
        "the refused agent installed something"
    );
    let after = node_record(&s, &a.node_id).json();
    assert_eq!(
        after["node"]["labels"], before["node"]["labels"],
        "{after:#}"
    );
    assert_eq!(after["node"]["labels"]["owner"], "a");

    let token = format!("Bearer {}", s.token);
    let mut body = json!({"node_id": a.node_id, "labels": {"owner": "b"}});
    body["proposed_secret"] = json!(theirs);
    let r = call(&s, "POST", "/api/v1/keepalive", &token, &body);
    assert_eq!(r.status, 409, "{r}");
    assert!(
        !r.text().contains(&theirs),
        "the answer quotes the secret: {r}"
    );
    let r = call(
        &s,
        "POST",
        "/api/v1/keepalive",
        &format!("Bearer wrong-{}", s.token),
        &body,
    );
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(
        node_record(&s, &a.node_id).json()["node"]["labels"]["owner"],
        "a"
    );
    // The node's own secret, proposed again: accepted, nothing sent back.
    body["proposed_secret"] = json!(secret);
    body["labels"] = json!({"owner": "a"});
    let r = call(&s, "POST", "/api/v1/keepalive", &token, &body);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["enrolled"], true, "{r}");
    assert!(r.json().get("node_secret").is_none(), "{r}");

    // The first node still works with its secret.
    a.run().expect_code(0);
    assert_eq!(secret_of(&a), secret);
    assert_eq!(installed_hash(&s.m, &a.node_id, BIN).as_deref(), Some(&*s1));

    // A node that lost node.secret after enrolling: refused until revoked.
    fs::remove_file(secret_path(&a)).unwrap();
    let out = a.run();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("node revoke"), "{}", out.stderr);
    let admin = format!("Bearer {}", s.m.token);
    let revoke = format!("/api/v1/nodes/{}/secret", a.node_id);
    let r = call(&s, "DELETE", &revoke, &admin, &Value::Null);
    assert!(r.status < 300, "{r}");
    a.run().expect_code(0);
    assert_ne!(secret_of(&a), secret, "a fresh secret after the revoke");
}

/// Waits until the relay has the run's keepalive (the run must still be
/// going).
fn wait_until_sent(relay: &Relay, run: &mut binproxy_tests::agent::Spawned) {
    wait_for("the keepalive at the relay", run, || {
        relay.from_clients().contains("POST /api/v1/keepalive")
    });
}

/// Waits for `cond`, failing with the run's output if it ends first.
fn wait_for(what: &str, run: &mut binproxy_tests::agent::Spawned, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            run.try_exit().is_none(),
            "the run ended before {what}:\n{}",
            run.output()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}:\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A secret that is already another node's, or a token of the manager, or
/// not the shape an agent makes, enrolls nothing: 409 or 400, no record,
/// and the token it equals keeps working as what it was.
#[test]
fn a_secret_that_is_taken_or_a_token_or_malformed_enrolls_nothing() {
    let s = secured();
    let token_file = s.token_file("agent", &s.token);
    let a = s.agent(&token_file);
    a.run().expect_code(0);
    let taken = secret_of(&a);
    let admin = format!("Bearer {}", s.m.token);
    let body = json!({"name": "ci", "role": "viewer"});
    let r = call(&s, "POST", "/api/v1/tokens", &admin, &body);
    assert_eq!(r.status, 201, "{r}");
    let viewer = r.json()["token"].as_str().unwrap().to_owned();

    let enroll = format!("Bearer {}", s.token);
    for (i, (secret, status)) in [
        (taken.as_str(), 409),
        (viewer.as_str(), 409),
        ("0123abcd", 400),
        (&*taken.to_uppercase(), 400),
    ]
    .into_iter()
    .enumerate()
    {
        let node = format!("{}-other-{i}", a.node_id);
        let body = json!({"node_id": node, "proposed_secret": secret});
        let r = call(&s, "POST", "/api/v1/keepalive", &enroll, &body);
        assert_eq!(r.status, status, "proposal {i}: {r}");
        assert!(!r.text().contains(secret), "the answer quotes it: {r}");
        assert_eq!(node_record(&s, &node).status, 404, "proposal {i} wrote");
    }
    let r = call(
        &s,
        "GET",
        "/api/v1/nodes",
        &format!("Bearer {viewer}"),
        &Value::Null,
    );
    assert_eq!(r.status, 200, "the viewer token was shadowed: {r}");
    let target = format!("/api/v1/bins/{BIN}?node_id={}", a.node_id);
    let r = call(&s, "GET", &target, &format!("Bearer {taken}"), &Value::Null);
    assert_ne!(r.status, 401, "the node's secret stopped working: {r}");
    assert!(!s.m.log().contains(&taken) && !s.m.log().contains(&viewer));
}
