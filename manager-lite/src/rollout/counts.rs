//! Counting a release's reached nodes and their outcomes, and keeping the
//! counts between ticks: a release is counted again only when what its
//! counts come from moved (the store's change counter, its percent, its
//! artifacts). A count walks the fleet in chunks (`Store::scan_nodes`):
//! no copy of it, and no lock held across the pass.

use binproxy_protocol::{ProgressStatus, Release, ReleaseCounts, WaveCounts};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{bucket, in_wave, BUCKETS};
use crate::store::{NodeRef, Store, StoreError};

/// What is known of one release besides the nodes.
pub struct Facts<'a> {
    /// Latest report per node for this release.
    pub reports: Option<&'a HashMap<String, ProgressStatus>>,
    /// The release's artifact hashes (every arch).
    pub hashes: &'a HashSet<String>,
}

/// Adds one node to the release's counts if the release selects it: to its
/// wave's slice (when the plan has more than one wave, `c.waves` made by
/// [`wave_slots`]) and, once reached, to what became of it.
pub fn count_node(release: &Release, facts: &Facts, node: NodeRef, c: &mut ReleaseCounts) {
    if !release.selector.matches(&node) {
        return;
    }
    let (reached, wave) = if c.waves.is_empty() {
        (in_wave(release, node.id), None)
    } else {
        // Only a plan of several waves pays for the bucket of every node.
        let b = bucket(release.id, node.id);
        let reached = release.percent >= 100 || b < u64::from(release.percent) * (BUCKETS / 100);
        let wave = c
            .waves
            .iter()
            .position(|w| b < u64::from(w.percent) * (BUCKETS / 100));
        (reached, wave.or(c.waves.len().checked_sub(1)))
    };
    let mut slot = wave.and_then(|w| c.waves.get_mut(w));
    if let Some(w) = slot.as_deref_mut() {
        w.target += 1;
    }
    if !reached {
        return;
    }
    let installed = node
        .bin(&release.bin_name)
        .is_some_and(|sha| facts.hashes.contains(sha));
    let outcome = match facts.reports.and_then(|r| r.get(node.id)) {
        _ if installed => Some(ProgressStatus::Success),
        other => other.copied(),
    };
    c.targeted += 1;
    add(
        outcome,
        &mut c.success,
        &mut c.in_progress,
        &mut c.failed,
        &mut c.rolled_back,
    );
    if let Some(w) = slot {
        w.reached += 1;
        add(
            outcome,
            &mut w.success,
            &mut w.in_progress,
            &mut w.failed,
            &mut w.rolled_back,
        );
    }
}

/// The empty per-wave counts of a release: one per wave of a plan of
/// several, none for a single wave.
pub fn wave_slots(release: &Release) -> Vec<WaveCounts> {
    if release.waves.len() < 2 {
        return Vec::new();
    }
    release
        .waves
        .iter()
        .map(|w| WaveCounts {
            percent: w.percent,
            ..WaveCounts::default()
        })
        .collect()
}

fn add(
    outcome: Option<ProgressStatus>,
    success: &mut u64,
    in_progress: &mut u64,
    failed: &mut u64,
    rolled_back: &mut u64,
) {
    let n = match outcome {
        Some(ProgressStatus::Success) => success,
        Some(ProgressStatus::InProgress) => in_progress,
        Some(ProgressStatus::Failed) => failed,
        Some(ProgressStatus::RolledBack) => rolled_back,
        None => return,
    };
    *n += 1;
}

/// Counts kept between recounts: a release is counted again only when what
/// its counts come from moved ([`Store::fleet_changes`]: a node record, a
/// deletion, a progress report), or its percent or artifacts did. A fleet
/// where nothing changes costs no pass at all, and one that changes all the
/// time spends at most a tenth of a core on passes ([`REST`]).
#[derive(Default)]
pub struct Counts {
    cached: Mutex<HashMap<u64, Cached>>,
}

struct Cached {
    changes: u64,
    percent: u32,
    hashes: HashSet<String>,
    counts: ReleaseCounts,
    /// When the pass that made `counts` ended, and how long it took.
    counted_at: Instant,
    took: Duration,
}

/// A pass over the fleet may take at most this share of the time: after a
/// pass of `d`, counts moved only by node changes and reports are kept for
/// `d * (REST - 1)`. At 1,000 nodes a pass takes under a millisecond and
/// this changes nothing; at a million it takes about half a second, and a
/// fleet that reports all the time would otherwise be counted over and over
/// (once a second from the reports alone), starving the keepalives of CPU.
/// A new percent or new artifacts are counted at once.
const REST: u32 = 10;

impl Counts {
    /// The release's counts as of now.
    pub fn of(&self, store: &Store, r: &Release) -> Result<ReleaseCounts, StoreError> {
        // Read before the pass: a change during it makes the next call count again.
        let changes = store.fleet_changes();
        let hashes = store.release_hashes(r)?;
        if let Some(c) = self.lock().get(&r.id) {
            let same_plan = c.percent == r.percent && c.hashes == hashes;
            let resting = c.counted_at.elapsed() < c.took * (REST - 1);
            if same_plan && (c.changes == changes || resting) {
                return Ok(c.counts.clone());
            }
        }
        let started = Instant::now();
        let reports = store.release_reports(r.id);
        let facts = Facts {
            reports: Some(&reports),
            hashes: &hashes,
        };
        let mut counts = ReleaseCounts {
            waves: wave_slots(r),
            ..ReleaseCounts::default()
        };
        store.scan_nodes(|n| count_node(r, &facts, n.node, &mut counts));
        (counts.bytes_downloaded, counts.bytes_full) = store.release_bytes(r.id)?;
        let cached = Cached {
            changes,
            percent: r.percent,
            hashes,
            counts: counts.clone(),
            counted_at: Instant::now(),
            took: started.elapsed(),
        };
        self.lock().insert(r.id, cached);
        Ok(counts)
    }

    /// Forgets the releases that are no longer live.
    pub(super) fn keep(&self, live: &[Release]) {
        self.lock()
            .retain(|id, _| live.iter().any(|r| r.id == *id && r.status.is_live()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Cached>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
