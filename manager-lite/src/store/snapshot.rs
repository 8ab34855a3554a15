//! A consistent copy of the database for backups: every table, read in one
//! read transaction (the database at one commit), written into a new redb
//! file in one write transaction. Writers carry on meanwhile: redb keeps
//! the pages of that commit for the reader.
//!
//! A table this module does not know is an error, not a silent gap: a new
//! table must be added to [`Store::snapshot`] to be backed up.

use redb::{Database, Key, ReadTransaction, TableDefinition, TableHandle, Value, WriteTransaction};
use std::collections::BTreeSet;
use std::path::Path;

use super::{
    Context, Forms, Result, Store, StoreError, AUDIT, FORMS, KEY_SCHEMA, LAST_SEEN, META, NODES,
    NODE_SECRETS, PINS, PROGRESS, PROGRESS_BY_NODE, RELEASES, RELEASE_BYTES, RELEASE_NODES, TOKENS,
    VERSIONS,
};
use binproxy_protocol::Version;

/// redb's cache for the copy, in bytes.
const COPY_CACHE: usize = 16 << 20;

/// Copies every row of one table.
fn copy<K: Key + 'static, V: Value + 'static>(
    def: TableDefinition<K, V>,
    from: &ReadTransaction,
    to: &WriteTransaction,
    path: &Path,
) -> Result<()> {
    let source = from.open_table(def).at(path, "snapshot: reading a table")?;
    let mut dest = to.open_table(def).at(path, "snapshot: writing a table")?;
    for row in redb::ReadableTable::iter(&source).at(path, "snapshot: reading a table")? {
        let (k, v) = row.at(path, "snapshot: reading a row")?;
        dest.insert(k.value(), v.value())
            .at(path, "snapshot: writing a row")?;
    }
    Ok(())
}

impl Store {
    /// Writes the database as of one transaction into a new file `dest`
    /// (which must not exist) and fsyncs it; returns the artifact hashes
    /// that copy refers to.
    pub fn snapshot(&self, dest: &Path) -> Result<BTreeSet<String>> {
        let txn = self.read("snapshot: reading the database")?;
        let known = [
            META.name(),
            NODES.name(),
            LAST_SEEN.name(),
            VERSIONS.name(),
            FORMS.name(),
            RELEASES.name(),
            PROGRESS.name(),
            PROGRESS_BY_NODE.name(),
            RELEASE_NODES.name(),
            RELEASE_BYTES.name(),
            PINS.name(),
            TOKENS.name(),
            NODE_SECRETS.name(),
            AUDIT.name(),
        ];
        for table in txn
            .list_tables()
            .at(&self.path, "snapshot: listing tables")?
        {
            if !known.contains(&table.name()) {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    what: format!(
                        "table {} is not known to the backup: this build cannot copy it",
                        table.name()
                    ),
                });
            }
        }
        // A small cache: redb writes pages out as it goes rather than
        // holding a whole database's worth in memory until the commit.
        let out = redb::Builder::new()
            .set_cache_size(COPY_CACHE)
            .create(dest)
            .at(dest, "snapshot: creating the copy")?;
        let write = out.begin_write().at(dest, "snapshot: writing the copy")?;
        copy(META, &txn, &write, dest)?;
        copy(NODES, &txn, &write, dest)?;
        copy(LAST_SEEN, &txn, &write, dest)?;
        copy(VERSIONS, &txn, &write, dest)?;
        copy(FORMS, &txn, &write, dest)?;
        copy(RELEASES, &txn, &write, dest)?;
        copy(PROGRESS, &txn, &write, dest)?;
        copy(PROGRESS_BY_NODE, &txn, &write, dest)?;
        copy(RELEASE_NODES, &txn, &write, dest)?;
        copy(RELEASE_BYTES, &txn, &write, dest)?;
        copy(PINS, &txn, &write, dest)?;
        copy(TOKENS, &txn, &write, dest)?;
        copy(NODE_SECRETS, &txn, &write, dest)?;
        copy(AUDIT, &txn, &write, dest)?;
        write.commit().at(dest, "snapshot: committing the copy")?;
        drop(out);
        hashes_in(&txn, &self.path)
    }
}

