//! How long a three-wave rollout takes over a 1,000-node simulated fleet (a
//! benchmark, not a test: it prints what it measured and asserts nothing about
//! speed).
//!
//!     cargo bench -p binproxy-tests --bench fleet
//!
//! The real `manager-lite` (`--rollout-interval 100ms`) on 127.0.0.1 with a
//! temp data dir; 1,000 node ids registered, then a release of waves
//! 1%:1s, 10%:1s, 100% and rounds of the fleet (every node keepalives, the
//! targeted ones report in_progress, success and installed) until the release
//! is "completed". Printed: wall time from the release's creation to
//! "completed", the rounds, and the requests sent in that time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::ReleaseStatus;
use binproxy_tests::fleet::{
    create_release, get_release, rollout_manager, show_release, upload_versions, Fleet, Mode,
};
use serde_json::json;
use std::time::{Duration, Instant};

const NODES: usize = 1000;
const BIN: &str = "svc";
const MAX_ROUNDS: u64 = 2000;
const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let m = rollout_manager();
    let shas = upload_versions(&m, BIN, &["1.0.0"]);
    let mut fleet = Fleet::new(&[BIN], NODES);
    fleet.threads = 16;
    let started = Instant::now();
    fleet.round(m.addr, Mode::Observe);
    println!(
        "registered {NODES} nodes in {:.2?} ({} requests)",
        started.elapsed(),
        fleet.requests
    );

    let (rounds0, requests0) = (fleet.rounds, fleet.requests);
    let created = Instant::now();
    let rel = create_release(
        &m,
        &json!({"bin_name": BIN, "version": "1.0.0",
                "waves": [{"percent": 1, "wait": "1s"}, {"percent": 10, "wait": "1s"}, {"percent": 100}]}),
    );
    let mut last = (rel.wave, rel.percent);
    println!(
        "{:>8.2?}  wave {} at {}%",
        created.elapsed(),
        last.0,
        last.1
    );
    let done = loop {
        fleet.round(m.addr, Mode::Update);
        let r = get_release(&m, rel.id);
        if (r.wave, r.percent) != last {
            last = (r.wave, r.percent);
            println!(
                "{:>8.2?}  wave {} at {}%",
                created.elapsed(),
                last.0,
                last.1
            );
        }
        if r.status != ReleaseStatus::RollingOut {
            break r;
        }
        assert!(
            fleet.rounds - rounds0 < MAX_ROUNDS && created.elapsed() < LIMIT,
            "no completion after {} rounds: {}",
            fleet.rounds - rounds0,
            show_release(&r)
        );
    };
    let wall = created.elapsed();
    assert_eq!(
        done.status,
        ReleaseStatus::Completed,
        "{}",
        show_release(&done)
    );
    let running = fleet.running(BIN, &shas["1.0.0"]).len();
    println!(
        "release {} completed: {NODES} nodes ({running} running it), waves 1%:1s 10%:1s 100%, --rollout-interval 100ms",
        done.id
    );
    println!(
        "wall time from creation to completed: {wall:.2?}; {} rounds; {} requests (+ {} release polls)",
        fleet.rounds - rounds0,
        fleet.requests - requests0,
        fleet.rounds - rounds0
    );
}
