//! The admin page (`GET /`) in a real headless Chromium, driven over
//! WebDriver (`binproxy_tests::browser`), against the real `manager-lite`
//! with a fleet built over its HTTP API: 12 simulated nodes, 2 bins with
//! versions, a wave release with failures. The test reads what the page
//! shows, compares it with the API, clicks Pause and checks the release is
//! paused, and checks the page's security headers and that the browser
//! enforces them; and, with 1,050 nodes, that "More nodes" loads the page
//! after the first 1,000. It fails, naming the install command, when Chromium or
//! chromedriver is missing. Every wait is a bounded poll.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::{Node, ProgressStatus, ReleaseStatus};
use binproxy_tests::browser::Browser;
use binproxy_tests::fleet::{
    admin, create_release, drive, drive_fleet, get_release, in_percent, node_view, rollout_manager,
    upload_versions, Fleet, Mode,
};
use binproxy_tests::Manager;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The policy the page must send, word for word.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

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

/// Two bins (`svc` 1.0.0 and 2.0.0, `web` 1.0.0 to 1.2.0), every node on
/// svc 1.0.0 and web 1.2.0, then svc 2.0.0 in waves of 50% (waiting an hour)
/// and 100%, two nodes of its first wave failing.
fn build_fleet(m: &Manager, fleet: &mut Fleet) -> Built {
    let svc = upload_versions(m, "svc", &["1.0.0", "2.0.0"]);
    let web = upload_versions(m, "web", &["1.0.0", "1.1.0", "1.2.0"]);
    create_release(m, &json!({"bin_name": "svc", "version": "1.0.0"}));
    create_release(m, &json!({"bin_name": "web", "version": "1.2.0"}));
    drive_fleet(
        m,
        fleet,
        Mode::Update,
        "every node on svc 1.0.0, web 1.2.0",
        |f| {
            f.running("svc", &svc["1.0.0"]).len() == NODES
                && f.running("web", &web["1.2.0"]).len() == NODES
        },
    );
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

/// A node whose name is markup, registered beside the fleet.
fn register_evil_node(m: &Manager) {
    m.post_json(
        "/api/v1/keepalive",
        &json!({"node_id": "evil", "node_name": EVIL_NAME, "cpu_arch": "x86_64"}),
    )
    .expect(200);
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

/// The page's `data-state` and `data-loads`.
fn page_state(b: &Browser) -> (String, u64) {
    let v = b.script(
        "return [document.body.dataset.state || '', Number(document.body.dataset.loads || 0)];",
        &[],
    );
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_u64().unwrap_or(0),
    )
}

/// Waits until the page finished a load after the `before`th; fails fast,
/// with the status line, when the load failed.
#[track_caller]
fn wait_loaded(b: &Browser, before: u64) -> u64 {
    b.poll("the page to load the fleet", |b| {
        let (state, loads) = page_state(b);
        assert_ne!(
            state,
            "error",
            "the page failed to load: {}",
            b.text_of("#status")
        );
        (state == "ready" && loads > before).then_some(loads)
    })
}

/// Waits until the status line shows an error containing `part`.
#[track_caller]
fn wait_error(b: &Browser, part: &str) -> String {
    b.poll(&format!("an error with {part:?} in the status line"), |b| {
        let v = b.script(
            "const s = document.getElementById('status'); return [s.className, s.textContent];",
            &[],
        );
        let text = v[1].as_str().unwrap_or_default().to_owned();
        (v[0] == "error" && text.contains(part)).then_some(text)
    })
}

fn enter_token(b: &Browser, token: &str) {
    b.click(&b.find("#forget-token"));
    let field = b.find("#token");
    b.type_text(&field, token);
    b.click(&b.find("#use-token"));
}

fn release_cell(b: &Browser, id: u64, class: &str) -> String {
    b.text_of(&format!(
        "#releases tr[data-release-id=\"{id}\"] td.{class}"
    ))
}

fn click_op(b: &Browser, id: u64, op: &str) {
    b.click(&b.find(&format!(
        "#releases tr[data-release-id=\"{id}\"] button[data-op=\"{op}\"]"
    )));
}

/// The directory cargo builds into (the one holding `CACHEDIR.TAG`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
}

