//! The one error type of the agent. Every variant names what it was about (the
//! file, the URL, the bin), so a log line alone says where to look.

use std::fmt;
use std::io;
use std::path::PathBuf;

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
    /// The manager could not be reached or answered garbage; nothing changed.
    Unreachable { url: String, message: String },
    /// The manager answered with an error status.
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// A download did not match what the manager announced.
    Verify { bin: String, message: String },
    /// A download was cut (by the network, the server, or because it moved
    /// slower than `download_min_rate`); its `.part` file stays for a resume.
    Transfer {
        bin: String,
        url: String,
        message: String,
    },
    /// A step was stopped at a safe point by a signal or `cycle_timeout`.
    Stopped { what: String },
    /// The cycle ran past `cycle_timeout` and was stopped at a safe point.
    CycleTimeout { limit: std::time::Duration },
    /// A hook (preflight, restart, health command) failed.
    Hook { bin: String, message: String },
    /// Another operation refused for a stated reason.
    Other(String),
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
            Self::Unreachable { url, message } => {
                write!(f, "manager unreachable at {url}: {message}")
            }
            Self::Refused {
                url,
                status,
                message,
            } => write!(f, "manager refused {url}: {status} {message}"),
            Self::Verify { bin, message } => write!(f, "{bin}: download rejected: {message}"),
            Self::Transfer { bin, url, message } => {
                write!(
                    f,
                    "{bin}: download from {url} cut: {message}; resumes next run"
                )
            }
            Self::Stopped { what } => write!(f, "{what} stopped (signal or cycle_timeout)"),
            Self::CycleTimeout { limit } => write!(
                f,
                "cycle_timeout ({}) exceeded: stopped at a safe point, nothing half-done \
                 (a partial download resumes next run)",
                humantime::format_duration(*limit)
            ),
            Self::Hook { bin, message } => write!(f, "{bin}: {message}"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
