//! The redb handle behind [`super::Store`], reopened after an I/O error.
//!
//! After an I/O error (a full disk) redb refuses every later transaction
//! until the database is closed and opened again, which recovers it to its
//! last committed transaction. So every transaction here takes a shared
//! reference to the current [`Database`] and keeps it while it runs; a
//! failed write takes the handle out, waits until the transactions still
//! running on it are done (redb's file lock is held until the last of them
//! drops it), and opens the file again. While the part stays degraded (the
//! open or the next write fails again) at most one write a second tries it
//! ([`crate::degraded`]); the others are refused at once with the reason.
//! A committed transaction is never lost by this: redb recovers to it.

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Context, Result, StoreError};
use crate::degraded::Condition;

/// How long a reopen waits for the transactions still running on the old
/// handle before it gives up this round (a later write tries again).
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How long a transaction waits for a reopen in progress.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

struct Slot {
    db: Option<Arc<Database>>,
    /// Bumped at every reopen, so two failures of one handle reopen it once.
    generation: u64,
    reopening: bool,
}

pub(super) struct Db {
    path: PathBuf,
    slot: Mutex<Slot>,
    reopened: Condvar,
    reopens: AtomicU64,
    pub(super) condition: Arc<Condition>,
}

/// A read transaction, holding the handle it was begun on.
pub(super) struct Reading {
    // Dropped before the handle: declared first.
    txn: ReadTransaction,
    _db: Arc<Database>,
}

impl Deref for Reading {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

impl Db {
    pub(super) fn open(path: &Path) -> Result<Db> {
        let db = super::open_database(path).at(path, "opening")?;
        Ok(Db {
            path: path.to_path_buf(),
            slot: Mutex::new(Slot {
                db: Some(Arc::new(db)),
                generation: 0,
                reopening: false,
            }),
            reopened: Condvar::new(),
            reopens: AtomicU64::new(0),
            condition: Arc::new(Condition::new("database")),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Times the database was reopened after an I/O error.
    pub(super) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Runs `f` in a write transaction committed with fsync. While the
    /// database is degraded, refused at once unless a retry is due.
    pub(super) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        self.condition
            .may_try()
            .map_err(|refused| self.unavailable(refused.reason))?;
        let (db, generation) = self.handle()?;
        let outcome = (|| -> Result<T> {
            let txn = db.begin_write().at(&self.path, what)?;
            let out = f(&txn)?;
            txn.commit().at(&self.path, what)?;
            Ok(out)
        })();
        drop(db);
        match outcome {
            Ok(out) => {
                self.condition.worked();
                Ok(out)
            }
            Err(e) => {
                if e.is_io() {
                    self.condition.failed(e.to_string());
                    self.reopen(generation);
                }
                Err(e)
            }
        }
    }

    pub(super) fn read(&self, what: &'static str) -> Result<Reading> {
        let (db, generation) = self.handle()?;
        match db.begin_read().at(&self.path, what) {
            Ok(txn) => Ok(Reading { txn, _db: db }),
            Err(e) => {
                drop(db);
                if e.is_io() {
                    self.condition.failed(e.to_string());
                    self.reopen(generation);
                }
                Err(e)
            }
        }
    }

    fn unavailable(&self, reason: String) -> StoreError {
        StoreError::Unavailable {
            path: self.path.clone(),
            reason,
        }
    }

    /// The current handle and its generation; waits for a reopen in
    /// progress, and tries one (at the retry pace) when there is none.
    fn handle(&self) -> Result<(Arc<Database>, u64)> {
        let deadline = Instant::now() + REOPEN_WAIT;
        let mut tried = false;
        let mut slot = self.slot();
        loop {
            if slot.reopening {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.unavailable("the database is being reopened".into()));
                }
                slot = self
                    .reopened
                    .wait_timeout(slot, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            if let Some(db) = &slot.db {
                return Ok((Arc::clone(db), slot.generation));
            }
            let reason = || {
                self.condition
                    .problem()
                    .map_or_else(|| "the database is closed".to_owned(), |p| p.reason)
            };
            if tried {
                return Err(self.unavailable(reason()));
            }
            let generation = slot.generation;
            drop(slot);
            self.condition
                .may_try()
                .map_err(|refused| self.unavailable(refused.reason))?;
            self.reopen(generation);
            tried = true;
            slot = self.slot();
        }
    }

    /// Closes the handle of `generation` and opens the file again, unless
    /// another thread did already.
    fn reopen(&self, generation: u64) {
        let old = {
            let mut slot = self.slot();
            if slot.generation != generation || slot.reopening {
                return;
            }
            slot.reopening = true;
            slot.db.take()
        };
        let opened = match Self::drain(old) {
            Err(old) => {
                // Transactions still run on it: keep it, try again later.
                let mut slot = self.slot();
                slot.db = Some(old);
                slot.reopening = false;
                self.reopened.notify_all();
                log::error!(
                    "database {}: not reopened: transactions still running after {}s",
                    self.path.display(),
                    DRAIN_WAIT.as_secs()
                );
                return;
            }
            Ok(()) => {
                super::open_database(&self.path).at(&self.path, "reopening after an I/O error")
            }
        };
        let mut slot = self.slot();
        slot.reopening = false;
        slot.generation += 1;
        match opened {
            Ok(db) => {
                slot.db = Some(Arc::new(db));
                self.reopens.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "database {} reopened after an I/O error (recovered to its last commit)",
                    self.path.display()
                );
            }
            Err(e) => {
                slot.db = None;
                self.condition.failed(e.to_string());
            }
        }
        self.reopened.notify_all();
    }

    /// Drops the old handle once no transaction holds it (so redb closes
    /// the file and releases its lock); gives it back if that takes too long.
    fn drain(old: Option<Arc<Database>>) -> std::result::Result<(), Arc<Database>> {
        let Some(mut old) = old else {
            return Ok(());
        };
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    return Ok(());
                }
                Err(still) if Instant::now() >= deadline => return Err(still),
                Err(still) => {
                    old = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