/// Saves the screenshot to `target/admin-page.png`, and to
/// `docs/admin-page.png` when `BINPROXY_UPDATE_SCREENSHOT` is set.
fn save_screenshot(png: &[u8]) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let path = target_dir().join("admin-page.png");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!(
        "screenshot of the admin page: {} ({} bytes)",
        path.display(),
        png.len()
    );
    if std::env::var_os("BINPROXY_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        let copy = docs.join("admin-page.png");
        std::fs::write(&copy, png).unwrap_or_else(|e| panic!("write {}: {e}", copy.display()));
        println!("copied to {}", copy.display());
    }
}

/// A fleet larger than the page's 1,000 nodes: the first page shows with
/// its counts marked as partial, and "More nodes" loads the rest.
#[test]
fn more_nodes_loads_the_next_page() {
    let m = Manager::new();
    let total = 1_050;
    let ids: Vec<String> = (0..total).map(|i| format!("n-{i:04}")).collect();
    std::thread::scope(|s| {
        for part in ids.chunks(300) {
            let m = &m;
            s.spawn(move || {
                for id in part {
                    m.keepalive(id, "x86_64", &[]).expect(200);
                }
            });
        }
    });
    let b = Browser::start(1280, 900);
    b.goto(&format!("{}/", m.url));
    b.wait_for(
        "the page's script to run",
        "return document.body.dataset.state === 'no-token';",
    );
    enter_token(&b, &m.token);
    wait_loaded(&b, 0);
    assert_eq!(b.count("#nodes tbody tr[data-node-id]"), 1000);
    assert_eq!(
        b.text_of("#nodes-online"),
        "1000+",
        "a partial count says so"
    );
    assert_eq!(
        b.script("return document.getElementById('more-nodes').hidden;", &[]),
        Value::Bool(false)
    );
    b.click(&b.find("#more-nodes"));
    b.poll("the second page of nodes", |b| {
        (b.count("#nodes tbody tr[data-node-id]") == total).then_some(())
    });
    assert_eq!(b.text_of("#nodes-online"), total.to_string());
    assert_eq!(
        b.script("return document.getElementById('more-nodes').hidden;", &[]),
        Value::Bool(true)
    );
    assert_eq!(
        b.count(&format!(
            "#node-picker option[value=\"{}\"]",
            ids[total - 1]
        )),
        1
    );
}

#[test]
fn page_and_assets_carry_a_strict_policy() {
    let m = Manager::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = m.get(path);
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
    }
    // The page is public (it holds no data); the API behind it is not.
    m.get("/api/v1/nodes").expect_error(401);
    m.get("/ui/nope.js").expect_error(404);
    m.get("/ui/..%2fapp.js").expect_error(404);
}

#[test]
fn admin_page_in_a_real_browser() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], NODES);
    let built = build_fleet(&m, &mut fleet);
    register_evil_node(&m);
    let viewer = token(&m, "page-viewer", "viewer");

    let b = Browser::start(1280, 900);
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
    let loads = wait_loaded(&b, 0);
    check_counts(&b, &m, &built);
    check_nodes(&b, &fleet, &built);
    check_why_not(&b, &m, &built);

    // ...but may not pause: the 403 is shown, the release goes on.
    click_op(&b, built.release, "pause");
    let shown = wait_error(&b, "403");
    assert!(shown.contains("pause"), "{shown}");
    assert_eq!(
        get_release(&m, built.release).status,
        ReleaseStatus::RollingOut
    );

    // The admin pauses it with one click.
    enter_token(&b, &m.token);
    let loads = wait_loaded(&b, loads);
    click_op(&b, built.release, "pause");
    wait_loaded(&b, loads);
    assert_eq!(release_cell(&b, built.release, "status"), "paused");
    let r = get_release(&m, built.release);
    assert_eq!(r.status, ReleaseStatus::Paused, "after clicking Pause");
    let last = r.history.last().unwrap();
    assert!(
        last.action.contains("pause") && last.actor == "admin",
        "{last:?}"
    );
    let status = b.text_of("#status");
    assert!(status.contains("pause done, now paused"), "{status}");
    save_screenshot(&b.screenshot());

    // A refused operation: approve on a paused release is a 409, shown.
    click_op(&b, built.release, "approve");
    wait_error(&b, "409");
    assert_eq!(get_release(&m, built.release).status, ReleaseStatus::Paused);

    // The token lives in sessionStorage only: a reload loads at once with it,
    // and Forget removes it.
    let stored = b.script(
        "return [sessionStorage.getItem('manager-lite.token'), localStorage.length];",
        &[],
    );
    assert_eq!(stored, json!([m.token, 0]));
    b.goto(&format!("{}/", m.url));
    wait_loaded(&b, 0);
    assert_eq!(release_cell(&b, built.release, "status"), "paused");
    b.click(&b.find("#forget-token"));
    let stored = b.script("return sessionStorage.length;", &[]);
    assert_eq!(stored, json!(0));
    assert_eq!(b.count("#releases tbody tr"), 0);
}

