//! Who may call the admin endpoints.
//!
//! The admin token comes from `--admin-token-file`, else the environment
//! (`MANAGER_ADMIN_TOKEN`), else one is generated at first start into
//! `DATA/admin.token` (mode 0600). Only its sha256 is kept in memory, and
//! presented tokens are compared by digest in constant time. No token is ever
//! logged: only the file it came from.

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use binproxy_protocol::{hex, ReleaseOp, Role};

use crate::api::reply::ApiError;
use crate::store::Store;

pub const TOKEN_ENV: &str = "MANAGER_ADMIN_TOKEN";

const ADMIN_TOKEN: &str = "admin token";
const ENROLL_TOKEN: &str = "node enrollment token";

/// Why a token could not be read, made or kept. Never holds a token.
#[derive(Debug)]
pub enum TokenError {
    /// The token `what` from `origin` (a file, the environment) is shorter
    /// than 16 characters.
    TooShort {
        what: &'static str,
        origin: String,
    },
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// No random bytes from the kernel.
    Random(io::Error),
    Write {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { what, origin } => write!(
                f,
                "{what} from {origin} is too short: use at least 16 characters"
            ),
            Self::Read { what, path, source } => {
                write!(f, "reading {what} file {}: {source}", path.display())
            }
            Self::Random(e) => write!(f, "reading /dev/urandom: {e}"),
            Self::Write { path, source } => write!(f, "writing {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for TokenError {}

/// A secret that could not be made is the server's fault: 500.
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// Where the admin token came from, for the startup log.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
    Generated(PathBuf),
}

pub struct Auth {
    admin_digest: [u8; 32],
    /// Node authentication is on when set: the enrollment token's digest.
    enroll_digest: Option<[u8; 32]>,
}

/// Who sent a node-facing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCaller {
    /// Node authentication is off: anyone.
    Open,
    /// A node, by its own secret.
    Node(String),
    /// The enrollment token: may only enroll a new node.
    Enroll,
    /// An admin token: may read what nodes read.
    Admin,
}

impl NodeCaller {
    /// May this caller write the records of `node_id`? Only that node may.
    pub fn may_write_as(&self, node_id: &str) -> Result<(), ApiError> {
        match self {
            NodeCaller::Open => Ok(()),
            NodeCaller::Node(id) if id == node_id => Ok(()),
            NodeCaller::Node(id) => Err(ApiError::forbidden(format!(
                "this secret belongs to node {id}, not {node_id}"
            ))),
            NodeCaller::Enroll => Err(ApiError::unauthorized(
                "the enrollment token only enrolls: send the node's own secret",
            )),
            NodeCaller::Admin => Err(ApiError::forbidden(
                "an admin token cannot write a node's records",
            )),
        }
    }

    /// May this caller read targets and artifacts?
    pub fn may_read(&self) -> Result<(), ApiError> {
        match self {
            NodeCaller::Enroll => Err(ApiError::unauthorized(
                "the enrollment token only enrolls: send the node's own secret",
            )),
            _ => Ok(()),
        }
    }
}

/// The caller of an admin request, as recorded in history and audit.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// Whether this caller holds `admin` (which may do everything) or one
    /// of `roles`.
    pub fn may(&self, roles: &[Role]) -> bool {
        self.role == Role::Admin || roles.contains(&self.role)
    }

    /// Whether this caller may do `op` on a release: the route's rule, and
    /// what a release's `actions` are filtered by (a viewer sees none).
    pub fn may_operate(&self, op: ReleaseOp) -> bool {
        self.may(op_roles(op))
    }
}

/// Roles besides `admin` allowed each operation on a release.
pub fn op_roles(op: ReleaseOp) -> &'static [Role] {
    match op {
        ReleaseOp::Pause => &[Role::Publisher, Role::Approver],
        ReleaseOp::Cancel => &[],
        ReleaseOp::Approve | ReleaseOp::Resume | ReleaseOp::Promote | ReleaseOp::Rollback => {
            &[Role::Approver]
        }
    }
}

/// Name of the bootstrap token in history and audit.
pub const BOOTSTRAP_NAME: &str = "admin";

