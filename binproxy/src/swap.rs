//! Steps 8 and 9 of an update: keep the current file, then put the new one
//! in its place with rename(2) — never a copy over the live file, which fails
//! with ETXTBSY while the binary runs, or leaves a torn file when interrupted.
//!
//! Kept versions live in `state_dir/kept/<bin>/<sha256>`: a hard link when
//! the state directory shares the live file's filesystem (no bytes copied),
//! else a copy. Nothing ever writes into a kept file or a live file in place,
//! so a link keeps its content.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

pub fn kept_dir(state_dir: &Path, bin: &str) -> PathBuf {
    state_dir.join("kept").join(bin)
}

pub fn kept_path(state_dir: &Path, bin: &str, sha: &str) -> PathBuf {
    kept_dir(state_dir, bin).join(sha)
}

/// Keeps the file at `live` as `kept` (content-addressed: done if present).
pub fn keep_current(live: &Path, kept: &Path) -> Result<()> {
    if kept.exists() {
        return Ok(());
    }
    let dir = fsutil::parent(kept);
    fsutil::ensure_dir(dir)?;
    let tmp = fsutil::temp_beside(kept, "keep");
    link_or_copy(live, &tmp)?;
    fs::rename(&tmp, kept).map_err(Error::io(kept, "keep previous version as"))?;
    fsutil::sync_dir(dir)
}

/// Gives the staged file the live file's mode and owner (or `mode`).
pub fn prepare(staged: &Path, live: &Path, mode: Option<u32>) -> Result<()> {
    let old = fs::metadata(live).ok();
    let mode = mode
        .or_else(|| old.as_ref().map(|m| m.mode() & 0o7777))
        .unwrap_or(0o755);
    fs::set_permissions(staged, fs::Permissions::from_mode(mode))
        .map_err(Error::io(staged, "chmod"))?;
    if let Some(old) = old {
        // Only root may give a file away; elsewhere the owner already matches.
        let _ = std::os::unix::fs::chown(staged, Some(old.uid()), Some(old.gid()));
    }
    Ok(())
}

/// Renames the staged file over the live path, durably.
pub fn install(staged: &Path, live: &Path) -> Result<()> {
    fs::rename(staged, live).map_err(Error::io(live, "rename new version over"))?;
    fsutil::sync_dir(fsutil::parent(live))
}

/// Puts a kept version back at the live path, atomically; the kept file stays.
pub fn restore(kept: &Path, live: &Path) -> Result<()> {
    let tmp = fsutil::temp_beside(live, "restore");
    let _ = fs::remove_file(&tmp);
    link_or_copy(kept, &tmp)?;
    install(&tmp, live)
}

/// Rolls back a first install: there was no file, so there is none again.
pub fn remove_new(live: &Path) -> Result<()> {
    match fs::remove_file(live) {
        Ok(()) => fsutil::sync_dir(fsutil::parent(live)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(live, "remove failed new version")(e)),
    }
}

/// A staged copy of a kept version beside the live path (for `rollback`).
pub fn stage_kept(kept: &Path, live: &Path) -> Result<PathBuf> {
    let tmp = fsutil::temp_beside(live, "rollback");
    let _ = fs::remove_file(&tmp);
    link_or_copy(kept, &tmp)?;
    Ok(tmp)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => return Ok(()),
        // Other filesystem (EXDEV), or links not allowed: copy instead.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(from, "link")(e)),
    }
    let copied = fs::copy(from, to).and_then(|_| File::open(to)?.sync_all());
    copied.map_err(|e| {
        let _ = fs::remove_file(to);
        Error::io(to, "copy")(e)
    })
}

/// Prunes kept versions of a bin to `keep`, oldest first, never removing a
/// hash in `protect`. `order` (oldest first) is reconciled with the directory.
pub fn prune(
    state_dir: &Path,
    bin: &str,
    order: &mut Vec<String>,
    keep: usize,
    protect: &[&str],
) -> Result<()> {
    let dir = kept_dir(state_dir, bin);
    let on_disk: Vec<String> = match fs::read_dir(&dir) {
        Ok(l) => l
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(dir, "list kept versions")(e)),
    };
    order.retain(|s| on_disk.contains(s));
    for s in &on_disk {
        if !order.contains(s) {
            order.insert(0, s.clone());
        }
    }
    while order.len() > keep {
        let Some(i) = order.iter().position(|s| !protect.contains(&s.as_str())) else {
            break;
        };
        let victim = order.remove(i);
        let p = dir.join(&victim);
        fs::remove_file(&p).map_err(Error::io(p, "remove old kept version"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bp-swap-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keep_install_restore() {
        let d = tmp("kir");
        let live = d.join("bin");
        fs::write(&live, b"old").unwrap();
        fs::set_permissions(&live, fs::Permissions::from_mode(0o750)).unwrap();
        let kept = kept_path(&d.join("state"), "bin", &"a".repeat(64));
        keep_current(&live, &kept).unwrap();
        keep_current(&live, &kept).unwrap();
        let staged = d.join(".staged");
        fs::write(&staged, b"new").unwrap();
        prepare(&staged, &live, None).unwrap();
        install(&staged, &live).unwrap();
        assert_eq!(fs::read(&live).unwrap(), b"new");
        assert_eq!(fs::metadata(&live).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(fs::read(&kept).unwrap(), b"old");
        restore(&kept, &live).unwrap();
        assert_eq!(fs::read(&live).unwrap(), b"old");
        assert_eq!(
            fs::read(&kept).unwrap(),
            b"old",
            "restore keeps the kept copy"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prune_keeps_newest_and_protected() {
        let d = tmp("prune");
        let dir = kept_dir(&d, "b");
        fs::create_dir_all(&dir).unwrap();
        let shas: Vec<String> = (0..5).map(|i| format!("{i}").repeat(64)).collect();
        for s in &shas {
            fs::write(dir.join(s), b"x").unwrap();
        }
        let mut order = shas.clone();
        prune(&d, "b", &mut order, 2, &[&shas[0]]).unwrap();
        assert_eq!(order, [shas[0].clone(), shas[4].clone()]);
        assert!(dir.join(&shas[0]).exists() && dir.join(&shas[4]).exists());
        assert!(!dir.join(&shas[1]).exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
