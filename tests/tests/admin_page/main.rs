//! The admin page (`GET /`) in a real headless Chromium, driven over
//! WebDriver (`binproxy_tests::browser`), against the real `manager-lite`
//! with fleets built over its HTTP API. It checks that what the page shows
//! equals what the API says (summary, release cards with their wave bars,
//! the failures list with each node's reason, the version bars), that a
//! version bar lists its nodes, that a node's link opens its view, that
//! only the actions a release's state accepts and the token's role may do
//! are offered (none to a viewer) and each needs a confirm step, that a rollout advancing while the page is open redraws
//! the bars without a click, that an idle page polls with 304s, that the
//! Live toggle stops and restarts the refreshing, and the page's security
//! headers. Screenshots of a rollout in progress and of a paused one go to
//! `docs/` with `BINPROXY_UPDATE_SCREENSHOT=1`. It fails, naming the
//! install command, when Chromium or chromedriver is missing. Every wait is
//! a bounded poll.
//!
//! This file holds what the tests share and the policy test; `flow.rs` the
//! main flow, `live.rs` the rollout under an open page, `narrow.rs` the
//! narrow window and the keyboard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{ProgressStatus, Release, ReleaseStatus};
use binproxy_tests::browser::Browser;
use binproxy_tests::fleet::{
    admin, create_release, drive, drive_fleet, get_release, in_percent, node_view, rollout_manager,
    upload_versions, Fleet, Mode,
};
use binproxy_tests::page::{data, enter_token, open, save_screenshot, wait_error, wait_loaded};
use binproxy_tests::Manager;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod flow;
mod live;
mod narrow;

/// The policy the page must send, word for word.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The page's script modules.
const SCRIPTS: [&str; 6] = ["app", "api", "dom", "fleet", "nodes", "releases"];

const NODES: usize = 12;
/// A node name that is markup: the page must show it as text.
const EVIL_NAME: &str = "<img src=x onerror=\"window.__xss=1\"><b>bold</b>";

/// What the test built, to compare the page with.
struct Built {
    /// The wave release of `svc` 2.0.0.
    release: u64,
    reached: Vec<String>,
    failing: BTreeSet<String>,
}

/// Every node on `svc` 1.0.0 and `web` 1.2.0 (of 1.0.0 to 1.2.0).
fn fleet_on_first_versions(m: &Manager, fleet: &mut Fleet) -> BTreeMap<String, String> {
    let svc = upload_versions(m, "svc", &["1.0.0", "2.0.0"]);
    let web = upload_versions(m, "web", &["1.0.0", "1.1.0", "1.2.0"]);
    create_release(m, &json!({"bin_name": "svc", "version": "1.0.0"}));
    create_release(m, &json!({"bin_name": "web", "version": "1.2.0"}));
    let n = fleet.len();
    drive_fleet(m, fleet, Mode::Update, "svc 1.0.0, web 1.2.0", |f| {
        f.running("svc", &svc["1.0.0"]).len() == n && f.running("web", &web["1.2.0"]).len() == n
    });
    svc
}

/// Then svc 2.0.0 in waves of 50% (waiting an hour) and 100%, two nodes
/// of its first wave failing.
fn build_fleet(m: &Manager, fleet: &mut Fleet) -> Built {
    fleet_on_first_versions(m, fleet);
    let r = create_release(
        m,
        &json!({"bin_name": "svc", "version": "2.0.0", "note": "the page test",
                "waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}],
                "max_failures": "50"}),
    );
    let reached: Vec<String> = fleet
        .nodes
        .iter()
        .filter(|n| in_percent(r.id, &n.id, 50))
        .map(|n| n.id.clone())
        .collect();
    assert!(reached.len() >= 3, "the first wave reaches {reached:?}");
    let failing: BTreeSet<String> = reached.iter().take(2).cloned().collect();
    for id in &failing {
        fleet.node_mut(id).fails_with = Some(ProgressStatus::Failed);
    }
    let ok = u64::try_from(reached.len() - 2).unwrap();
    drive(
        m,
        fleet,
        r.id,
        Mode::Update,
        "2 failures, the rest of wave 1 on 2.0.0",
        |r| r.counts.failed == 2 && r.counts.success == ok,
    );
    Built {
        release: r.id,
        reached,
        failing,
    }
}

/// A named token with `role`; returns its secret.
fn token(m: &Manager, name: &str, role: &str) -> String {
    let created = admin(
        m,
        "POST",
        "/api/v1/tokens",
        Some(&json!({"name": name, "role": role})),
    )
    .expect(201)
    .json();
    created["token"].as_str().unwrap().to_owned()
}

fn card(id: u64) -> String {
    format!("#releases article[data-release-id=\"{id}\"]")
}

fn figure(b: &Browser, id: u64, class: &str) -> String {
    b.text_of(&format!("{} .counts b.{class}", card(id)))
}

/// The action buttons a release's card offers.
fn offered(b: &Browser, id: u64) -> Vec<String> {
    let v = b.script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.dataset.op);",
        &[json!(format!("{} button.op", card(id)))],
    );
    serde_json::from_value(v).unwrap()
}

/// What the API says a release accepts now.
fn api_actions(m: &Manager, id: u64) -> Vec<String> {
    let v = admin(m, "GET", &format!("/api/v1/releases/{id}"), None)
        .expect(200)
        .json();
    serde_json::from_value(v["actions"].clone()).unwrap()
}

/// Clicks `op` on a release and, in its confirm step, yes.
fn confirm_op(b: &Browser, id: u64, op: &str) -> String {
    b.click_on(&format!("{} button.op[data-op=\"{op}\"]", card(id)));
    let effect = b.text_of(&format!("{} .confirm .effect", card(id)));
    b.click_on(&format!("{} .confirm button.confirm-op", card(id)));
    effect
}

#[test]
fn page_and_assets_carry_a_strict_policy() {
    let m = Manager::new();
    let scripts = SCRIPTS.map(|s| format!("/ui/{s}.js"));
    let pages = [
        ("/".to_owned(), "text/html"),
        ("/ui/app.css".to_owned(), "text/css"),
    ];
    for (path, kind) in pages
        .into_iter()
        .chain(scripts.into_iter().map(|p| (p, "text/javascript")))
    {
        let r = m.get(&path);
        r.expect(200);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}: {r}"
        );
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        // Revalidated, not downloaded again, by a browser that has it.
        let etag = r.header("etag").unwrap().to_owned();
        m.get_with(&path, &[("If-None-Match", &etag)]).expect(304);
    }
    // The page is public (it holds no data); the API behind it is not.
    m.get("/api/v1/nodes").expect_error(401);
    m.get("/api/v1/fleet").expect_error(401);
    m.get("/ui/nope.js").expect_error(404);
    m.get("/ui/..%2fapp.js").expect_error(404);
}
