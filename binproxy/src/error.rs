//! The one error type of the agent. Every variant says what happened and
//! names what it was about (the file, the URL, the bin), so a log line alone
//! says where to look; the error underneath, where there is one, is its
//! [`source`](std::error::Error::source).
//!
//! Two questions are answered from the variant alone, never from the text:
//! whether the manager's [`backoff`](crate::backoff) applies
//! ([`Error::is_transient`]) and which exit status it ends a command with
//! ([`Error::exit`]).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use binproxy_protocol::NameError;

use crate::hashcache::short;
use crate::outcome::Exit;

#[derive(Debug)]
pub enum Error {
    /// The config file is unreadable or wrong; exit 2.
    Config { path: PathBuf, message: String },
    /// A local file operation failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A value could not be written as JSON; `what` names the file or request.
    Encode {
        what: String,
        source: serde_json::Error,
    },
    /// Another binproxy run holds the state directory's lock.
    Locked,
    /// The manager could not be reached (connection, TLS, timeout); nothing
    /// changed. `message` is `source` with advice where there is some.
    Unreachable {
        url: String,
        message: String,
        source: Box<ureq::Error>,
    },
    /// The manager is there but not working (5xx) or too busy (429): treated
    /// as unreachable (exit 69, and a back-off).
    Unavailable {
        url: String,
        status: u16,
        message: String,
    },
    /// The manager answered, but not what the protocol says: treated as
    /// unreachable (exit 69, and a back-off).
    BadAnswer { url: String, what: Malformed },
    /// The manager refused a request with a 4xx status.
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// A download from `url` did not match what its target announced.
    Verify {
        bin: String,
        url: String,
        message: String,
    },
    /// A download was cut after `received` bytes (by the network, the server,
    /// or because it moved slower than `download_min_rate`); its `.part` file
    /// stays for a resume.
    Transfer {
        bin: String,
        url: String,
        received: u64,
        cause: Cut,
    },
    /// A download was stopped at a safe point by a signal or `cycle_timeout`;
    /// its `.part` file stays for a resume.
    Stopped { bin: String, url: String },
    /// The cycle ran past `cycle_timeout` and was stopped at a safe point.
    CycleTimeout { limit: Duration },
    /// A mirror could not be used for the file at `url` (see
    /// [`crate::mirror`]). Says nothing about the manager.
    Mirror { url: String, problem: MirrorProblem },
    /// Every source of `what` failed, each error (naming its URL) in the
    /// order tried. Blamed like the last one: for an artifact, that is the
    /// target's own URL, so a manager that failed still backs off.
    Sources { what: String, tried: Vec<Error> },
    /// A patch or the zst form of an artifact did not make the artifact (see
    /// [`crate::delivery`]); the next way of getting it is tried.
    Unpack {
        bin: String,
        /// `patch from kept 1a2b3c4d5e6f`, `zst form`.
        what: String,
        problem: Unpacking,
    },
    /// A back-off of the manager is in force until `until` (`reason`): this
    /// run did not contact it, and read only the mirrors.
    BackingOff { until: String, reason: String },
    /// `binproxy rollback` has no kept version to swap in: none at all
    /// (`wanted` is `None`), or not the one asked for.
    NoKeptVersion { bin: String, wanted: Option<String> },
    /// `binproxy rollback` was asked for the version that is live already.
    AlreadyLive { bin: String, sha: String },
    /// A secret file in the state directory does not hold a usable secret;
    /// `remedy` says what the operator does about it.
    BadSecretFile {
        path: PathBuf,
        problem: String,
        remedy: &'static str,
    },
    /// The manager enrolled the node with a secret it made (sent once), and
    /// the node could not keep it.
    SecretNotKept { node_id: String, cause: SecretLoss },
    /// The manager enrolled the node, but the proposed secret could not be
    /// renamed from `pending` to `path`; the next run proposes it again.
    EnrollmentNotSaved {
        node_id: String,
        pending: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
}

/// What was wrong with an answer of the manager.
#[derive(Debug)]
pub enum Malformed {
    /// The body is not the JSON the call answers with.
    NotJson(serde_json::Error),
    /// A target's sha256 is not 64 hex digits.
    Target { bin: String, source: NameError },
    /// A 206 whose Content-Range does not start where the request asked.
    ContentRange { offset: u64 },
}

/// What was wrong with a mirror's answer.
#[derive(Debug)]
pub enum MirrorProblem {
    /// Connection, TLS, timeout or a cut body; `message` is `source` with
    /// advice where there is some.
    Unreachable {
        message: String,
        source: Box<ureq::Error>,
    },
    /// A status other than 200 (or 206 for a resume).
    Status(u16),
    /// A 206 whose Content-Range does not start where the request asked.
    ContentRange { offset: u64 },
    /// An answer larger than the agent reads from a mirror.
    TooLarge { limit: u64 },
    /// Not the JSON of the mirror's format.
    NotJson(serde_json::Error),
    /// `bins/<bin>.json` (or its target) is about another bin.
    WrongBin { want: String, found: String },
    /// The target's sha256 is not 64 hex digits.
    BadTarget(NameError),
}

/// Why a patch or a zst file did not make the artifact.
#[derive(Debug)]
pub enum Unpacking {
    /// Applying or decompressing failed: a damaged patch, one for another
    /// base or size, or a local read or write error.
    Delta(binproxy_delta::DeltaError),
    /// It made other bytes than the target's (size, sha256 or signature).
    Result(String),
}

/// Why a download was cut.
#[derive(Debug)]
pub enum Cut {
    /// Reading the body failed (connection reset, per-read timeout...).
    Read(io::Error),
    /// The body moved slower than `download_min_rate`; says by how much.
    TooSlow(String),
}

/// Why a secret the manager made could not be kept.
#[derive(Debug)]
pub enum SecretLoss {
    /// It cannot be sent back in a header.
    Unusable(String),
    /// Writing it to `node.secret` failed.
    NotStored(Box<Error>),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            path,
            action,
            source,
        }
    }

    /// Whether this failure is on the network's or the manager's account
    /// (unreachable, 5xx, 429, a garbage answer, a cut download), so that
    /// the next contact with the manager backs off. Every other error says
    /// nothing about the manager and leaves the back-off as it is.
    pub fn is_transient(&self) -> bool {
        matches!(self.blame(), Blame::Manager | Blame::Transfer)
    }

    /// The exit status of a command that ends with this error: 2 for the
    /// config, 69 when the manager could not be used (nothing changed on
    /// disk), 1 for anything else.
    pub fn exit(&self) -> Exit {
        match self.blame() {
            Blame::Config => Exit::Usage,
            Blame::Manager => Exit::Unreachable,
            Blame::Transfer | Blame::Local => Exit::Failed,
        }
    }

    /// Whose account the error is on: the one place each variant is sorted,
    /// with no catch-all, so a new variant must be placed here.
    fn blame(&self) -> Blame {
        match self {
            Self::Config { .. } => Blame::Config,
            Self::Unreachable { .. }
            | Self::Unavailable { .. }
            | Self::BadAnswer { .. }
            | Self::BackingOff { .. } => Blame::Manager,
            Self::Transfer { .. } => Blame::Transfer,
            Self::Sources { tried, .. } => tried.last().map_or(Blame::Local, Error::blame),
            Self::Io { .. }
            | Self::Encode { .. }
            | Self::Locked
            | Self::Refused { .. }
            | Self::Verify { .. }
            | Self::Stopped { .. }
            | Self::CycleTimeout { .. }
            | Self::Mirror { .. }
            | Self::Unpack { .. }
            | Self::NoKeptVersion { .. }
            | Self::AlreadyLive { .. }
            | Self::BadSecretFile { .. }
            | Self::SecretNotKept { .. }
            | Self::EnrollmentNotSaved { .. } => Blame::Local,
        }
    }
}

