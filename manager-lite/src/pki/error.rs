//! [`PkiError`]: why `tls init` or `tls renew` stopped, naming the file or
//! the flag, and the exit code each reason gives.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why `tls init` or `tls renew` did nothing (or, for I/O, stopped).
#[derive(Debug)]
pub enum PkiError {
    /// A bad host list, day count or argument (exit 2).
    Usage(String),
    /// `init` found this file already there and changed nothing.
    Exists(PathBuf),
    /// Reading or writing this path failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The CA (or the current server certificate) in the directory cannot
    /// be used: unreadable, not a CA, expired, key not matching.
    BadCa { path: PathBuf, why: String },
    /// rcgen could not make a certificate.
    Generate(rcgen::Error),
    /// A validity date out of the calendar's range.
    Dates(time::error::ComponentRange),
}

impl PkiError {
    /// 2 for usage errors, 1 for everything refused or failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            PkiError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Usage(m) => write!(f, "{m}"),
            PkiError::Exists(p) => write!(
                f,
                "{} already exists: tls init never replaces a CA or a key \
                 (use `tls renew` for a new server certificate, or another --dir)",
                p.display()
            ),
            PkiError::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            PkiError::BadCa { path, why } => write!(f, "{}: {why}", path.display()),
            PkiError::Generate(m) => write!(f, "making the certificate: {m}"),
            PkiError::Dates(e) => write!(f, "making the certificate: certificate dates: {e}"),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::Io { source, .. } => Some(source),
            PkiError::Generate(source) => Some(source),
            PkiError::Dates(source) => Some(source),
            _ => None,
        }
    }
}

pub(super) fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

pub(super) fn generate(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e)
}
