//! Webhook alerts of the real manager-lite (issue #6 item 7): `serve --webhook
//! URL --webhook-format F` against small receivers (the tests' stub HTTP
//! server, recording every body, answering 500 to its first requests). A fleet made through the real API pauses a release with
//! failures, rolls a node back, completes a release and lets its nodes go
//! offline; each event must arrive once, retried past the 500s, in the shape
//! of its format, and the webhook's path (its secret) must never be logged.
//! Every wait is a bounded poll; nothing measures time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use binproxy_tests::fleet::{create_release, upload_versions};
use binproxy_tests::stub::StubServer;
use binproxy_tests::wait_until;
use binproxy_tests::{Manager, ManagerOptions};
use serde_json::{json, Value};

/// Longest a test waits for an alert (retries take 1 + 2 s).
const LIMIT: Duration = Duration::from_secs(60);
/// The webhook path: stands for a Slack token; must never reach the log.
const SECRET: &str = "T000/B000/SeCrEt-xyzzy";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    status: u16,
    path: String,
    body: Value,
}

/// A webhook endpoint on 127.0.0.1 answering 500 to its first `fail_first`
/// requests and 200 after.
struct Receiver {
    server: StubServer,
    fail_first: usize,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        let server = StubServer::start(move |x| {
            let status = if x.index < fail_first { 500 } else { 200 };
            x.respond(status, &[], b"");
        });
        Receiver { server, fail_first }
    }

    fn url(&self) -> String {
        format!("{}/hook/{SECRET}", self.server.url)
    }

    /// Every request, with the status it was answered.
    fn hits(&self) -> Vec<Hit> {
        self.server
            .seen()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                assert!(
                    r.header("content-length").is_some(),
                    "the webhook request has a Content-Length: {r:?}"
                );
                Hit {
                    status: if i < self.fail_first { 500 } else { 200 },
                    path: r.path,
                    body: serde_json::from_slice(&r.body).expect("the webhook body is JSON"),
                }
            })
            .collect()
    }

    /// Bodies answered 200.
    fn accepted(&self) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .map(|h| h.body)
            .collect()
    }

    /// Accepted bodies (JSON format) of `event`.
    fn events(&self, event: &str) -> Vec<Value> {
        self.accepted()
            .into_iter()
            .filter(|b| b["event"] == event)
            .collect()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        wait_until(what, LIMIT, || cond(&self.accepted()));
    }
}

fn manager(hooks: &[&Receiver], format: &str, offline_after: &str) -> Manager {
    let mut opts = ManagerOptions::default()
        .arg("--rollout-interval")
        .arg("100ms")
        .arg("--offline-after")
        .arg(offline_after)
        .arg("--webhook-format")
        .arg(format);
    for h in hooks {
        opts = opts.arg("--webhook").arg(&h.url());
    }
    Manager::new_with(opts)
}

fn report(m: &Manager, bin: &str, node: &str, sha: &str, status: &str, message: &str) {
    m.post_json(
        &format!("/api/v1/bins/{bin}/progress"),
        &json!({"node_id": node, "targetHash": sha, "status": status,
                "processingTime": 1200, "message": message}),
    )
    .expect(201);
}

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(binproxy_tests::is_rfc3339)
}

