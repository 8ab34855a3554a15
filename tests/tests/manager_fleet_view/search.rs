//! `GET /api/v1/nodes` as a search: filters, sorts, offset pages, refusals.

use super::*;

#[test]
fn search_filters_by_text_arch_label_and_bin_version() {
    let s = small_fleet(ManagerOptions::default());
    for (query, want) in [
        ("offset=0", ALL),
        ("q=web", "app-01 app-02 edge-01"),
        ("q=WeB", "app-01 app-02 edge-01"),
        ("q=app-0", "app-01 app-02 app-03"),
        ("q=db-r", "db-02"),
        ("q=nothing-like-it", ""),
        ("arch=aarch64", "app-03 db-01"),
        // Named as nodes' arches are stored: arm64 is aarch64.
        ("arch=arm64", "app-03 db-01"),
        ("label=env=prod", "app-01 app-03 db-01 edge-02"),
        ("label=env%3Dstaging", "app-02 db-02"),
        ("label=env=Prod", ""),
        ("bin=svc", "app-01 app-02 app-03 db-01 db-02 edge-02"),
        ("bin=web", "edge-01"),
        ("bin=svc&version=1.0.0", "app-01 app-02 edge-02"),
        ("bin=svc&version=2.0.0", "app-03"),
        ("bin=svc&version=3.0.0", ""),
        ("bin=svc&version=*missing", "db-01"),
        ("bin=svc&version=*unknown", "db-02"),
        ("bin=web&version=1.0.0", "edge-01"),
        ("bin=nothing", ""),
        (
            "q=e&arch=x86_64&label=env=prod&bin=svc&version=1.0.0",
            "app-01 edge-02",
        ),
    ] {
        let n = want.split_whitespace().count();
        let want = format!("{want} / {n}");
        assert_eq!(s.search(query), want.trim_start(), "{query}");
    }
    // The answer is whole node records.
    let r = s.m.admin_get("/api/v1/nodes?label=env=staging&arch=x86_64");
    let nodes: Vec<Node> = r.expect(200).parse();
    let got: Vec<[&str; 2]> = nodes
        .iter()
        .map(|n| [&*n.node_name, &*n.labels["env"]])
        .collect();
    assert_eq!(got, [["Web-Beta", "staging"], ["Db-Replica", "staging"]]);
    assert_eq!(nodes[0].bins["svc"], s.svc["1.0.0"]);
}

fn reversed(ids: &str) -> String {
    ids.rsplit(' ').collect::<Vec<_>>().join(" ")
}

#[test]
fn search_sorts_and_pages_with_offset() {
    let s = small_fleet(ManagerOptions::default());
    assert_eq!(s.search("sort=id"), format!("{ALL} / 7"));
    assert_eq!(s.search("sort=-id"), format!("{} / 7", reversed(ALL)));
    assert_eq!(s.search("sort=name"), format!("{BY_NAME} / 7"));
    assert_eq!(s.search("sort=-name"), format!("{} / 7", reversed(BY_NAME)));
    let by_arch = "edge-01 app-03 db-01 app-01 app-02 db-02 edge-02 / 7";
    assert_eq!(s.search("sort=arch"), by_arch, "no arch, aarch64, x86_64");

    // Seen in this order, a few milliseconds apart.
    let seen = "edge-02 app-02 db-01 app-03 db-02 app-01 edge-01";
    for id in seen.split(' ') {
        thread::sleep(Duration::from_millis(5));
        s.touch(id);
    }
    assert_eq!(s.search("sort=last_seen"), format!("{seen} / 7"));
    assert_eq!(
        s.search("sort=-last_seen"),
        format!("{} / 7", reversed(seen))
    );

    // Pages of 1 to 3 at growing offsets make up the whole sorted list.
    for limit in 1..=3 {
        let mut pages = Vec::new();
        for offset in (0..7).step_by(limit) {
            let page = s.search(&format!("sort=name&limit={limit}&offset={offset}"));
            let (ids, total) = page.split_once(" / ").unwrap();
            let full = ids.split(' ').count() == limit.min(7 - offset);
            assert!(
                full && total == "7",
                "limit {limit} offset {offset}: {page}"
            );
            pages.push(ids.to_owned());
        }
        assert_eq!(pages.join(" "), BY_NAME, "pages of {limit}");
    }
    assert_eq!(s.search("sort=name&offset=7"), "/ 7");
    assert_eq!(s.search("offset=100&limit=5"), "/ 7");
    // svc's six nodes by name, descending: the second page of 2.
    assert_eq!(
        s.search("bin=svc&sort=-name&limit=2&offset=2"),
        "edge-02 db-02 / 6"
    );
}

