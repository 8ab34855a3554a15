//! Progressive rollouts: which nodes a release reaches, and when it moves on.
//!
//! A node's bucket is a hash of (release id, node id) mod 10000, so it is
//! fixed for the life of a release: a node in wave k is in every later wave,
//! and raising the percentage only adds nodes. No per-node state is needed.
//!
//! Counting walks the fleet in chunks (`Store::scan_nodes`, no copy, no lock
//! held across the pass) and only when something it counts from changed
//! ([`Counts`]): an idle fleet of any size costs no pass.
//!
//! [`evaluate`] is the whole wave policy. It runs on a timer and after every
//! progress report: it recounts the release's reached nodes and their
//! outcomes, pauses the release when failures pass `max_failures`, and
//! advances a wave once its wait has passed and `success_threshold` of the
//! reached nodes succeeded.
//!
//! Beside this file: `counts.rs` (counting a release's reached nodes, in
//! all and per wave), `ops.rs` (an operator's action on a release's state,
//! and which actions a state accepts), `policy.rs` (creating a release and
//! what it supersedes, a change of state, rollback: the meaning of every
//! release write the store persists) and `targets.rs` (which version a node
//! should run, and why not another).
//! This module calls the store; the store never calls it.

use binproxy_protocol::window::Windows;
use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, NewRelease, Release, ReleaseCounts, ReleaseStatus,
    Wave,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::store::{Store, StoreError};
use crate::time::parse_rfc3339;

mod counts;
mod ops;
mod policy;
pub mod targets;
pub use counts::{count_node, wave_slots, Counts, Facts};
pub use ops::{allowed_ops, operate, Refused};
pub use policy::{create_release, rollback_release, update_release, Change, ReleaseError};

/// Buckets per release: percentages are matched to 0.01%.
pub const BUCKETS: u64 = 10_000;

/// Default share of reached nodes that must succeed before the next wave.
pub const DEFAULT_SUCCESS: &str = "95%";

/// A node's fixed bucket in a release, 0 to 9999.
pub fn bucket(release_id: u64, node_id: &str) -> u64 {
    let digest = Sha256::digest(format!("{release_id}:{node_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// Whether the release, at its current percent, has reached this node.
/// At 100% every node is in (no hash to compute).
pub fn in_wave(release: &Release, node_id: &str) -> bool {
    release.percent >= 100
        || bucket(release.id, node_id) < u64::from(release.percent) * (BUCKETS / 100)
}

/// A release plan refused by [`validate`] (or a limit by [`Limit::parse`]):
/// the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The field as the API names it: `waves[1].percent`, `selector.os`, ….
    pub field: String,
    pub problem: String,
}

impl PlanError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> PlanError {
        PlanError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for PlanError {}

/// A plan's limit on failures or threshold of successes: a share of reached
/// nodes, or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Basis points (1% = 100).
    Share(u64),
    Count(u64),
}

impl Limit {
    /// Parses `"5%"`, `"2.5%"` or `"3"`.
    pub fn parse(field: &str, text: &str) -> Result<Limit, PlanError> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return share(field, p).map(Limit::Share);
        }
        t.parse::<u64>().map(Limit::Count).map_err(|_| {
            PlanError::new(
                field,
                format!("{text:?} is neither a share like \"5%\" nor a count like \"3\""),
            )
        })
    }

    /// Whether `successes` out of `reached` meet the limit as a threshold: a
    /// count wants that many, or every reached node when fewer are reached.
    pub fn met(self, successes: u64, reached: u64) -> bool {
        match self {
            Limit::Count(n) => successes >= n.min(reached),
            Limit::Share(bp) => successes * 10_000 >= bp * reached,
        }
    }

    /// Whether `failures` out of `reached` exceed the limit.
    pub fn exceeded(self, failures: u64, reached: u64) -> bool {
        match self {
            Limit::Count(n) => failures > n,
            Limit::Share(bp) => failures * 10_000 > bp * reached,
        }
    }
}

fn share(field: &str, number: &str) -> Result<u64, PlanError> {
    match number.trim().parse::<f64>() {
        // Whole basis points: 0.01% steps; the cast is exact for 0..=10000.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(p) if (0.0..=100.0).contains(&p) => Ok((p * 100.0).round() as u64),
        _ => Err(PlanError::new(
            field,
            format!("{number:?}% is not a share between 0% and 100%"),
        )),
    }
}

