//! Which version of a bin a node should run, and why, in words.
//!
//! In order: a pin wins; else the newest release of the bin that has reached
//! the node (its selector matches, its status gives targets, and the node's
//! bucket is inside the current percentage). A newer release that selects the
//! node but has not reached it yet is skipped, so the node keeps the target an
//! older release gave it — and the reason says so, which is the answer to
//! "why did this host not update?". A release whose maintenance windows are
//! closed is skipped the same way, except for nodes that already run it.
//!
//! A paused release contains: it keeps its target only for the nodes that
//! already took it up — reported progress for it, or run its artifact — so
//! a release that pauses itself at its fourth failure stops there, even in a
//! single wave of 100%. A node that was handed the target but had not
//! started yet goes back to what an older release gives it. Both facts are
//! durable (progress reports and installed hashes are committed before they
//! count), so the answer is the same after a restart and costs no write.

use binproxy_protocol::window::Windows;
use binproxy_protocol::{download_path, Node, Release, ReleaseStatus, Target};
use std::fmt;
use std::time::{Duration, SystemTime};

use super::{bucket, in_wave, BUCKETS};
use crate::store::{Store, StoreError};
use crate::time::rfc3339;

/// A node's target for one bin, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Option<Target>,
    pub reason: String,
}

/// Decides the target of `node` for `bin` now. `arch` overrides the node's own.
pub fn decide(
    store: &Store,
    node: &Node,
    bin: &str,
    arch: Option<&str>,
) -> Result<Decision, StoreError> {
    decide_at(store, node, bin, arch, SystemTime::now())
}

/// [`decide`] at the instant `now` (maintenance windows depend on it).
pub fn decide_at(
    store: &Store,
    node: &Node,
    bin: &str,
    arch: Option<&str>,
    now: SystemTime,
) -> Result<Decision, StoreError> {
    let arch = arch.unwrap_or(&node.cpu_arch);
    if let Some(version) = store.pin(&node.node_id, bin) {
        return artifact(store, bin, &version, arch, format!("pinned to {version}"));
    }
    // Why the newest release that could have reached the node did not.
    let mut skipped: Option<String> = None;
    for r in store.live_releases().iter().filter(|r| r.bin_name == bin) {
        let outcome = match reach(r, node) {
            Reach::Reached(reason) => match windowed(store, node, r, arch, reason, now)? {
                Outcome::Target(decision) => contained(store, node, r, *decision),
                skip @ Outcome::Skip(_) => skip,
            },
            Reach::Skip(why_not) => Outcome::Skip(why_not),
        };
        match outcome {
            Outcome::Target(mut decision) => {
                if let Some(newer) = skipped {
                    decision.reason = format!("{}; newer: {newer}", decision.reason);
                    if let Some(t) = &mut decision.target {
                        t.reason = Some(decision.reason.clone());
                    }
                }
                return Ok(*decision);
            }
            Outcome::Skip(why_not) => {
                skipped.get_or_insert(why_not);
            }
        }
    }
    Ok(Decision {
        target: None,
        reason: skipped.unwrap_or_else(|| format!("no release of {bin}")),
    })
}

/// Whether a release reaches a node, with the reason either way.
enum Reach {
    Reached(String),
    Skip(String),
}

/// What one release gives a node: a target, or none and why (the node's
/// why-not text; not an error).
enum Outcome {
    Target(Box<Decision>),
    Skip(String),
}

