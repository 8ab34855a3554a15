//! The one error type of patch making and applying.

use std::fmt;
use std::io;

/// What went wrong with a patch: each variant says whose fault it is, so the
/// agent can tell a bad patch (fall back to a full download) from a local
/// disk error.
#[derive(Debug)]
pub enum DeltaError {
    /// Reading the old build or the patch, or writing the result, failed.
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The patch is not a well-formed patch of this format.
    Corrupt(String),
    /// The patch was made from another base than the file given.
    WrongBase { expected: u64, actual: u64 },
    /// The patch makes a file of another size than the caller expects.
    WrongSize { expected: u64, actual: u64 },
    /// Making the patch ran past its deadline (`BuildOptions::deadline`).
    TooSlow,
}

impl DeltaError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { what, source }
    }

    pub(crate) fn corrupt(why: impl Into<String>) -> Self {
        Self::Corrupt(why.into())
    }
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::Corrupt(why) => write!(f, "corrupt patch: {why}"),
            Self::WrongBase { expected, actual } => write!(
                f,
                "patch is for a base of {expected} bytes, the base has {actual}"
            ),
            Self::WrongSize { expected, actual } => {
                write!(f, "patch makes {actual} bytes, the target has {expected}")
            }
            Self::TooSlow => write!(f, "making the patch ran past its deadline"),
        }
    }
}

impl std::error::Error for DeltaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