/// A wave's wait; the error names the field `waves`.
fn wait_of(wave: &Wave) -> Result<Duration, PlanError> {
    wave.wait.as_deref().map_or(Ok(Duration::ZERO), |w| {
        humantime::parse_duration(w)
            .map_err(|e| PlanError::new("waves", format!("wait {w:?}: {e}")))
    })
}

/// Checks a release plan; the error names the field.
pub fn validate(new: &NewRelease) -> Result<(), PlanError> {
    let s = &new.selector;
    for id in s.node_ids.iter().chain(&s.exclude_node_ids) {
        check_node_id(id).map_err(|e| PlanError::new("selector", e.to_string()))?;
    }
    for arch in &s.cpu_arch {
        check_arch(arch).map_err(|e| PlanError::new("selector.cpu_arch", e.to_string()))?;
    }
    for os in &s.os {
        check_arch(os).map_err(|_| PlanError::new("selector.os", format!("invalid {os:?}")))?;
    }
    for (key, values) in &s.labels {
        check_bin_name(key)
            .map_err(|_| PlanError::new("selector.labels", format!("invalid key {key:?}")))?;
        if values.is_empty() {
            return Err(PlanError::new(
                format!("selector.labels.{key}"),
                "list at least one value",
            ));
        }
    }
    let mut last = 0;
    for (i, w) in new.waves.iter().enumerate() {
        if w.percent == 0 || w.percent > 100 || w.percent <= last {
            return Err(PlanError::new(
                format!("waves[{i}].percent"),
                format!("{} must be 1 to 100 and above the wave before", w.percent),
            ));
        }
        last = w.percent;
        wait_of(w).map_err(|e| PlanError::new(format!("waves[{i}]"), e.problem))?;
    }
    if !new.waves.is_empty() && last != 100 {
        return Err(PlanError::new("waves", "the last wave must reach 100%"));
    }
    if let Some(t) = &new.success_threshold {
        Limit::parse("success_threshold", t)?;
    }
    if let Some(m) = &new.max_failures {
        Limit::parse("max_failures", m)?;
    }
    Windows::parse(&new.windows)
        .map_err(|(i, e)| PlanError::new(format!("windows[{i}]"), e.to_string()))?;
    Ok(())
}

/// The plan as stored: a single wave of 100% when none was given.
pub fn plan(new: &NewRelease) -> Vec<Wave> {
    if new.waves.is_empty() {
        vec![Wave {
            percent: 100,
            wait: None,
        }]
    } else {
        new.waves.clone()
    }
}

/// What [`evaluate`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Pause(String),
    Advance,
    Complete,
    /// Only the counts changed (or nothing).
    Hold,
}

/// Applies the rollout policy to a live release with fresh `counts`.
pub fn evaluate(release: &Release, counts: &ReleaseCounts, now: SystemTime) -> Step {
    if release.status != ReleaseStatus::RollingOut {
        return Step::Hold;
    }
    let failures = (counts.failed + counts.rolled_back).saturating_sub(release.failure_baseline);
    if let Some(limit) = release
        .max_failures
        .as_deref()
        .and_then(|m| Limit::parse("", m).ok())
    {
        if limit.exceeded(failures, counts.targeted) {
            let max = release.max_failures.as_deref().unwrap_or_default();
            return Step::Pause(format!(
                "{failures} failures > {max} of {} reached nodes",
                counts.targeted
            ));
        }
    }
    let threshold = release
        .success_threshold
        .as_deref()
        .and_then(|t| Limit::parse("", t).ok())
        .unwrap_or(Limit::Share(9_500));
    // No reached node (a 1% wave of a small fleet) counts as met.
    let succeeded = threshold.met(counts.success, counts.targeted);
    let waited = wave_elapsed(release, now);
    if !succeeded || !waited {
        return Step::Hold;
    }
    if release.wave + 1 < release.waves.len() {
        Step::Advance
    } else if counts.targeted > 0 {
        Step::Complete
    } else {
        // Completed means nodes got it: a release that reaches no node yet
        // (none registered, or its selector matches none) keeps rolling out.
        Step::Hold
    }
}

fn wave_elapsed(release: &Release, now: SystemTime) -> bool {
    let wait = release
        .waves
        .get(release.wave)
        .and_then(|w| wait_of(w).ok())
        .unwrap_or_default();
    let started = release
        .wave_started_at
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    now.duration_since(started).is_ok_and(|d| d >= wait)
}

