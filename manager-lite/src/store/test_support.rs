//! What the store's unit tests share: a temp directory for a database file,
//! removed when dropped, and the store's options.

use super::StoreOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("ml-store-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The database file in it.
    pub fn db(&self) -> PathBuf {
        self.0.join("m.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Nodes offline after 3 minutes; `keep` progress reports per node and bin.
pub fn opts(keep: usize) -> StoreOptions {
    StoreOptions {
        offline_after: Duration::from_secs(180),
        progress_keep: keep,
    }
}
