//! The node's credentials towards the manager: its own secret, kept in
//! `state_dir/node.secret` (mode 0600, written atomically), and the fleet's
//! enrollment token (`enroll_token_file` in the config), which is only ever
//! sent on a keepalive, and only while the node has no secret of its own.
//!
//! Enrollment has no lock-out window: before its first enrolling keepalive
//! the node makes its secret itself (32 random bytes) and writes it durably
//! to `state_dir/node.secret.pending`; the keepalive proposes it with the
//! enrollment token, and once the manager answers `enrolled` the file is
//! renamed to `node.secret`. A run killed anywhere in between finds the
//! pending secret and proposes it again, which the manager accepts for a
//! node enrolled with that same secret. A manager that predates proposals
//! answers with a secret of its own, which is stored instead.
//!
//! Secrets never appear in a log line or an error message: [`Credentials`]
//! prints as `<redacted>`, and errors name the file, not its content.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use binproxy_protocol::KeepaliveReply;

use crate::config::Config;
use crate::error::{Error, Result, SecretLoss};
use crate::fsutil;

/// The file under the state dir that holds the node's secret.
pub const NODE_SECRET_FILE: &str = "node.secret";

/// The secret this node proposes while it enrolls, until the manager says yes.
pub const PENDING_SECRET_FILE: &str = "node.secret.pending";

/// Longest secret or token accepted (the manager's are 64 hex characters).
const MAX_SECRET_LEN: usize = 1024;

/// What the agent can present to the manager.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// This node's own secret, once it has enrolled.
    pub node_secret: Option<String>,
    /// The fleet's enrollment token, used by a node without a secret.
    pub enroll_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("node_secret", &shown(&self.node_secret))
            .field("enroll_token", &shown(&self.enroll_token))
            .finish()
    }
}

impl Credentials {
    /// The node secret from the state dir; the enrollment token only when
    /// there is no node secret (a node that has enrolled does not need the
    /// token, and the file may be gone by then).
    pub fn load(config: &Config) -> Result<Credentials> {
        let node_secret = load_node_secret(&config.state_dir)?;
        let enroll_token = match (&node_secret, &config.enroll_token_file) {
            (None, Some(path)) => Some(read_enroll_token(path)?),
            _ => None,
        };
        Ok(Credentials {
            node_secret,
            enroll_token,
        })
    }

    /// The stored node secret alone, for the commands that only need to
    /// report or ask (rollback, status): an unreadable secret is logged and
    /// left out rather than stopping a local operation.
    pub fn stored(state_dir: &Path) -> Credentials {
        let node_secret = load_node_secret(state_dir).unwrap_or_else(|e| {
            log::warn!("{e}");
            None
        });
        Credentials {
            node_secret,
            enroll_token: None,
        }
    }

    /// Whether the next keepalive enrolls: no secret yet, and a token.
    pub fn enrolling(&self) -> bool {
        self.node_secret.is_none() && self.enroll_token.is_some()
    }

    /// The bearer for a request: the node secret when there is one; else the
    /// enrollment token, on the keepalive only.
    pub fn bearer(&self, keepalive: bool) -> Option<&str> {
        match (&self.node_secret, &self.enroll_token) {
            (Some(secret), _) => Some(secret),
            (None, Some(token)) if keepalive => Some(token),
            _ => None,
        }
    }
}

/// The path of the node secret under `state_dir`.
pub fn node_secret_path(state_dir: &Path) -> PathBuf {
    state_dir.join(NODE_SECRET_FILE)
}