#[test]
#[allow(clippy::too_many_lines)]
fn json_alerts_arrive_once_retried_past_failures() {
    // The first webhook fails its first two attempts; the second never does.
    let flaky = Receiver::start(2);
    let steady = Receiver::start(0);
    let m = manager(&[&flaky, &steady], "json", "3s");
    let app = upload_versions(&m, "app", &["1.0", "2.0"]);
    let svc = upload_versions(&m, "svc", &["1.0"]);
    let nodes = ["n1", "n2", "n3", "n4"];
    for n in nodes {
        m.keepalive(n, "x86_64", &[("app", &app["1.0"])])
            .expect(200);
    }

    // Two failures > max_failures 1: the rollout pauses the release.
    let paused = create_release(
        &m,
        &json!({"bin_name": "app", "version": "2.0", "max_failures": "1"}),
    );
    report(
        &m,
        "app",
        "n1",
        &app["2.0"],
        "rolled_back",
        "health check failed",
    );
    report(&m, "app", "n2", &app["2.0"], "failed", "download failed");
    flaky.wait_for("release_paused alert", |b| {
        b.iter().any(|x| x["event"] == "release_paused")
    });

    // Every node runs svc 1.0: the release completes.
    let done = create_release(&m, &json!({"bin_name": "svc", "version": "1.0"}));
    for n in nodes {
        m.keepalive(n, "x86_64", &[("app", &app["1.0"]), ("svc", &svc["1.0"])])
            .expect(200);
    }
    flaky.wait_for("release_completed alert", |b| {
        b.iter().any(|x| x["event"] == "release_completed")
    });

    // The nodes fall silent: each goes offline once.
    flaky.wait_for("node_offline for every node", |b| {
        b.iter().filter(|x| x["event"] == "node_offline").count() >= nodes.len()
    });
    // A later node comes and goes: proof that later watches ran (and had
    // the chance to alert the first four again).
    m.keepalive("late", "x86_64", &[]).expect(200);
    flaky.wait_for("node_offline for the late node", |b| {
        b.iter()
            .any(|x| x["event"] == "node_offline" && x["node"] == "late")
    });

    // Retried: the first two attempts got 500, with the same body as the third.
    let hits = flaky.hits();
    assert_eq!(hits[0].status, 500);
    assert_eq!(hits[1].status, 500);
    assert_eq!(hits[2].status, 200);
    assert_eq!(hits[0].body, hits[2].body, "a retry resends the same alert");
    assert!(hits.iter().all(|h| h.path == format!("/hook/{SECRET}")));

    let p = flaky.events("release_paused");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["release"], paused.id);
    assert_eq!(p[0]["bin"], "app");
    assert_eq!(p[0]["version"], "2.0");
    assert!(
        p[0]["reason"].as_str().unwrap().contains("failures"),
        "{}",
        p[0]
    );
    assert!(is_time(&p[0]["time"]), "{}", p[0]);

    let c = flaky.events("release_completed");
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["release"], done.id);
    assert_eq!(c[0]["bin"], "svc");
    assert!(is_time(&c[0]["time"]), "{}", c[0]);

    let r = flaky.events("node_rolled_back");
    assert_eq!(r.len(), 1, "only the rolled-back report alerts: {r:?}");
    assert_eq!(r[0]["node"], "n1");
    assert_eq!(r[0]["bin"], "app");
    assert_eq!(r[0]["target_hash"], app["2.0"].as_str());
    assert_eq!(r[0]["reason"], "health check failed");

    // Once per online→offline transition: a node that came back (the svc
    // keepalives may follow a first silence) may go offline again, but never
    // twice for the same last contact.
    let offline = flaky.events("node_offline");
    for n in nodes.iter().chain(&["late"]) {
        let seen: Vec<&str> = offline
            .iter()
            .filter(|x| x["node"] == *n)
            .map(|x| x["last_seen"].as_str().unwrap())
            .collect();
        assert!(!seen.is_empty(), "no node_offline for {n}: {offline:?}");
        assert!(
            seen.iter().all(|t| binproxy_tests::is_rfc3339(t)),
            "{seen:?}"
        );
        let distinct: std::collections::BTreeSet<&str> = seen.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "{n} alerted twice for one silence: {offline:?}"
        );
    }

    // The steady webhook got the same alerts, each once, no retries needed.
    wait_until("the steady webhook catches up", LIMIT, || {
        steady.accepted().len() == flaky.accepted().len()
    });
    assert!(steady.hits().iter().all(|h| h.status == 200));

    let log = m.log();
    assert!(
        !log.contains("SeCrEt"),
        "the webhook path was logged:\n{log}"
    );
    assert!(
        log.contains(&format!("http://{}", flaky.server.addr)),
        "{log}"
    );

    // The deliveries are counted in /metrics (once each answer is read).
    let sent = || {
        let text = m.admin_get("/metrics").text();
        text.lines()
            .find(|l| l.starts_with("manager_alerts_total{result=\"sent\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no sent counter:\n{text}"))
    };
    let want = 2 * flaky.accepted().len() as u64;
    wait_until(
        "manager_alerts_total{result=sent} counts both webhooks",
        LIMIT,
        || sent() == want,
    );
}

#[test]
fn slack_and_dingtalk_bodies() {
    for format in ["slack", "dingtalk"] {
        let hook = Receiver::start(0);
        let m = manager(&[&hook], format, "180s");
        let shas = upload_versions(&m, "tool", &["1.0"]);
        m.keepalive("n1", "x86_64", &[]).expect(200);
        let rel = create_release(&m, &json!({"bin_name": "tool", "version": "1.0"}));
        report(
            &m,
            "tool",
            "n1",
            &shas["1.0"],
            "rolled_back",
            "<!channel> broke & died",
        );
        m.keepalive("n1", "x86_64", &[("tool", &shas["1.0"])])
            .expect(200);
        hook.wait_for(&format!("{format}: two alerts"), |b| b.len() >= 2);
        let bodies = hook.accepted();
        let texts: Vec<String> = bodies
            .iter()
            .map(|b| {
                let obj = b.as_object().unwrap();
                if format == "slack" {
                    assert_eq!(obj.len(), 1, "slack body is only text: {b}");
                    b["text"].as_str().unwrap().to_owned()
                } else {
                    assert_eq!(obj.len(), 2, "{b}");
                    assert_eq!(b["msgtype"], "text");
                    b["text"]["content"].as_str().unwrap().to_owned()
                }
            })
            .collect();
        let completed = format!("release {} (tool 1.0) completed", rel.id);
        assert!(
            texts.iter().any(|t| t.contains(&completed)),
            "{format}: {texts:?}"
        );
        let rolled = texts
            .iter()
            .find(|t| t.contains("node n1 rolled back tool"))
            .unwrap_or_else(|| panic!("{format}: {texts:?}"));
        if format == "slack" {
            assert!(
                rolled.contains("&lt;!channel&gt; broke &amp; died"),
                "{rolled}"
            );
        } else {
            assert!(rolled.contains("<!channel> broke & died"), "{rolled}");
        }
    }
}

#[test]
fn bad_webhook_flags_are_refused_without_echoing_the_url() {
    let out = std::process::Command::new(binproxy_tests::manager_bin())
        .args(["serve", "--webhook", "ftp://example/SeCrEt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--webhook"), "{err}");
    assert!(!err.contains("SeCrEt"), "{err}");
    let out = std::process::Command::new(binproxy_tests::manager_bin())
        .args(["serve", "--webhook-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
