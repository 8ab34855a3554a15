//! `GET /metrics` of the real manager-lite (issue #6 item 6): a small fleet is
//! built through the real API (keepalives, progress reports with
//! `processingTime`, a release), the exposition is scraped over HTTP and
//! parsed by a real Prometheus text parser (Python's `prometheus_client`,
//! run as a subprocess that prints JSON), and the numbers are checked against
//! what the test did. Also who may scrape: a viewer token by default, anyone
//! with `--metrics-public`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The values compared exactly are counts: small whole numbers, exact in an f64.
#![allow(clippy::float_cmp)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use binproxy_tests::fleet::{create_release, upload_versions};
use binproxy_tests::{output_within, Manager, ManagerOptions, Response, TempDir};
use serde_json::{json, Value};

const BIN: &str = "metered";

/// Parses the exposition with `prometheus_client` and returns
/// `{family: {"type": t, "samples": [{"name", "labels", "value"}]}}`.
const PARSER: &str = r"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
with open(sys.argv[1]) as f:
    text = f.read()
for fam in text_string_to_metric_families(text):
    out[fam.name] = {
        'type': fam.type,
        'samples': [{'name': s.name, 'labels': s.labels, 'value': s.value} for s in fam.samples],
    }
print(json.dumps(out))
";

/// The scraped text, parsed by the real parser.
struct Scrape {
    families: serde_json::Map<String, Value>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let dir = TempDir::new("metrics");
        let file = dir.join("metrics.txt");
        std::fs::write(&file, text).unwrap();
        let out = parse_with_python(&file);
        assert!(
            out.status.success(),
            "prometheus_client could not parse the exposition (install it with \
             `python3 -m pip install prometheus_client`): {}\n---\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Scrape {
            families: v.as_object().unwrap().clone(),
        }
    }

    fn kind(&self, family: &str) -> &str {
        self.families[family]["type"].as_str().unwrap()
    }

    /// Samples called `name` whose labels include every pair of `labels`.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Value> {
        self.families
            .values()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .collect()
    }

    /// The one sample called `name` with `labels`; panics when there is not exactly one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.samples(name, labels);
        assert_eq!(found.len(), 1, "samples {name} {labels:?}: {found:?}");
        found[0]["value"].as_f64().unwrap()
    }

    /// The sum over every sample called `name` with `labels`.
    fn total(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    }
}

fn parse_with_python(file: &Path) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PARSER]).arg(file);
    output_within(&mut cmd, Duration::from_secs(60))
}

fn scrape(m: &Manager, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    m.request("GET", "/metrics", &headers, b"")
}

fn viewer_token(m: &Manager) -> String {
    let r = m.admin_post(
        "/api/v1/tokens",
        &json!({"name": "scraper", "role": "viewer"}),
    );
    r.expect(201);
    r.json()["token"].as_str().unwrap().to_owned()
}

fn report(m: &Manager, node: &str, sha: &str, status: &str, ms: u64) {
    m.post_json(
        &format!("/api/v1/bins/{BIN}/progress"),
        &json!({"node_id": node, "targetHash": sha, "status": status,
                "processingTime": ms, "message": "from the test"}),
    )
    .expect(201);
}