/// Recounts every live release (of `bin`, or all) and applies the policy.
/// Returns the releases this call paused, advanced or completed (for alerts).
pub fn tick(
    store: &Store,
    kept: &Counts,
    bin: Option<&str>,
    now: SystemTime,
) -> Result<Vec<Release>, StoreError> {
    let live = store.live_releases();
    kept.keep(&live);
    let mut changed = Vec::new();
    for r in live.iter() {
        if !r.status.is_live() || bin.is_some_and(|b| b != r.bin_name) {
            continue;
        }
        let counts = kept.of(store, r)?;
        if counts == r.counts && evaluate(r, &counts, now) == Step::Hold {
            continue;
        }
        // Whether this call made the change (not a concurrent one).
        let mut stepped = false;
        let outcome = update_release(store, r.id, "rollout", now, |rel| {
            if rel.status != r.status || rel.wave != r.wave {
                return Ok(Change::Nothing); // changed meanwhile; the next tick looks again
            }
            rel.counts = counts.clone();
            let change = apply(rel, evaluate(rel, &counts, now), now);
            stepped = matches!(change, Change::Event(..));
            Ok(change)
        });
        match outcome {
            Ok(updated) if stepped => {
                log::info!(
                    "release {} of {} {}: {} (wave {}, {}%)",
                    updated.id,
                    updated.bin_name,
                    updated.version,
                    updated.status.as_str(),
                    updated.wave + 1,
                    updated.percent
                );
                changed.push(updated);
            }
            Ok(_)
            | Err(
                ReleaseError::NotFound | ReleaseError::Conflict(_) | ReleaseError::UnknownVersion,
            ) => {}
            Err(ReleaseError::Store(e)) => return Err(e),
        }
    }
    Ok(changed)
}

