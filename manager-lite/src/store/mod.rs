//! All of the manager's state, in one redb file: nodes, versions, releases,
//! pins, tokens, audit and progress reports. Nothing else in the crate
//! touches redb. The store only persists: what a release change means
//! (supersede, rollback, the states) is [`crate::rollout`]'s policy.
//!
//! This file opens the database: the schema, the table definitions, the
//! errors and the [`Store`] itself. Each table family has its file of
//! `impl Store`: [`nodes`](self::nodes) (with [`node_record`](self::node_record)),
//! `versions` (with `forms`), `releases`, `pins`, `tokens` (and audit), `progress`,
//! `node_secrets`, `deletion`, `fleet` (the metrics view) and `snapshot`
//! (backups); `db` is the redb handle that reopens after an I/O error, and
//! `mirror` the in-memory copy some tables keep.
//!
//! Durability rules:
//! - A new node, a changed node record, a version, a release and a progress
//!   report are each committed with fsync before the call returns, so an
//!   acknowledged request survives kill -9.
//! - `last_seen` is the exception: a keepalive that changes nothing else only
//!   updates memory, and [`Store::flush_last_seen`] writes every pending
//!   `last_seen` in one transaction (the server calls it every few seconds and
//!   at shutdown). A crash loses at most that interval of `last_seen` updates.
//!
//! Values are JSON of the wire types, so a record reads back exactly as the API
//! shows it.

use binproxy_protocol::{ProgressStatus, Release, TokenInfo};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redb::{ReadableTable, TableDefinition};

mod db;
#[cfg(test)]
mod degraded_tests;
mod deletion;
mod fleet;
mod forms;
mod mirror;
mod node_record;
mod node_secrets;
mod nodes;
mod pins;
mod progress;
mod releases;
mod snapshot;
#[cfg(test)]
pub(crate) mod test_support;
mod tokens;
mod versions;

pub use deletion::{Deletion, References};
pub use fleet::FleetSnapshot;
pub use forms::{DeltaFile, FormFile, Forms};
use mirror::Mirror;
pub use node_record::{Interner, NodeRecord, NodeRef};
pub use node_secrets::Enrolling;
use nodes::NodeMap;
pub use nodes::Seen;
pub use releases::ReleaseTable;
pub use snapshot::inspect_copy;
pub use tokens::MAX_AUDIT;
pub use versions::PutVersion;

/// The schema this build writes. A database with a newer one is refused.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// node_id → JSON [`Node`] (its `last_seen` as of the record's last write).
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// node_id → `last_seen` in milliseconds since the epoch, as of the last
/// flush: a flush of a whole fleet writes these small values instead of
/// every node's record. The later of this and the record's time holds.
const LAST_SEEN: TableDefinition<&str, u64> = TableDefinition::new("last_seen");
/// (bin, version, arch or "") → JSON [`Version`].
const VERSIONS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("versions");
/// artifact sha256 → JSON [`Forms`]: its zst form and patches to it.
const FORMS: TableDefinition<&str, &[u8]> = TableDefinition::new("forms");
/// release id → JSON [`Release`].
const RELEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("releases");
/// (bin, report id) → JSON [`ProgressRecord`]; ids grow, so a range reads newest last.
const PROGRESS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("progress");
/// (bin, node_id, report id): the index that bounds history per node and bin.
const PROGRESS_BY_NODE: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("progress_by_node");

/// (release id, node_id) → latest progress status of that node for the release.
const RELEASE_NODES: TableDefinition<(u64, &str), &str> = TableDefinition::new("release_nodes");
/// release id → (bytes downloaded, bytes of full downloads) of the nodes
/// that succeeded, each counted once (`store/progress.rs`).
const RELEASE_BYTES: TableDefinition<u64, (u64, u64)> = TableDefinition::new("release_bytes");
/// (node_id, bin) → pinned version.
const PINS: TableDefinition<(&str, &str), &str> = TableDefinition::new("pins");
/// token name → JSON of a stored token (the secret's sha256, never the secret).
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// node_id → hex sha256 of the node's secret.
const NODE_SECRETS: TableDefinition<&str, &str> = TableDefinition::new("node_secrets");
/// audit id → JSON [`binproxy_protocol::AuditRecord`]; the newest [`MAX_AUDIT`] are kept.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const KEY_NEXT_AUDIT: &str = "next_audit_id";

const KEY_SCHEMA: &str = "schema_version";
const KEY_NEXT_PROGRESS: &str = "next_progress_id";
const KEY_NEXT_RELEASE: &str = "next_release_id";