/// Whose account an error is on (see [`Error::is_transient`], [`Error::exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// The config: exit 2; says nothing about the manager.
    Config,
    /// The manager could not be used (unreachable, 5xx, 429, an answer off
    /// the protocol): exit 69, and a back-off.
    Manager,
    /// A download was cut (network, server, too slow): a back-off; the bin
    /// failed (exit 1) and its download resumes next run.
    Transfer,
    /// This host, the operator's request or a refusal (4xx, a rejected
    /// download): exit 1; says nothing about the manager.
    Local,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { path, message } => write!(f, "config {}: {message}", path.display()),
            Self::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            Self::Encode { what, source } => write!(f, "encoding {what}: {source}"),
            Self::Locked => {
                f.write_str("another binproxy run holds the lock; try again when it ends")
            }
            Self::Unreachable { url, message, .. } => {
                write!(f, "manager unreachable at {url}: {message}")
            }
            Self::Unavailable {
                url,
                status,
                message,
            } => write!(f, "manager unreachable at {url}: {status} {message}"),
            Self::BadAnswer { url, what } => write!(f, "manager unreachable at {url}: {what}"),
            Self::Refused {
                url,
                status,
                message,
            } => write!(f, "manager refused {url}: {status} {message}"),
            Self::Verify { bin, url, message } => {
                write!(f, "{bin}: download from {url} rejected: {message}")
            }
            Self::Transfer {
                bin,
                url,
                received,
                cause,
            } => {
                write!(f, "{bin}: download from {url} cut: after {received} bytes")?;
                match cause {
                    Cut::Read(e) => write!(f, " ({e})")?,
                    Cut::TooSlow(why) => write!(f, ": {why}")?,
                }
                f.write_str("; resumes next run")
            }
            Self::Stopped { bin, url } => write!(
                f,
                "{bin}: download from {url}; it resumes next run stopped (signal or cycle_timeout)"
            ),
            Self::CycleTimeout { limit } => write!(
                f,
                "cycle_timeout ({}) exceeded: stopped at a safe point, nothing half-done \
                 (a partial download resumes next run)",
                humantime::format_duration(*limit)
            ),
            Self::Mirror { url, problem } => write!(f, "mirror {url}: {problem}"),
            Self::Unpack { bin, what, problem } => write!(f, "{bin}: {what}: {problem}"),
            Self::BackingOff { until, reason } => write!(
                f,
                "backing off until {until} ({reason}): the manager was not contacted"
            ),
            Self::Sources { what, tried } => {
                write!(f, "{what}: every source failed")?;
                for (i, e) in tried.iter().enumerate() {
                    write!(f, "{} {e}", if i == 0 { ":" } else { ";" })?;
                }
                Ok(())
            }
            Self::NoKeptVersion { bin, wanted: None } => {
                write!(f, "{bin}: no kept version to roll back to")
            }
            Self::NoKeptVersion {
                bin,
                wanted: Some(sha),
            } => write!(f, "{bin}: no kept version {sha} (see binproxy status)"),
            Self::AlreadyLive { bin, sha } => write!(f, "{bin}: {} is already live", short(sha)),
            Self::BadSecretFile {
                path,
                problem,
                remedy,
            } => write!(f, "{}: {problem}; {remedy}", path.display()),
            Self::SecretNotKept { node_id, cause } => write!(
                f,
                "the manager enrolled node {node_id} but its secret could not be kept ({cause}); \
                 revoke it with manager-lite node revoke {node_id} so that it can enroll again"
            ),
            Self::EnrollmentNotSaved {
                node_id,
                pending,
                path,
                source,
            } => write!(
                f,
                "node {node_id} is enrolled, but {} could not be renamed to {}: {source}; \
                 the next run enrolls again with the same secret",
                pending.display(),
                path.display()
            ),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "answer is not the expected JSON: {e}"),
            Self::Target { bin, source } => write!(f, "the target of {bin:?}: {source}"),
            Self::ContentRange { offset } => {
                write!(
                    f,
                    "206 with a Content-Range that does not start at {offset}"
                )
            }
        }
    }
}

