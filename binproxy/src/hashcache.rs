//! The sha256 of a managed file without reading it every minute.
//!
//! An entry remembers the hash together with the file's identity (device,
//! inode, size, mtime, ctime). Any write, rename, chmod or relink of the file
//! changes at least one of those (ctime is set by the kernel and cannot be
//! forged back by `touch`), so a matching identity means the same bytes. A
//! file modified in the last two seconds is hashed but not cached, so a write
//! within the timestamp granularity is never mistaken for the old content.
//!
//! An install fills the cache itself ([`installed`]): the agent verified the
//! bytes as it wrote them and renamed the file into place, so it knows the
//! hash without reading the file again, and takes the identity right after
//! the rename. The cycle after an update is then a true no-op.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use binproxy_protocol::hex;

use crate::error::{Error, Result};

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    fn recently_changed(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let newest = self.mtime_ns.max(self.ctime_ns);
        i128::try_from(now).unwrap_or(i128::MAX) - newest < 2_000_000_000
    }
}

/// A cached hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: FileId,
    pub sha256: String,
}

/// What [`local_hash`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Lookup {
    /// `None` when the file does not exist.
    pub sha256: Option<String>,
    /// The entry to remember (unchanged, new, or `None` to forget).
    pub entry: Option<Entry>,
    /// Whether the file was read.
    pub hashed: bool,
}

/// The sha256 of `path`, from `cached` when the file is unchanged.
pub fn local_hash(path: &Path, cached: Option<&Entry>) -> Result<Lookup> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Lookup {
                sha256: None,
                entry: None,
                hashed: false,
            })
        }
        Err(e) => return Err(Error::io(path, "stat")(e)),
    };
    let id = FileId::of(&meta);
    if let Some(hit) = cached.filter(|c| c.id == id) {
        return Ok(Lookup {
            sha256: Some(hit.sha256.clone()),
            entry: Some(hit.clone()),
            hashed: false,
        });
    }
    let sha256 = sha256_file(path)?;
    log::debug!(
        "{}: hashed {} bytes (not in the cache)",
        path.display(),
        id.size
    );
    let entry = (!id.recently_changed()).then(|| Entry {
        id,
        sha256: sha256.clone(),
    });
    Ok(Lookup {
        sha256: Some(sha256),
        entry,
        hashed: true,
    })
}

/// The cache entry of a file this agent just renamed into place at `path`,
/// whose bytes it verified as `sha256`; `None` (hash it next time) when it
/// cannot be looked at.
pub fn installed(path: &Path, sha256: &str) -> Option<Entry> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| Entry {
        id: FileId::of(&meta),
        sha256: sha256.to_owned(),
    })
}

/// Hashes a whole file, streaming.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io(path, "open"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, "read")(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The first 12 hex digits, for logs.
pub fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "bp-hash-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// An entry for the file as it is now, as if cached long ago.
    fn entry_now(path: &Path) -> Entry {
        Entry {
            id: FileId::of(&fs::metadata(path).unwrap()),
            sha256: sha256_file(path).unwrap(),
        }
    }

    #[test]
    fn unchanged_file_is_not_read() {
        let d = tempdir("hit");
        let f = d.join("bin");
        fs::write(&f, b"v1").unwrap();
        let cached = entry_now(&f);
        let l = local_hash(&f, Some(&cached)).unwrap();
        assert!(!l.hashed);
        assert_eq!(l.sha256.as_deref(), Some(cached.sha256.as_str()));
        // A cached hash that is wrong on purpose proves the file was not read.
        let planted = Entry {
            sha256: "f".repeat(64),
            ..cached
        };
        let l = local_hash(&f, Some(&planted)).unwrap();
        assert_eq!(l.sha256.as_deref(), Some(planted.sha256.as_str()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn any_change_rehashes() {
        let d = tempdir("miss");
        let f = d.join("bin");
        fs::write(&f, b"v1").unwrap();
        let cached = entry_now(&f);
        // Same size, new content.
        fs::write(&f, b"v2").unwrap();
        let l = local_hash(&f, Some(&cached)).unwrap();
        assert!(l.hashed);
        assert_eq!(l.sha256.unwrap(), hex(&Sha256::digest(b"v2")));
        // Replaced by rename: new inode.
        let cached = entry_now(&f);
        fs::write(d.join("other"), b"v2").unwrap();
        fs::rename(d.join("other"), &f).unwrap();
        assert!(local_hash(&f, Some(&cached)).unwrap().hashed);
        // chmod changes ctime.
        let cached = entry_now(&f);
        std::thread::sleep(Duration::from_millis(20));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(local_hash(&f, Some(&cached)).unwrap().hashed);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fresh_files_are_not_cached_and_missing_is_none() {
        let d = tempdir("fresh");
        let f = d.join("bin");
        fs::write(&f, b"v1").unwrap();
        let l = local_hash(&f, None).unwrap();
        assert!(l.hashed);
        assert!(l.entry.is_none(), "modified just now: must not be cached");
        let missing = local_hash(&d.join("nope"), None).unwrap();
        assert_eq!(missing.sha256, None);
        fs::remove_dir_all(&d).unwrap();
    }
}
