//! What a static mirror should hold, decided from the manager's two answers
//! alone (`GET /api/v1/bins` and `GET /api/v1/releases`), with no disk and
//! no network: every stored artifact with its signature (and the zst forms
//! and patches made for it), and per bin the targets of its newest release
//! that gives every node the same version.
//!
//! That release is the newest (highest id) that has reached every node it
//! ever will and whose target does not depend on the node or the hour:
//! completed, or rolling out at 100%, with an empty selector and no
//! maintenance windows. A paused release keeps its target only for the
//! nodes that had started it, a selector or a window depends on the node or
//! the time, and a cancelled, superseded or rolled-back release gives no
//! target at all: none of these is taken, and a bin whose releases are all
//! of that kind gets no `bins/<bin>.json`. Every name and hash from the
//! server is checked before it can become a file name.

use binproxy_protocol::mirror::{artifact_file, MirrorBin, ANY_ARCH};
use binproxy_protocol::{
    check_arch, check_bin_name, check_sha256, BinVersions, Delta, Packed, Release, ReleaseStatus,
    Target, Version,
};
use std::collections::BTreeMap;

/// One artifact file of the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub size: u64,
    /// The `.minisig` text to serve beside it, if any version of these bytes has one.
    pub signature: Option<String>,
}

/// The whole tree a sync should leave, by file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// sha256 (lower-case hex) → the artifact.
    pub artifacts: BTreeMap<String, Artifact>,
    /// Bin name → its `bins/<bin>.json`; a bin with no fitting release is absent.
    pub bins: BTreeMap<String, MirrorBin>,
}

/// Whether release `r` gives every node the same target, now and later:
/// it has reached every node (completed, or rolling out at 100%) and
/// neither a selector nor a maintenance window narrows it.
pub fn node_independent(r: &Release) -> bool {
    let reached_all = r.status == ReleaseStatus::Completed
        || (r.status == ReleaseStatus::RollingOut && r.percent >= 100);
    reached_all && r.selector.is_empty() && r.windows.is_empty()
}

/// The release whose targets `bins/<bin>.json` holds: the newest of `bin`
/// that is [`node_independent`].
pub fn chosen<'a>(releases: &'a [Release], bin: &str) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| r.bin_name == bin && node_independent(r))
        .max_by_key(|r| r.id)
}

/// The plan for the manager's `bins` (every stored version) and `releases`;
/// `generated_at` goes into each bins file. An error names what in the
/// answer was unusable.
pub fn plan(
    bins: &[BinVersions],
    releases: &[Release],
    generated_at: &str,
) -> Result<Plan, String> {
    let mut versions: Vec<Version> = Vec::new();
    for bin in bins {
        checked_bin(&bin.bin_name)?;
        for v in &bin.versions {
            versions.push(checked_version(v)?);
        }
    }
    // Oldest first, so that for bytes shared by several versions the newest
    // signature wins, whatever order the server listed them in.
    versions.sort_by(|a, b| {
        (&a.created_at, &a.bin_name, &a.version, &a.arch).cmp(&(
            &b.created_at,
            &b.bin_name,
            &b.version,
            &b.arch,
        ))
    });
    let mut plan = Plan::default();
    for v in &versions {
        let artifact = plan
            .artifacts
            .entry(v.sha256sum.clone())
            .or_insert(Artifact {
                size: v.size,
                signature: None,
            });
        if artifact.size != v.size {
            return Err(format!(
                "the server lists artifact {} with two sizes ({} and {} bytes)",
                v.sha256sum, artifact.size, v.size
            ));
        }
        if v.signature.is_some() {
            artifact.signature.clone_from(&v.signature);
        }
        // Its zst form and patches: plain files, checked by their hash.
        let forms = v.deltas.iter().map(|d| (&d.sha256, d.size));
        for (sha, size) in forms.chain(v.zst.iter().map(|z| (&z.sha256, z.size))) {
            plan.artifacts.entry(sha.clone()).or_insert(Artifact {
                size,
                signature: None,
            });
        }
    }
    for bin in bins {
        if let Some(mirror_bin) = bin_file(&bin.bin_name, &versions, releases, generated_at) {
            plan.bins.insert(bin.bin_name.clone(), mirror_bin);
        }
    }
    Ok(plan)
}

/// `bins/<bin>.json`: the targets of the [`chosen`] release, one per stored
/// artifact of its version (key: its arch, or [`ANY_ARCH`]); `None` when no
/// release fits or its version has no artifact left.
fn bin_file(
    bin: &str,
    versions: &[Version],
    releases: &[Release],
    generated_at: &str,
) -> Option<MirrorBin> {
    let release = chosen(releases, bin)?;
    let reason = format!("release {} (mirror)", release.id);
    let targets: BTreeMap<String, Target> = versions
        .iter()
        .filter(|v| v.bin_name == bin && v.version == release.version)
        .map(|v| {
            let key = v.arch.clone().unwrap_or_else(|| ANY_ARCH.to_owned());
            let target = Target {
                bin_name: v.bin_name.clone(),
                version: v.version.clone(),
                sha256sum: v.sha256sum.clone(),
                size: v.size,
                url: artifact_file(&v.sha256sum),
                reason: Some(reason.clone()),
                signature: v.signature.clone(),
                deltas: v
                    .deltas
                    .iter()
                    .map(|d| Delta {
                        url: artifact_file(&d.sha256),
                        ..d.clone()
                    })
                    .collect(),
                zst: v.zst.as_ref().map(|z| Packed {
                    url: artifact_file(&z.sha256),
                    ..z.clone()
                }),
            };
            (key, target)
        })
        .collect();
    (!targets.is_empty()).then(|| MirrorBin {
        bin_name: bin.to_owned(),
        release_id: release.id,
        version: release.version.clone(),
        generated_at: generated_at.to_owned(),
        targets,
    })
}

fn checked_bin(name: &str) -> Result<(), String> {
    check_bin_name(name).map_err(|e| format!("the server lists a bin with a bad name: {e}"))
}

/// A version from the server with its names checked and its hash in lower case.
fn checked_version(v: &Version) -> Result<Version, String> {
    checked_bin(&v.bin_name)?;
    let sha = check_sha256("sha256sum", &v.sha256sum).map_err(|e| {
        format!(
            "the server lists {} {} with a bad hash: {e}",
            v.bin_name, v.version
        )
    })?;
    if let Some(arch) = &v.arch {
        check_arch(arch).map_err(|e| {
            format!(
                "the server lists {} {} with a bad arch: {e}",
                v.bin_name, v.version
            )
        })?;
    }
    let form_hash = |what: &'static str, sha: &str| {
        check_sha256(what, sha).map_err(|e| {
            format!(
                "the server lists a form of {} {} with a bad hash: {e}",
                v.bin_name, v.version
            )
        })
    };
    let mut deltas = Vec::new();
    for d in &v.deltas {
        deltas.push(Delta {
            from: form_hash("from", &d.from)?,
            sha256: form_hash("sha256", &d.sha256)?,
            ..d.clone()
        });
    }
    let zst = match &v.zst {
        Some(z) => Some(Packed {
            sha256: form_hash("sha256", &z.sha256)?,
            ..z.clone()
        }),
        None => None,
    };
    Ok(Version {
        sha256sum: sha,
        deltas,
        zst,
        ..v.clone()
    })
}

#[cfg(test)]
#[path = "mirror_plan_tests.rs"]
mod tests;
