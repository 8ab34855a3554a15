//! An in-memory copy of a small table, for the lookups that run on every
//! request (pins, tokens, node secrets, the latest report per node of each
//! release): they read memory, never a transaction.
//!
//! A [`Mirror`] is filled from its table when the store opens ([`Mirror::load`])
//! and changed only after the write it mirrors committed
//! ([`Mirror::write_through`], which also holds the mirror's lock across the
//! write, so a check made under it still holds when the write lands). A
//! failed or refused write leaves the mirror as it was.

use redb::{Key, ReadableTable, TableDefinition, Value, WriteTransaction};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Context, Result, Store};

/// The in-memory copy of one table, in whatever map shape its lookups want.
#[derive(Default)]
pub(super) struct Mirror<M>(RwLock<M>);

impl<M: Default> Mirror<M> {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, M> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mirror to change; hold it across the write it follows.
    pub(super) fn lock(&self) -> RwLockWriteGuard<'_, M> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills the mirror from `table` in one read transaction (`loading`
    /// names it in errors, `name` the table); `row` adds one row to the map.
    pub(super) fn load<K: Key + 'static, V: Value + 'static>(
        &self,
        store: &Store,
        table: TableDefinition<K, V>,
        (loading, name): (&'static str, &'static str),
        mut row: impl FnMut(&mut M, K::SelfType<'_>, V::SelfType<'_>) -> Result<()>,
    ) -> Result<()> {
        let txn = store.read(loading)?;
        let t = txn.open_table(table).at(&store.path, name)?;
        let mut map = M::default();
        for entry in t.iter().at(&store.path, name)? {
            let (key, value) = entry.at(&store.path, name)?;
            row(&mut map, key.value(), value.value())?;
        }
        *self.lock() = map;
        Ok(())
    }

    /// Runs `write` in a committed transaction under the mirror's lock, then
    /// `apply` brings the mirror in line with what the write returned.
    pub(super) fn write_through<T>(
        &self,
        store: &Store,
        what: &'static str,
        write: impl FnOnce(&WriteTransaction) -> Result<T>,
        apply: impl FnOnce(&mut M, &T),
    ) -> Result<T> {
        let mut map = self.lock();
        let out = store.write(what, write)?;
        apply(&mut map, &out);
        Ok(out)
    }
}