/// The schema version of the database file at `path` (a restored copy,
/// not in use) and the artifact hashes it refers to.
pub fn inspect_copy(path: &Path) -> Result<(u64, BTreeSet<String>)> {
    let db = Database::open(path).at(path, "opening the restored database")?;
    let txn = redb::ReadableDatabase::begin_read(&db).at(path, "reading it")?;
    let meta = txn.open_table(META).at(path, "meta")?;
    let schema = meta
        .get(KEY_SCHEMA)
        .at(path, "meta")?
        .map_or(0, |v| v.value());
    Ok((schema, hashes_in(&txn, path)?))
}

/// The artifact files a database at one commit refers to: its versions'
/// and their forms'.
fn hashes_in(txn: &ReadTransaction, path: &Path) -> Result<BTreeSet<String>> {
    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &Path, what: &str) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("{what}: {e}"),
        })
    }
    let mut hashes = BTreeSet::new();
    let versions = txn.open_table(VERSIONS).at(path, "versions")?;
    for row in redb::ReadableTable::iter(&versions).at(path, "versions")? {
        let (_, value) = row.at(path, "versions")?;
        hashes.insert(decode::<Version>(value.value(), path, "version")?.sha256sum);
    }
    // A database from before forms has no such table.
    let Ok(forms) = txn.open_table(FORMS) else {
        return Ok(hashes);
    };
    for row in redb::ReadableTable::iter(&forms).at(path, "forms")? {
        let (_, value) = row.at(path, "forms")?;
        let f: Forms = decode(value.value(), path, "forms")?;
        hashes.extend(f.files().map(str::to_owned));
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{opts, TempDir};
    use binproxy_protocol::{Node, Role, TokenInfo};
    use std::time::SystemTime;

    #[test]
    fn a_snapshot_holds_every_table_and_refuses_an_unknown_one() {
        let dir = TempDir::new("copy");
        let store = Store::open(&dir.db(), opts(10)).unwrap();
        let node = Node {
            node_id: "n1".into(),
            ..Node::default()
        };
        store.keepalive(node, true, SystemTime::now()).unwrap();
        assert_eq!(
            store.enroll_node("n1", &"b".repeat(64)).unwrap(),
            crate::store::Enrolling::Enrolled
        );
        let info = TokenInfo {
            name: "ci".into(),
            role: Role::Viewer,
            created_at: String::new(),
            created_by: "admin".into(),
        };
        assert!(store.add_token(&info, &"c".repeat(64)).unwrap());
        store.set_pin("n1", "app", Some("1.0")).unwrap();
        let copy = dir.path().join("copy.redb");
        assert!(store.snapshot(&copy).unwrap().is_empty());
        let (schema, hashes) = inspect_copy(&copy).unwrap();
        assert_eq!((schema, hashes.len()), (crate::store::SCHEMA_VERSION, 0));
        let back = Store::open(&copy, opts(10)).unwrap();
        assert!(back.node("n1").is_some());
        assert_eq!(back.node_of_secret(&"b".repeat(64)).as_deref(), Some("n1"));
        assert_eq!(back.token_by_hash(&"c".repeat(64)).unwrap().name, "ci");
        assert_eq!(back.pin("n1", "app").as_deref(), Some("1.0"));

        let extra: TableDefinition<&str, u64> = TableDefinition::new("extra");
        store
            .write("adding a table", |txn| {
                txn.open_table(extra).at(&store.path, "extra")?;
                Ok(())
            })
            .unwrap();
        let e = store.snapshot(&dir.path().join("other.redb")).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        drop((store, back));
    }
}
