//! Reading numbers off the manager's `GET /metrics` (with the admin token)
//! without a Prometheus parser: [`metric`] sums the samples of one name, and
//! [`wait_rollout_evaluations`] waits on `manager_rollout_evaluations_total`
//! for passes of the rollout timer, so a test can tell "the timer ran and
//! changed nothing" from "the timer has not run yet". (`manager_metrics.rs`
//! checks the exposition itself with a real parser.)

use std::time::Duration;

use crate::{wait_until, Manager};

/// Longest wait for rollout evaluation passes (they run every 100 ms in the
/// rollout tests; a loaded machine may take much longer).
pub const EVALUATIONS_LIMIT: Duration = Duration::from_secs(60);

/// Sum of the samples of `name` whose labels include every `key="value"`
/// of `labels`; 0 when there is none (a counter may be missing until it is
/// first non-zero).
pub fn metric(m: &Manager, name: &str, labels: &[(&str, &str)]) -> f64 {
    let r = m.admin_get("/metrics");
    r.expect(200);
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let mut total = 0.0;
    for line in r.text().lines().filter(|l| !l.starts_with('#')) {
        let (series, rest) = if line.contains('{') {
            let close = line
                .rfind('}')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            (&line[..=close], &line[close + 1..])
        } else {
            line.split_once(' ').unwrap_or((line, ""))
        };
        let (series_name, have) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name || wanted.iter().any(|l| !have.contains(l.as_str())) {
            continue;
        }
        let value = rest.split_whitespace().next().unwrap_or_default();
        total += value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
    }
    total
}

/// Asserts `name` (with `labels`) counts at least `at_least` in `GET
/// /metrics`.
#[track_caller]
pub fn assert_counted(m: &Manager, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let n = metric(m, name, labels);
    assert!(
        n >= at_least,
        "{name} {labels:?} is {n}, not {at_least} or more"
    );
}

/// Rollout evaluation passes the manager has finished.
pub fn rollout_evaluations(m: &Manager) -> f64 {
    metric(m, "manager_rollout_evaluations_total", &[])
}

/// Waits until the manager has finished `passes` more rollout evaluations
/// than when called. Call it after an action and before asserting that the
/// rollout did not move: with two passes, at least one began after the
/// action, so whatever the timer would do about it is done.
#[track_caller]
pub fn wait_rollout_evaluations(m: &Manager, passes: u32) {
    let start = rollout_evaluations(m);
    let want = start + f64::from(passes);
    wait_until(
        &format!("{passes} rollout evaluation passes after the {start}th"),
        EVALUATIONS_LIMIT,
        || rollout_evaluations(m) >= want,
    );
}
