//! All of the manager's state, in one redb file: nodes, versions, releases and
//! progress reports. Nothing else in the crate touches redb.
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

use binproxy_protocol::{
    AuditRecord, NewRelease, Progress, ProgressRecord, ProgressStatus, Release, ReleaseEvent,
    ReleaseStatus, TokenInfo, Version,
};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::time::rfc3339;

mod deletion;
mod node_record;
mod nodes;
pub use deletion::{Deletion, References};
mod node_secrets;
pub use node_secrets::Enrolling;
mod db;
#[cfg(test)]
mod degraded_tests;
mod snapshot;
#[cfg(test)]
mod test_support;

pub use node_record::{Interner, NodeRecord, NodeRef};
use nodes::NodeMap;
pub use nodes::Seen;
pub use snapshot::inspect_copy;

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
/// release id → JSON [`Release`].
const RELEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("releases");
/// (bin, report id) → JSON [`ProgressRecord`]; ids grow, so a range reads newest last.
const PROGRESS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("progress");
/// (bin, node_id, report id): the index that bounds history per node and bin.
const PROGRESS_BY_NODE: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("progress_by_node");

/// (release id, node_id) → latest progress status of that node for the release.
const RELEASE_NODES: TableDefinition<(u64, &str), &str> = TableDefinition::new("release_nodes");
/// (node_id, bin) → pinned version.
const PINS: TableDefinition<(&str, &str), &str> = TableDefinition::new("pins");
/// token name → JSON [`StoredToken`] (the secret's sha256, never the secret).
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// node_id → hex sha256 of the node's secret.
const NODE_SECRETS: TableDefinition<&str, &str> = TableDefinition::new("node_secrets");
/// audit id → JSON [`AuditRecord`]; the newest [`MAX_AUDIT`] are kept.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

const KEY_NEXT_AUDIT: &str = "next_audit_id";
/// Audit records kept; older ones are pruned.
pub const MAX_AUDIT: u64 = 100_000;

/// A named admin token as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredToken {
    info: TokenInfo,
    /// Hex sha256 of the secret.
    sha256: String,
}

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

/// What [`Store::put_version`] found.
#[derive(Debug)]
pub enum PutVersion {
    /// Stored now.
    Created(Version),
    /// The same bin, version and arch was already stored with these bytes.
    Existing(Version),
    /// The same bin, version and arch is stored with other bytes.
    Conflict(Version),
}