/// A storage failure, naming the database file.
#[derive(Debug)]
pub enum StoreError {
    /// redb failed; `what` says during which operation.
    Db {
        path: PathBuf,
        what: &'static str,
        source: Box<redb::Error>,
    },
    /// The file was written by a newer manager-lite.
    NewerSchema { path: PathBuf, found: u64 },
    /// A stored value does not parse: the file was damaged or hand-edited.
    Corrupt { path: PathBuf, what: String },
    /// Refused without trying: the database failed a write (a full disk)
    /// and is not writable again yet; `reason` is that failure.
    Unavailable { path: PathBuf, reason: String },
}

impl StoreError {
    /// An I/O failure of the database file (not of a record or a rule):
    /// the kind a reopen may cure.
    fn is_io(&self) -> bool {
        match self {
            Self::Db { source, .. } => matches!(
                **source,
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::DatabaseClosed
                    | redb::Error::DatabaseAlreadyOpen
            ),
            _ => false,
        }
    }

    /// The storage cannot take this now but may later (503, retry):
    /// an I/O failure, or a write refused while the database is degraded.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. }) || self.is_io()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Db { path, what, source } => {
                write!(f, "database {}: {what}: {source}", path.display())
            }
            Self::NewerSchema { path, found } => write!(
                f,
                "database {} has schema version {found}, but this manager-lite knows only up to \
                 {SCHEMA_VERSION}: run a newer manager-lite (or restore a backup)",
                path.display()
            ),
            Self::Corrupt { path, what } => {
                write!(f, "database {}: unreadable record: {what}", path.display())
            }
            Self::Unavailable { path, reason } => write!(
                f,
                "database {} is not writable since an I/O error: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// redb's page cache. Its default, 1 GiB, kept every page a flush of
/// `last_seen` touched: with 100,000 nodes the process grew by the size of
/// the nodes table and never gave it back. Every hot read is served from
/// the in-memory mirrors; the file's pages stay in the OS page cache.
const DB_CACHE_BYTES: usize = 16 << 20;

/// Opens (or creates) the redb file with the store's page cache.
fn open_database(path: &Path) -> std::result::Result<redb::Database, redb::DatabaseError> {
    redb::Database::builder()
        .set_cache_size(DB_CACHE_BYTES)
        .create(path)
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A node not seen for this long is reported offline.
    pub offline_after: Duration,
    /// Progress reports kept per (node, bin); older ones are pruned.
    pub progress_keep: usize,
}

pub struct Store {
    db: db::Db,
    path: PathBuf,
    opts: StoreOptions,
    /// Every node, so a keepalive that changes nothing costs no database
    /// access (see nodes.rs).
    nodes: RwLock<NodeMap>,
    /// The strings node records share ([`node_record::Interner`]).
    symbols: node_record::Interner,
    /// Moves with every change a rollout counts from ([`Store::fleet_changes`]).
    fleet_changes: AtomicU64,
    /// Releases that still target nodes, newest first; refreshed after each
    /// release write, so target lookups do not scan the release history.
    live_releases: RwLock<Arc<Vec<Release>>>,
    /// Serialises the read-modify-write of node records.
    node_writes: Mutex<()>,
    /// Serialises release writes with the refresh of `live_releases`, so the
    /// cache never goes back to an older state.
    release_writes: Mutex<()>,
    /// Latest report per node for each release (mirror of RELEASE_NODES).
    release_reports: Mirror<HashMap<u64, HashMap<String, ProgressStatus>>>,
    /// (node, bin) → version (mirror of PINS).
    pins: Mirror<HashMap<(String, String), String>>,
    /// Secret sha256 (hex) → token (mirror of TOKENS).
    tokens: Mirror<HashMap<String, TokenInfo>>,
    /// Secret sha256 (hex) → node_id (mirror of NODE_SECRETS).
    node_secrets: Mirror<HashMap<String, String>>,
    /// Artifact sha256 → its zst form and patches (mirror of FORMS): read
    /// for every target handed out.
    forms: Mirror<HashMap<String, Forms>>,
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

impl Store {
    /// Opens (or creates) the database at `path`, refusing a newer schema.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let db = db::Db::open(path)?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            opts,
            nodes: RwLock::default(),
            symbols: node_record::Interner::default(),
            fleet_changes: AtomicU64::new(0),
            live_releases: RwLock::new(Arc::new(Vec::new())),
            node_writes: Mutex::new(()),
            release_writes: Mutex::new(()),
            release_reports: Mirror::default(),
            pins: Mirror::default(),
            tokens: Mirror::default(),
            node_secrets: Mirror::default(),
            forms: Mirror::default(),
        };
        store.init_schema()?;
        store.load_nodes()?;
        store.refresh_live_releases()?;
        store.load_release_reports()?;
        store.load_pins()?;
        store.load_tokens()?;
        store.load_node_secrets()?;
        store.load_forms()?;
        Ok(store)
    }

    /// Size of the database file (0 if it cannot be read).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], what: &str) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("{what}: {e}"),
        })
    }

    /// Runs `f` in a write transaction committed with fsync: the one way
    /// in for writes. After an I/O error the database is reopened
    /// ([`db`]); the mirrors in memory change only after a commit.
    fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        self.db.write(what, f)
    }

    /// A read transaction: the one way in for reads.
    fn read(&self, what: &'static str) -> Result<db::Reading> {
        self.db.read(what)
    }

    /// Whether the database is degraded (a write failed on I/O and none
    /// has worked since), and why.
    pub fn condition(&self) -> &crate::degraded::Condition {
        &self.db.condition
    }

    /// Times the database was reopened after an I/O error.
    pub fn reopens(&self) -> u64 {
        self.db.reopens()
    }

    fn init_schema(&self) -> Result<()> {
        self.write("initialising schema", |txn| {
            let mut meta = txn.open_table(META).at(&self.path, "meta")?;
            let found = meta
                .get(KEY_SCHEMA)
                .at(&self.path, "meta")?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found: v,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)
                        .at(&self.path, "meta")?;
                }
            }
            // Create every table, so readers never meet a missing one.
            txn.open_table(NODES).at(&self.path, "nodes")?;
            txn.open_table(LAST_SEEN).at(&self.path, "last_seen")?;
            txn.open_table(VERSIONS).at(&self.path, "versions")?;
            txn.open_table(FORMS).at(&self.path, "forms")?;
            txn.open_table(RELEASES).at(&self.path, "releases")?;
            txn.open_table(PROGRESS).at(&self.path, "progress")?;
            txn.open_table(RELEASE_NODES)
                .at(&self.path, "release nodes")?;
            txn.open_table(PINS).at(&self.path, "pins")?;
            txn.open_table(RELEASE_BYTES)
                .at(&self.path, "release bytes")?;
            txn.open_table(TOKENS).at(&self.path, "tokens")?;
            txn.open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?;
            txn.open_table(AUDIT).at(&self.path, "audit")?;
            txn.open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            Ok(())
        })
    }
}

