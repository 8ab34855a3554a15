//! What the store's unit tests share: a temp directory for a database file,
//! removed when dropped, and the store's options.

use super::StoreOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ml-store-{tag}-"))
            .tempdir()
            .unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The database file in it.
    pub fn db(&self) -> PathBuf {
        self.0.path().join("m.redb")
    }
}

/// Nodes offline after 3 minutes; `keep` progress reports per node and bin.
pub fn opts(keep: usize) -> StoreOptions {
    StoreOptions {
        offline_after: Duration::from_secs(180),
        progress_keep: keep,
    }
}
