//! Online backups: one tar file holding the database at one transaction and
//! every artifact it refers to, with a manifest of their sizes and sha256s.
//!
//! The layout (ustar, readable with `tar -tvf`):
//!
//! ```text
//! manifest.json            {"format","version","created_at","manager_version",
//!                           "schema_version","files":[{"path","size","sha256"}]}
//! manager.redb             the database, copied from one read transaction
//! artifacts/<sha256>       each artifact that copy refers to
//! ```
//!
//! The manifest comes first, so a reader checks every file against it as
//! the archive streams by. [`make`] builds the archive for `GET
//! /api/v1/backup` while the manager serves; [`read_archive`] checks one
//! (the CLI's `backup` as it downloads, `restore` as it unpacks);
//! [`restore`] builds a data directory from one, offline. Admin token and
//! enrollment token files are not in it: the database holds only the
//! sha256s of named tokens and node secrets, and those are backed up.

use binproxy_protocol::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

pub mod make;
pub mod restore;

/// The manifest's name, the first entry.
pub const MANIFEST: &str = "manifest.json";
/// The database's name in the archive (and in a data directory).
pub const DATABASE: &str = "manager.redb";
/// `format` of the manifest.
pub const FORMAT: &str = "manager-lite-backup";
/// `version` of the manifest this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest manifest read (about 100,000 artifacts).
const MAX_MANIFEST: u64 = 16 << 20;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    pub manager_version: String,
    pub schema_version: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// `manager.redb` or `artifacts/<sha256>`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Why an archive is not a good backup.
#[derive(Debug)]
pub enum ArchiveError {
    /// Reading the archive, or writing what it holds, failed.
    Io { what: String, source: io::Error },
    /// Not a backup of this kind, or a broken one; says why.
    Format(String),
    /// A file's bytes differ from the manifest (size or sha256).
    Mismatch {
        path: String,
        want: String,
        got: String,
    },
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::Format(why) => write!(f, "not a usable manager-lite backup: {why}"),
            Self::Mismatch { path, want, got } => write!(
                f,
                "{path} in the archive is not what its manifest says: {got}, manifest: {want} \
                 (a damaged or altered backup)"
            ),
        }
    }
}

impl std::error::Error for ArchiveError {}

fn io_at(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

/// Whether `path` may be in a backup: the database or `artifacts/<sha256>`
/// (64 lower-case hex digits). Nothing else, so no entry can name a file
/// outside the directory it is restored into.
pub fn allowed_path(path: &str) -> bool {
    path == DATABASE
        || path.strip_prefix("artifacts/").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

impl Manifest {
    /// Checks the manifest's own rules: format and version, allowed and
    /// unique paths, one database, artifacts named by their sha256.
    fn check(&self) -> Result<(), ArchiveError> {
        let bad = |why: String| Err(ArchiveError::Format(why));
        if self.format != FORMAT || self.version != VERSION {
            return bad(format!(
                "manifest format {} version {}; this manager-lite reads {FORMAT} version {VERSION}",
                self.format, self.version
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            if !allowed_path(&f.path) || !seen.insert(f.path.as_str()) {
                return bad(format!(
                    "manifest lists {:?} twice or a path not allowed",
                    f.path
                ));
            }
            if let Some(name) = f.path.strip_prefix("artifacts/") {
                if name != f.sha256 {
                    return bad(format!("{} is listed with sha256 {}", f.path, f.sha256));
                }
            }
        }
        if !seen.contains(DATABASE) {
            return bad(format!("the manifest lists no {DATABASE}"));
        }
        Ok(())
    }
}

/// Reads a backup archive from `input`, checking every file against the
/// manifest as it streams by: its size and sha256, no file twice, none
/// missing, none extra. `sink` gives, for a file's path, where to write its
/// bytes (`None`: only check them); each file is fsync'd when complete.
pub fn read_archive(
    input: impl Read,
    mut sink: impl FnMut(&str) -> io::Result<Option<File>>,
) -> Result<Manifest, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries().map_err(io_at("reading the archive"))?;
    let manifest = match entries.next() {
        None => return Err(ArchiveError::Format("the archive is empty".into())),
        Some(entry) => read_manifest(entry.map_err(io_at("reading the archive"))?)?,
    };
    let mut left: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for entry in entries {
        let mut entry = entry.map_err(io_at("reading the archive"))?;
        let path = entry
            .path()
            .map_err(io_at("reading an entry's name"))?
            .to_string_lossy()
            .into_owned();
        let Some(want) = left.remove(path.as_str()) else {
            return Err(ArchiveError::Format(format!(
                "{path:?} is not in the manifest, or is in the archive twice"
            )));
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArchiveError::Format(format!("{path} is not a plain file")));
        }
        // Refused before a byte is written: the manifest bounds every file.
        if entry.size() != want.size {
            return Err(ArchiveError::Mismatch {
                path,
                want: format!("{} bytes", want.size),
                got: format!("{} bytes", entry.size()),
            });
        }
        let out = sink(&path).map_err(io_at(format!("creating {path}")))?;
        let (size, sha256) = copy_hashed(&mut entry, out, &path)?;
        if size != want.size || sha256 != want.sha256 {
            return Err(ArchiveError::Mismatch {
                path,
                want: format!("{} bytes, sha256 {}", want.size, want.sha256),
                got: format!("{size} bytes, sha256 {sha256}"),
            });
        }
    }
    if let Some(path) = left.keys().next() {
        return Err(ArchiveError::Format(format!(
            "{path} is in the manifest but not in the archive (a cut download?)"
        )));
    }
    Ok(manifest)
}

fn read_manifest(entry: tar::Entry<'_, impl Read>) -> Result<Manifest, ArchiveError> {
    let path = entry
        .path()
        .map_err(io_at("reading an entry's name"))?
        .to_string_lossy()
        .into_owned();
    if path != MANIFEST {
        return Err(ArchiveError::Format(format!(
            "the first entry is {path:?}, not {MANIFEST}"
        )));
    }
    let mut text = Vec::new();
    entry
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut text)
        .map_err(io_at("reading the manifest"))?;
    if text.len() as u64 > MAX_MANIFEST {
        return Err(ArchiveError::Format(format!(
            "the manifest is over {MAX_MANIFEST} bytes"
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| ArchiveError::Format(format!("the manifest is not valid: {e}")))?;
    manifest.check()?;
    Ok(manifest)
}

/// Copies `input` into `out` (if any), hashing it; fsyncs `out`.
fn copy_hashed(
    input: &mut impl Read,
    mut out: Option<File>,
    path: &str,
) -> Result<(u64, String), ArchiveError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(format!("reading {path} from the archive"))(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        if let Some(file) = out.as_mut() {
            file.write_all(&buf[..n])
                .map_err(io_at(format!("writing {path}")))?;
        }
    }
    if let Some(file) = out {
        file.sync_all()
            .map_err(io_at(format!("writing {path} (fsync)")))?;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// A temp path for `target` in the same directory (so the final rename is
/// atomic): `DIR/.NAME.TAG-PID`, and `DIR`. `None` when `target` names no
/// file or directory.
pub fn temp_beside(target: &std::path::Path, tag: &str) -> Option<(PathBuf, PathBuf)> {
    let name = target.file_name()?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{tag}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    Some((dir, tmp))
}

/// The sha256 and size of a file.
pub fn hash_file(path: &std::path::Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((size, hex(&hasher.finalize())))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
