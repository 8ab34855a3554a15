//! The wire protocol between binproxy, the node agent, and manager-lite, the
//! control plane: every JSON body either side sends, and the rules that names
//! (bins, versions, node ids, arches) and hashes must follow.
//!
//! It is defined once, here, and both crates use it, so the agent and the
//! server cannot drift apart on a field name again (the old system's agents sent
//! camelCase while its server read snake_case, and nothing could upgrade). The
//! crate depends on serde alone: the manager gets the types without the agent's
//! HTTP client.
//!
//! Field names follow the documented API. Where the old agents spelled a field
//! differently (`cpuArch`, `nodeName`, ...), the old spelling is accepted as an
//! alias on input; output always uses the documented name.

pub mod names;
pub mod secret;
pub mod window;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use secret::Secret;

pub use names::{
    check_arch, check_bin_name, check_node_id, check_sha256, check_version, hex, NameError,
};

/// The path every API route starts with.
pub const API_PREFIX: &str = "/api/v1";

/// Largest JSON request body the manager reads; larger bodies get 413.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

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

/// The version of a bin a node should run: `GET /api/v1/bins/{bin}`, and each
/// entry of a keepalive reply's `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// RFC 3339.
    pub received_at: String,
}

/// One uploaded artifact: a version of a bin, for one arch or (arch null) all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub bin_name: String,
    pub version: String,
    pub arch: Option<String>,
    pub sha256sum: String,
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The minisign signature of the artifact (`.minisig` text), if uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A bin and its versions: `GET /api/v1/bins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinVersions {
    pub bin_name: String,
    /// Bytes of the bin's artifact files, each file once.
    #[serde(default)]
    pub bytes: u64,
    pub versions: Vec<Version>,
}

/// Body of `POST /api/v1/releases`. Everything but the bin and version is
/// optional: no selector is every node, no waves is 100% at once. Unknown
/// fields are refused: a misspelt `"wave"` or `"label"` must not silently
/// release to every node at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRelease {
    pub bin_name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    /// Reached nodes that must report success before the next wave: a share
    /// (`"95%"`) or a count (`3` or `"3"`; every reached node when fewer are).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "success_threshold"
    )]
    pub success_threshold: Option<String>,
    /// Failures that pause the release: a share of reached nodes (`"5%"`) or a
    /// count (`3` or `"3"`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_failures"
    )]
    pub max_failures: Option<String>,
    #[serde(default)]
    pub require_approval: bool,
    /// Maintenance windows ([`window`] syntax): outside every one of them the
    /// release gives no node its new version. Empty: always open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

/// Which nodes a release is for. Fields AND together; list values are any-of;
/// an empty field does not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_node_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_arch: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    /// Label key → accepted values (the old console's isp, region, datacenter
    /// rules map here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Vec<String>>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self == &Selector::default()
    }

    /// Whether `node` is one of the nodes this selector names.
    pub fn matches(&self, node: &impl NodeFacts) -> bool {
        let any_of =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        let id = node.node_id();
        any_of(&self.node_ids, id)
            && !self.exclude_node_ids.iter().any(|x| x == id)
            && any_of(&self.cpu_arch, node.cpu_arch())
            && any_of(&self.os, node.os())
            && self
                .labels
                .iter()
                .all(|(k, values)| node.label(k).is_some_and(|v| values.iter().any(|x| x == v)))
    }
}

/// What a [`Selector`] looks at in a node: lets the manager match its own
/// compact form of the record without building a [`Node`].
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

/// One step of a rollout: reach `percent` of the selected nodes, then wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub percent: u32,
    /// How long the wave must run before the next may start (`"10m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Reports about a release, counted once per reached node (its latest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCounts {
    pub targeted: u64,
    pub in_progress: u64,
    pub success: u64,
    pub failed: u64,
    pub rolled_back: u64,
}

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    PendingApproval,
    RollingOut,
    Paused,
    Completed,
    Cancelled,
    Superseded,
    RolledBack,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::RollingOut => "rolling_out",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Superseded => "superseded",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Whether a release in this state still gives nodes their target.
    pub fn is_live(self) -> bool {
        matches!(self, Self::RollingOut | Self::Paused | Self::Completed)
    }
}

