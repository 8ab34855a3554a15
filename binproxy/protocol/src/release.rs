//! What an admin publishes and rolls out: the uploaded versions of a bin,
//! a release with its selector, waves and thresholds, its state and history,
//! pins, and the per-node view of targets. A release plan refuses unknown
//! fields, so a misspelt `"wave"` cannot release to every node at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{Node, NodeFacts, Target};

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
    /// Patches to this artifact from earlier builds, once the manager has
    /// made them (urls are the manager's download paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<crate::Delta>,
    /// Its zst form, once made and when smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zst: Option<crate::Packed>,
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
    /// Maintenance windows ([`window`](crate::window) syntax): outside every one of them the
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

/// One step of a rollout: reach `percent` of the selected nodes, then wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub percent: u32,
    /// How long the wave must run before the next may start (`"10m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Reports about a release, counted once per reached node (its latest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCounts {
    pub targeted: u64,
    pub in_progress: u64,
    pub success: u64,
    pub failed: u64,
    pub rolled_back: u64,
    /// Bytes the nodes that succeeded downloaded for it (each node once),
    /// and what full downloads would have been: the savings of deltas and
    /// the zst form are the difference.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_downloaded: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_full: u64,
    /// The same counts per wave of the plan (empty for a single wave): each
    /// wave's slice of the selected nodes, and what became of the reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveCounts>,
}

/// One wave's share of a release's counts: `target` is the selected nodes
/// whose bucket falls in this wave's slice (those it reaches once it
/// starts), `reached` those of them the release reaches now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveCounts {
    /// The wave's cumulative percent, as in the plan.
    pub percent: u32,
    pub target: u64,
    pub reached: u64,
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
    /// Every state, in the order a release goes through them.
    pub const ALL: [ReleaseStatus; 7] = [
        Self::PendingApproval,
        Self::RollingOut,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
        Self::Superseded,
        Self::RolledBack,
    ];

    /// The state named by [`ReleaseStatus::as_str`].
    pub fn parse(word: &str) -> Option<ReleaseStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

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

/// An operator's action on a release: `POST /api/v1/releases/{id}/{op}`,
/// named in the path by [`ReleaseOp::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOp {
    Approve,
    Pause,
    Resume,
    Promote,
    Rollback,
    Cancel,
}

impl ReleaseOp {
    pub const ALL: [ReleaseOp; 6] = [
        Self::Approve,
        Self::Pause,
        Self::Resume,
        Self::Promote,
        Self::Rollback,
        Self::Cancel,
    ];

    /// The word in the path (and on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Rollback => "rollback",
            Self::Cancel => "cancel",
        }
    }

    /// The word of the release's history event it leaves.
    pub fn past_tense(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Promote => "promoted",
            Self::Rollback => "rolled back",
            Self::Cancel => "cancelled",
        }
    }

    /// The operation a path word names; `None` for any other word.
    pub fn parse(word: &str) -> Option<ReleaseOp> {
        Self::ALL.into_iter().find(|op| op.as_str() == word)
    }
}

impl fmt::Display for ReleaseOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`ReleaseOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOp(pub String);

impl fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown operation {:?}", self.0)
    }
}

impl std::error::Error for UnknownOp {}

impl FromStr for ReleaseOp {
    type Err = UnknownOp;

    fn from_str(word: &str) -> Result<Self, UnknownOp> {
        Self::parse(word).ok_or_else(|| UnknownOp(word.to_owned()))
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
    /// Maintenance windows ([`window`](crate::window) syntax); empty (and in records made
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
    fn release_ops_parse_their_own_words_only() {
        for op in ReleaseOp::ALL {
            assert_eq!(ReleaseOp::parse(op.as_str()), Some(op));
            assert_eq!(op.as_str().parse::<ReleaseOp>(), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
            assert_eq!(
                serde_json::to_string(&op).ok(),
                Some(format!("\"{}\"", op.as_str()))
            );
        }
        for word in ["", "Approve", "approved", "delete", "rollback "] {
            assert_eq!(ReleaseOp::parse(word), None, "{word:?}");
            assert_eq!(word.parse::<ReleaseOp>(), Err(UnknownOp(word.to_owned())));
        }
        assert_eq!(ReleaseOp::Cancel.past_tense(), "cancelled");
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
}
