//! Retention: which versions may be deleted, and deleting them with the
//! artifact files they leave unreferenced.
//!
//! A version stays while it is the target or the rollback target (baseline)
//! of a release that is not over (pending approval, rolling out, paused or
//! completed and not superseded), or a pin names it. `DELETE
//! /api/v1/bins/{bin}/versions/{version}` deletes one version on demand;
//! `serve --keep-versions N` deletes, per bin and arch, the oldest versions
//! beyond the newest N that nothing refers to, after every upload and at
//! start. The database commit comes first and the file removal after it, so
//! a crash in between leaves only an orphan file, which the startup cleanup
//! removes.

use binproxy_protocol::{Release, ReleaseStatus, Version};
use std::collections::BTreeMap;

use crate::artifacts::Artifacts;
use crate::store::{Deletion, References, Store, StoreError};

/// Whether a release can still hand out its version or roll back to its
/// baseline.
fn holds(r: &Release) -> bool {
    r.status.is_live() || r.status == ReleaseStatus::PendingApproval
}

/// Why `version` must stay, in words; `None` when nothing refers to it.
pub fn why_kept(refs: &References, version: &str) -> Option<String> {
    let held = refs.releases.iter().filter(|r| holds(r));
    for r in held.clone() {
        if r.version == version {
            return Some(format!(
                "it is the target of release {} ({})",
                r.id,
                r.status.as_str()
            ));
        }
    }
    for r in held {
        if r.baseline_version.as_deref() == Some(version) {
            return Some(format!("it is the rollback target of release {}", r.id));
        }
    }
    refs.pins
        .iter()
        .find(|(_, v)| v == version)
        .map(|(node, _)| format!("node {node} is pinned to it"))
}

/// Deletes `bin` `version` (every arch, or the one named: `""` for the
/// arch-less artifact) unless something refers to it, then the files no
/// version refers to any more.
pub fn delete(
    store: &Store,
    artifacts: &Artifacts,
    bin: &str,
    version: &str,
    arch: Option<&str>,
) -> Result<Deletion, StoreError> {
    let _names = artifacts.lock();
    let deletion = store.delete_version(bin, version, arch, |refs| why_kept(refs, version))?;
    if let Deletion::Deleted { orphans, .. } = &deletion {
        for sha in orphans {
            // Left behind, it is an orphan the next start removes.
            if let Err(e) = artifacts.remove(sha) {
                log::error!("removing artifact {sha} of {bin} {version}: {e}");
            }
        }
    }
    Ok(deletion)
}

/// `--keep-versions`: per bin and arch, deletes the versions older than the
/// newest `keep` that nothing refers to. Returns what it deleted.
pub fn prune(
    store: &Store,
    artifacts: &Artifacts,
    keep: usize,
) -> Result<Vec<Version>, StoreError> {
    let mut groups: BTreeMap<(String, String), Vec<Version>> = BTreeMap::new();
    for (bin, versions) in store.bins()? {
        for v in versions {
            let arch = v.arch.clone().unwrap_or_default();
            groups.entry((bin.clone(), arch)).or_default().push(v);
        }
    }
    let mut deleted = Vec::new();
    for ((bin, arch), mut versions) in groups {
        // Newest first; same-second uploads by version name.
        versions.sort_by(|a, b| (&b.created_at, &b.version).cmp(&(&a.created_at, &a.version)));
        if versions.len() <= keep {
            continue;
        }
        // Versions in use are passed over without a write; the delete
        // checks again in its transaction.
        let refs = store.references_now(&bin)?;
        for old in versions.iter().skip(keep) {
            if why_kept(&refs, &old.version).is_some() {
                continue;
            }
            if let Deletion::Deleted { versions, .. } =
                delete(store, artifacts, &bin, &old.version, Some(&arch))?
            {
                deleted.extend(versions);
            }
        }
    }
    Ok(deleted)
}
