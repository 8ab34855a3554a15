//! The static mirror: a tree of plain files that `manager-lite mirror sync`
//! writes and any static file server, CDN or object store serves, and that
//! agents read when the manager is unreachable.
//!
//! ```text
//! index.json                 MirrorIndex: generation, time, bins
//! bins/<bin>.json            MirrorBin: the bin's node-independent targets, per arch
//! artifacts/<sha256>         an artifact's bytes, named by their sha256
//! artifacts/<sha256>.minisig its minisign signature, when one was uploaded
//! ```
//!
//! Nothing in it needs to be trusted: artifacts are content-addressed, and
//! an agent takes a target from `bins/<bin>.json` only with `trusted_keys`,
//! under the same signature and anti-downgrade rules as from the manager.
//! Paths are relative to the mirror's base URL (which ends in `/`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Target;

/// The mirror's index file.
pub const INDEX_FILE: &str = "index.json";

/// The key of a target uploaded for every arch (arch null) in
/// [`MirrorBin::targets`]; no arch name can be `*`.
pub const ANY_ARCH: &str = "*";

/// Largest `bins/<bin>.json` or `index.json` an agent reads.
pub const MAX_MIRROR_JSON: u64 = 1024 * 1024;

/// `artifacts/<sha256>`: an artifact's bytes, relative to the mirror's base.
pub fn artifact_file(sha256: &str) -> String {
    format!("artifacts/{sha256}")
}

/// `artifacts/<sha256>.minisig`: its signature, relative to the mirror's base.
pub fn signature_file(sha256: &str) -> String {
    format!("artifacts/{sha256}.minisig")
}

/// `bins/<bin>.json`, relative to the mirror's base.
pub fn bin_file(bin: &str) -> String {
    format!("bins/{bin}.json")
}

/// `index.json`: written last by each sync that changed the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorIndex {
    /// Goes up by one with each sync that changed a file of the tree.
    pub generation: u64,
    /// RFC 3339: when that sync ran.
    pub generated_at: String,
    /// The bins that have a `bins/<bin>.json`, sorted.
    #[serde(default)]
    pub bins: Vec<String>,
}

/// `bins/<bin>.json`: the targets of a bin that do not depend on the node,
/// from its newest release that is completed or at 100%, with an empty
/// selector and no maintenance windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorBin {
    pub bin_name: String,
    /// The release these targets come from.
    pub release_id: u64,
    pub version: String,
    /// RFC 3339: when the sync wrote this file.
    pub generated_at: String,
    /// Arch → target; [`ANY_ARCH`] for an artifact uploaded for every arch.
    /// Each target's `url` is [`artifact_file`], relative to the mirror.
    pub targets: BTreeMap<String, Target>,
}

impl MirrorBin {
    /// The target for `arch`: the artifact uploaded for exactly that arch
    /// wins over one uploaded for all (as the manager decides).
    pub fn target_for(&self, arch: &str) -> Option<&Target> {
        self.targets
            .get(arch)
            .filter(|_| !arch.is_empty())
            .or_else(|| self.targets.get(ANY_ARCH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(sha: &str) -> Target {
        Target {
            bin_name: "app".into(),
            version: "2".into(),
            sha256sum: sha.into(),
            size: 1,
            url: artifact_file(sha),
            ..Target::default()
        }
    }

    #[test]
    fn an_arch_of_its_own_wins_over_any_arch() {
        let mut bin = MirrorBin {
            bin_name: "app".into(),
            release_id: 3,
            version: "2".into(),
            generated_at: "2026-12-03T00:00:00Z".into(),
            targets: BTreeMap::new(),
        };
        assert_eq!(bin.target_for("x86_64"), None);
        bin.targets.insert(ANY_ARCH.into(), target("aa"));
        assert_eq!(bin.target_for("x86_64").unwrap().sha256sum, "aa");
        bin.targets.insert("x86_64".into(), target("bb"));
        assert_eq!(bin.target_for("x86_64").unwrap().sha256sum, "bb");
        assert_eq!(bin.target_for("aarch64").unwrap().sha256sum, "aa");
        assert_eq!(bin.target_for("").unwrap().sha256sum, "aa");
        let json = serde_json::to_string(&bin).unwrap();
        assert_eq!(serde_json::from_str::<MirrorBin>(&json).unwrap(), bin);
    }
}
