//! What the webhooks are told: the four [`Event`]s, and the body each
//! [`Format`] (plain JSON, Slack, DingTalk) makes of one. Pure functions of
//! the event and the time, so the shapes are tested without a network.

use serde_json::{json, Value};
use std::fmt;

/// The body shape webhooks receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `{"event": "release_paused", "release": 7, "bin": …, "time": …}`.
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": "…"}`.
    Slack,
    /// DingTalk robot: `{"msgtype": "text", "text": {"content": "…"}}`.
    Dingtalk,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, FormatError> {
        match s {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            "dingtalk" => Ok(Format::Dingtalk),
            other => Err(FormatError {
                given: other.to_owned(),
            }),
        }
    }
}

/// A `--webhook-format` that is none of the known shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub given: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--webhook-format {:?}: expected json, slack or dingtalk",
            self.given
        )
    }
}

impl std::error::Error for FormatError {}

/// Something to tell the webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ReleasePaused {
        release: u64,
        bin: String,
        version: String,
        reason: String,
    },
    ReleaseCompleted {
        release: u64,
        bin: String,
        version: String,
    },
    NodeRolledBack {
        node: String,
        bin: String,
        target_hash: String,
        from_hash: Option<String>,
        reason: Option<String>,
    },
    NodeOffline {
        node: String,
        last_seen: String,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::ReleasePaused { .. } => "release_paused",
            Event::ReleaseCompleted { .. } => "release_completed",
            Event::NodeRolledBack { .. } => "node_rolled_back",
            Event::NodeOffline { .. } => "node_offline",
        }
    }

    /// One line for people (Slack, DingTalk, the JSON's `summary`).
    pub fn text(&self) -> String {
        match self {
            Event::ReleasePaused {
                release,
                bin,
                version,
                reason,
            } => format!("binproxy: release {release} ({bin} {version}) paused: {reason}"),
            Event::ReleaseCompleted {
                release,
                bin,
                version,
            } => format!("binproxy: release {release} ({bin} {version}) completed"),
            Event::NodeRolledBack {
                node,
                bin,
                target_hash,
                reason,
                ..
            } => format!(
                "binproxy: node {node} rolled back {bin} (target {}): {}",
                target_hash.get(..12).unwrap_or(target_hash),
                reason.as_deref().unwrap_or("no reason given")
            ),
            Event::NodeOffline { node, last_seen } => {
                format!("binproxy: node {node} offline (last seen {last_seen})")
            }
        }
    }

    fn fields(&self) -> Value {
        match self {
            Event::ReleasePaused {
                release,
                bin,
                version,
                reason,
            } => json!({"release": release, "bin": bin, "version": version, "reason": reason}),
            Event::ReleaseCompleted {
                release,
                bin,
                version,
            } => json!({"release": release, "bin": bin, "version": version}),
            Event::NodeRolledBack {
                node,
                bin,
                target_hash,
                from_hash,
                reason,
            } => json!({"node": node, "bin": bin, "target_hash": target_hash,
                        "from_hash": from_hash, "reason": reason}),
            Event::NodeOffline { node, last_seen } => {
                json!({"node": node, "last_seen": last_seen})
            }
        }
    }

    /// The body a webhook of `format` receives; `time` is RFC 3339.
    pub fn body(&self, format: Format, time: &str) -> Value {
        match format {
            Format::Json => {
                let mut v = self.fields();
                if let Some(map) = v.as_object_mut() {
                    map.insert("event".into(), self.name().into());
                    map.insert("time".into(), time.into());
                    map.insert("summary".into(), self.text().into());
                }
                v
            }
            Format::Slack => json!({"text": slack_escape(&self.text())}),
            Format::Dingtalk => json!({"msgtype": "text", "text": {"content": self.text()}}),
        }
    }
}

/// Slack reads `<…>` as links and mentions: a node's message must not ping
/// a channel.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