/// Attaches the database path and the operation to a redb error.
trait Context<T> {
    fn at(self, path: &Path, what: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Context<T> for std::result::Result<T, E> {
    fn at(self, path: &Path, what: &'static str) -> Result<T> {
        self.map_err(|e| StoreError::Db {
            path: path.to_path_buf(),
            what,
            source: Box::new(e.into()),
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string
    // keys, no failing Serialize impls); fall back to null rather than panic.
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}

fn next_id(txn: &redb::WriteTransaction, key: &str) -> std::result::Result<u64, redb::Error> {
    let mut meta = txn.open_table(META)?;
    let id = meta.get(key)?.map_or(1, |v| v.value());
    meta.insert(key, id + 1)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use binproxy_protocol::Node;
    use std::time::{Duration, SystemTime};

    use crate::time::rfc3339;
    use test_support::{opts, TempDir};

    pub(super) fn node(id: &str) -> Node {
        Node {
            node_id: id.into(),
            cpu_arch: "x86_64".into(),
            ..Node::default()
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("schema");
        drop(Store::open(&dir.db(), opts(10)).unwrap());
        {
            let db = redb::Database::create(dir.db()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(KEY_SCHEMA, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&dir.db(), opts(10)).err().unwrap();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer manager-lite"), "{err}");
    }

    #[test]
    fn unchanged_keepalive_writes_nothing_until_flush() {
        let dir = TempDir::new("seen");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store.keepalive(node("n1"), true, t0).unwrap();
        let t1 = t0 + Duration::from_secs(60);
        let seen = store.keepalive(node("n1"), true, t1).unwrap();
        assert_eq!(seen.last_seen, rfc3339(t1));
        assert_eq!(seen.registered_at, rfc3339(t0));
        drop(store);
        // Not flushed: the durable record still has the registration time.
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(store.node("n1").unwrap().last_seen, rfc3339(t0));
        store.keepalive(node("n1"), true, t1).unwrap();
        assert_eq!(store.flush_last_seen().unwrap(), 1);
        assert_eq!(store.flush_last_seen().unwrap(), 0);
        drop(store);
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(store.node("n1").unwrap().last_seen, rfc3339(t1));
    }

    #[test]
    fn keepalive_without_bins_keeps_installed_hashes() {
        let dir = TempDir::new("bins");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let now = SystemTime::now();
        store.keepalive(node("n1"), true, now).unwrap();
        store
            .set_installed("n1", "streamd", &"b".repeat(64))
            .unwrap()
            .unwrap();
        let after = store.keepalive(node("n1"), false, now).unwrap();
        assert_eq!(after.bins["streamd"], "b".repeat(64));
        assert!(store
            .set_installed("ghost", "streamd", &"b".repeat(64))
            .unwrap()
            .is_none());
    }
}
