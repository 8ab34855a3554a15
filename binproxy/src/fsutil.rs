//! Crash-safe file primitives. Every file the agent replaces goes through
//! [`write_atomic`]: a temp file in the same directory, fsync, rename over the
//! old one, fsync the directory. A kill -9 at any line leaves either the old
//! or the new content, never a torn file.

use serde::{de::DeserializeOwned, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// fsyncs a directory, so renames and new links in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir, "fsync directory"))
}

/// The directory a path lives in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temp name next to `path`, hidden, marked as ours, unique per process.
pub fn temp_beside(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    parent(path).join(format!(".{name}.binproxy-{tag}-{}.tmp", std::process::id()))
}

/// Replaces `path` with `bytes` atomically and durably, with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_beside(path, "write");
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, "write")(e));
    }
    sync_dir(parent(path))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Encode {
        what: path.display().to_string(),
        source,
    })?;
    write_atomic(path, &bytes, 0o600)
}

/// Reads JSON; `Ok(None)` when the file does not exist. A file that does not
/// parse is moved aside (`.corrupt`) and reported as absent, so one damaged
/// state file cannot wedge every later run.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "read")(e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let aside = path.with_extension("corrupt");
            log::warn!(
                "{} does not parse ({e}); moved to {} and starting afresh",
                path.display(),
                aside.display()
            );
            fs::rename(path, &aside).map_err(Error::io(path, "move aside"))?;
            Ok(None)
        }
    }
}

/// Creates a directory (and parents) with mode 0700 when new.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir, "create directory"))
}