fn apply(rel: &mut Release, step: Step, now: SystemTime) -> Change {
    match step {
        Step::Hold => Change::Quiet,
        Step::Pause(reason) => {
            rel.status = ReleaseStatus::Paused;
            rel.paused_reason = Some(reason.clone());
            Change::Event("paused".into(), Some(reason))
        }
        Step::Advance => {
            rel.wave += 1;
            rel.percent = rel.waves.get(rel.wave).map_or(100, |w| w.percent);
            rel.wave_started_at = Some(crate::time::rfc3339_millis(now));
            Change::Event(
                "advanced".into(),
                Some(format!("wave {}: {}%", rel.wave + 1, rel.percent)),
            )
        }
        Step::Complete => {
            rel.status = ReleaseStatus::Completed;
            Change::Event("completed".into(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn buckets_are_spread_and_sticky() {
        let n = 10_000u64;
        let ten = (0..n)
            .filter(|i| bucket(7, &format!("node-{i}")) < 1000)
            .count();
        assert!(
            (900..=1100).contains(&ten),
            "10% wave selected {ten} of {n}"
        );
        // Raising the percent only adds nodes.
        let at = |p: u64| {
            (0..2000)
                .filter(|i| bucket(7, &format!("n{i}")) < p * 100)
                .collect::<HashSet<_>>()
        };
        assert!(at(10).is_subset(&at(50)));
        assert_ne!(bucket(7, "a"), bucket(8, "a"), "another release reshuffles");
    }

    #[test]
    fn limits() {
        assert_eq!(Limit::parse("m", "5%").unwrap(), Limit::Share(500));
        assert_eq!(Limit::parse("m", "2.5%").unwrap(), Limit::Share(250));
        assert_eq!(Limit::parse("m", "3").unwrap(), Limit::Count(3));
        assert!(Limit::parse("m", "x").is_err());
        assert!(Limit::parse("m", "101%").is_err());
        assert!(Limit::Share(500).exceeded(6, 100));
        assert!(!Limit::Share(500).exceeded(5, 100));
        assert!(Limit::Count(3).exceeded(4, 1000));
        assert!(Limit::Share(9_500).met(95, 100));
        assert!(!Limit::Share(9_500).met(94, 100));
        assert!(Limit::Count(3).met(3, 1000));
        assert!(!Limit::Count(3).met(2, 1000));
        assert!(Limit::Count(30).met(10, 10), "fewer reached: all of them");
        assert!(!Limit::Count(30).met(9, 10));
    }

    fn new_release(waves: &[(u32, Option<&str>)]) -> NewRelease {
        NewRelease {
            bin_name: "b".into(),
            version: "1".into(),
            waves: waves
                .iter()
                .map(|(p, w)| Wave {
                    percent: *p,
                    wait: w.map(Into::into),
                })
                .collect(),
            ..NewRelease::default()
        }
    }

    #[test]
    fn plans_are_checked() {
        assert!(validate(&new_release(&[(1, Some("10m")), (10, None), (100, None)])).is_ok());
        assert!(validate(&new_release(&[])).is_ok());
        for (bad, field) in [
            (
                new_release(&[(10, None), (5, None), (100, None)]),
                "waves[1].percent",
            ),
            (new_release(&[(10, None)]), "last wave"),
            (new_release(&[(0, None), (100, None)]), "waves[0].percent"),
            (new_release(&[(10, Some("soon")), (100, None)]), "waves[0]"),
        ] {
            let e = validate(&bad).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let mut t = new_release(&[]);
        t.success_threshold = Some("ninety".into());
        assert!(validate(&t)
            .unwrap_err()
            .to_string()
            .contains("success_threshold"));
        t.success_threshold = Some("3".into());
        assert!(validate(&t).is_ok());
        let mut w = new_release(&[]);
        w.windows = vec![
            "Sat 00:00-24:00 +00:00".into(),
            "Sun 25:00-26:00 +00:00".into(),
        ];
        let e = validate(&w).unwrap_err().to_string();
        assert!(e.contains("windows[1]") && e.contains("25:00"), "{e}");
        w.windows.pop();
        assert!(validate(&w).is_ok());
    }

    fn release(waves: &[(u32, Option<&str>)], wave: usize) -> Release {
        let new = new_release(waves);
        Release {
            id: 1,
            bin_name: "b".into(),
            version: "1".into(),
            note: None,
            status: ReleaseStatus::RollingOut,
            percent: new.waves[wave].percent,
            wave,
            selector: new.selector.clone(),
            waves: plan(&new),
            success_threshold: Some("90%".into()),
            max_failures: Some("10%".into()),
            require_approval: false,
            windows: Vec::new(),
            baseline_version: None,
            paused_reason: None,
            wave_started_at: Some("2024-01-01T00:00:00Z".into()),
            counts: ReleaseCounts::default(),
            failure_baseline: 0,
            created_at: String::new(),
            created_by: String::new(),
            updated_at: String::new(),
            history: Vec::new(),
        }
    }

    #[test]
    fn evaluation() {
        let t0 = parse_rfc3339("2024-01-01T00:00:00Z").unwrap();
        let r = release(&[(10, Some("10m")), (100, None)], 0);
        let counts = |targeted, success, failed| ReleaseCounts {
            targeted,
            success,
            failed,
            ..ReleaseCounts::default()
        };
        let later = t0 + Duration::from_secs(601);
        assert_eq!(
            evaluate(&r, &counts(10, 10, 0), t0),
            Step::Hold,
            "wait not over"
        );
        assert_eq!(
            evaluate(&r, &counts(10, 8, 0), later),
            Step::Hold,
            "80% < 90%"
        );
        assert_eq!(evaluate(&r, &counts(10, 9, 0), later), Step::Advance);
        assert_eq!(
            evaluate(&r, &counts(0, 0, 0), later),
            Step::Advance,
            "empty wave"
        );
        assert!(
            matches!(evaluate(&r, &counts(10, 5, 2), t0), Step::Pause(m) if m.contains("2 failures > 10%"))
        );
        let mut resumed = r.clone();
        resumed.failure_baseline = 2;
        assert_eq!(evaluate(&resumed, &counts(10, 9, 2), later), Step::Advance);
        let mut by_count = r.clone();
        by_count.success_threshold = Some("5".into());
        assert_eq!(evaluate(&by_count, &counts(10, 5, 0), later), Step::Advance);
        assert_eq!(evaluate(&by_count, &counts(10, 4, 0), later), Step::Hold);
        let last = release(&[(10, Some("10m")), (100, None)], 1);
        assert_eq!(evaluate(&last, &counts(10, 10, 0), t0), Step::Complete);
        assert_eq!(
            evaluate(&last, &counts(0, 0, 0), t0),
            Step::Hold,
            "reached nobody"
        );
    }
}