#[test]
fn metrics_describe_the_fleet_and_parse() {
    let m = Manager::new();
    let shas = upload_versions(&m, BIN, &["1.0", "2.0"]);
    let (v1, v2) = (&shas["1.0"], &shas["2.0"]);
    let unknown = "ab".repeat(32);
    for (node, sha) in [("n1", v1), ("n2", v1), ("n3", v2), ("n4", &unknown)] {
        m.keepalive(node, "x86_64", &[(BIN, sha)]).expect(200);
    }
    let release = create_release(&m, &json!({"bin_name": BIN, "version": "2.0"}));
    // Five reports; three finish an update (1.5 s + 2.5 s + 0.7 s).
    report(&m, "n1", v2, "in_progress", 0);
    report(&m, "n1", v2, "success", 1500);
    report(&m, "n2", v2, "in_progress", 0);
    report(&m, "n2", v2, "rolled_back", 2500);
    report(&m, "n4", v2, "failed", 700);

    let token = viewer_token(&m);
    let r = scrape(&m, Some(&token));
    r.expect(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{r}");
    let s = Scrape::parse(&r.text());

    assert_eq!(s.value("binproxy_nodes", &[("state", "online")]), 4.0);
    assert_eq!(s.value("binproxy_nodes", &[("state", "offline")]), 0.0);
    let running = |version| s.value("binproxy_bin_nodes", &[("bin", BIN), ("version", version)]);
    assert_eq!(running("1.0"), 2.0);
    assert_eq!(running("2.0"), 1.0);
    assert_eq!(running("unknown"), 1.0);

    assert_eq!(s.kind("binproxy_progress_reports"), "counter");
    let reports = |outcome| {
        s.value(
            "binproxy_progress_reports_total",
            &[("bin", BIN), ("outcome", outcome)],
        )
    };
    assert_eq!(reports("in_progress"), 2.0);
    assert_eq!(reports("success"), 1.0);
    assert_eq!(reports("rolled_back"), 1.0);
    assert_eq!(reports("failed"), 1.0);

    assert_eq!(s.kind("binproxy_update_duration_seconds"), "histogram");
    let count = s.total("binproxy_update_duration_seconds_count", &[("bin", BIN)]);
    assert_eq!(count, 3.0, "one observation per finished update");
    let sum = s.total("binproxy_update_duration_seconds_sum", &[("bin", BIN)]);
    assert!((sum - 4.7).abs() < 1e-9, "sum {sum}");
    let inf = s.value(
        "binproxy_update_duration_seconds_bucket",
        &[("bin", BIN), ("outcome", "rolled_back"), ("le", "+Inf")],
    );
    assert_eq!(inf, 1.0);
    let le1 = s.value(
        "binproxy_update_duration_seconds_bucket",
        &[("bin", BIN), ("outcome", "success"), ("le", "1.0")],
    );
    assert_eq!(le1, 0.0, "1.5 s is above the 1 s bucket");

    let id = release.id.to_string();
    let rel = [("release", id.as_str()), ("bin", BIN), ("version", "2.0")];
    assert_eq!(s.samples("binproxy_release_info", &rel).len(), 1);
    assert_eq!(s.value("binproxy_release_percent", &rel), 100.0);
    assert_eq!(s.value("binproxy_release_wave", &rel), 1.0);
    let mut targeted = rel.to_vec();
    targeted.push(("outcome", "targeted"));
    assert_eq!(s.value("binproxy_release_nodes", &targeted), 4.0);
    let status = release_status(&m, release.id);
    assert_eq!(
        s.value("binproxy_releases", &[("status", &status)]),
        1.0,
        "the release is {status}"
    );

    // The manager's own requests, by route name (never a raw path).
    let keepalives = s.value(
        "manager_http_requests_total",
        &[("route", "Keepalive"), ("status_class", "2xx")],
    );
    assert!(keepalives >= 4.0, "{keepalives}");
    assert!(
        s.total(
            "manager_http_request_duration_seconds_count",
            &[("route", "BinProgress")]
        ) >= 5.0
    );
    assert!(
        s.samples("manager_http_requests_total", &[])
            .iter()
            .all(|x| !x["labels"]["route"].as_str().unwrap().contains('/')),
        "a route label is a path"
    );
}

fn release_status(m: &Manager, id: u64) -> String {
    let r = m.admin_get(&format!("/api/v1/releases/{id}"));
    r.expect(200);
    r.json()["status"].as_str().unwrap().to_owned()
}

#[test]
fn unmatched_paths_count_under_one_label() {
    let m = Manager::new();
    for i in 0..3 {
        m.get(&format!("/no/such/{i}")).expect(404);
    }
    let r = m.admin_get("/metrics");
    r.expect(200);
    let s = Scrape::parse(&r.text());
    assert_eq!(
        s.value(
            "manager_http_requests_total",
            &[("route", "None"), ("status_class", "4xx")]
        ),
        3.0
    );
}

#[test]
fn metrics_need_a_viewer_token_unless_public() {
    let m = Manager::new();
    scrape(&m, None).expect_error(401);
    scrape(&m, Some("not-a-token-at-all-xyz")).expect_error(401);
    let token = viewer_token(&m);
    scrape(&m, Some(&token)).expect(200);
    assert_eq!(m.request("POST", "/metrics", &[], b"").status, 405);

    let open = Manager::new_with(ManagerOptions::default().arg("--metrics-public"));
    let r = scrape(&open, None);
    r.expect(200);
    let s = Scrape::parse(&r.text());
    assert_eq!(s.value("binproxy_nodes", &[("state", "online")]), 0.0);
}
