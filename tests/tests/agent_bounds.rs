//! The agent's time bounds, against servers that answer too slowly on
//! purpose: a keepalive answer dripped a byte at a time (bounded as a whole
//! by `timeout`), a dripped download (cut by `download_min_rate`), a slow but
//! moving one (which finishes although it takes longer than `timeout`), and
//! a cycle that runs past `cycle_timeout` (stopped between two chunks, the
//! live file untouched, resumed by the next run). Bounds are asserted loosely
//! ("within 20 s, not 100 s"), never to the millisecond.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, Agent, Outcome};
use binproxy_tests::artifact_bytes;
use binproxy_tests::fake_manager::{Download, FakeManager};
use binproxy_tests::stub::StubServer;
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = "svc";

/// A manager whose every answer is a 200 with a JSON `Content-Length` of
/// 200 bytes, sent one byte per second (100 s and more in all).
fn dripping_manager() -> StubServer {
    StubServer::start(|x| {
        let json = ("Content-Type", "application/json".to_owned());
        if x.head(200, &[json], 200)
            .and_then(|()| x.write(b"{"))
            .is_err()
        {
            return;
        }
        for _ in 0..200 {
            thread::sleep(Duration::from_secs(1));
            if x.stopped() || x.write(b" ").is_err() {
                return;
            }
        }
    })
}

/// Whether a file name beside the live file is a partial download.
fn is_part(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|e| e == "part")
}

/// A node on v1 whose fake manager serves `len` bytes of a v2, `bytes` at
/// a time with `pause_ms` between, with these fields set in its config.
fn paced(len: usize, bytes: usize, pause_ms: u64, set: &Value) -> (FakeManager, Agent, Vec<u8>) {
    let artifact = artifact_bytes("paced", len);
    let fake = FakeManager::start(
        BIN,
        "2",
        artifact.clone(),
        Download::Paced { bytes, pause_ms },
    );
    let a = Agent::new(BIN);
    a.place(&good_script("v1"));
    configure(&a, &fake.url, set);
    (fake, a, artifact)
}

/// Writes `a`'s config for `url` with the top-level fields of `set`.
fn configure(a: &Agent, url: &str, set: &Value) {
    let mut config = a.config_json(url, &json!({}));
    for (k, v) in set.as_object().unwrap() {
        config[k] = v.clone();
    }
    a.write_config(&config);
}

/// Runs the agent once; asserts its exit code and that it ended within
/// `limit`; returns the outcome and how long it took.
fn run_within(a: &Agent, code: i32, limit: Duration) -> (Outcome, Duration) {
    let started = Instant::now();
    let out = a.run();
    let took = started.elapsed();
    out.expect_code(code);
    assert!(took < limit, "the agent ran {took:?}\n{}", out.stderr);
    (out, took)
}

#[test]
fn a_dripped_keepalive_answer_is_cut_at_the_timeout() {
    let manager = dripping_manager();
    let a = Agent::new(BIN);
    configure(&a, &manager.url, &json!({"timeout": "2s"}));
    let (out, _) = run_within(&a, 69, Duration::from_secs(20));
    out.expect_log(&[
        "/api/v1/keepalive",
        "no complete answer within the config's `timeout`",
    ]);
}

#[test]
fn a_dripped_download_is_cut_by_the_minimum_rate() {
    // 64 KiB at 2 bytes/s would take 9 hours.
    let set = json!({"download_min_rate": "1KiB", "download_min_rate_window": "2s"});
    let (fake, a, _) = paced(64 * 1024, 1, 500, &set);
    let (out, _) = run_within(&a, 1, Duration::from_secs(20));
    out.expect_log(&["download_min_rate", &fake.url]);
    a.assert_live(&good_script("v1"), "after the cut download");
    // The partial download stays for a resume.
    assert!(a.beside().iter().any(|n| is_part(n)), "{:?}", a.beside());
}

#[test]
fn a_slow_but_moving_download_finishes_though_it_outlasts_the_timeout() {
    // 256 KiB at 8 KiB every 100 ms: about 3 s, with `timeout` 1s.
    let set =
        json!({"timeout": "1s", "download_min_rate": "16KiB", "download_min_rate_window": "1s"});
    let (_fake, a, artifact) = paced(256 * 1024, 8 * 1024, 100, &set);
    let (_, took) = run_within(&a, 0, Duration::from_secs(60));
    assert!(
        took > Duration::from_secs(1),
        "too fast to prove it: {took:?}"
    );
    a.assert_live(&artifact, "after the slow download");
}

#[test]
fn cycle_timeout_stops_a_long_download_at_a_safe_point_and_the_next_run_resumes() {
    // 2 MiB at 16 KiB every 100 ms: about 13 s, far over the 2 s cycle_timeout.
    let (fake, a, artifact) = paced(2 << 20, 16 * 1024, 100, &json!({"cycle_timeout": "2s"}));
    let (out, _) = run_within(&a, 1, Duration::from_secs(10));
    out.expect_log(&["cycle_timeout (2s) exceeded"]);
    a.assert_live(&good_script("v1"), "after the cycle timed out");
    assert!(a.journal().is_none(), "journal: {:?}", a.journal());
    let part: Vec<String> = a.beside().into_iter().filter(|n| is_part(n)).collect();
    assert_eq!(part.len(), 1, "{:?}", a.beside());

    // A fast server now: the next run resumes where the cut one stopped.
    fake.set_download(Download::Exact);
    configure(&a, &fake.url, &json!({"cycle_timeout": "1m"}));
    a.run().expect_code(0);
    a.assert_live(&artifact, "after the resumed download");
    let ranges = fake.downloads();
    let resumed = ranges.last().cloned().flatten();
    assert!(
        resumed.as_deref().is_some_and(|r| r != "bytes=0-"),
        "{ranges:?}"
    );
}