/// A release: from its creation on, `version` is the target of the nodes it
/// reaches for `bin_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: u64,
    pub bin_name: String,
    pub version: String,
    #[serde(default)]
    pub note: Option<String>,
    pub status: ReleaseStatus,
    /// Share of the selected nodes the release has reached, 0 to 100.
    pub percent: u32,
    /// Index of the current wave in `waves`.
    #[serde(default)]
    pub wave: usize,
    #[serde(default)]
    pub selector: Selector,
    /// The plan; a single wave of 100% when none was given.
    #[serde(default)]
    pub waves: Vec<Wave>,
    #[serde(default)]
    pub success_threshold: Option<String>,
    #[serde(default)]
    pub max_failures: Option<String>,
    #[serde(default)]
    pub require_approval: bool,
    /// Maintenance windows ([`window`] syntax); empty (and in records made
    /// before windows existed): always open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// The version this bin's previous live release targeted: what `rollback` restores.
    #[serde(default)]
    pub baseline_version: Option<String>,
    #[serde(default)]
    pub paused_reason: Option<String>,
    /// RFC 3339; when the current wave began.
    #[serde(default)]
    pub wave_started_at: Option<String>,
    #[serde(default)]
    pub counts: ReleaseCounts,
    /// Failures already counted when the release was last resumed.
    #[serde(default)]
    pub failure_baseline: u64,
    /// RFC 3339.
    pub created_at: String,
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Every change of state, oldest first.
    #[serde(default)]
    pub history: Vec<ReleaseEvent>,
}

/// One recorded change of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEvent {
    /// RFC 3339.
    pub at: String,
    pub actor: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `PUT /api/v1/nodes/{node_id}/pins/{bin}` body, and the pin as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub bin_name: String,
    pub version: String,
}

/// `GET /api/v1/nodes/{node_id}`: the node and, per bin, its target and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub node: Node,
    pub bins: BTreeMap<String, BinView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinView {
    pub target: Option<Target>,
    pub reason: String,
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Upload versions, create releases, pause.
    Publisher,
    /// Approve, pause, resume, promote, roll back.
    Approver,
    /// Read.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Publisher => "publisher",
            Self::Approver => "approver",
            Self::Viewer => "viewer",
        }
    }
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
}

/// A named admin token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// RFC 3339.
    pub created_at: String,
    pub created_by: String,
}

/// Answer to `POST /api/v1/tokens`: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// One admin write, as `GET /api/v1/audit` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    /// The token's name; null when the caller was not authenticated.
    pub actor: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub remote_addr: Option<String>,
}

/// Every error answer: `{"error": "..."}`, naming the field or thing at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The download path of a stored artifact.
pub fn download_path(sha256: &str) -> String {
    format!("{API_PREFIX}/download/{sha256}")
}

/// A plan's count-or-share field, as JSON users write it: a count as a number
/// (`5`) or a string (`"5"`), a share as a string (`"5%"`). Kept as the string
/// it is stored and shown as (`"5"`, `"5%"`); the manager checks its meaning.
struct CountOrShare(&'static str);

impl serde::de::Visitor<'_> for CountOrShare {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} as a count like 3 or a share like \"5%\"", self.0)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(text.to_owned()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn success_threshold<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    de.deserialize_any(CountOrShare("success_threshold"))
}

