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

#[test]
fn admin_page_in_a_real_browser() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], NODES);
    let built = build_fleet(&m, &mut fleet);
    m.post_json(
        "/api/v1/keepalive",
        &json!({"node_id": "evil", "node_name": EVIL_NAME, "cpu_arch": "x86_64"}),
    )
    .expect(200);
    let viewer = token(&m, "page-viewer", "viewer");

    let b = Browser::start(1280, 1000);
    b.goto(&format!("{}/", m.url));
    b.wait_for(
        "the page's script to run",
        "return document.body.dataset.state === 'no-token';",
    );
    assert_eq!(b.text_of("#status"), "Enter a token to load the fleet.");
    // The browser enforces the policy: an injected inline script does not run.
    let ran = b.script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1;'; \
         document.body.appendChild(s); return window.__inline === 1;",
        &[],
    );
    assert_eq!(
        ran,
        Value::Bool(false),
        "an inline script ran despite the CSP"
    );

    // A wrong token: the API's 401 in the status line.
    enter_token(&b, "not-a-token-at-all");
    let shown = wait_error(&b, "401");
    assert!(shown.contains("unknown admin token"), "{shown}");

    // A viewer reads everything.
    enter_token(&b, &viewer);
    wait_loaded(&b, 0);
    check_summary(&b, &m);
    check_release(&b, &m, &built);
    check_failures(&b, &m, &built);
    check_version_bars(&b, &m);
    check_nodes(&b, &fleet, &built);
    check_node_view(&b, &m, &built);

    // ...but is offered no action: every button would answer 403.
    let id = built.release;
    assert_eq!(offered(&b, id), Vec::<String>::new(), "a viewer's buttons");

    // The admin is offered what the release's state accepts.
    enter_token(&b, &m.token);
    let loads = wait_loaded(&b, 0);
    assert_eq!(offered(&b, id), api_actions(&m, id));
    assert_eq!(offered(&b, id), ["pause", "promote", "cancel", "rollback"]);
    // A completed release offers nothing.
    let done = m.admin_get("/api/v1/releases?bin_name=web").json();
    let web = done[0]["id"].as_u64().unwrap();
    assert_eq!(b.text_of(&format!("{} .status", card(web))), "completed");
    assert!(offered(&b, web).is_empty());

    // Saying no to the confirm step changes nothing.
    b.click_on(&format!("{} button.op[data-op=\"pause\"]", card(id)));
    b.click_on(&format!("{} .confirm button.cancel-op", card(id)));
    assert_eq!(b.count(&format!("{} .confirm", card(id))), 0);
    assert_eq!(get_release(&m, id).status, ReleaseStatus::RollingOut);

    // The admin pauses it: confirm, then the card shows it paused.
    let effect = confirm_op(&b, id, "pause");
    assert!(effect.contains("stop being offered"), "{effect}");
    b.poll("the release to show paused", |b| {
        (b.text_of(&format!("{} .status", card(id))) == "paused").then_some(())
    });
    wait_loaded(&b, loads);
    let r = get_release(&m, id);
    assert_eq!(r.status, ReleaseStatus::Paused, "after confirming Pause");
    let last = r.history.last().unwrap();
    assert!(
        last.action.contains("pause") && last.actor == "admin",
        "{last:?}"
    );
    assert!(b.text_of("#status").contains("pause done, now paused"));
    assert_eq!(
        b.text_of(&format!("{} .paused-reason", card(id))),
        r.paused_reason.clone().unwrap()
    );
    // Only what a paused release accepts is offered: no approve, no pause.
    let ops = offered(&b, id);
    assert_eq!(ops, api_actions(&m, id));
    assert_eq!(ops, ["resume", "promote", "cancel", "rollback"]);
    save_screenshot(&b, "admin-page-paused.png");

    // The token lives in sessionStorage only: a reload loads at once with
    // it, and Forget removes it.
    let stored = b.script(
        "return [sessionStorage.getItem('manager-lite.token'), localStorage.length];",
        &[],
    );
    assert_eq!(stored, json!([m.token, 0]));
    b.goto(&format!("{}/", m.url));
    wait_loaded(&b, 0);
    assert_eq!(b.text_of(&format!("{} .status", card(id))), "paused");
    b.click_on("#forget-token");
    assert_eq!(b.script("return sessionStorage.length;", &[]), json!(0));
    assert_eq!(b.count("#releases article"), 0);
}

