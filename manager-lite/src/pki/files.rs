//! Writing the certificates and keys: the directory made 0700, each file
//! through a temp file created with its final mode (a key is never readable
//! by others, even for a moment), fsync, rename or link, and a directory
//! fsync; `init` writes all its files or none.

use super::error::io_error;
use super::PkiError;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` 0700 if missing (its parents with the usual mode).
pub(super) fn make_dir(dir: &Path) -> Result<(), PkiError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent, "creating directory"))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_error(dir, "creating directory")(e))
        }
        _ => Ok(()),
    }
}

pub(super) fn absolute(dir: &Path) -> Result<PathBuf, PkiError> {
    fs::canonicalize(dir).map_err(io_error(dir, "resolving"))
}

/// Writes `path` crash-safely: a temp file in the same directory created
/// with `mode` (so a key is never readable by others, even for a moment),
/// fsync, then rename over `path` (`replace`) or hard-link to it, which
/// fails if `path` exists, and fsync of the directory.
pub(super) fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A temp file of a killed earlier run with our pid: ours to replace.
    let _ = fs::remove_file(&tmp);
    let result = write_tmp(&tmp, bytes, mode).and_then(|()| {
        if replace {
            fs::rename(&tmp, path).map_err(io_error(path, "renaming a temp file to"))
        } else {
            link_new(&tmp, path)
        }
    });
    let _ = fs::remove_file(&tmp);
    result?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "syncing directory"))
}

pub(super) fn write_tmp(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(io_error(tmp, "creating"))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_error(tmp, "writing"))
}

/// Writes each new file (path, contents, mode), none replacing a file. All
/// or nothing: on a failure the files written so far are removed again, so
/// a rerun of `init` is not refused because of them.
pub(super) fn write_all_new(files: &[(&PathBuf, &[u8], u32)]) -> Result<(), PkiError> {
    for (i, (path, bytes, mode)) in files.iter().enumerate() {
        if let Err(e) = write_file(path, bytes, *mode, false) {
            for (written, _, _) in &files[..i] {
                let _ = fs::remove_file(written);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Gives `tmp` the name `path` unless `path` exists (never replaces).
pub(super) fn link_new(tmp: &Path, path: &Path) -> Result<(), PkiError> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(PkiError::Exists(path.to_owned()))
        }
        Err(e) => Err(io_error(path, "creating")(e)),
    }
}
