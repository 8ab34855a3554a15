//! What an agent and the manager say to each other: the keepalive and its
//! answer (the node as the manager knows it, and each bin's [`Target`]), and
//! the reports an agent sends as an update goes on ([`Progress`]) and ends
//! ([`Installed`]). Where the old agents spelled a field differently, the old
//! spelling is accepted as an alias on input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Secret;

/// Body of `POST /api/v1/keepalive`: who the node is and what it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keepalive {
    /// Absent in the old shell agent's keepalive, which names the node only
    /// by `nodeName`: see [`Keepalive::node`].
    #[serde(default, alias = "nodeId")]
    pub node_id: String,
    #[serde(default, alias = "cpuArch")]
    pub cpu_arch: String,
    /// Operating system family as Rust names it (`linux`).
    #[serde(default)]
    pub os: String,
    #[serde(default, alias = "osRelease")]
    pub os_release: String,
    #[serde(default, alias = "nodeName")]
    pub node_name: String,
    #[serde(default, alias = "binProxyVersion")]
    pub bin_proxy_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bin name → sha256 installed on disk ("" when the file is missing). The
    /// reply carries a target for each bin listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<BTreeMap<String, String>>,
    /// Only with the enrollment token: the secret this node made for itself
    /// (64 hex digits) and keeps durably before it asks. The manager stores
    /// its sha256, and accepts the same secret again for a node enrolled
    /// with it, so an agent killed mid-enrollment enrolls again by itself.
    /// Absent from old agents, which get a manager-made `node_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_secret: Option<Secret>,
}

impl Keepalive {
    /// The node's id: `node_id`, or else `nodeName`, the only name the old
    /// shell agent sends (as progress and installed reports accept it too).
    /// Empty when neither is given.
    pub fn node(&self) -> &str {
        if self.node_id.is_empty() {
            &self.node_name
        } else {
            &self.node_id
        }
    }
}

/// Answer to `POST /api/v1/keepalive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepaliveReply {
    pub node: Node,
    /// The manager's clock, RFC 3339, so an agent can notice its own skew.
    pub server_time: String,
    /// For each bin of the request: its target for this node, or null.
    #[serde(default)]
    pub targets: BTreeMap<String, Option<Target>>,
    /// For each bin of the request: why it has that target (or none), in words.
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    /// The node's own secret, sent once: in the answer to the keepalive that
    /// enrolled it with the enrollment token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_secret: Option<String>,
    /// True in the answer to a keepalive that enrolled the node (or found it
    /// enrolled already with the `proposed_secret` it sent): from now on the
    /// node's secret is what authenticates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enrolled: bool,
}

/// What the manager knows of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: String,
    #[serde(default)]
    pub cpu_arch: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub os_release: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub bin_proxy_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bin name → sha256 the node last said it runs.
    #[serde(default)]
    pub bins: BTreeMap<String, String>,
    /// RFC 3339.
    pub registered_at: String,
    /// RFC 3339.
    pub last_seen: String,
    /// Seen within the manager's offline-after window.
    #[serde(default)]
    pub online: bool,
}

/// What a [`crate::Selector`] looks at in a node: lets the manager match its
/// own compact form of the record without building a [`Node`].
pub trait NodeFacts {
    fn node_id(&self) -> &str;
    fn cpu_arch(&self) -> &str;
    fn os(&self) -> &str;
    fn label(&self, key: &str) -> Option<&str>;
}

impl NodeFacts for Node {
    fn node_id(&self) -> &str {
        &self.node_id
    }
    fn cpu_arch(&self) -> &str {
        &self.cpu_arch
    }
    fn os(&self) -> &str {
        &self.os
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// The version of a bin a node should run: `GET /api/v1/bins/{bin}`, and each
/// entry of a keepalive reply's `targets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub bin_name: String,
    pub version: String,
    pub sha256sum: String,
    pub size: u64,
    /// Downloads exactly this artifact. Usually a path (`/api/v1/download/<sha256>`)
    /// to resolve against the manager's URL; an absolute URL is used as it is.
    pub url: String,
    /// Why this is the node's target (`in wave 2 of release 7`, `pinned to 1.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The artifact's minisign signature (`.minisig` text), when one was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Patches that make this artifact from earlier builds (binproxy-delta
    /// format): a node that has one of the `from` builds may fetch the
    /// patch instead. The result is checked as the full artifact is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
    /// The artifact as one zstd frame, when that is smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zst: Option<Packed>,
}

/// A patch to a target from the build whose sha256 is `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub from: String,
    /// Of the patch file itself.
    pub sha256: String,
    pub size: u64,
    /// Like [`Target::url`]: a path on the manager, or an absolute URL.
    pub url: String,
}