impl Auth {
    /// Loads or creates the admin token.
    pub fn load(
        token_file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<(Auth, TokenSource), TokenError> {
        let (token, source) = if let Some(path) = token_file {
            (
                read_token(path, ADMIN_TOKEN)?,
                TokenSource::File(path.to_path_buf()),
            )
        } else if let Ok(token) = std::env::var(TOKEN_ENV) {
            (
                checked(token.trim(), ADMIN_TOKEN, TOKEN_ENV)?,
                TokenSource::Env,
            )
        } else {
            let path = data_dir.join("admin.token");
            if path.exists() {
                (read_token(&path, ADMIN_TOKEN)?, TokenSource::File(path))
            } else {
                let token = random_hex(32)?;
                write_private(&path, &token)?;
                (token, TokenSource::Generated(path))
            }
        };
        Ok((
            Auth {
                admin_digest: digest(&token),
                enroll_digest: None,
            },
            source,
        ))
    }

    /// Turns node authentication on with the enrollment token in `path`.
    pub fn require_nodes(&mut self, path: &Path) -> Result<(), TokenError> {
        let token = read_token(path, ENROLL_TOKEN)?;
        self.enroll_digest = Some(digest(&token));
        Ok(())
    }

    pub fn nodes_protected(&self) -> bool {
        self.enroll_digest.is_some()
    }

    /// Who a node-facing request is: a node by its secret, the enrollment
    /// token, or an admin token. Anything else → 401 (when node auth is on).
    pub fn node_caller(
        &self,
        authorization: Option<&str>,
        store: &Store,
    ) -> Result<NodeCaller, ApiError> {
        let Some(enroll) = &self.enroll_digest else {
            return Ok(NodeCaller::Open);
        };
        let presented = bearer(authorization).ok_or_else(|| {
            ApiError::unauthorized(
                "node authentication is on: send Authorization: Bearer NODE_SECRET",
            )
        })?;
        let d = digest(presented);
        if let Some(node) = store.node_of_secret(&hex(&d)) {
            return Ok(NodeCaller::Node(node));
        }
        if constant_time_eq(&d, enroll) {
            return Ok(NodeCaller::Enroll);
        }
        if self.authenticate(authorization, store).is_ok() {
            return Ok(NodeCaller::Admin);
        }
        Err(ApiError::unauthorized("unknown node secret"))
    }

    /// Whether `secret` is a token this manager takes for something other
    /// than a node: the enrollment token, the bootstrap admin token or a
    /// named token. A node may not propose one as its secret (node secrets
    /// are matched first, so it would shadow the token).
    pub fn is_token(&self, secret: &str, store: &Store) -> bool {
        let d = digest(secret);
        let enroll = self.enroll_digest.is_some_and(|e| constant_time_eq(&d, &e));
        enroll
            || constant_time_eq(&d, &self.admin_digest)
            || store.token_by_hash(&hex(&d)).is_some()
    }

    /// Who `Authorization: Bearer TOKEN` is: the bootstrap admin token, or
    /// a named token from the store. Unknown or missing → 401.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        store: &Store,
    ) -> Result<Actor, ApiError> {
        let presented = bearer(authorization).ok_or_else(|| {
            ApiError::unauthorized("missing admin token: send Authorization: Bearer TOKEN")
        })?;
        let d = digest(presented);
        if constant_time_eq(&d, &self.admin_digest) {
            return Ok(Actor {
                name: BOOTSTRAP_NAME.into(),
                role: Role::Admin,
            });
        }
        // Looked up by the sha256 of the secret: the map's timing can only
        // tell an attacker about hashes, not about any stored secret.
        store
            .token_by_hash(&hex(&d))
            .map(|t| Actor {
                name: t.name,
                role: t.role,
            })
            .ok_or_else(|| ApiError::unauthorized("unknown admin token"))
    }
}

/// The credentials of `Authorization: Bearer TOKEN`; the scheme is matched
/// case-insensitively (RFC 9110, 11.1).
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The sha256 of a secret, in hex, as the store keeps it.
pub fn secret_hash(token: &str) -> String {
    hex(&digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token `what` from `origin`, if it is long enough.
fn checked(token: &str, what: &'static str, origin: &str) -> Result<String, TokenError> {
    if token.len() < 16 {
        return Err(TokenError::TooShort {
            what,
            origin: origin.to_owned(),
        });
    }
    Ok(token.to_owned())
}

fn read_token(path: &Path, what: &'static str) -> Result<String, TokenError> {
    let text = fs::read_to_string(path).map_err(|source| TokenError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    checked(text.trim(), what, &path.display().to_string())
}

/// `n` random bytes from the kernel, in hex.
pub fn random_hex(n: usize) -> Result<String, TokenError> {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(TokenError::Random)?;
    Ok(binproxy_protocol::hex(&bytes))
}

/// Writes a secret file readable by its owner only: temp file, fsync, rename.
fn write_private(path: &Path, contents: &str) -> Result<(), TokenError> {
    let tmp = path.with_extension("tmp");
    let ctx = |source: io::Error| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ctx)?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(ctx)?;
    fs::rename(&tmp, path).map_err(ctx)?;
    crate::artifacts::sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_refused() {
        assert!(checked("short", ADMIN_TOKEN, "env").is_err());
        assert!(checked("0123456789abcdef", ADMIN_TOKEN, "env").is_ok());
    }

    #[test]
    fn bearer_scheme_is_matched_in_any_case() {
        for h in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "  bEaReR\tt0k"] {
            assert_eq!(bearer(Some(h)), Some("t0k"), "{h:?}");
        }
        for h in ["Basic t0k", "Bearer", "Bearer   ", "Bearert0k", ""] {
            assert_eq!(bearer(Some(h)), None, "{h:?}");
        }
        assert_eq!(bearer(None), None);
    }
}
