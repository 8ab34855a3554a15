//! The main flow: a viewer's and the admin's page compared with the API
//! (summary, release card and wave bars, failures, version bars, nodes, a
//! node's view), the actions each is offered, the confirm step, the token.

use super::*;

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
