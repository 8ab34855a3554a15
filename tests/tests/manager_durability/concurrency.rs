//! Concurrent clients never get a 5xx or lose an acknowledged result, and
//! concurrent releases of one bin leave only the newest live.

use binproxy_protocol::{Node, ProgressRecord, Release, ReleaseStatus, Target, Version};
use binproxy_tests::api::register;
use binproxy_tests::{artifact_bytes, sha256_hex, status_counts, Manager, Response};
use serde_json::json;
use std::collections::BTreeSet;

/// One client's acknowledged results.
#[derive(Default)]
struct ThreadResults {
    versions: Vec<Version>,
    progress: Vec<ProgressRecord>,
    releases: Vec<Release>,
    statuses: Vec<u16>,
}

fn expect_status(out: &mut ThreadResults, r: &Response, want: u16, what: &str) {
    out.statuses.push(r.status);
    assert!(r.status < 500, "{what}: 5xx: {r}");
    assert_eq!(r.status, want, "{what}: {r}");
}

const THREADS: usize = 8;
const OPS: usize = 50;

/// One of the concurrent clients: `OPS` bounded operations, each checked.
fn client(m: &Manager, t: usize) -> ThreadResults {
    let mut out = ThreadResults::default();
    let node = format!("conc-node-{t}");
    let bin = format!("conc-{}", t % 2);
    let r = m.keepalive(&node, "x86_64", &[(&bin, "")]);
    expect_status(&mut out, &r, 200, "first keepalive");
    for j in 0..OPS {
        match j % 5 {
            0 | 3 => {
                let version = format!("t{t}-{j}");
                let bytes = artifact_bytes(&format!("{bin}/{version}"), 1000 + j * 37 + t);
                let r = m.upload(&bin, &version, None, &bytes);
                expect_status(&mut out, &r, 201, &format!("upload {bin} {version}"));
                out.versions.push(r.parse());
            }
            1 => {
                let r = m.keepalive(&node, "x86_64", &[(&bin, "")]);
                expect_status(&mut out, &r, 200, "keepalive");
            }
            2 => {
                let r = m.post_json(
                    &format!("/api/v1/bins/{bin}/progress"),
                    &json!({"node_id": node, "targetHash": sha256_hex(format!("{t}/{j}").as_bytes()),
                            "status": "success", "processingTime": j}),
                );
                expect_status(&mut out, &r, 201, "progress");
                out.progress.push(r.parse());
            }
            _ => {
                let version = out
                    .versions
                    .last()
                    .expect("uploaded before")
                    .version
                    .clone();
                let r = m.release(&bin, &version);
                expect_status(&mut out, &r, 201, &format!("release {bin} {version}"));
                out.releases.push(r.parse());
                let r = m.get(&format!("/api/v1/bins/{bin}?node_id={node}"));
                expect_status(&mut out, &r, 200, "target");
            }
        }
    }
    out
}