impl fmt::Display for MirrorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { message, .. } => write!(f, "unreachable: {message}"),
            Self::Status(status) => write!(f, "answered {status}"),
            Self::ContentRange { offset } => write!(
                f,
                "206 with a Content-Range that does not start at {offset}"
            ),
            Self::TooLarge { limit } => write!(f, "answer larger than {limit} bytes"),
            Self::NotJson(e) => write!(f, "not the mirror's JSON: {e}"),
            Self::WrongBin { want, found } => {
                write!(f, "the file is about bin {found:?}, not {want:?}")
            }
            Self::BadTarget(e) => write!(f, "its target: {e}"),
        }
    }
}

impl fmt::Display for Unpacking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delta(e) => write!(f, "{e}"),
            Self::Result(why) => write!(f, "the result was rejected: {why}"),
        }
    }
}

impl fmt::Display for SecretLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unusable(why) => write!(f, "the secret sent is unusable: {why}"),
            Self::NotStored(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::EnrollmentNotSaved { source, .. } => Some(source),
            Self::Encode { source, .. } => Some(source),
            Self::Unreachable { source, .. } => Some(source.as_ref()),
            Self::BadAnswer { what, .. } => what.source(),
            Self::Transfer {
                cause: Cut::Read(e),
                ..
            } => Some(e),
            Self::SecretNotKept {
                cause: SecretLoss::NotStored(e),
                ..
            } => Some(e.as_ref()),
            Self::Mirror { problem, .. } => problem.source(),
            Self::Unpack {
                problem: Unpacking::Delta(e),
                ..
            } => Some(e),
            Self::Sources { tried, .. } => tried
                .last()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            Self::Config { .. }
            | Self::Locked
            | Self::BackingOff { .. }
            | Self::Unavailable { .. }
            | Self::Refused { .. }
            | Self::Verify { .. }
            | Self::Transfer {
                cause: Cut::TooSlow(_),
                ..
            }
            | Self::Stopped { .. }
            | Self::CycleTimeout { .. }
            | Self::Unpack {
                problem: Unpacking::Result(_),
                ..
            }
            | Self::NoKeptVersion { .. }
            | Self::AlreadyLive { .. }
            | Self::BadSecretFile { .. }
            | Self::SecretNotKept {
                cause: SecretLoss::Unusable(_),
                ..
            } => None,
        }
    }
}

