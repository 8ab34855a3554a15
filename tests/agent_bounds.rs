//! The agent's time bounds, against servers that answer too slowly on
//! purpose: a keepalive answer dripped a byte at a time (bounded as a whole
//! by `timeout`), a dripped download (cut by `download_min_rate`), a slow but
//! moving one (which finishes although it takes longer than `timeout`), and
//! a cycle that runs past `cycle_timeout` (stopped between two chunks, the
//! live file untouched, resumed by the next run). Bounds are asserted loosely
//! ("within 20 s, not 100 s"), never to the millisecond.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{good_script, Agent, Download, FakeManager};
use binproxy_tests::artifact_bytes;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = "svc";

/// A manager whose every answer is a 200 with a JSON `Content-Length` of
/// 200 bytes, sent one byte per second (100 s and more in all).
fn dripping_manager() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                let mut head = [0u8; 8192];
                let _ = s.read(&mut head);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
                );
                for _ in 0..200 {
                    thread::sleep(Duration::from_secs(1));
                    if s.write_all(b" ").is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Whether a file name beside the live file is a partial download.
fn is_part(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|e| e == "part")
}

/// Runs the agent once, returning the outcome and how long it took.
fn timed_run(a: &Agent) -> (binproxy_tests::agent::Outcome, Duration) {
    let started = Instant::now();
    let out = a.run();
    (out, started.elapsed())
}

#[test]
fn a_dripped_keepalive_answer_is_cut_at_the_timeout() {
    let url = dripping_manager();
    let a = Agent::new(BIN);
    let mut config = a.config_json(&url, &json!({}));
    config["timeout"] = json!("2s");
    a.write_config(&config);
    let (out, took) = timed_run(&a);
    out.expect_code(69);
    assert!(
        took < Duration::from_secs(20),
        "the agent ran {took:?} on a dripped answer; timeout is 2s"
    );
    assert!(
        out.stderr.contains("/api/v1/keepalive") && out.stderr.contains("imeout"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dripped_download_is_cut_by_the_minimum_rate() {
    let artifact = artifact_bytes("drip", 64 * 1024);
    let fake = FakeManager::start(
        BIN,
        "2",
        artifact,
        Download::Paced {
            bytes: 1,
            pause_ms: 500,
        },
    );
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    let mut config = a.config_json(&fake.url, &json!({}));
    config["download_min_rate"] = json!("1KiB");
    config["download_min_rate_window"] = json!("2s");
    a.write_config(&config);
    let (out, took) = timed_run(&a);
    out.expect_code(1);
    assert!(
        took < Duration::from_secs(20),
        "a download dripped at 2 bytes/s ran {took:?}"
    );
    assert!(
        out.stderr.contains("download_min_rate") && out.stderr.contains(&fake.url),
        "{}",
        out.stderr
    );
    a.assert_live(&v1, "after the cut download");
    // The partial download stays for a resume.
    assert!(a.beside().iter().any(|n| is_part(n)), "{:?}", a.beside());
}

#[test]
fn a_slow_but_moving_download_finishes_though_it_outlasts_the_timeout() {
    // 256 KiB at 8 KiB every 100 ms: about 3 s, with `timeout` 1s.
    let artifact = artifact_bytes("slow", 256 * 1024);
    let fake = FakeManager::start(
        BIN,
        "2",
        artifact.clone(),
        Download::Paced {
            bytes: 8 * 1024,
            pause_ms: 100,
        },
    );
    let a = Agent::new(BIN);
    let mut config = a.config_json(&fake.url, &json!({}));
    config["timeout"] = json!("1s");
    config["download_min_rate"] = json!("16KiB");
    config["download_min_rate_window"] = json!("1s");
    a.write_config(&config);
    let (out, took) = timed_run(&a);
    out.expect_code(0);
    assert!(
        took > Duration::from_secs(1),
        "too fast to prove it: {took:?}"
    );
    a.assert_live(&artifact, "after the slow download");
}

#[test]
fn cycle_timeout_stops_a_long_download_at_a_safe_point_and_the_next_run_resumes() {
    // 2 MiB at 16 KiB every 100 ms: about 13 s, far over the 2 s cycle_timeout.
    let artifact = artifact_bytes("long", 2 << 20);
    let fake = FakeManager::start(
        BIN,
        "2",
        artifact.clone(),
        Download::Paced {
            bytes: 16 * 1024,
            pause_ms: 100,
        },
    );
    let a = Agent::new(BIN);
    let v1 = good_script("v1");
    a.place(&v1);
    let mut config = a.config_json(&fake.url, &json!({}));
    config["cycle_timeout"] = json!("2s");
    a.write_config(&config);
    let (out, took) = timed_run(&a);
    out.expect_code(1);
    assert!(took < Duration::from_secs(10), "ran {took:?}");
    assert!(
        out.stderr.contains("cycle_timeout (2s) exceeded"),
        "{}",
        out.stderr
    );
    a.assert_live(&v1, "after the cycle timed out");
    assert!(a.journal().is_none(), "journal: {:?}", a.journal());
    let part: Vec<String> = a.beside().into_iter().filter(|n| is_part(n)).collect();
    assert_eq!(part.len(), 1, "{:?}", a.beside());

    // A fast server now: the next run resumes where the cut one stopped.
    fake.set_download(Download::Exact);
    config["cycle_timeout"] = json!("1m");
    a.write_config(&config);
    a.run().expect_code(0);
    a.assert_live(&artifact, "after the resumed download");
    let ranges = fake.downloads();
    let resumed = ranges.last().cloned().flatten();
    assert!(
        resumed.as_deref().is_some_and(|r| r != "bytes=0-"),
        "{ranges:?}"
    );
}
