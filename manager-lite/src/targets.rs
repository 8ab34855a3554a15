//! Which version of a bin a node should run, and why, in words.
//!
//! In order: a pin wins; else the newest release of the bin that has reached
//! the node (its selector matches, its status gives targets, and the node's
//! bucket is inside the current percentage). A newer release that selects the
//! node but has not reached it yet is skipped, so the node keeps the target an
//! older release gave it — and the reason says so, which is the answer to
//! "why did this host not update?".

use binproxy_protocol::{download_path, Node, Release, ReleaseStatus, Target};

use crate::rollout::{bucket, in_wave, BUCKETS};
use crate::store::{Store, StoreError};

/// A node's target for one bin, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Option<Target>,
    pub reason: String,
}

/// Decides the target of `node` for `bin`. `arch` overrides the node's own.
pub fn decide(
    store: &Store,
    node: &Node,
    bin: &str,
    arch: Option<&str>,
) -> Result<Decision, StoreError> {
    let arch = arch.unwrap_or(&node.cpu_arch);
    if let Some(version) = store.pin(&node.node_id, bin) {
        return artifact(store, bin, &version, arch, format!("pinned to {version}"));
    }
    // Why the newest release that could have reached the node did not.
    let mut skipped: Option<String> = None;
    for r in store.live_releases().iter().filter(|r| r.bin_name == bin) {
        match reach(r, node) {
            Ok(reason) => {
                let reason = match skipped {
                    Some(newer) => format!("{reason}; newer: {newer}"),
                    None => reason,
                };
                return artifact(store, bin, &r.version, arch, reason);
            }
            Err(why_not) => {
                skipped.get_or_insert(why_not);
            }
        }
    }
    Ok(Decision {
        target: None,
        reason: skipped.unwrap_or_else(|| format!("no release of {bin}")),
    })
}

/// Whether a release gives this node its target: `Ok(reason)` or `Err(why not)`.
fn reach(r: &Release, node: &Node) -> Result<String, String> {
    let id = r.id;
    if !r.selector.matches(node) {
        return Err(format!("outside selector of release {id}"));
    }
    if r.status == ReleaseStatus::PendingApproval {
        return Err(format!("release {id} awaiting approval"));
    }
    let paused = || {
        r.paused_reason
            .as_deref()
            .unwrap_or("by an operator")
            .to_owned()
    };
    if !in_wave(r, &node.node_id) {
        return Err(if r.status == ReleaseStatus::Paused {
            format!("release {id} paused: {}; it adds no node", paused())
        } else {
            format!(
                "not yet in a wave of release {id} (bucket {} ≥ {})",
                bucket(id, &node.node_id),
                u64::from(r.percent) * (BUCKETS / 100)
            )
        });
    }
    Ok(match r.status {
        ReleaseStatus::Paused => format!(
            "release {id} paused: {}; reached nodes keep its target",
            paused()
        ),
        ReleaseStatus::Completed => format!("release {id} (completed)"),
        _ => format!("in wave {} of release {id}", r.wave + 1),
    })
}

/// The artifact of `bin` `version` for `arch`, with `reason`.
fn artifact(
    store: &Store,
    bin: &str,
    version: &str,
    arch: &str,
    reason: String,
) -> Result<Decision, StoreError> {
    let Some(a) = store.artifact(bin, version, arch)? else {
        let shown = if arch.is_empty() {
            "an unknown arch"
        } else {
            arch
        };
        return Ok(Decision {
            target: None,
            reason: format!("{reason}, but {bin} {version} has no artifact for {shown}"),
        });
    };
    Ok(Decision {
        target: Some(Target {
            bin_name: bin.to_owned(),
            version: version.to_owned(),
            url: download_path(&a.sha256sum),
            sha256sum: a.sha256sum,
            size: a.size,
            reason: Some(reason.clone()),
            signature: a.signature,
        }),
        reason,
    })
}