/// Why [`Store::create_release`] refused.
#[derive(Debug)]
pub enum ReleaseError {
    /// No artifact of that version was uploaded.
    UnknownVersion,
    /// No release with that id.
    NotFound,
    /// Not allowed in the release's current state; says why.
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for ReleaseError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// What an operation on a release did.
pub enum Change {
    /// Nothing: no write.
    Nothing,
    /// Bookkeeping (counts): written without a history entry.
    Quiet,
    /// A change of state: written with this history entry (action, detail).
    Event(String, Option<String>),
}

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
    release_reports: RwLock<HashMap<u64, HashMap<String, ProgressStatus>>>,
    /// (node, bin) → version (mirror of PINS).
    pins: RwLock<HashMap<(String, String), String>>,
    /// Secret sha256 (hex) → token (mirror of TOKENS).
    tokens: RwLock<HashMap<String, TokenInfo>>,
    /// Secret sha256 (hex) → node_id (mirror of NODE_SECRETS).
    node_secrets: RwLock<HashMap<String, String>>,
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
            release_reports: RwLock::new(HashMap::new()),
            pins: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
            node_secrets: RwLock::new(HashMap::new()),
        };
        store.init_schema()?;
        store.load_nodes()?;
        store.refresh_live_releases()?;
        store.load_release_reports()?;
        store.load_pins()?;
        store.load_tokens()?;
        store.load_node_secrets()?;
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
            txn.open_table(RELEASES).at(&self.path, "releases")?;
            txn.open_table(PROGRESS).at(&self.path, "progress")?;
            txn.open_table(RELEASE_NODES)
                .at(&self.path, "release nodes")?;
            txn.open_table(PINS).at(&self.path, "pins")?;
            txn.open_table(TOKENS).at(&self.path, "tokens")?;
            txn.open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?;
            txn.open_table(AUDIT).at(&self.path, "audit")?;
            txn.open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            Ok(())
        })
    }

    // ---- nodes: see nodes.rs ----

    // ---- versions ----

    /// Stores a version unless the same (bin, version, arch) exists.
    pub fn put_version(&self, v: &Version) -> Result<PutVersion> {
        let arch = v.arch.clone().unwrap_or_default();
        self.write("storing version", |txn| {
            let mut t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
            let key = (v.bin_name.as_str(), v.version.as_str(), arch.as_str());
            let existing = t
                .get(key)
                .at(&self.path, "versions")?
                .map(|found| self.decode::<Version>(found.value(), "version"))
                .transpose()?;
            if let Some(found) = existing {
                return Ok(if found.sha256sum == v.sha256sum {
                    PutVersion::Existing(found)
                } else {
                    PutVersion::Conflict(found)
                });
            }
            t.insert(key, to_json(&v).as_slice())
                .at(&self.path, "storing version")?;
            Ok(PutVersion::Created(v.clone()))
        })
    }

    /// Stores `text` as the signature of the artifact of `bin` `version`
    /// uploaded for `arch` (`None`: the arch-less one), replacing any earlier
    /// one. `None` when there is no such artifact.
    pub fn set_signature(
        &self,
        bin: &str,
        version: &str,
        arch: Option<&str>,
        text: &str,
    ) -> Result<Option<Version>> {
        let key = (bin, version, arch.unwrap_or(""));
        self.write("storing signature", |txn| {
            let mut t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
            let found = t
                .get(key)
                .at(&self.path, "versions")?
                .map(|v| self.decode::<Version>(v.value(), "version"))
                .transpose()?;
            let Some(mut v) = found else {
                return Ok(None);
            };
            v.signature = Some(text.to_owned());
            t.insert(key, to_json(&v).as_slice())
                .at(&self.path, "storing signature")?;
            Ok(Some(v))
        })
    }

    /// Versions of `bin` (every arch), in key order; `version` narrows to one.
    pub fn versions(&self, bin: &str, version: Option<&str>) -> Result<Vec<Version>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let start = (bin, version.unwrap_or(""), "");
        let mut out = Vec::new();
        for row in t.range(start..).at(&self.path, "versions")? {
            let (key, value) = row.at(&self.path, "versions")?;
            let (b, v, _) = key.value();
            if b != bin || version.is_some_and(|want| want != v) {
                break;
            }
            out.push(self.decode(value.value(), "version")?);
        }
        Ok(out)
    }

    /// Every bin with its versions, by bin name.
    pub fn bins(&self) -> Result<BTreeMap<String, Vec<Version>>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let mut out: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for row in t.iter().at(&self.path, "versions")? {
            let (_, value) = row.at(&self.path, "versions")?;
            let v: Version = self.decode(value.value(), "version")?;
            out.entry(v.bin_name.clone()).or_default().push(v);
        }
        Ok(out)
    }

    /// The artifact of `bin` `version` for `arch`: the one uploaded for that
    /// arch, else the one uploaded without an arch.
    pub fn artifact(&self, bin: &str, version: &str, arch: &str) -> Result<Option<Version>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        // An artifact uploaded for this arch wins over one uploaded for all.
        let keys = if arch.is_empty() {
            vec![""]
        } else {
            vec![arch, ""]
        };
        for a in keys {
            if let Some(hit) = t.get((bin, version, a)).at(&self.path, "versions")? {
                return self.decode(hit.value(), "version").map(Some);
            }
        }
        Ok(None)
    }

    /// The hashes of every stored version's artifact.
    pub fn artifact_hashes(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .bins()?
            .into_values()
            .flatten()
            .map(|v| v.sha256sum)
            .collect())
    }

    // ---- releases ----

    /// Creates a release. Unless it waits for approval it starts at once and
    /// supersedes the older live releases of the bin it covers.
    pub fn create_release(
        &self,
        new: &NewRelease,
        actor: &str,
        now: SystemTime,
    ) -> Result<Release, ReleaseError> {
        if self.versions(&new.bin_name, Some(&new.version))?.is_empty() {
            return Err(ReleaseError::UnknownVersion);
        }
        let _guard = self
            .release_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let release = self.write("creating release", |txn| {
            self.insert_release(txn, new, actor, now)
        })?;
        self.refresh_live_releases()?;
        Ok(release)
    }

    fn insert_release(
        &self,
        txn: &redb::WriteTransaction,
        new: &NewRelease,
        actor: &str,
        now: SystemTime,
    ) -> Result<Release> {
        let at = rfc3339(now);
        let id = next_id(txn, KEY_NEXT_RELEASE).at(&self.path, "release id")?;
        let mut t = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let baseline_version = self
            .scan_releases(&t)?
            .into_iter()
            .rev()
            .find(|r| r.bin_name == new.bin_name && r.status.is_live())
            .map(|r| r.version);
        let waves = crate::rollout::plan(new);
        let pending = new.require_approval;
        let mut release = Release {
            id,
            bin_name: new.bin_name.clone(),
            version: new.version.clone(),
            note: new.note.clone(),
            status: if pending {
                ReleaseStatus::PendingApproval
            } else {
                ReleaseStatus::RollingOut
            },
            percent: if pending { 0 } else { waves[0].percent },
            wave: 0,
            selector: new.selector.clone(),
            waves,
            success_threshold: Some(
                new.success_threshold
                    .clone()
                    .unwrap_or_else(|| crate::rollout::DEFAULT_SUCCESS.to_owned()),
            ),
            max_failures: new.max_failures.clone(),
            require_approval: new.require_approval,
            windows: new.windows.clone(),
            baseline_version,
            paused_reason: None,
            wave_started_at: (!pending).then(|| crate::time::rfc3339_millis(now)),
            counts: binproxy_protocol::ReleaseCounts::default(),
            failure_baseline: 0,
            created_at: at.clone(),
            created_by: actor.to_owned(),
            updated_at: at.clone(),
            history: Vec::new(),
        };
        push_event(&mut release, &at, actor, "created", new.note.clone());
        self.supersede(&mut t, &release, actor, now)?;
        t.insert(id, to_json(&release).as_slice())
            .at(&self.path, "creating release")?;
        Ok(release)
    }

    /// Once `by` is live at 100%, marks as superseded the older live
    /// releases of the same bin that it covers (every node they could reach,
    /// `by` reaches too). Before that, an older release still gives its
    /// target to the nodes `by` has not reached. While `by`'s maintenance
    /// windows are closed the older releases stay live (their nodes keep
    /// their targets); `by` supersedes them at its first change while open.
    fn supersede(
        &self,
        t: &mut redb::Table<u64, &[u8]>,
        by: &Release,
        actor: &str,
        now: SystemTime,
    ) -> Result<()> {
        let open = matches!(crate::targets::closed_until(by, now), Ok(None));
        if by.percent < 100 || !by.status.is_live() || !open {
            return Ok(());
        }
        let at = &rfc3339(now);
        for mut old in self.scan_releases(t)? {
            let covered = by.selector.is_empty() || by.selector == old.selector;
            if old.id >= by.id || old.bin_name != by.bin_name || !old.status.is_live() || !covered {
                continue;
            }
            old.status = ReleaseStatus::Superseded;
            push_event(
                &mut old,
                at,
                actor,
                "superseded",
                Some(format!("by release {}", by.id)),
            );
            t.insert(old.id, to_json(&old).as_slice())
                .at(&self.path, "superseding release")?;
        }
        Ok(())
    }

    fn scan_releases(&self, t: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<Release>> {
        let mut out = Vec::new();
        for row in t.iter().at(&self.path, "releases")? {
            let (_, value) = row.at(&self.path, "releases")?;
            out.push(self.decode(value.value(), "release")?);
        }
        Ok(out)
    }

    /// Changes one release in a transaction: `op` sees the stored record and
    /// says what it changed, or why the change is not allowed. Approval
    /// starts the release (and supersedes).
    pub fn update_release(
        &self,
        id: u64,
        actor: &str,
        now: SystemTime,
        op: impl FnOnce(&mut Release) -> Result<Change, String>,
    ) -> Result<Release, ReleaseError> {
        let _guard = self
            .release_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = rfc3339(now);
        let outcome = self.write("updating release", |txn| {
            let mut t = txn.open_table(RELEASES).at(&self.path, "releases")?;
            let found = t
                .get(id)
                .at(&self.path, "releases")?
                .map(|v| self.decode::<Release>(v.value(), "release"));
            let Some(mut release) = found.transpose()? else {
                return Ok(Err(ReleaseError::NotFound));
            };
            let before = release.status;
            match op(&mut release) {
                Err(why) => return Ok(Err(ReleaseError::Conflict(why))),
                Ok(Change::Nothing) => return Ok(Ok(release)),
                Ok(Change::Quiet) => {}
                Ok(Change::Event(action, detail)) => {
                    push_event(&mut release, &at, actor, &action, detail);
                }
            }
            if before == ReleaseStatus::PendingApproval
                && release.status == ReleaseStatus::RollingOut
            {
                release.wave_started_at = Some(crate::time::rfc3339_millis(now));
            }
            self.supersede(&mut t, &release, actor, now)?;
            t.insert(id, to_json(&release).as_slice())
                .at(&self.path, "updating release")?;
            Ok(Ok(release))
        })?;
        self.refresh_live_releases()?;
        outcome
    }

    /// Rolls a release back: it becomes `rolled_back`, and a new release of
    /// its baseline version, for the same selector, takes its place.
    pub fn rollback_release(
        &self,
        id: u64,
        waves: Vec<binproxy_protocol::Wave>,
        actor: &str,
        now: SystemTime,
    ) -> Result<Release, ReleaseError> {
        let _guard = self
            .release_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = rfc3339(now);
        let outcome = self.write("rolling back release", |txn| {
            let mut old = {
                let t = txn.open_table(RELEASES).at(&self.path, "releases")?;
                let found = t
                    .get(id)
                    .at(&self.path, "releases")?
                    .map(|v| self.decode::<Release>(v.value(), "release"));
                match found.transpose()? {
                    Some(r) => r,
                    None => return Ok(Err(ReleaseError::NotFound)),
                }
            };
            if !old.status.is_live() {
                return Ok(Err(ReleaseError::Conflict(format!(
                    "release {id} is {}: only a live release can be rolled back",
                    old.status.as_str()
                ))));
            }
            let Some(baseline) = old.baseline_version.clone() else {
                return Ok(Err(ReleaseError::Conflict(format!(
                    "release {id} has no earlier version of {} to roll back to",
                    old.bin_name
                ))));
            };
            old.status = ReleaseStatus::RolledBack;
            push_event(
                &mut old,
                &at,
                actor,
                "rolled_back",
                Some(format!("back to {baseline}")),
            );
            txn.open_table(RELEASES)
                .at(&self.path, "releases")?
                .insert(id, to_json(&old).as_slice())
                .at(&self.path, "rolling back release")?;
            let new = NewRelease {
                bin_name: old.bin_name.clone(),
                version: baseline,
                note: Some(format!("rollback of release {id}")),
                selector: old.selector.clone(),
                waves,
                ..NewRelease::default()
            };
            self.insert_release(txn, &new, actor, now).map(Ok)
        })?;
        self.refresh_live_releases()?;
        outcome
    }

    fn refresh_live_releases(&self) -> Result<()> {
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

    fn load_release_reports(&self) -> Result<()> {
        let txn = self.read("loading release reports")?;
        let t = txn
            .open_table(RELEASE_NODES)
            .at(&self.path, "release nodes")?;
        let mut map: HashMap<u64, HashMap<String, ProgressStatus>> = HashMap::new();
        for row in t.iter().at(&self.path, "release nodes")? {
            let (key, value) = row.at(&self.path, "release nodes")?;
            let (id, node) = key.value();
            if let Some(status) = status_of(value.value()) {
                map.entry(id).or_default().insert(node.to_owned(), status);
            }
        }
        *self
            .release_reports
            .write()
            .unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Latest report per node for a release.
    pub fn release_reports(&self, id: u64) -> HashMap<String, ProgressStatus> {
        self.release_reports
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `node` has reported progress for release `id` (durable: the
    /// report was committed before it was counted).
    pub fn has_reported(&self, id: u64, node: &str) -> bool {
        self.release_reports
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// The artifact hashes of a release's version, every arch.
    pub fn release_hashes(&self, r: &Release) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .versions(&r.bin_name, Some(&r.version))?
            .into_iter()
            .map(|v| v.sha256sum)
            .collect())
    }

    // ---- pins ----

    fn load_pins(&self) -> Result<()> {
        let txn = self.read("loading pins")?;
        let t = txn.open_table(PINS).at(&self.path, "pins")?;
        let mut map = HashMap::new();
        for row in t.iter().at(&self.path, "pins")? {
            let (key, value) = row.at(&self.path, "pins")?;
            let (node, bin) = key.value();
            map.insert((node.to_owned(), bin.to_owned()), value.value().to_owned());
        }
        *self.pins.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Pins a node's bin to a version (`Some`) or removes the pin (`None`);
    /// returns whether a pin was there before.
    pub fn set_pin(&self, node: &str, bin: &str, version: Option<&str>) -> Result<bool> {
        let mut pins = self.pins.write().unwrap_or_else(PoisonError::into_inner);
        let existed = self.write("storing pin", |txn| {
            let mut t = txn.open_table(PINS).at(&self.path, "pins")?;
            let existed = match version {
                Some(v) => t
                    .insert((node, bin), v)
                    .at(&self.path, "storing pin")?
                    .is_some(),
                None => t
                    .remove((node, bin))
                    .at(&self.path, "removing pin")?
                    .is_some(),
            };
            Ok(existed)
        })?;
        let key = (node.to_owned(), bin.to_owned());
        match version {
            Some(v) => pins.insert(key, v.to_owned()),
            None => pins.remove(&key),
        };
        Ok(existed)
    }

    pub fn pin(&self, node: &str, bin: &str) -> Option<String> {
        self.pins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(node.to_owned(), bin.to_owned()))
            .cloned()
    }

    /// Bins pinned on a node.
    pub fn pinned_bins(&self, node: &str) -> Vec<String> {
        self.pins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Removes a node: its record, pins and secret, in one transaction (its
    /// progress reports stay with the releases). `false` when unknown. A
    /// node that is still alive registers again with its next keepalive.
    pub fn delete_node(&self, node_id: &str) -> Result<bool> {
        // Held across the write: a flush of `last_seen` in between would
        // write the node's LAST_SEEN row back.
        let _guard = self
            .node_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut pins = self.pins.write().unwrap_or_else(PoisonError::into_inner);
        let mut secrets = self
            .node_secrets
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let pinned: Vec<String> = pins
            .keys()
            .filter(|(n, _)| n == node_id)
            .map(|(_, b)| b.clone())
            .collect();
        let (existed, secret) = self.write("deleting node", |txn| {
            let existed = txn
                .open_table(NODES)
                .at(&self.path, "nodes")?
                .remove(node_id)
                .at(&self.path, "deleting node")?
                .is_some();
            txn.open_table(LAST_SEEN)
                .at(&self.path, "last_seen")?
                .remove(node_id)
                .at(&self.path, "deleting node")?;
            let mut t = txn.open_table(PINS).at(&self.path, "pins")?;
            for bin in &pinned {
                t.remove((node_id, bin.as_str()))
                    .at(&self.path, "deleting pins")?;
            }
            let secret = txn
                .open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?
                .remove(node_id)
                .at(&self.path, "deleting node secret")?
                .map(|v| v.value().to_owned());
            Ok((existed, secret))
        })?;
        for bin in pinned {
            pins.remove(&(node_id.to_owned(), bin));
        }
        if let Some(sha) = &secret {
            secrets.remove(sha);
        }
        // One mirror lock at a time past this point, as everywhere else.
        drop((pins, secrets));
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_id);
        self.fleet_changed();
        Ok(existed || secret.is_some())
    }

    // ---- admin tokens and audit ----

    fn load_tokens(&self) -> Result<()> {
        let txn = self.read("loading tokens")?;
        let t = txn.open_table(TOKENS).at(&self.path, "tokens")?;
        let mut map = HashMap::new();
        for row in t.iter().at(&self.path, "tokens")? {
            let (_, value) = row.at(&self.path, "tokens")?;
            let stored: StoredToken = self.decode(value.value(), "token")?;
            map.insert(stored.sha256, stored.info);
        }
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Stores a token by the sha256 of its secret; `false` if the name is taken.
    pub fn add_token(&self, info: &TokenInfo, sha256: &str) -> Result<bool> {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        let stored = StoredToken {
            info: info.clone(),
            sha256: sha256.to_owned(),
        };
        let added = self.write("storing token", |txn| {
            let mut t = txn.open_table(TOKENS).at(&self.path, "tokens")?;
            if t.get(info.name.as_str())
                .at(&self.path, "tokens")?
                .is_some()
            {
                return Ok(false);
            }
            t.insert(info.name.as_str(), to_json(&stored).as_slice())
                .at(&self.path, "storing token")?;
            Ok(true)
        })?;
        if added {
            tokens.insert(stored.sha256, stored.info);
        }
        Ok(added)
    }

    /// Revokes a token at once; `None` if there is none of that name.
    pub fn remove_token(&self, name: &str) -> Result<Option<TokenInfo>> {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        let removed = self.write("revoking token", |txn| {
            let mut t = txn.open_table(TOKENS).at(&self.path, "tokens")?;
            let old = t.remove(name).at(&self.path, "revoking token")?;
            old.map(|v| self.decode::<StoredToken>(v.value(), "token"))
                .transpose()
        })?;
        if let Some(r) = &removed {
            tokens.remove(&r.sha256);
        }
        Ok(removed.map(|r| r.info))
    }

    /// Every named token, by name.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut all: Vec<TokenInfo> = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The token whose secret hashes to `sha256`.
    pub fn token_by_hash(&self, sha256: &str) -> Option<TokenInfo> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sha256)
            .cloned()
    }

    /// Records an admin write durably; prunes past [`MAX_AUDIT`].
    pub fn add_audit(&self, mut record: AuditRecord) -> Result<()> {
        self.write("storing audit record", |txn| {
            record.id = next_id(txn, KEY_NEXT_AUDIT).at(&self.path, "audit id")?;
            let mut t = txn.open_table(AUDIT).at(&self.path, "audit")?;
            t.insert(record.id, to_json(&record).as_slice())
                .at(&self.path, "storing audit record")?;
            if record.id > MAX_AUDIT {
                t.remove(record.id - MAX_AUDIT)
                    .at(&self.path, "pruning audit")?;
            }
            Ok(())
        })
    }

    /// Audit records, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let txn = self.read("reading audit")?;
        let t = txn.open_table(AUDIT).at(&self.path, "audit")?;
        let mut out = Vec::new();
        for row in t.iter().at(&self.path, "audit")?.rev().take(limit) {
            let (_, value) = row.at(&self.path, "audit")?;
            out.push(self.decode(value.value(), "audit record")?);
        }
        Ok(out)
    }

    // ---- progress ----

    /// Stores a progress report durably and prunes that node's history for
    /// the bin to the newest `progress_keep`.
    pub fn add_progress(&self, bin: &str, p: &Progress, now: SystemTime) -> Result<ProgressRecord> {
        let keep = self.opts.progress_keep.max(1);
        // The live releases this report is about: those whose artifacts include its hash.
        let mut releases = Vec::new();
        for r in self
            .live_releases()
            .iter()
            .filter(|r| r.bin_name == bin && r.status.is_live())
        {
            if self.release_hashes(r)?.contains(&p.target_hash) {
                releases.push(r.id);
            }
        }
        let record = self.write("storing progress", |txn| {
            let mut per_release = txn
                .open_table(RELEASE_NODES)
                .at(&self.path, "release nodes")?;
            for &id in &releases {
                per_release
                    .insert((id, p.node_id.as_str()), p.status.as_str())
                    .at(&self.path, "storing progress")?;
            }
            let id = next_id(txn, KEY_NEXT_PROGRESS).at(&self.path, "progress id")?;
            let record = ProgressRecord {
                id,
                node_id: p.node_id.clone(),
                bin_name: bin.to_owned(),
                target_hash: p.target_hash.clone(),
                from_hash: p.from_hash.clone(),
                status: p.status,
                processing_time_ms: p.processing_time_ms,
                message: p.message.clone(),
                received_at: rfc3339(now),
            };
            let mut reports = txn.open_table(PROGRESS).at(&self.path, "progress")?;
            let mut index = txn
                .open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            reports
                .insert((bin, id), to_json(&record).as_slice())
                .at(&self.path, "storing progress")?;
            let node = p.node_id.as_str();
            index
                .insert((bin, node, id), ())
                .at(&self.path, "storing progress")?;
            let ids: Vec<u64> = index
                .range((bin, node, 0)..=(bin, node, u64::MAX))
                .at(&self.path, "pruning progress")?
                .map(|row| row.map(|(k, _)| k.value().2))
                .collect::<std::result::Result<_, _>>()
                .at(&self.path, "pruning progress")?;
            for &old in ids.iter().take(ids.len().saturating_sub(keep)) {
                index
                    .remove((bin, node, old))
                    .at(&self.path, "pruning progress")?;
                reports
                    .remove((bin, old))
                    .at(&self.path, "pruning progress")?;
            }
            Ok(record)
        })?;
        let mut map = self
            .release_reports
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for id in releases {
            map.entry(id)
                .or_default()
                .insert(p.node_id.clone(), p.status);
        }
        drop(map);
        self.fleet_changed();
        Ok(record)
    }

    /// Progress reports of `bin`, newest first, optionally of one node.
    pub fn progress(
        &self,
        bin: &str,
        node_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProgressRecord>> {
        let txn = self.read("reading progress")?;
        let reports = txn.open_table(PROGRESS).at(&self.path, "progress")?;
        let mut out = Vec::new();
        if let Some(node) = node_id {
            let index = txn
                .open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            let rows = index
                .range((bin, node, 0)..=(bin, node, u64::MAX))
                .at(&self.path, "progress")?;
            for row in rows.rev().take(limit) {
                let (key, _) = row.at(&self.path, "progress")?;
                let id = key.value().2;
                let hit = reports.get((bin, id)).at(&self.path, "progress")?;
                if let Some(v) = hit {
                    out.push(self.decode(v.value(), "progress")?);
                }
            }
        } else {
            let rows = reports
                .range((bin, 0)..=(bin, u64::MAX))
                .at(&self.path, "progress")?;
            for row in rows.rev().take(limit) {
                let (_, v) = row.at(&self.path, "progress")?;
                out.push(self.decode(v.value(), "progress")?);
            }
        }
        Ok(out)
    }

    /// Counts rows of the progress table (for tests of the retention bound).
    pub fn progress_rows(&self) -> Result<u64> {
        let txn = self.read("reading progress")?;
        let t = txn.open_table(PROGRESS).at(&self.path, "progress")?;
        t.len().at(&self.path, "progress")
    }

    /// What `/metrics` shows of the fleet: the versions and releases read
    /// in one transaction, the nodes counted from memory in one chunked
    /// pass (no copy of the fleet).
    pub fn fleet_snapshot(&self) -> Result<FleetSnapshot> {
        let txn = self.read("reading the fleet for metrics")?;
        let vt = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let mut versions = HashMap::new();
        for row in vt.iter().at(&self.path, "versions")? {
            let (_, value) = row.at(&self.path, "versions")?;
            let v: Version = self.decode(value.value(), "version")?;
            versions.insert((v.bin_name, v.sha256sum), v.version);
        }
        let rt = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let mut releases = Vec::new();
        for row in rt.iter().at(&self.path, "releases")?.rev() {
            let (_, value) = row.at(&self.path, "releases")?;
            releases.push(self.decode(value.value(), "release")?);
        }
        Ok(self.count_fleet(&versions, releases))
    }

    /// The fleet from memory alone, for when the database cannot be read
    /// (degraded storage): live releases, and every hash `unknown`.
    pub fn fleet_in_memory(&self) -> FleetSnapshot {
        self.count_fleet(&HashMap::new(), self.live_releases().to_vec())
    }

    /// Counts the nodes in one chunked pass; `versions`: (bin, sha) → version.
    fn count_fleet(
        &self,
        versions: &HashMap<(String, String), String>,
        releases: Vec<Release>,
    ) -> FleetSnapshot {
        let mut fleet = FleetSnapshot {
            online: 0,
            offline: 0,
            running: BTreeMap::new(),
            releases,
        };
        let mut key = (String::new(), String::new());
        self.scan_nodes(|n| {
            *if n.online {
                &mut fleet.online
            } else {
                &mut fleet.offline
            } += 1;
            for (bin, sha) in n.node.bins() {
                bin.clone_into(&mut key.0);
                sha.clone_into(&mut key.1);
                let version = match versions.get(&key) {
                    _ if sha.is_empty() => "none",
                    Some(v) => v.as_str(),
                    None => "unknown",
                };
                count_running(&mut fleet.running, bin, version);
            }
        });
        fleet
    }
}

/// The fleet as `/metrics` sees it at one scrape.
pub struct FleetSnapshot {
    /// Nodes seen within `--offline-after`, and the others.
    pub online: u64,
    pub offline: u64,
    /// bin → version it runs → nodes; the version is `none` for a missing
    /// file, `unknown` for a hash no upload has.
    pub running: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every release, newest first.
    pub releases: Vec<Release>,
}

/// One more node running `bin` `version`; allocates only for a new pair.
fn count_running(running: &mut BTreeMap<String, BTreeMap<String, u64>>, bin: &str, version: &str) {
    if !running.contains_key(bin) {
        running.insert(bin.to_owned(), BTreeMap::new());
    }
    let Some(versions) = running.get_mut(bin) else {
        return;
    };
    match versions.get_mut(version) {
        Some(n) => *n += 1,
        None => {
            versions.insert(version.to_owned(), 1);
        }
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

fn push_event(release: &mut Release, at: &str, actor: &str, action: &str, detail: Option<String>) {
    at.clone_into(&mut release.updated_at);
    release.history.push(ReleaseEvent {
        at: at.to_owned(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    });
}

fn status_of(text: &str) -> Option<ProgressStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
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
    use binproxy_protocol::{Node, ProgressStatus};

    use test_support::{opts, TempDir};

    pub(super) fn node(id: &str) -> Node {
        Node {
            node_id: id.into(),
            cpu_arch: "x86_64".into(),
            ..Node::default()
        }
    }

    fn progress(node: &str, n: u64) -> Progress {
        Progress {
            node_id: node.into(),
            target_hash: "a".repeat(64),
            status: ProgressStatus::Success,
            processing_time_ms: n,
            from_hash: None,
            message: None,
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
    fn progress_history_is_bounded_per_node_and_bin() {
        let dir = TempDir::new("prune");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let now = SystemTime::now();
        for i in 0..10 {
            store
                .add_progress("streamd", &progress("n1", i), now)
                .unwrap();
            store
                .add_progress("streamd", &progress("n2", i), now)
                .unwrap();
        }
        store
            .add_progress("other", &progress("n1", 99), now)
            .unwrap();
        let n1 = store.progress("streamd", Some("n1"), 100).unwrap();
        assert_eq!(
            n1.iter().map(|r| r.processing_time_ms).collect::<Vec<_>>(),
            [9, 8, 7]
        );
        assert_eq!(store.progress("streamd", None, 100).unwrap().len(), 6);
        assert_eq!(store.progress("streamd", None, 2).unwrap().len(), 2);
        assert_eq!(store.progress_rows().unwrap(), 7);
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

    #[test]
    fn versions_and_release_supersede() {
        let dir = TempDir::new("rel");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let version = |v: &str, arch: Option<&str>, sha: &str| Version {
            bin_name: "streamd".into(),
            version: v.into(),
            arch: arch.map(Into::into),
            sha256sum: sha.repeat(64),
            size: 1,
            created_at: String::new(),
            signature: None,
        };
        assert!(matches!(
            store.put_version(&version("1", None, "a")).unwrap(),
            PutVersion::Created(_)
        ));
        assert!(matches!(
            store.put_version(&version("1", None, "a")).unwrap(),
            PutVersion::Existing(_)
        ));
        assert!(matches!(
            store.put_version(&version("1", None, "b")).unwrap(),
            PutVersion::Conflict(_)
        ));
        store
            .put_version(&version("2", Some("aarch64"), "c"))
            .unwrap();
        store.put_version(&version("2", None, "d")).unwrap();
        assert_eq!(
            store
                .artifact("streamd", "2", "aarch64")
                .unwrap()
                .unwrap()
                .sha256sum,
            "c".repeat(64)
        );
        assert_eq!(
            store
                .artifact("streamd", "2", "x86_64")
                .unwrap()
                .unwrap()
                .sha256sum,
            "d".repeat(64)
        );
        assert!(store.artifact("streamd", "3", "x86_64").unwrap().is_none());

        let new = |v: &str| NewRelease {
            bin_name: "streamd".into(),
            version: v.into(),
            note: None,
            ..NewRelease::default()
        };
        let now = SystemTime::now();
        assert!(matches!(
            store.create_release(&new("9"), "t", now),
            Err(ReleaseError::UnknownVersion)
        ));
        let r1 = store.create_release(&new("1"), "t", now).unwrap();
        let r2 = store.create_release(&new("2"), "t", now).unwrap();
        assert_eq!(
            store
                .live_releases()
                .iter()
                .find(|r| r.bin_name == "streamd" && r.status.is_live())
                .unwrap()
                .id,
            r2.id
        );
        let old = store.release(r1.id).unwrap().unwrap();
        assert_eq!(old.status, ReleaseStatus::Superseded);
        assert_eq!(
            old.history.last().unwrap().detail.as_deref(),
            Some("by release 2")
        );
        drop(store);
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(
            store
                .live_releases()
                .iter()
                .find(|r| r.bin_name == "streamd" && r.status.is_live())
                .unwrap()
                .id,
            r2.id
        );
        assert_eq!(store.releases(Some("streamd")).unwrap().len(), 2);
    }

    #[test]
    fn a_signature_goes_to_the_artifact_of_exactly_its_arch() {
        let dir = TempDir::new("sig");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let version = |arch: Option<&str>, sha: &str| Version {
            bin_name: "streamd".into(),
            version: "2".into(),
            arch: arch.map(Into::into),
            sha256sum: sha.repeat(64),
            size: 1,
            created_at: String::new(),
            signature: None,
        };
        store.put_version(&version(Some("aarch64"), "c")).unwrap();
        store.put_version(&version(None, "d")).unwrap();

        // A signature goes to the artifact of exactly that arch.
        assert!(store
            .set_signature("streamd", "2", Some("x86_64"), "sig")
            .unwrap()
            .is_none());
        assert!(store
            .set_signature("streamd", "3", None, "sig")
            .unwrap()
            .is_none());
        let signed = store
            .set_signature("streamd", "2", Some("aarch64"), "sig-1")
            .unwrap()
            .unwrap();
        assert_eq!(signed.signature.as_deref(), Some("sig-1"));
        store
            .set_signature("streamd", "2", Some("aarch64"), "sig-2")
            .unwrap()
            .unwrap();
        store
            .set_signature("streamd", "2", None, "sig-any")
            .unwrap();
        let sig = |arch| {
            store
                .artifact("streamd", "2", arch)
                .unwrap()
                .unwrap()
                .signature
        };
        assert_eq!(sig("aarch64").as_deref(), Some("sig-2"));
        assert_eq!(sig("x86_64").as_deref(), Some("sig-any"));
        // The same bytes uploaded again keep the signature.
        assert!(matches!(
            store.put_version(&version(Some("aarch64"), "c")).unwrap(),
            PutVersion::Existing(v) if v.signature.as_deref() == Some("sig-2")
        ));
        drop(store);
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(
            store
                .artifact("streamd", "2", "aarch64")
                .unwrap()
                .unwrap()
                .signature
                .as_deref(),
            Some("sig-2")
        );
    }
}
