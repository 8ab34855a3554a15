//! How fast the admin page is with a large fleet, in a real headless
//! Chromium, against its peer: nginx serving the same page and the same
//! answer bytes (a benchmark, not a test: it prints what it measured and
//! asserts nothing about speed).
//!
//!     cargo bench -p binproxy-tests --bench page -- [--nodes 100000] [--rounds 7] [--pin]
//!
//! The release `manager-lite` on 127.0.0.1 with its data directory on
//! `/dev/shm`; `--nodes` ids registered through the API (x86_64 or aarch64,
//! `env` labels, svc 1.0.0 or 2.0.0), and a release of svc 2.0.0 in waves.
//! The manager's answers to every request the measured steps make are
//! saved and served by nginx from files (with `X-Total-Count`, and nginx's
//! own ETags), page and modules included. Then, in rounds that alternate
//! manager and nginx, the page notes its own times (`performance.now()`):
//!
//! - first paint: from navigation start (token already in the tab) until
//!   the fleet, releases, version bars and the first 50 nodes are painted;
//! - page change: from a click on Next (or Previous) to the new 50 painted;
//! - filter: arch=aarch64 chosen to its 50 painted;
//! - search: a typed id (after the page's 250 ms typing pause) to its row.
//!
//! `--pin` puts the manager and nginx on CPU 0 and Chromium on CPU 1
//! (`taskset`). Printed: min, median and max per step and server; then,
//! per server, what the first load and an idle refresh (nothing changed,
//! every answer a 304) move over the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::browser::Browser;
use binproxy_tests::fleet::{create_release, node_id, upload_versions};
use binproxy_tests::nginx::Nginx;
use binproxy_tests::page::{data, register};
use binproxy_tests::{pin, Manager, ManagerOptions, TempDir};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The page's script modules, as it imports them.
const MODULES: [&str; 6] = ["app", "api", "dom", "fleet", "nodes", "releases"];
/// The node list's requests the steps make (the page's own query
/// strings), the search being for `searched`.
fn node_queries(searched: &str) -> [String; 4] {
    [
        "limit=50&offset=0&sort=id".to_owned(),
        "limit=50&offset=50&sort=id".to_owned(),
        "limit=50&offset=0&sort=id&arch=aarch64".to_owned(),
        format!("limit=50&offset=0&sort=id&q={searched}"),
    ]
}

/// What the search step types: the digits of the last node's id, which
/// no other id contains.
fn searched(nodes: usize) -> String {
    node_id(nodes - 1).trim_start_matches("node-").to_owned()
}
/// The most one wait may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(120);

struct Options {
    nodes: usize,
    rounds: usize,
    pin: bool,
}

fn options() -> Options {
    let mut o = Options {
        nodes: 100_000,
        rounds: 7,
        pin: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = || args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--nodes" => o.nodes = number(),
            "--rounds" => o.rounds = number(),
            "--pin" => o.pin = true,
            "--bench" => {}
            other => panic!("unknown argument {other}: [--nodes N] [--rounds N] [--pin]"),
        }
    }
    o
}

fn main() {
    let o = options();
    if o.pin {
        // Children inherit the affinity of the thread that starts them.
        pin(std::process::id(), 0);
    }
    let dir = TempDir::in_memory("page-bench");
    let m = Manager::start(
        &dir.join("data"),
        ManagerOptions::default().arg("--offline-after").arg("1h"),
    );
    let started = Instant::now();
    fill(&m, o.nodes);
    println!("registered {} nodes in {:.1?}", o.nodes, started.elapsed());
    let (nginx, _files) = peer(&m, &searched(o.nodes));
    if o.pin {
        pin(std::process::id(), 1);
    }
    let b = Browser::start(1280, 1000);
    let servers = [
        ("manager-lite", m.url.clone()),
        ("nginx", nginx.url.clone()),
    ];
    for (_, url) in &servers {
        b.goto(&format!("{url}/"));
        b.script(
            "sessionStorage.setItem('manager-lite.token', arguments[0]); return 0;",
            &[json!(m.token)],
        );
    }
    let mut times: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    for round in 0..o.rounds {
        for (name, url) in &servers {
            for (step, ms) in measure(&b, url, &searched(o.nodes)) {
                times.entry((step, name)).or_default().push(ms);
            }
        }
        println!("round {} of {} done", round + 1, o.rounds);
    }
    report(&o, &times);
    for (name, url) in &servers {
        idle(&b, name, url);
    }
}

/// What the page's refreshes move: its first load, and a refresh of a
/// fleet where nothing changed (the browser's resource timing of the
/// page's fetches: requests, bytes with headers, body bytes).
fn idle(b: &Browser, name: &str, url: &str) {
    const SUM: &str = "const e = performance.getEntriesByType('resource') \
        .filter((r) => r.initiatorType === 'fetch' && r.startTime >= arguments[0] \
                && r.startTime < arguments[1]); \
        return [e.length, e.reduce((n, r) => n + r.transferSize, 0), \
                e.reduce((n, r) => n + r.encodedBodySize, 0)];";
    b.goto(&format!("{url}/"));
    until(
        b,
        "the first load",
        "return document.body.dataset.loads === '1';",
    );
    let first_done = b.script("return performance.now();", &[]);
    until(
        b,
        "an idle refresh",
        "return document.body.dataset.loads === '2';",
    );
    let now = b.script("return performance.now();", &[]);
    let first = b.script(SUM, &[json!(0), first_done.clone()]);
    let again = b.script(SUM, &[first_done, now]);
    println!(
        "{name}: first load {} requests, {} bytes ({} of bodies); an idle refresh {} requests, {} bytes ({} of bodies)",
        first[0], first[1], first[2], again[0], again[1], again[2]
    );
}

