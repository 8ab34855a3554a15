//! The admin page with 100,000 registered nodes, in a real headless
//! Chromium: the summary and version bars come from the aggregate
//! endpoint (exact counts, no node list downloaded), the node list shows
//! one page of 50 and pages, searches by id and name, filters by state,
//! arch, label and version, each with the API's total, and sorts. The times
//! the page notes for itself (first paint, each page change) are printed,
//! not asserted: `cargo bench -p binproxy-tests --bench page` measures
//! them against nginx serving the same answers. The manager's data
//! directory is on `/dev/shm` when there is one: registering is one
//! durable commit per node, and fsyncs to disk would make that minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::browser::Browser;
use binproxy_tests::fleet::{node_id, upload_versions};
use binproxy_tests::page::{data, open, register};
use binproxy_tests::{Manager, ManagerOptions, TempDir};
use serde_json::json;

const NODES: usize = 100_000;
/// Nodes `0..ON_ONE` run svc 1.0.0, then up to `ON_TWO` 2.0.0, the rest
/// list svc without a file.
const ON_ONE: usize = 90_000;
const ON_TWO: usize = 99_000;

/// Waits for the node list to be drawn again after `before` draws, and
/// returns the range line and the ms the page noted.
fn redrawn(b: &Browser, before: u64, what: &str) -> String {
    b.poll(what, |b| (data(b, "nodePages") > before).then_some(()));
    b.poll("the page to note its time", |b| {
        b.script("return document.body.dataset.pageMs !== undefined;", &[])
            .as_bool()
            .filter(|t| *t)
    });
    let range = b.text_of("#nodes-range");
    println!("{what}: {range} in {} ms", data(b, "pageMs"));
    b.script("delete document.body.dataset.pageMs; return 0;", &[]);
    range
}

fn first_row(b: &Browser) -> String {
    b.script(
        "return document.querySelector('#nodes tbody tr[data-node-id]').dataset.nodeId;",
        &[],
    )
    .as_str()
    .unwrap()
    .to_owned()
}

#[test]
fn a_hundred_thousand_nodes_page_search_and_filter() {
    // On a tmpfs (registering is one durable commit per node, and this
    // test is not about durability), with nodes online for its whole run.
    let dir = TempDir::in_memory("page-scale");
    let m = Manager::start(
        &dir.join("data"),
        ManagerOptions::default().arg("--offline-after").arg("1h"),
    );
    let svc = upload_versions(&m, "svc", &["1.0.0", "2.0.0"]);
    let ids: Vec<String> = (0..NODES).map(node_id).collect();
    let started = std::time::Instant::now();
    register(
        &m,
        &ids,
        |i| match i {
            _ if i < ON_ONE => json!({"svc": svc["1.0.0"]}),
            _ if i < ON_TWO => json!({"svc": svc["2.0.0"]}),
            _ => json!({"svc": ""}),
        },
        16,
    );
    println!("registered {NODES} nodes in {:.1?}", started.elapsed());

    let b = Browser::start(1280, 1000);
    open(&b, &m, &m.token);
    println!("first paint at {} ms", data(&b, "firstPaintMs"));
    assert_eq!(b.text_of("#nodes-online"), "100,000");
    assert_eq!(b.count("#nodes tbody tr[data-node-id]"), 50);
    assert_eq!(b.text_of("#nodes-range"), "1–50 of 100,000");
    let bar = "#versions .bin-bar[data-bin=\"svc\"]";
    for (version, n) in [("1.0.0", "90000"), ("2.0.0", "9000"), ("*missing", "1000")] {
        let seg = format!("{bar} .seg[data-version=\"{version}\"]");
        let shown = b.script(
            "return document.querySelector(arguments[0]).dataset.count;",
            &[json!(seg)],
        );
        assert_eq!(shown, json!(n), "{version}");
    }

    // Paging: next and back.
    let pages = data(&b, "nodePages");
    b.click_on("#nodes-next");
    assert_eq!(redrawn(&b, pages, "next page"), "51–100 of 100,000");
    assert_eq!(first_row(&b), node_id(50));
    let pages = data(&b, "nodePages");
    b.click_on("#nodes-prev");
    assert_eq!(redrawn(&b, pages, "previous page"), "1–50 of 100,000");

    // Search by id, then by name (case aside).
    let pages = data(&b, "nodePages");
    b.type_text(&b.find("#node-q"), "99999");
    assert_eq!(redrawn(&b, pages, "search by id"), "1–1 of 1");
    assert_eq!(first_row(&b), node_id(99_999));
    clear(&b, "#node-q");
    let pages = data(&b, "nodePages");
    b.type_text(&b.find("#node-q"), "HOST NODE-0004");
    assert_eq!(redrawn(&b, pages, "search by name"), "1–10 of 10");
    clear(&b, "#node-q");

    // Filters: arch, label, state; each total is the API's.
    let pages = data(&b, "nodePages");
    select(&b, "#node-arch", "aarch64");
    assert_eq!(redrawn(&b, pages, "arch aarch64"), "1–50 of 25,000");
    let api = m.admin_get("/api/v1/nodes?arch=aarch64&limit=1");
    assert_eq!(api.header("x-total-count"), Some("25000"));
    select(&b, "#node-arch", "");
    whole_fleet(&b);
    let pages = data(&b, "nodePages");
    b.type_text(&b.find("#node-label"), "env=dev");
    assert_eq!(redrawn(&b, pages, "label env=dev"), "1–50 of 33,333");
    let pages = data(&b, "nodePages");
    select(&b, "#node-state", "offline");
    assert_eq!(redrawn(&b, pages, "state offline and env=dev"), "0–0 of 0");
    assert_eq!(b.text_of("#nodes tbody tr.empty"), "No node matches.");
    select(&b, "#node-state", "");
    clear(&b, "#node-label");

    // Sorted by arch: aarch64 (every fourth node, the first being node 3) first.
    let pages = data(&b, "nodePages");
    select(&b, "#node-sort", "arch");
    assert_eq!(redrawn(&b, pages, "sorted by arch"), "1–50 of 100,000");
    assert_eq!(first_row(&b), node_id(3));
    select(&b, "#node-sort", "id");
    b.poll("sorted by id again", |b| {
        (first_row(b) == node_id(0)).then_some(())
    });

    // A version bar's part lists its nodes.
    let pages = data(&b, "nodePages");
    b.click_on(&format!("{bar} .legend button[data-version=\"2.0.0\"]"));
    assert_eq!(redrawn(&b, pages, "svc 2.0.0"), "1–50 of 9,000");
    assert_eq!(first_row(&b), node_id(ON_ONE));
}

/// Empties a text filter (as typing would) and waits for the whole fleet.
fn clear(b: &Browser, css: &str) {
    b.script(
        "const e = document.querySelector(arguments[0]); e.value = ''; \
         e.dispatchEvent(new Event('input')); return 0;",
        &[json!(css)],
    );
    whole_fleet(b);
}

fn whole_fleet(b: &Browser) {
    b.poll("the whole fleet listed again", |b| {
        (b.text_of("#nodes-range") == "1–50 of 100,000").then_some(())
    });
}

/// Chooses `value` in a `<select>` and tells the page, as a user would.
fn select(b: &Browser, css: &str, value: &str) {
    b.script(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
         s.dispatchEvent(new Event('change')); return 0;",
        &[json!(css), json!(value)],
    );
}
