//! Step 1 of a cycle: one agent at a time per state directory.
//!
//! An exclusive `flock` on `state_dir/binproxy.lock`, held for the whole
//! cycle. The kernel drops it when the process dies, however it dies, so there
//! is no staleness to guess and no lock file to delete (the old agent's
//! check-then-delete lock files let two runs work on one binary at once).

use fs2::FileExt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use crate::error::{Error, Result};

/// Held while alive; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock, or `Ok(None)` when another run holds it.
pub fn try_lock(state_dir: &Path) -> Result<Option<Lock>> {
    let path = state_dir.join("binproxy.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path, "open lock file"))?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(Some(Lock { _file: file })),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == fs2::lock_contended_error().raw_os_error() =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io(&path, "lock")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_first_drops() {
        let dir = std::env::temp_dir().join(format!("bp-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = try_lock(&dir).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&dir).unwrap().is_none());
        drop(first);
        assert!(try_lock(&dir).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