/// The summary equals the fleet the API counts.
fn check_summary(b: &Browser, m: &Manager) {
    let f = admin(m, "GET", "/api/v1/fleet", None).expect(200).json();
    assert_eq!(f["nodes"], json!(NODES + 1));
    assert_eq!(b.text_of("#nodes-online"), f["online"].to_string());
    assert_eq!(b.text_of("#nodes-offline"), f["offline"].to_string());
    assert_eq!(b.text_of("#bins-count"), "2");
    assert_eq!(b.text_of("#releases-active"), "1");
    assert_eq!(b.count("#releases article[data-release-id]"), 3);
}

/// The release's card: where it is, its counts, and bars per wave that
/// add up to what the API counts.
fn check_release(b: &Browser, m: &Manager, built: &Built) {
    let release: Release = get_release(m, built.release);
    let id = built.release;
    let counts = &release.counts;
    assert_eq!(b.text_of(&format!("{} .status", card(id))), "rolling_out");
    assert_eq!(b.text_of(&format!("{} .wave", card(id))), "wave 1 of 2");
    assert_eq!(b.text_of(&format!("{} .percent", card(id))), "50%");
    let time = b.text_of(&format!("{} .wave-time", card(id)));
    assert!(
        time.starts_with("in this wave ") && time.ends_with("of its 1 h wait"),
        "{time}"
    );
    assert_eq!(figure(b, id, "failed"), "2");
    assert_eq!(figure(b, id, "success"), counts.success.to_string());
    assert_eq!(figure(b, id, "targeted"), counts.targeted.to_string());
    assert_eq!(counts.targeted, u64::try_from(built.reached.len()).unwrap());
    assert!(figure(b, id, "saved").ends_with("%)"));
    assert_eq!(counts.waves.len(), 2, "{counts:?}");
    for (i, w) in counts.waves.iter().enumerate() {
        let row = format!("{} .wave-row[data-wave=\"{i}\"]", card(id));
        let seg = |kind: &str| {
            let sel = format!("{row} .seg[data-kind=\"{kind}\"]");
            if b.count(&sel) == 0 {
                return "0".to_owned();
            }
            let title = b.script(
                "return document.querySelector(arguments[0]).title;",
                &[json!(sel)],
            );
            title
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(seg("success"), w.success.to_string(), "wave {i}");
        assert_eq!(seg("failed"), w.failed.to_string(), "wave {i}");
        let words = b.text_of(&format!("{row} .wave-counts"));
        assert!(
            words.starts_with(&format!("{} of {} reached", w.reached, w.target)),
            "{words}"
        );
    }
    let phases: Vec<String> = (0..2)
        .map(|i| {
            let v = b.script(
                "return document.querySelector(arguments[0]).className;",
                &[json!(format!("{} .wave-row[data-wave=\"{i}\"]", card(id)))],
            );
            v.as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(phases, ["wave-row current", "wave-row next"]);
}

/// The failing nodes are listed first thing under the release, with the
/// reason they gave and a link to their view.
fn check_failures(b: &Browser, m: &Manager, built: &Built) {
    let id = built.release;
    let api = admin(m, "GET", &format!("/api/v1/releases/{id}/failures"), None)
        .expect(200)
        .json();
    assert_eq!(api.as_array().unwrap().len(), 2);
    let rows = format!("{} .failures tbody tr", card(id));
    assert_eq!(b.count(&rows), 2);
    for node in &built.failing {
        let row = format!("{} .failures tr[data-node-id=\"{node}\"]", card(id));
        assert_eq!(b.text_of(&format!("{row} td.message")), "simulated failure");
        assert_eq!(b.text_of(&format!("{row} td.status")), "failed");
        let href = b.script(
            "return document.querySelector(arguments[0]).getAttribute('href');",
            &[json!(format!("{row} a"))],
        );
        assert_eq!(href, json!(format!("#node/{node}")));
    }
    assert!(b
        .text_of(&format!("{} .failures h4", card(id)))
        .ends_with(": 2"));
}

/// Each bin's bar has a part per version with the API's count; choosing
/// one lists exactly those nodes.
fn check_version_bars(b: &Browser, m: &Manager) {
    let f = admin(m, "GET", "/api/v1/fleet", None).expect(200).json();
    for bin in f["bins"].as_array().unwrap() {
        let name = bin["bin_name"].as_str().unwrap();
        let bar = format!("#versions .bin-bar[data-bin=\"{name}\"]");
        for v in bin["versions"].as_array().unwrap() {
            let seg = format!(
                "{bar} .seg[data-version=\"{}\"]",
                v["version"].as_str().unwrap()
            );
            let shown = b.script(
                "return document.querySelector(arguments[0]).dataset.count;",
                &[json!(seg)],
            );
            assert_eq!(shown, json!(v["nodes"].to_string()), "{seg}");
        }
        let parts = bin["versions"].as_array().unwrap().len()
            + usize::from(bin["missing"].as_u64() > Some(0))
            + usize::from(bin["unknown"].as_u64() > Some(0));
        assert_eq!(b.count(&format!("{bar} .seg")), parts, "{name}");
    }
    // svc 2.0.0: the nodes of wave 1 that did not fail.
    let svc = &f["bins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bin_name"] == "svc")
        .unwrap();
    let on_two = svc["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "2.0.0")
        .unwrap();
    let n = on_two["nodes"].as_u64().unwrap();
    let before = pages(b);
    b.click_on("#versions .bin-bar[data-bin=\"svc\"] .legend button[data-version=\"2.0.0\"]");
    b.poll("the node list to show svc 2.0.0", |b| {
        (pages(b) > before).then_some(())
    });
    assert_eq!(
        b.count("#nodes tbody tr[data-node-id]"),
        usize::try_from(n).unwrap()
    );
    assert_eq!(b.text_of("#nodes-range"), format!("1–{n} of {n}"));
    assert_eq!(b.text_of("#node-running-text"), "running svc: 2.0.0");
    let before = pages(b);
    b.click_on("#node-running-clear");
    b.poll("the whole node list again", |b| {
        (pages(b) > before).then_some(())
    });
}

/// How many times the node list was drawn.
fn pages(b: &Browser) -> u64 {
    b.script("return Number(document.body.dataset.nodePages || 0);", &[])
        .as_u64()
        .unwrap()
}

/// Each node's row shows the versions it runs, and markup in a name stays text.
fn check_nodes(b: &Browser, fleet: &Fleet, built: &Built) {
    assert_eq!(b.count("#nodes tbody tr[data-node-id]"), NODES + 1);
    for node in &fleet.nodes {
        let row = format!("#nodes tr[data-node-id=\"{}\"]", node.id);
        let svc = if built.reached.contains(&node.id) && !built.failing.contains(&node.id) {
            "svc: 2.0.0"
        } else {
            "svc: 1.0.0"
        };
        assert_eq!(
            b.text_of(&format!("{row} li[data-bin=\"svc\"]")),
            svc,
            "{}",
            node.id
        );
        assert_eq!(
            b.text_of(&format!("{row} li[data-bin=\"web\"]")),
            "web: 1.2.0"
        );
        assert_eq!(b.text_of(&format!("{row} td.state")), "online");
    }
    assert_eq!(
        b.text_of("#nodes tr[data-node-id=\"evil\"] td.name"),
        EVIL_NAME
    );
    assert_eq!(
        b.count("#nodes img, #nodes b"),
        0,
        "markup from a node name was rendered"
    );
    assert_eq!(
        b.script("return window.__xss === undefined;", &[]),
        Value::Bool(true)
    );
}

/// A failing node's link opens its view: per bin the API's target and
/// reason, and its history with the failure.
fn check_node_view(b: &Browser, m: &Manager, built: &Built) {
    let node = built.failing.iter().next().unwrap();
    let link = format!(
        "{} .failures tr[data-node-id=\"{node}\"] a",
        card(built.release)
    );
    b.click_on(&link);
    b.poll("the node's view", |b| {
        (b.count("#node-view:not([hidden]) #why-not tr[data-bin=\"svc\"] td.reason") == 1)
            .then_some(())
    });
    assert!(b
        .text_of("#node-title")
        .starts_with(&format!("Node {node}")));
    let view = node_view(m, node);
    assert!(!view.bins["svc"].reason.is_empty());
    assert_eq!(
        b.text_of("#why-not tr[data-bin=\"svc\"] td.reason"),
        view.bins["svc"].reason
    );
    assert_eq!(
        b.text_of("#why-not tr[data-bin=\"svc\"] td.target"),
        view.bins["svc"]
            .target
            .as_ref()
            .map_or("(none)", |t| t.version.as_str())
    );
    assert!(b.count("#node-history tr.progress.failed") >= 1);
    // An unknown node fails its own view, not the page's refreshes.
    b.script("location.hash = '#node/no-such-node'; return 0;", &[]);
    b.poll("the unknown node's view", |b| {
        b.text_of("#node-title").contains("404").then_some(())
    });
    wait_loaded(b, data(b, "loads"));
    b.click_on("#node-close");
    assert_eq!(
        b.script("return document.getElementById('node-view').hidden;", &[]),
        Value::Bool(true)
    );
}

/// Nodes that report nothing in the first wave of a three-wave release.
const STALLED: usize = 3;

#[test]
fn rollout_advances_while_the_page_is_open() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], 30);
    fleet_on_first_versions(&m, &mut fleet);
    let r = create_release(
        &m,
        &json!({"bin_name": "svc", "version": "2.0.0", "note": "live page",
                "waves": [{"percent": 30, "wait": "1s"}, {"percent": 70, "wait": "1h"}, {"percent": 100}],
                "success_threshold": "50%", "max_failures": "10"}),
    );
    let b = Browser::start(1280, 1400);
    let loads = open(&b, &m, &m.token);
    assert_eq!(figure(&b, r.id, "success"), "0");

    // Wave 2's nodes: some never report, one fails; the rest update.
    let second: Vec<String> = fleet
        .nodes
        .iter()
        .filter(|n| in_percent(r.id, &n.id, 70) && !in_percent(r.id, &n.id, 30))
        .map(|n| n.id.clone())
        .collect();
    assert!(second.len() > STALLED + 2, "wave 2 reaches {second:?}");
    for id in &second[..STALLED] {
        fleet.node_mut(id).stalled = true;
    }
    fleet.node_mut(&second[STALLED]).fails_with = Some(ProgressStatus::Failed);
    drive(
        &m,
        &mut fleet,
        r.id,
        Mode::Update,
        "wave 2 reached and reporting",
        |r| r.wave == 1 && r.counts.failed == 1 && r.counts.success >= r.counts.targeted / 2,
    );

    // Without a click, the page redraws: wave 1 done, wave 2 current.
    b.poll("the page to show wave 2 as the API counts it", |b| {
        let shown = b.text_of(&format!("{} .wave", card(r.id)));
        let api = get_release(&m, r.id).counts;
        (shown == "wave 2 of 3" && figure(b, r.id, "success") == api.success.to_string())
            .then_some(())
    });
    let (_, after) = binproxy_tests::page::page_state(&b);
    assert!(after > loads, "the page refreshed itself");
    let row1 = format!("{} .wave-row[data-wave=\"1\"]", card(r.id));
    assert!(b.count(&format!("{row1}.current .seg[data-kind=\"silent\"]")) == 1);
    assert!(b.count(&format!("{row1} .seg[data-kind=\"failed\"]")) == 1);
    assert!(b.count(&format!("{} .wave-row[data-wave=\"0\"].past", card(r.id))) == 1);
    b.poll("the failure in the list", |b| {
        (b.count(&format!(
            "{} .failures tr[data-node-id=\"{}\"]",
            card(r.id),
            second[STALLED]
        )) == 1)
            .then_some(())
    });
    save_screenshot(&b, "admin-page-rollout.png");

    // Idle: each refresh is answered 304 and "updated N s ago" counts.
    let unchanged = data(&b, "unchanged");
    let loads = wait_loaded(&b, wait_loaded(&b, 0));
    assert!(
        data(&b, "unchanged") > unchanged,
        "an idle refresh got no 304"
    );
    let updated = b.text_of("#updated");
    assert!(
        updated.starts_with("updated ") && updated.ends_with(" s ago"),
        "{updated}"
    );

    // Paused, the page stops asking; live again, it refreshes at once.
    b.click_on("#live-toggle");
    assert_eq!(b.text_of("#live-toggle"), "Live: paused");
    let (_, paused_at) = binproxy_tests::page::page_state(&b);
    std::thread::sleep(Duration::from_secs(7));
    let (_, still) = binproxy_tests::page::page_state(&b);
    assert_eq!(still, paused_at, "a paused page refreshed");
    assert!(b.text_of("#updated").ends_with("· paused"));
    b.click_on("#live-toggle");
    wait_loaded(&b, still.max(loads));
    assert_eq!(b.text_of("#live-toggle"), "Live: on");
}