impl MirrorProblem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreachable { source, .. } => Some(source.as_ref()),
            Self::NotJson(e) => Some(e),
            Self::BadTarget(e) => Some(e),
            Self::Status(_)
            | Self::ContentRange { .. }
            | Self::TooLarge { .. }
            | Self::WrongBin { .. } => None,
        }
    }
}

impl Malformed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotJson(e) => Some(e),
            Self::Target { source, .. } => Some(source),
            Self::ContentRange { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn transfer(cause: Cut) -> Error {
        Error::Transfer {
            bin: "svc".into(),
            url: "http://m/dl".into(),
            received: 42,
            cause,
        }
    }

    #[test]
    fn a_cut_download_backs_off_and_keeps_its_cause() {
        let read = transfer(Cut::Read(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(read.is_transient());
        assert_eq!(read.exit(), Exit::Failed);
        assert!(read.source().is_some());
        let slow = transfer(Cut::TooSlow("20 bytes in 1s".into()));
        assert_eq!(
            slow.to_string(),
            "svc: download from http://m/dl cut: after 42 bytes: 20 bytes in 1s; resumes next run"
        );
        assert!(slow.source().is_none());
    }

    #[test]
    fn answers_off_the_protocol_count_as_unreachable() {
        let busy = Error::Unavailable {
            url: "http://m/api".into(),
            status: 503,
            message: "draining".into(),
        };
        assert_eq!(
            busy.to_string(),
            "manager unreachable at http://m/api: 503 draining"
        );
        let garbage = Error::BadAnswer {
            url: "http://m/api".into(),
            what: Malformed::ContentRange { offset: 7 },
        };
        for e in [&busy, &garbage] {
            assert!(e.is_transient(), "{e}");
            assert_eq!(e.exit(), Exit::Unreachable, "{e}");
        }
        let refused = Error::Refused {
            url: "http://m/api".into(),
            status: 401,
            message: "who?".into(),
        };
        assert!(!refused.is_transient());
        assert_eq!(refused.exit(), Exit::Failed);
    }

    #[test]
    fn a_mirror_failure_says_nothing_about_the_manager_and_sources_blame_the_last() {
        let mirror = Error::Mirror {
            url: "https://m1/artifacts/ab".into(),
            problem: MirrorProblem::Status(404),
        };
        assert!(!mirror.is_transient());
        assert_eq!(mirror.exit(), Exit::Failed);
        assert_eq!(
            mirror.to_string(),
            "mirror https://m1/artifacts/ab: answered 404"
        );
        let both = Error::Sources {
            what: "svc: download of abababab".into(),
            tried: vec![mirror, transfer(Cut::TooSlow("1 byte in 30s".into()))],
        };
        assert!(both.is_transient(), "the manager's cut download backs off");
        let text = both.to_string();
        assert!(
            text.starts_with("svc: download of abababab: every source failed: mirror https://m1/artifacts/ab: answered 404; svc: download from http://m/dl cut"),
            "{text}"
        );
        let none = Error::Sources {
            what: "x".into(),
            tried: Vec::new(),
        };
        assert!(!none.is_transient() && none.source().is_none());
    }

    #[test]
    fn a_secret_that_could_not_be_stored_chains_the_write_error() {
        let write =
            Error::io("/s/node.secret", "write")(io::Error::from(io::ErrorKind::PermissionDenied));
        let e = Error::SecretNotKept {
            node_id: "n1".into(),
            cause: SecretLoss::NotStored(Box::new(write)),
        };
        assert!(!e.is_transient());
        let inner = e.source().map(ToString::to_string).unwrap_or_default();
        assert!(inner.starts_with("write /s/node.secret"), "{inner}");
        assert!(e.to_string().contains("node revoke n1"), "{e}");
    }
}