/// Another encoding of a target's whole artifact (`zst`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed {
    /// Of the encoded file.
    pub sha256: String,
    pub size: u64,
    pub url: String,
}

/// How an agent got a build's bytes, in its progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A patch from a build the node had.
    Delta,
    /// The zstd form of the whole artifact.
    Zst,
    /// The artifact as it is.
    Full,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Delta, Method::Zst, Method::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delta => "delta",
            Self::Zst => "zst",
            Self::Full => "full",
        }
    }
}

/// Body of `POST /api/v1/bins/{bin}`: the node runs this hash now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    #[serde(alias = "nodeName")]
    pub node_id: String,
    /// `sha256` is the old shell agent's spelling.
    #[serde(alias = "sha256")]
    pub sha256sum: String,
}

/// The states an update on one node goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    InProgress,
    Success,
    Failed,
    RolledBack,
}

impl ProgressStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// Body of `POST /api/v1/bins/{bin}/progress`. The camelCase names are the
/// documented ones (kept from the old API); snake_case is accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(alias = "nodeName")]
    pub node_id: String,
    #[serde(rename = "targetHash", alias = "target_hash")]
    pub target_hash: String,
    pub status: ProgressStatus,
    /// Milliseconds the step took.
    #[serde(rename = "processingTime", alias = "processing_time", default)]
    pub processing_time_ms: u64,
    #[serde(
        rename = "fromHash",
        alias = "from_hash",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub from_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bytes the node downloaded for this update (success reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How it got them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
}

/// A stored progress report, as `GET /api/v1/bins/{bin}/progress` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// Increases with every report the manager accepts.
    pub id: u64,
    pub node_id: String,
    pub bin_name: String,
    pub target_hash: String,
    #[serde(default)]
    pub from_hash: Option<String>,
    pub status: ProgressStatus,
    pub processing_time_ms: u64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// RFC 3339.
    pub received_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_accepts_old_camel_case() {
        let k: Keepalive = serde_json::from_str(
            r#"{"node_id":"n1","cpuArch":"x86_64","osRelease":"deb12","nodeName":"web","binProxyVersion":"0.9"}"#,
        )
        .unwrap();
        assert_eq!(k.cpu_arch, "x86_64");
        assert_eq!(k.os_release, "deb12");
        assert_eq!(k.node_name, "web");
        assert_eq!(k.bin_proxy_version, "0.9");
        assert!(k.bins.is_none());
    }

    #[test]
    fn keepalive_names_the_node_by_node_id_or_else_node_name() {
        let k: Keepalive = serde_json::from_str(r#"{"cpu_arch":"x86_64"}"#).unwrap();
        assert_eq!(k.node(), "", "neither: the manager refuses it");
        let old: Keepalive = serde_json::from_str(r#"{"nodeName":"web-1"}"#).unwrap();
        assert_eq!((old.node(), old.node_name.as_str()), ("web-1", "web-1"));
        let both: Keepalive =
            serde_json::from_str(r#"{"nodeId":"n-7","nodeName":"web-1"}"#).unwrap();
        assert_eq!((both.node(), both.node_name.as_str()), ("n-7", "web-1"));
    }

    #[test]
    fn installed_accepts_the_old_sha256_spelling() {
        let i: Installed = serde_json::from_str(r#"{"nodeName":"web-1","sha256":"ab"}"#).unwrap();
        assert_eq!((i.node_id.as_str(), i.sha256sum.as_str()), ("web-1", "ab"));
        let out = serde_json::to_value(&i).unwrap();
        assert_eq!(out["sha256sum"], "ab", "output uses the documented name");
    }

    #[test]
    fn progress_round_trips_documented_names() {
        let p: Progress = serde_json::from_str(
            r#"{"nodeName":"n1","targetHash":"ab","status":"rolled_back","processingTime":12}"#,
        )
        .unwrap();
        assert_eq!(p.node_id, "n1");
        assert_eq!(p.status, ProgressStatus::RolledBack);
        assert_eq!(p.processing_time_ms, 12);
        let out = serde_json::to_value(&p).unwrap();
        assert_eq!(out["targetHash"], "ab");
        assert_eq!(out["processingTime"], 12);
        assert_eq!(out["node_id"], "n1");
    }

    #[test]
    fn progress_rejects_unknown_status() {
        let err = serde_json::from_str::<Progress>(
            r#"{"node_id":"n1","targetHash":"ab","status":"done"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
