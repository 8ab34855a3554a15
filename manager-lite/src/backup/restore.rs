//! `manager-lite restore --from FILE --data DIR`: a data directory from a
//! backup, offline (no manager runs on DIR).
//!
//! Every file is checked against the manifest as it is unpacked ([`super::
//! read_archive`]); the restored database must be of a schema this build
//! knows and refer only to artifacts the archive holds. It is all written
//! into a temp directory beside DIR, fsync'd, and renamed to DIR at the end
//! (then the parent fsync'd): a failed or interrupted restore leaves no DIR
//! that looks complete. A DIR that exists and is not empty is refused.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{read_archive, ArchiveError, DATABASE};
use crate::artifacts::sync_dir;

/// Why a restore did not happen (every one is exit 1).
#[derive(Debug)]
pub enum RestoreError {
    /// DIR exists and holds files.
    NotEmpty(PathBuf),
    /// DIR names no directory (`/`, `..`).
    BadTarget(PathBuf),
    /// The archive is not a good backup.
    Archive { file: PathBuf, source: ArchiveError },
    /// The restored database is unusable, or refers to a missing artifact.
    Database(String),
    /// Reading or writing on our side failed.
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEmpty(dir) => write!(
                f,
                "{} exists and is not empty: restore only into a new or empty directory",
                dir.display()
            ),
            Self::BadTarget(dir) => write!(f, "--data {}: names no directory", dir.display()),
            Self::Archive { file, source } => write!(f, "{}: {source}", file.display()),
            Self::Database(why) => write!(f, "restored database unusable: {why}"),
            Self::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for RestoreError {}

fn io_at(what: &str, path: &Path) -> impl FnOnce(io::Error) -> RestoreError {
    let (what, path) = (what.to_owned(), path.to_path_buf());
    move |source| RestoreError::Io { what, path, source }
}

/// The temp directory, removed unless the restore got to its rename.
struct Staging(Option<PathBuf>);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Restores the backup `from` into `data`; returns what it did, in a line.
pub fn restore(from: &Path, data: &Path) -> Result<String, RestoreError> {
    match fs::read_dir(data) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RestoreError::NotEmpty(data.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at("reading", data)(e)),
    }
    let input = File::open(from).map_err(io_at("opening", from))?;
    let (parent, tmp) = super::temp_beside(data, "restore")
        .ok_or_else(|| RestoreError::BadTarget(data.to_path_buf()))?;
    fs::create_dir_all(&parent).map_err(io_at("creating", &parent))?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_at("removing the leftover", &tmp))?;
    }
    let mut staging = Staging(Some(tmp.clone()));
    fs::create_dir(&tmp).map_err(io_at("creating", &tmp))?;
    fs::create_dir(tmp.join("artifacts")).map_err(io_at("creating", &tmp))?;
    let manifest = read_archive(io::BufReader::new(input), |path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.join(path))
            .map(Some)
    })
    .map_err(|source| RestoreError::Archive {
        file: from.to_path_buf(),
        source,
    })?;
    let db = tmp.join(DATABASE);
    let (schema, needed) =
        crate::store::inspect_copy(&db).map_err(|e| RestoreError::Database(e.to_string()))?;
    if schema > crate::store::SCHEMA_VERSION {
        return Err(RestoreError::Database(format!(
            "schema version {schema}; this manager-lite knows up to {}: restore with a newer one",
            crate::store::SCHEMA_VERSION
        )));
    }
    let artifacts = manifest.files.len() - 1;
    if let Some(missing) = needed.iter().find(|h| {
        !manifest
            .files
            .iter()
            .any(|f| f.sha256 == **h && f.path != DATABASE)
    }) {
        return Err(RestoreError::Database(format!(
            "it refers to artifact {missing}, which the backup does not hold"
        )));
    }
    sync_dir(&tmp.join("artifacts")).map_err(io_at("syncing", &tmp))?;
    sync_dir(&tmp).map_err(io_at("syncing", &tmp))?;
    // An empty DIR is replaced by the rename itself (rename(2)); a new
    // file there since the check makes it fail, and nothing is lost.
    fs::rename(&tmp, data).map_err(|e| match e.kind() {
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists => {
            RestoreError::NotEmpty(data.to_path_buf())
        }
        _ => io_at("renaming the restored directory to", data)(e),
    })?;
    staging.0 = None;
    sync_dir(&parent).map_err(io_at("syncing", &parent))?;
    Ok(format!(
        "restored {} (backup taken {} by manager-lite {}): the database and {artifacts} \
         artifact(s), every sha256 checked",
        data.display(),
        manifest.created_at,
        manifest.manager_version
    ))
}
