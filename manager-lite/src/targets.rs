//! Which version of a bin a node should run, and why.
//!
//! Today: the newest live release of the bin, with the artifact built for the
//! node's arch (or the one uploaded for every arch). Every answer carries a
//! reason in words, so "why did this host not update?" has an answer.

use binproxy_protocol::{download_path, Node, Target};

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
    let Some(release) = store.live_release(bin) else {
        return Ok(Decision {
            target: None,
            reason: format!("no release of {bin}"),
        });
    };
    let arch = arch.unwrap_or(&node.cpu_arch);
    let Some(artifact) = store.artifact(bin, &release.version, arch)? else {
        let shown = if arch.is_empty() {
            "an unknown arch"
        } else {
            arch
        };
        return Ok(Decision {
            target: None,
            reason: format!(
                "release {} of {bin} {} has no artifact for {shown}",
                release.id, release.version
            ),
        });
    };
    Ok(Decision {
        reason: format!("release {} of {bin} {}", release.id, release.version),
        target: Some(Target {
            bin_name: bin.to_owned(),
            version: release.version,
            url: download_path(&artifact.sha256sum),
            sha256sum: artifact.sha256sum,
            size: artifact.size,
        }),
    })
}