/// Two versions of svc, `n` nodes on them, and a release in waves.
fn fill(m: &Manager, n: usize) {
    let svc = upload_versions(m, "svc", &["1.0.0", "2.0.0"]);
    let ids: Vec<String> = (0..n).map(node_id).collect();
    let on_one = n * 9 / 10;
    register(
        m,
        &ids,
        |i| {
            let v = if i < on_one { "1.0.0" } else { "2.0.0" };
            json!({"svc": svc[v]})
        },
        16,
    );
    create_release(
        m,
        &json!({"bin_name": "svc", "version": "2.0.0",
                "waves": [{"percent": 10, "wait": "1h"}, {"percent": 100}]}),
    );
}

/// nginx serving the manager's page and its answers to the steps'
/// requests, and the directory of those files.
fn peer(m: &Manager, searched: &str) -> (Nginx, TempDir) {
    let root = TempDir::in_memory("page-bench-files");
    let save = |path: &str, file: &str| -> Option<String> {
        let r = m.admin_get(path);
        r.expect(200);
        let full = root.join(file);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, &r.body).unwrap();
        r.header("x-total-count").map(str::to_owned)
    };
    save("/", "index.html");
    save("/ui/app.css", "ui/app.css");
    for module in MODULES {
        save(&format!("/ui/{module}.js"), &format!("ui/{module}.js"));
    }
    // Every API request of the steps, as the page sends it, to its saved
    // answer. The last name of try_files is an internal redirect, so the
    // answer's own location (and its X-Total-Count) applies.
    let mut requests = vec![
        "/api/v1/fleet".to_owned(),
        "/api/v1/bins".to_owned(),
        "/api/v1/releases?status=pending_approval,rolling_out,paused".to_owned(),
        "/api/v1/releases?status=completed,cancelled,superseded,rolled_back&limit=5".to_owned(),
        "/api/v1/bins/svc/progress?limit=20".to_owned(),
    ];
    requests.extend(
        node_queries(searched)
            .iter()
            .map(|q| format!("/api/v1/nodes?{q}")),
    );
    let mut map = String::from("map $request_uri $answer { default /answers/none;\n");
    let mut blocks = String::new();
    for (i, request) in requests.iter().enumerate() {
        let file = format!("/answers/{i}.json");
        let total = save(request, &file[1..]);
        writeln!(map, "  \"{request}\" {file};").unwrap();
        let header = total.map_or(String::new(), |t| format!("add_header X-Total-Count {t};"));
        writeln!(blocks, "location = {file} {{ {header} }}").unwrap();
    }
    map.push_str("}\n");
    let root_path = root.path().display().to_string();
    let nginx = Nginx::start(|_, addr| {
        format!(
            "types {{ text/html html; text/javascript js; text/css css; application/json json; }}
map_hash_bucket_size 256;
{map}server {{ listen {addr}; root {root_path};
location = / {{ try_files /index.html =404; }}
location /api/ {{ try_files /.none $answer; }}
{blocks}}}"
        )
    });
    (nginx, root)
}

/// One pass of the steps on `url`: (step, ms) as the page noted them.
fn measure(b: &Browser, url: &str, searched: &str) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    b.goto(&format!("{url}/"));
    until(
        b,
        "the first paint",
        "return document.body.dataset.firstPaintMs !== undefined;",
    );
    out.push(("first paint", data(b, "firstPaintMs")));
    out.push((
        "page change",
        step(b, || b.click_on("#nodes-next"), "51–100 of "),
    ));
    out.push((
        "page change",
        step(b, || b.click_on("#nodes-prev"), "1–50 of "),
    ));
    out.push(("filter", step(b, || choose(b, "aarch64"), "1–50 of ")));
    step(b, || choose(b, ""), "1–50 of ");
    out.push((
        "search",
        step(b, || b.type_text(&b.find("#node-q"), searched), "1–1 of 1"),
    ));
    out
}

/// Does `act` and waits for the node list the page draws after it, then
/// gives the time the page noted.
fn step(b: &Browser, act: impl FnOnce(), range: &str) -> u64 {
    let before = data(b, "nodePages");
    b.script("delete document.body.dataset.pageMs; return 0;", &[]);
    act();
    let deadline = Instant::now() + WAIT;
    loop {
        let drawn = data(b, "nodePages") > before;
        let noted = b
            .script("return document.body.dataset.pageMs !== undefined;", &[])
            .as_bool()
            == Some(true);
        if drawn && noted && b.text_of("#nodes-range").starts_with(range) {
            return data(b, "pageMs");
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {range:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn choose(b: &Browser, arch: &str) {
    b.script(
        "const s = document.getElementById('node-arch'); s.value = arguments[0]; \
         s.dispatchEvent(new Event('change')); return 0;",
        &[json!(arch)],
    );
}

fn until(b: &Browser, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    while b.script(script, &[]).as_bool() != Some(true) {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn report(o: &Options, times: &BTreeMap<(&str, &str), Vec<u64>>) {
    println!(
        "\nadmin page, {} nodes, {} rounds{}: ms as the page noted them (min / median / max)",
        o.nodes,
        o.rounds,
        if o.pin {
            "; servers on CPU 0, Chromium on CPU 1"
        } else {
            ""
        }
    );
    println!(
        "{:<12} {:<13} {:>6} {:>7} {:>6}  samples",
        "step", "server", "min", "median", "max"
    );
    for ((step, server), v) in times {
        let mut v = v.clone();
        v.sort_unstable();
        println!(
            "{step:<12} {server:<13} {:>6} {:>7} {:>6}  {}",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        );
    }
}