/// Asserts the server shows every result the clients got acknowledged.
fn check_concurrent(m: &Manager, results: &[ThreadResults], stage: &str) {
    for bin in ["conc-0", "conc-1"] {
        let list: Vec<Version> = m
            .admin_get(&format!("/api/v1/bins/{bin}/versions"))
            .expect(200)
            .parse();
        let want: Vec<&Version> = results
            .iter()
            .flat_map(|r| &r.versions)
            .filter(|v| v.bin_name == bin)
            .collect();
        assert_eq!(list.len(), want.len(), "{bin}");
        for v in want {
            assert!(list.contains(v), "upload {v:?} lost");
        }
        let progress: Vec<ProgressRecord> = m
            .admin_get(&format!("/api/v1/bins/{bin}/progress?limit=1000"))
            .expect(200)
            .parse();
        let want: Vec<&ProgressRecord> = results
            .iter()
            .flat_map(|r| &r.progress)
            .filter(|p| p.bin_name == bin)
            .collect();
        assert_eq!(progress.len(), want.len(), "{bin} progress");
        for p in want {
            assert!(progress.contains(p), "progress {p:?} lost");
        }
        // Every release is there; exactly the newest one of the bin is live.
        let releases: Vec<Release> = m
            .admin_get(&format!("/api/v1/releases?bin_name={bin}"))
            .expect(200)
            .parse();
        let want: BTreeSet<u64> = results
            .iter()
            .flat_map(|r| &r.releases)
            .filter(|r| r.bin_name == bin)
            .map(|r| r.id)
            .collect();
        let got: BTreeSet<u64> = releases.iter().map(|r| r.id).collect();
        assert_eq!(got, want, "{bin} releases");
        let newest = *want.iter().max().unwrap();
        let shown: Vec<(u64, &str, &str)> = releases
            .iter()
            .map(|r| (r.id, r.version.as_str(), r.status.as_str()))
            .collect();
        for r in &releases {
            let status = if r.id == newest {
                ReleaseStatus::RollingOut
            } else {
                ReleaseStatus::Superseded
            };
            assert_eq!(
                r.status, status,
                "{stage}: release {} of {bin}; only the newest ({newest}) may be live: {shown:?}",
                r.id
            );
        }
    }
    let ids: BTreeSet<u64> = results
        .iter()
        .flat_map(|r| &r.progress)
        .map(|p| p.id)
        .collect();
    assert_eq!(ids.len(), THREADS * (OPS / 5), "progress ids are unique");
    let nodes: Vec<Node> = m.admin_get("/api/v1/nodes").expect(200).parse();
    assert_eq!(nodes.len(), THREADS, "{nodes:?}");
}

#[test]
fn concurrent_clients_lose_nothing() {
    let mut m = Manager::new();
    let results: Vec<ThreadResults> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = &m;
                s.spawn(move || client(m, t))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all_statuses: Vec<u16> = results
        .iter()
        .flat_map(|r| r.statuses.iter().copied())
        .collect();
    assert_eq!(
        all_statuses.len(),
        THREADS * (OPS + 1) + THREADS * (OPS / 5)
    );
    assert!(
        all_statuses.iter().all(|s| *s < 500),
        "{:?}",
        status_counts(&all_statuses)
    );
    check_concurrent(&m, &results, "before restart");
    m.kill9();
    m.restart();
    check_concurrent(&m, &results, "after kill -9 and restart");
}

#[test]
fn concurrent_releases_of_one_bin_leave_only_the_newest_live() {
    const CLIENTS: usize = 8;
    const RELEASES: usize = 20;
    let mut m = Manager::new();
    for t in 0..CLIENTS {
        m.upload("hot", &format!("v{t}"), None, format!("hot {t}").as_bytes())
            .expect(201);
    }
    let barrier = std::sync::Barrier::new(CLIENTS);
    let created: Vec<Release> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..RELEASES)
                        .map(|_| m.release("hot", &format!("v{t}")).expect(201).parse())
                        .collect::<Vec<Release>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(created.len(), CLIENTS * RELEASES);
    let newest = created.iter().map(|r| r.id).max().unwrap();
    let newest_version = created
        .iter()
        .find(|r| r.id == newest)
        .unwrap()
        .version
        .clone();
    for stage in ["before restart", "after kill -9 and restart"] {
        let releases: Vec<Release> = m
            .admin_get("/api/v1/releases?bin_name=hot")
            .expect(200)
            .parse();
        assert_eq!(releases.len(), created.len(), "{stage}");
        let live: Vec<(u64, &str)> = releases
            .iter()
            .filter(|r| r.status.is_live())
            .map(|r| (r.id, r.version.as_str()))
            .collect();
        assert_eq!(
            live,
            vec![(newest, newest_version.as_str())],
            "{stage}: exactly the newest release may be live"
        );
        register(&m, "probe", "x86_64");
        let t: Target = m.get("/api/v1/bins/hot?node_id=probe").expect(200).parse();
        assert_eq!(
            t.version, newest_version,
            "{stage}: target follows the newest release"
        );
        if stage == "before restart" {
            m.kill9();
            m.restart();
        }
    }
}
