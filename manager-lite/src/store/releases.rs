//! Releases as stored: the RELEASES table (release id → JSON [`Release`])
//! and the cache of the releases that may still target nodes
//! ([`Store::live_releases`], read by every keepalive).
//!
//! This file only persists. What a change to a release means (a new
//! release superseding older ones, approval, rollback) is decided by
//! [`crate::rollout`], which makes its changes through
//! [`Store::write_releases`]: one transaction, serialised with the other
//! release writes, after which the cache is refreshed.

use binproxy_protocol::{Release, ReleaseStatus};
use redb::ReadableTable;
use std::sync::{Arc, PoisonError};

use super::{next_id, to_json, Context, Result, Store, KEY_NEXT_RELEASE, RELEASES};

/// The releases table inside one write transaction of [`Store::write_releases`].
pub struct ReleaseTable<'s, 't> {
    store: &'s Store,
    txn: &'t redb::WriteTransaction,
    table: redb::Table<'t, u64, &'static [u8]>,
}

impl ReleaseTable<'_, '_> {
    /// Every release, oldest first.
    pub fn all(&self) -> Result<Vec<Release>> {
        self.store.scan_releases(&self.table)
    }

    pub fn get(&self, id: u64) -> Result<Option<Release>> {
        let found = self.table.get(id).at(&self.store.path, "releases")?;
        found
            .map(|v| self.store.decode::<Release>(v.value(), "release"))
            .transpose()
    }

    /// Writes `release` under its id; `what` names the write in errors.
    pub fn put(&mut self, release: &Release, what: &'static str) -> Result<()> {
        self.table
            .insert(release.id, to_json(release).as_slice())
            .at(&self.store.path, what)?;
        Ok(())
    }

    /// The id of a new release.
    pub fn next_id(&self) -> Result<u64> {
        next_id(self.txn, KEY_NEXT_RELEASE).at(&self.store.path, "release id")
    }
}

impl Store {
    /// Runs `f` on the releases table in one committed transaction,
    /// serialised with every other release write, then refreshes
    /// [`Store::live_releases`] (so the cache never goes back to an older
    /// state). `what` names the write in errors.
    pub fn write_releases<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut ReleaseTable) -> Result<T>,
    ) -> Result<T> {
        let _guard = self
            .release_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let out = self.write(what, |txn| {
            let table = txn.open_table(RELEASES).at(&self.path, "releases")?;
            f(&mut ReleaseTable {
                store: self,
                txn,
                table,
            })
        })?;
        self.refresh_live_releases()?;
        Ok(out)
    }

    /// Every release in `t`, oldest first.
    pub(super) fn scan_releases(
        &self,
        t: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<Vec<Release>> {
        let mut out = Vec::new();
        for row in t.iter().at(&self.path, "releases")? {
            let (_, value) = row.at(&self.path, "releases")?;
            out.push(self.decode(value.value(), "release")?);
        }
        Ok(out)
    }

    pub(super) fn refresh_live_releases(&self) -> Result<()> {
        let live: Vec<Release> = self
            .releases(None)?
            .into_iter()
            .filter(|r| r.status.is_live() || r.status == ReleaseStatus::PendingApproval)
            .collect();
        let live = Arc::new(live);
        *self
            .live_releases
            .write()
            .unwrap_or_else(PoisonError::into_inner) = live;
        Ok(())
    }

    /// Releases that may still target nodes, newest first. Shared, not
    /// copied: every keepalive reads it.
    pub fn live_releases(&self) -> Arc<Vec<Release>> {
        Arc::clone(
            &self
                .live_releases
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Every release, newest first, optionally of one bin.
    pub fn releases(&self, bin: Option<&str>) -> Result<Vec<Release>> {
        let txn = self.read("reading releases")?;
        let t = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let mut out = Vec::new();
        for row in t.iter().at(&self.path, "releases")?.rev() {
            let (_, value) = row.at(&self.path, "releases")?;
            let r: Release = self.decode(value.value(), "release")?;
            if bin.is_none_or(|b| b == r.bin_name) {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn release(&self, id: u64) -> Result<Option<Release>> {
        let txn = self.read("reading releases")?;
        let t = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let hit = t.get(id).at(&self.path, "releases")?;
        hit.map(|v| self.decode(v.value(), "release")).transpose()
    }
}