/// In a phone-wide window (500 px, the narrowest headless Chromium opens)
/// nothing overflows sideways, and a release is
/// paused with the keyboard alone: Enter on its button, the confirm step
/// takes the focus, Escape closes it, Enter on "yes" confirms.
#[test]
fn narrow_window_and_keyboard() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], 6);
    fleet_on_first_versions(&m, &mut fleet);
    let r = create_release(
        &m,
        &json!({"bin_name": "svc", "version": "2.0.0",
                "waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    let b = Browser::start(400, 900);
    open(&b, &m, &m.token);
    // Headless Chromium opens windows no narrower than 500 px.
    let width = b.script("return window.innerWidth;", &[]).as_u64().unwrap();
    assert!(width <= 520, "the window is {width} px wide");
    let overflow = b.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        &[],
    );
    assert_eq!(
        overflow,
        json!(0),
        "the page is wider than a {width} px window"
    );
    save_screenshot(&b, "admin-page-narrow.png");

    let pause = format!("{} button.op[data-op=\"pause\"]", card(r.id));
    let focused = |b: &Browser| {
        b.script(
            "const e = document.activeElement; return e ? e.className + ':' + (e.dataset.op || '') : '';",
            &[],
        )
    };
    // Keys go to the focused element, as a user's would.
    b.script(
        "document.querySelector(arguments[0]).focus(); return 0;",
        &[json!(pause)],
    );
    b.type_text(&b.find(&pause), "\u{E007}");
    assert_eq!(
        focused(&b),
        json!("confirm-op:pause"),
        "Enter did not open the confirm step"
    );
    b.type_text(&b.find(&format!("{} .confirm-op", card(r.id))), "\u{E00C}");
    assert_eq!(
        b.count(&format!("{} .confirm", card(r.id))),
        0,
        "Escape left it open"
    );
    assert_eq!(get_release(&m, r.id).status, ReleaseStatus::RollingOut);

    b.type_text(&b.find(&pause), "\u{E007}");
    b.type_text(&b.find(&format!("{} .confirm-op", card(r.id))), "\u{E007}");
    b.poll("the release paused from the keyboard", |_| {
        (get_release(&m, r.id).status == ReleaseStatus::Paused).then_some(())
    });
}