/// The stored node secret, `None` when the node has not enrolled.
pub fn load_node_secret(state_dir: &Path) -> Result<Option<String>> {
    let path = node_secret_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            check_secret(secret).map_err(|problem| Error::BadSecretFile {
                path,
                problem,
                remedy: "delete it to enroll again",
            })?;
            Ok(Some(secret.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read")(e)),
    }
}

/// Stores the node secret durably (0600, atomic) before it is used.
pub fn store_node_secret(state_dir: &Path, secret: &str) -> Result<()> {
    fsutil::write_atomic(&node_secret_path(state_dir), secret.as_bytes(), 0o600)
}

/// The secret to propose: the pending one an earlier run made (it may have
/// been accepted already), else a new one, durable before it is returned.
pub fn proposal(state_dir: &Path) -> Result<String> {
    let path = state_dir.join(PENDING_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            if !binproxy_protocol::Secret::well_formed(secret) {
                return Err(Error::BadSecretFile {
                    path,
                    problem: "not 64 lowercase hex digits".into(),
                    remedy: "delete it to make a new secret",
                });
            }
            Ok(secret.to_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = binproxy_protocol::hex(&random_bytes()?);
            fsutil::write_atomic(&path, secret.as_bytes(), 0o600)?;
            Ok(secret)
        }
        Err(e) => Err(Error::io(path, "read")(e)),
    }
}

/// What the answer to the keepalive that proposed `proposed` means: the
/// node secret now in force (stored durably before it is returned), or
/// `None` when the manager did not enroll this node (node authentication
/// off: the proposal waits for a manager that wants it).
pub fn conclude(
    state_dir: &Path,
    node_id: &str,
    proposed: &str,
    reply: &KeepaliveReply,
) -> Result<Option<String>> {
    let pending = state_dir.join(PENDING_SECRET_FILE);
    if let Some(secret) = &reply.node_secret {
        // A manager older than proposals made the secret: it was sent once.
        let lost = |cause| Error::SecretNotKept {
            node_id: node_id.to_owned(),
            cause,
        };
        check_secret(secret).map_err(|why| lost(SecretLoss::Unusable(why)))?;
        store_node_secret(state_dir, secret)
            .map_err(|e| lost(SecretLoss::NotStored(Box::new(e))))?;
        match std::fs::remove_file(&pending) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                log::warn!("{}: cannot remove: {e}", pending.display());
            }
            _ => {}
        }
        log::info!(
            "enrolled with the manager (a secret it made); node secret stored in {}",
            node_secret_path(state_dir).display()
        );
        return Ok(Some(secret.clone()));
    }
    if !reply.enrolled {
        return Ok(None);
    }
    let path = node_secret_path(state_dir);
    std::fs::rename(&pending, &path).map_err(|source| Error::EnrollmentNotSaved {
        node_id: node_id.to_owned(),
        pending: pending.clone(),
        path: path.clone(),
        source,
    })?;
    fsutil::sync_dir(state_dir)?;
    log::info!(
        "enrolled with the manager; node secret stored in {}",
        path.display()
    );
    Ok(Some(proposed.to_owned()))
}

/// 32 bytes from the kernel's random source.
fn random_bytes() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(Error::io("/dev/urandom", "read"))?;
    Ok(bytes)
}

/// Reads the enrollment token, trimmed; unreadable or empty is a config error
/// naming the file.
pub fn read_enroll_token(path: &Path) -> Result<String> {
    let err = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("enroll_token_file: cannot read: {e}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("enroll_token_file: the file is empty".into()));
    }
    check_secret(token).map_err(|why| err(format!("enroll_token_file: {why}")))?;
    Ok(token.to_owned())
}