fn max_failures<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    de.deserialize_any(CountOrShare("max_failures"))
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
    fn plan_counts_may_be_numbers() {
        let n: NewRelease = serde_json::from_str(
            r#"{"bin_name":"b","version":"1","max_failures":5,"success_threshold":3}"#,
        )
        .unwrap();
        assert_eq!(n.max_failures.as_deref(), Some("5"));
        assert_eq!(n.success_threshold.as_deref(), Some("3"));
        let s: NewRelease = serde_json::from_str(
            r#"{"bin_name":"b","version":"1","max_failures":"5%","success_threshold":"95%"}"#,
        )
        .unwrap();
        assert_eq!(s.max_failures.as_deref(), Some("5%"));
        assert_eq!(s.success_threshold.as_deref(), Some("95%"));
        let none: NewRelease = serde_json::from_str(r#"{"bin_name":"b","version":"1"}"#).unwrap();
        assert_eq!(none.max_failures, None);
        let null: NewRelease =
            serde_json::from_str(r#"{"bin_name":"b","version":"1","max_failures":null}"#).unwrap();
        assert_eq!(null.max_failures, None);
        for bad in ["-1", "2.5", "true"] {
            let body = format!(r#"{{"bin_name":"b","version":"1","max_failures":{bad}}}"#);
            let e = serde_json::from_str::<NewRelease>(&body).unwrap_err();
            assert!(e.to_string().contains("max_failures"), "{bad}: {e}");
        }
        // Shown as stored: the number comes back as the string.
        let out = serde_json::to_value(&n).unwrap();
        assert_eq!(out["max_failures"], "5");
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
    fn release_plans_refuse_misspelt_fields() {
        for body in [
            r#"{"bin_name":"a","version":"1","wave":[{"percent":1}]}"#,
            r#"{"bin_name":"a","version":"1","selector":{"label":{"env":["x"]}}}"#,
            r#"{"bin_name":"a","version":"1","waves":[{"percent":1,"wiat":"1m"}]}"#,
        ] {
            let err = serde_json::from_str::<NewRelease>(body).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{body}: {err}");
        }
        let ok: NewRelease = serde_json::from_str(
            r#"{"bin_name":"a","version":"1","selector":{"labels":{"env":["x"]}},"waves":[{"percent":100}]}"#,
        )
        .unwrap();
        assert_eq!(ok.selector.labels["env"], ["x"]);
    }

    #[test]
    fn releases_without_windows_still_load() {
        // A record stored before windows existed.
        let old = r#"{"id":1,"bin_name":"a","version":"1","status":"completed","percent":100,
            "created_at":"2024-01-01T00:00:00Z","created_by":"admin","updated_at":"2024-01-01T00:00:00Z"}"#;
        let r: Release = serde_json::from_str(old).unwrap();
        assert!(r.windows.is_empty());
        assert!(!serde_json::to_string(&r).unwrap().contains("windows"));
        let new: NewRelease = serde_json::from_str(
            r#"{"bin_name":"a","version":"1","windows":["Sat 00:00-24:00 +00:00"]}"#,
        )
        .unwrap();
        assert_eq!(new.windows, ["Sat 00:00-24:00 +00:00"]);
    }

    #[test]
    fn selector_matching() {
        let node = Node {
            node_id: "n1".into(),
            cpu_arch: "x86_64".into(),
            os: "linux".into(),
            labels: [("env".to_owned(), "canary".to_owned())].into(),
            ..Node::default()
        };
        let sel = |json: &str| serde_json::from_str::<Selector>(json).unwrap();
        assert!(sel("{}").matches(&node));
        assert!(sel(r#"{"labels":{"env":["staging","canary"]},"os":["linux"]}"#).matches(&node));
        assert!(!sel(r#"{"labels":{"env":["prod"]}}"#).matches(&node));
        assert!(
            !sel(r#"{"labels":{"zone":["a"]}}"#).matches(&node),
            "a missing label does not match"
        );
        assert!(!sel(r#"{"exclude_node_ids":["n1"]}"#).matches(&node));
        assert!(!sel(r#"{"node_ids":["n2"]}"#).matches(&node));
        assert!(!sel(r#"{"cpu_arch":["aarch64"]}"#).matches(&node));
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
