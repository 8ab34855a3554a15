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
//!
//! The bodies are kept by who sends them: `agent.rs` (the keepalive, its
//! answer and an update's reports), `release.rs` (versions, releases, pins:
//! the rollout side of the admin API) and `admin.rs` (tokens, roles, the
//! audit log). Each is re-exported here, so every type has one path:
//! `binproxy_protocol::Target`, never `binproxy_protocol::agent::Target`.
//! The static mirror's files (`mirror.rs`) keep their own path:
//! `binproxy_protocol::mirror::MirrorBin`.

mod admin;
mod agent;
pub mod mirror;
pub mod names;
mod release;
pub mod secret;
pub mod window;

use serde::{Deserialize, Serialize};

pub use secret::Secret;

pub use names::{
    check_arch, check_bin_name, check_node_id, check_sha256, check_version, hex, NameError,
};

pub use admin::{AuditRecord, CreatedToken, NewToken, Role, TokenInfo};
pub use agent::{
    Delta, Installed, Keepalive, KeepaliveReply, Method, Node, NodeFacts, Packed, Progress,
    ProgressRecord, ProgressStatus, Target,
};
pub use release::{
    BinVersions, BinView, NewRelease, NodeView, Pin, Release, ReleaseCounts, ReleaseEvent,
    ReleaseOp, ReleaseStatus, Selector, UnknownOp, Version, Wave, WaveCounts,
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

/// Every error answer: `{"error": "..."}`, naming the field or thing at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The download path of a stored artifact.
pub fn download_path(sha256: &str) -> String {
    format!("{API_PREFIX}/download/{sha256}")
}