/// A secret must fit in an HTTP header: printable ASCII without spaces.
pub fn check_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err("empty".into());
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(format!("longer than {MAX_SECRET_LEN} bytes"));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("not printable ASCII without spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("binproxy-credential-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn creds(secret: Option<&str>, token: Option<&str>) -> Credentials {
        Credentials {
            node_secret: secret.map(str::to_owned),
            enroll_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn the_node_secret_wins_and_the_token_is_for_the_keepalive_only() {
        let both = creds(Some("s3cret"), Some("tok"));
        assert_eq!(both.bearer(true), Some("s3cret"));
        assert_eq!(both.bearer(false), Some("s3cret"));
        let token_only = creds(None, Some("tok"));
        assert_eq!(token_only.bearer(true), Some("tok"));
        assert_eq!(token_only.bearer(false), None);
        let secret_only = creds(Some("s3cret"), None);
        assert_eq!(secret_only.bearer(true), Some("s3cret"));
        assert_eq!(secret_only.bearer(false), Some("s3cret"));
        assert_eq!(creds(None, None).bearer(true), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", creds(Some("s3cret-value"), Some("tok-value")));
        assert!(!shown.contains("s3cret-value") && !shown.contains("tok-value"));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn node_secret_round_trips_with_mode_0600() {
        let dir = temp_dir("store");
        assert_eq!(load_node_secret(&dir).unwrap(), None);
        store_node_secret(&dir, "ab12").unwrap();
        assert_eq!(load_node_secret(&dir).unwrap().as_deref(), Some("ab12"));
        let mode = std::fs::metadata(node_secret_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(node_secret_path(&dir), "\n").unwrap();
        let e = load_node_secret(&dir).unwrap_err().to_string();
        assert!(
            e.contains("node.secret") && e.contains("enroll again"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn enroll_token_is_trimmed_and_errors_name_the_file() {
        let dir = temp_dir("token");
        let path = dir.join("enroll.token");
        std::fs::write(&path, "  the-token-0123456789\n").unwrap();
        assert_eq!(read_enroll_token(&path).unwrap(), "the-token-0123456789");
        std::fs::write(&path, " \n").unwrap();
        let e = read_enroll_token(&path).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        let e = e.to_string();
        assert!(e.contains("enroll.token") && e.contains("empty"), "{e}");
        let missing = dir.join("missing.token");
        let e = read_enroll_token(&missing).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert!(e.to_string().contains("missing.token"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_reads_the_token_only_without_a_node_secret() {
        let dir = temp_dir("load");
        let token = dir.join("enroll.token");
        let mut config = crate::config::parse(
            &format!(
                r#"{{"manager_url":"http://m:1","node_id":"n","state_dir":"{}","enroll_token_file":"{}","bins":[{{"name":"a","path":"/a"}}]}}"#,
                dir.display(),
                token.display()
            ),
            Path::new("test.json"),
        )
        .unwrap();
        // No secret and no token file: a config error naming the token file.
        let e = Credentials::load(&config).unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("enroll.token"));
        std::fs::write(&token, "tok-0123456789abcdef\n").unwrap();
        assert_eq!(
            Credentials::load(&config).unwrap(),
            creds(None, Some("tok-0123456789abcdef"))
        );
        // Enrolled: the token file is no longer needed.
        store_node_secret(&dir, "s3cret").unwrap();
        std::fs::remove_file(&token).unwrap();
        assert_eq!(
            Credentials::load(&config).unwrap(),
            creds(Some("s3cret"), None)
        );
        config.enroll_token_file = None;
        assert_eq!(
            Credentials::load(&config).unwrap(),
            creds(Some("s3cret"), None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn reply(node_secret: Option<&str>, enrolled: bool) -> KeepaliveReply {
        KeepaliveReply {
            node: binproxy_protocol::Node::default(),
            server_time: String::new(),
            targets: std::collections::BTreeMap::default(),
            reasons: std::collections::BTreeMap::default(),
            node_secret: node_secret.map(str::to_owned),
            enrolled,
        }
    }

    #[test]
    fn a_proposal_is_durable_before_use_kept_until_accepted_then_promoted() {
        let dir = temp_dir("proposal");
        let pending = dir.join(PENDING_SECRET_FILE);
        let p = proposal(&dir).unwrap();
        assert!(binproxy_protocol::Secret::well_formed(&p), "{p}");
        assert_eq!(std::fs::read_to_string(&pending).unwrap(), p);
        let mode = std::fs::metadata(&pending).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A killed run's proposal is proposed again, not replaced.
        assert_eq!(proposal(&dir).unwrap(), p);
        // Node authentication off: nothing changes.
        assert_eq!(conclude(&dir, "n", &p, &reply(None, false)).unwrap(), None);
        assert!(pending.exists() && load_node_secret(&dir).unwrap().is_none());
        // Accepted: the same secret becomes node.secret, the pending file goes.
        assert_eq!(
            conclude(&dir, "n", &p, &reply(None, true)).unwrap(),
            Some(p.clone())
        );
        assert!(!pending.exists());
        assert_eq!(load_node_secret(&dir).unwrap(), Some(p));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_secret_made_by_an_older_manager_replaces_the_proposal() {
        let dir = temp_dir("older");
        let p = proposal(&dir).unwrap();
        let made = "f".repeat(64);
        let got = conclude(&dir, "n", &p, &reply(Some(&made), true)).unwrap();
        assert_eq!(got.as_deref(), Some(&*made));
        assert_eq!(load_node_secret(&dir).unwrap(), Some(made));
        assert!(!dir.join(PENDING_SECRET_FILE).exists());
        // A malformed pending file is named, never quoted.
        std::fs::write(dir.join(PENDING_SECRET_FILE), "not-hex-secret").unwrap();
        let e = proposal(&dir).unwrap_err().to_string();
        assert!(
            e.contains(PENDING_SECRET_FILE) && !e.contains("not-hex-secret"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
