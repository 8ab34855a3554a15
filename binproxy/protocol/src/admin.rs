//! Who may do what on the manager: the roles of admin tokens, the bodies that
//! create and list tokens (never showing a secret but once), and the audit
//! log of admin writes.

use serde::{Deserialize, Serialize};

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