/// The contract: "ties keep id order", whatever the sort. Nodes of one
/// arch must stay in id order when the arches are sorted descending.
/// Fails while the server reverses the whole sorted list for `-`, ties
/// included (`search` in manager-lite/src/api/fleet.rs).
#[test]
fn descending_sort_keeps_ties_in_id_order() {
    let s = small_fleet(ManagerOptions::default());
    let want = "app-01 app-02 db-02 edge-02 app-03 db-01 edge-01 / 7";
    assert_eq!(s.search("sort=-arch"), want, "x86_64, aarch64, no arch");
}

#[test]
fn search_pages_hold_1000_nodes_by_default() {
    let m = Manager::new();
    let all: Vec<String> = (0..1003).map(|i| format!("bulk-{i:04}")).collect();
    thread::scope(|s| {
        for part in all.chunks(251) {
            let m = &m;
            s.spawn(move || {
                for id in part {
                    m.keepalive(id, "x86_64", &[]).expect(200);
                }
            });
        }
    });
    m.keepalive("other", "x86_64", &[]).expect(200);
    let page = |ids: &[String], total| format!("{} / {total}", ids.join(" "));
    assert_eq!(search(&m, "q=bulk"), page(&all[..1000], 1003));
    assert_eq!(search(&m, "q=bulk&offset=1000"), page(&all[1000..], 1003));
    assert_eq!(search(&m, "q=BULK&limit=10000"), page(&all, 1003));
    assert_eq!(search(&m, "offset=1003&limit=1"), "other / 1004");
}

#[test]
fn bad_search_values_are_refused_and_the_plain_listing_is_unchanged() {
    let s = small_fleet(ManagerOptions::default());
    let long = "x".repeat(129);
    let wide = "%C3%A9".repeat(129);
    let bad = "state=idle state=ONLINE label=env label==prod version=1.0.0 version=*missing \
               sort=size sort=- sort=--id offset=ten offset=-1 q=a&after=app-01 offset=0&after= \
               q=a&limit=0 q=a&limit=10001";
    let queries = [format!("q={long}"), format!("q={wide}")];
    for query in bad.split_whitespace().map(String::from).chain(queries) {
        let r = s.m.admin_get(&format!("/api/v1/nodes?{query}"));
        let error = r.expect_error(400).json()["error"].to_string();
        // The error names the parameter (the last one given).
        let word = query.rsplit('&').next().unwrap().split('=').next().unwrap();
        assert!(error.contains(word), "{query}: {error}");
    }
    // 128 characters (not bytes) are fine.
    assert_eq!(s.search(&format!("q={}", &wide[..6 * 128])), "/ 0");
    assert_eq!(s.search(&format!("q={}", &long[..128])), "/ 0");
    s.m.get("/api/v1/nodes?q=app").expect_error(401);

    // No search parameter: the whole list or cursor pages, no total.
    let whole = s.m.admin_get("/api/v1/nodes");
    assert_eq!(ids(whole.expect(200)).join(" "), ALL);
    let page = s.m.admin_get("/api/v1/nodes?limit=3");
    assert_eq!(ids(page.expect(200)), ["app-01", "app-02", "app-03"]);
    assert_eq!(page.header("x-next-after"), Some("app-03"));
    let rest = s.m.admin_get("/api/v1/nodes?after=db-02");
    assert_eq!(ids(rest.expect(200)), ["edge-01", "edge-02"]);
    for r in [whole, page, rest] {
        assert_eq!(r.header("x-total-count"), None, "{r}");
    }
}