/// The summary, bins and release counts match the API.
fn check_counts(b: &Browser, m: &Manager, built: &Built) {
    let nodes: Vec<Node> = admin(m, "GET", "/api/v1/nodes", None).expect(200).parse();
    assert_eq!(nodes.len(), NODES + 1);
    let online = nodes.iter().filter(|n| n.online).count();
    assert_eq!(b.text_of("#nodes-online"), online.to_string());
    assert_eq!(
        b.text_of("#nodes-offline"),
        (nodes.len() - online).to_string()
    );
    assert_eq!(b.count("#nodes tbody tr[data-node-id]"), NODES + 1);
    assert_eq!(b.text_of("#bins-count"), "2");
    assert_eq!(b.text_of("#bins tr[data-bin=\"svc\"] td.count"), "2");
    assert_eq!(b.text_of("#bins tr[data-bin=\"web\"] td.count"), "3");
    assert_eq!(b.count("#bins tr[data-bin=\"web\"] li[data-version]"), 3);
    assert_eq!(b.count("#releases tbody tr[data-release-id]"), 3);
    assert_eq!(b.text_of("#releases-active"), "1");

    let r = get_release(m, built.release);
    let id = built.release;
    assert_eq!(release_cell(b, id, "status"), "rolling_out");
    assert_eq!(release_cell(b, id, "wave"), "1 of 2");
    assert_eq!(release_cell(b, id, "percent"), "50%");
    assert_eq!(release_cell(b, id, "failed"), "2");
    assert_eq!(release_cell(b, id, "success"), r.counts.success.to_string());
    assert_eq!(
        release_cell(b, id, "targeted"),
        r.counts.targeted.to_string()
    );
    assert_eq!(
        r.counts.targeted,
        u64::try_from(built.reached.len()).unwrap()
    );
    // The fleet's nodes say they fetched a quarter of each build: the page
    // shows what that saved, as the API counts it.
    let full = r.counts.bytes_full;
    assert!(
        full > 0 && r.counts.bytes_downloaded <= full / 4,
        "{:?}",
        r.counts
    );
    #[allow(clippy::cast_precision_loss)]
    let saved = (full - r.counts.bytes_downloaded) as f64;
    let amount = if saved >= 1e6 {
        format!("{:.1} MB", saved / 1e6)
    } else if saved >= 1e3 {
        format!("{:.1} KB", saved / 1e3)
    } else {
        format!("{saved} B")
    };
    #[allow(clippy::cast_precision_loss)]
    let shown = format!("{amount} ({}%)", (100.0 * saved / full as f64).round());
    assert_eq!(release_cell(b, id, "saved"), shown);
    // Recent progress: newest first, the failures among them.
    assert!(b.count("#progress tbody tr.progress") > 0);
    assert!(b.count("#progress tbody tr.progress.failed") > 0);
}

/// Each node's row shows the versions it runs, and markup in a name stays text.
fn check_nodes(b: &Browser, fleet: &Fleet, built: &Built) {
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
    let name = b.text_of("#nodes tr[data-node-id=\"evil\"] td.name");
    assert_eq!(name, EVIL_NAME);
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

/// Picking a node shows, per bin, the same target and reason as the API.
fn check_why_not(b: &Browser, m: &Manager, built: &Built) {
    let node = built.failing.iter().next().unwrap();
    b.click(&b.find(&format!("#node-picker option[value=\"{node}\"]")));
    let view = node_view(m, node);
    let want = &view.bins["svc"].reason;
    assert!(!want.is_empty(), "the API gives no reason for {node}");
    b.poll("the why-not of the picked node", |b| {
        (b.count("#why-not tr[data-bin=\"svc\"] td.reason") == 1).then_some(())
    });
    assert_eq!(b.text_of("#why-not tr[data-bin=\"svc\"] td.reason"), *want);
    assert_eq!(
        b.text_of("#why-not tr[data-bin=\"svc\"] td.target"),
        view.bins["svc"]
            .target
            .as_ref()
            .map_or("(none)", |t| t.version.as_str())
    );
}
