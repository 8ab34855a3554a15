//! Leftovers of a run killed with -9, removed under the lock at the start of
//! the next one. Every file the agent writes atomically goes through a temp
//! name made by [`fsutil::temp_beside`] — `.<name>.binproxy-<tag>-<pid>.tmp`
//! — in `state_dir` (state, back-off, node secret), `journal/`, `outbox/` and
//! `kept/<bin>/`. A run holds the lock while it writes any of them, so once
//! this run holds it no such file belongs to a live writer: every one found
//! is debris. Only names of exactly that shape go, only regular files, and
//! symbolic links are never followed. (Temp files beside the live binaries
//! are the journal's business: see [`crate::fetch::remove_strays`].)

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

/// How deep below `state_dir` temp files are looked for (`kept/<bin>/` is 2).
const DEPTH: usize = 2;

/// Removes our stray temp files anywhere in `state_dir`; returns how many.
pub fn sweep(state_dir: &Path) -> Result<usize> {
    let removed = sweep_dir(state_dir, DEPTH)?;
    if removed > 0 {
        log::info!(
            "removed {removed} temp file(s) an interrupted run left in {}",
            state_dir.display()
        );
    }
    Ok(removed)
}

fn sweep_dir(dir: &Path, depth: usize) -> Result<usize> {
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, "list")(e)),
    };
    let (mut removed, mut here) = (0, 0);
    for item in listing.flatten() {
        // file_type() does not follow symbolic links.
        let Ok(kind) = item.file_type() else {
            continue;
        };
        let path = item.path();
        if kind.is_dir() && depth > 0 {
            removed += sweep_dir(&path, depth - 1)?;
        } else if kind.is_file() && is_our_temp(&item.file_name().to_string_lossy()) {
            fs::remove_file(&path).map_err(Error::io(&path, "remove stray temp file"))?;
            here += 1;
        }
    }
    removed += here;
    if here > 0 {
        fsutil::sync_dir(dir)?;
    }
    Ok(removed)
}

/// `.<name>.binproxy-<tag>-<pid>.tmp`: a dot, a name, our marker, a tag of
/// lower-case letters, a process id of digits, `.tmp`; nothing else.
pub fn is_our_temp(file_name: &str) -> bool {
    let Some(rest) = file_name
        .strip_prefix('.')
        .and_then(|r| r.strip_suffix(".tmp"))
    else {
        return false;
    };
    let Some((name, tail)) = rest.rsplit_once(".binproxy-") else {
        return false;
    };
    let Some((tag, pid)) = tail.split_once('-') else {
        return false;
    };
    !name.is_empty()
        && !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_lowercase())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_our_temp_names_match() {
        let live = Path::new("/s/state.json");
        let ours = fsutil::temp_beside(live, "write");
        let ours = ours.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_our_temp(&ours), "{ours}");
        for yes in [
            ".state.json.binproxy-write-123.tmp",
            ".0001-000001.json.binproxy-write-9.tmp",
            &format!(".{}.binproxy-keep-42.tmp", "a".repeat(64)),
        ] {
            assert!(is_our_temp(yes), "{yes}");
        }
        for no in [
            "state.json",
            ".state.json.binproxy-write-123.tmp.keep",
            "state.json.binproxy-write-123.tmp",
            ".binproxy-write-1.tmp",
            ".state.json.binproxy-write-.tmp",
            ".state.json.binproxy--1.tmp",
            ".state.json.binproxy-Write-1.tmp",
            ".state.json.binproxy-write-12a.tmp",
            ".svc.binproxy-0123456789abcdef.part",
            ".other.tmp",
        ] {
            assert!(!is_our_temp(no), "{no}");
        }
    }

    #[test]
    fn a_sweep_removes_our_temp_files_and_nothing_else() {
        let d: PathBuf = std::env::temp_dir().join(format!("bp-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for sub in ["journal", "outbox", "kept/svc", "kept/svc/deeper/still"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let debris = [
            ".state.json.binproxy-write-77.tmp",
            "journal/.svc.json.binproxy-write-77.tmp",
            "outbox/.1-1.json.binproxy-write-77.tmp",
            "kept/svc/.abc.binproxy-keep-77.tmp",
        ];
        let kept = [
            "state.json",
            "journal/svc.json",
            "outbox/1-1.json",
            "kept/svc/abc",
            "notes.tmp",
            "kept/svc/deeper/still/.x.binproxy-write-1.tmp",
        ];
        for f in debris.iter().chain(&kept) {
            fs::write(d.join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(d.join("journal"), d.join(".j.binproxy-write-1.tmp")).unwrap();
        assert_eq!(sweep(&d).unwrap(), debris.len());
        for f in debris {
            assert!(!d.join(f).exists(), "{f} stays");
        }
        for f in kept {
            assert!(d.join(f).exists(), "{f} went");
        }
        assert!(d.join("journal").is_dir());
        assert_eq!(sweep(&d).unwrap(), 0);
        fs::remove_dir_all(&d).unwrap();
    }
}