/// Whether a release gives this node its target, and why (not).
fn reach(r: &Release, node: &Node) -> Reach {
    let id = r.id;
    if !r.selector.matches(node) {
        return Reach::Skip(format!("outside selector of release {id}"));
    }
    if r.status == ReleaseStatus::PendingApproval {
        return Reach::Skip(format!("release {id} awaiting approval"));
    }
    let paused = || {
        r.paused_reason
            .as_deref()
            .unwrap_or("by an operator")
            .to_owned()
    };
    if !in_wave(r, &node.node_id) {
        return Reach::Skip(if r.status == ReleaseStatus::Paused {
            format!("release {id} paused: {}; it adds no node", paused())
        } else {
            format!(
                "not yet in a wave of release {id} (bucket {} ≥ {})",
                bucket(id, &node.node_id),
                u64::from(r.percent) * (BUCKETS / 100)
            )
        });
    }
    Reach::Reached(match r.status {
        ReleaseStatus::Paused => format!(
            "release {id} paused: {}; reached nodes keep its target",
            paused()
        ),
        ReleaseStatus::Completed => format!("release {id} (completed)"),
        _ => format!("in wave {} of release {id}", r.wave + 1),
    })
}

/// A paused release's target only for the nodes that took it up: reported
/// progress for it, or run its artifact. The others are skipped.
fn contained(store: &Store, node: &Node, r: &Release, decision: Decision) -> Outcome {
    if r.status != ReleaseStatus::Paused {
        return Outcome::Target(Box::new(decision));
    }
    let running = decision
        .target
        .as_ref()
        .is_some_and(|t| node.bins.get(&r.bin_name) == Some(&t.sha256sum));
    if running || store.has_reported(r.id, &node.node_id) {
        return Outcome::Target(Box::new(decision));
    }
    Outcome::Skip(format!(
        "release {} paused: {}; it adds no node, and this one had not started it",
        r.id,
        r.paused_reason.as_deref().unwrap_or("by an operator")
    ))
}

/// The target release `r` gives a node it has reached, unless its maintenance
/// windows are closed: then only a node that already runs its artifact keeps
/// it as its target, and the others are skipped so that they keep what
/// an older release gave them — or no target, which the agent takes as "keep
/// what you run".
fn windowed(
    store: &Store,
    node: &Node,
    r: &Release,
    arch: &str,
    reason: String,
    now: SystemTime,
) -> Result<Outcome, StoreError> {
    let until = match closed_until(r, now) {
        Ok(None) => {
            return artifact(store, &r.bin_name, &r.version, arch, reason)
                .map(|d| Outcome::Target(Box::new(d)))
        }
        Ok(Some(until)) => until,
        Err(invalid) => return Ok(Outcome::Skip(invalid.to_string())),
    };
    let closed = format!(
        "release {} outside its maintenance windows until {until}",
        r.id
    );
    let decision = artifact(
        store,
        &r.bin_name,
        &r.version,
        arch,
        format!("{reason} (installed; {closed})"),
    )?;
    let running = node.bins.get(&r.bin_name);
    let installed = decision
        .target
        .as_ref()
        .is_some_and(|t| running == Some(&t.sha256sum));
    Ok(if installed {
        Outcome::Target(Box::new(decision))
    } else {
        Outcome::Skip(closed)
    })
}

/// A stored release whose maintenance windows no longer parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWindows {
    pub release: u64,
    /// Which entry of its `windows`.
    pub index: usize,
    pub problem: String,
}

impl fmt::Display for InvalidWindows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "release {} has an invalid windows[{}]: {}",
            self.release, self.index, self.problem
        )
    }
}

impl std::error::Error for InvalidWindows {}

/// When the release's windows next open (RFC 3339), or `None` when open now.
/// Windows were checked on creation; a record that fails to parse now counts
/// as closed (`Err`), so nothing installs on its account.
pub fn closed_until(r: &Release, now: SystemTime) -> Result<Option<String>, InvalidWindows> {
    if r.windows.is_empty() {
        return Ok(None);
    }
    let windows = Windows::parse(&r.windows).map_err(|(index, e)| InvalidWindows {
        release: r.id,
        index,
        problem: e.to_string(),
    })?;
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok(windows.closed_until(unix).map(|at| {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
        rfc3339(at)
    }))
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
            deltas: a.deltas,
            zst: a.zst,
        }),
        reason,
    })
}
