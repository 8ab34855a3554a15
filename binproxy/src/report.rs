//! Step 11 of an update: telling the manager, without ever losing a report
//! or letting reporting block an update.
//!
//! Each report is first written to `state_dir/outbox/` (fsync'd), then sent;
//! a report the manager acknowledged is deleted. Reports that could not be
//! sent stay queued, oldest first, and go out at the start of a later cycle.
//! A failed report never changes what is installed (a status report that
//! failed must not roll back a good update).

use binproxy_protocol::{Installed, Progress};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::manager::Manager;

/// Oldest reports are dropped past this many queued.
const MAX_QUEUED: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Progress { bin: String, body: Progress },
    Installed { bin: String, body: Installed },
}

pub struct Outbox {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Outbox {
    pub fn new(state_dir: &Path) -> Outbox {
        Outbox {
            dir: state_dir.join("outbox"),
            seq: AtomicU64::new(0),
        }
    }

    /// Queues a report durably, then tries to send the queue.
    pub fn send(&self, manager: &Manager, report: &Report) -> Result<()> {
        self.push(report)?;
        self.flush(manager);
        Ok(())
    }

    /// Queues a report durably without trying to send it: the manager is
    /// known to be down, and a later run delivers it.
    pub fn queue(&self, report: &Report) -> Result<()> {
        self.push(report)
    }

    fn push(&self, report: &Report) -> Result<()> {
        fsutil::ensure_dir(&self.dir)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        fsutil::write_json(&self.dir.join(format!("{nanos:024}-{n:06}.json")), report)?;
        self.trim()
    }

    fn queued(&self) -> Result<Vec<PathBuf>> {
        let listing = match fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, "list outbox")(e)),
        };
        let mut files: Vec<PathBuf> = listing
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// How many reports wait to be sent.
    pub fn len(&self) -> usize {
        self.queued().map_or(0, |q| q.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn trim(&self) -> Result<()> {
        let files = self.queued()?;
        for old in files.iter().take(files.len().saturating_sub(MAX_QUEUED)) {
            log::warn!(
                "outbox over {MAX_QUEUED} reports: dropping the oldest, {}",
                old.display()
            );
            fs::remove_file(old).map_err(Error::io(old, "remove"))?;
        }
        Ok(())
    }

    /// Sends queued reports in order until one cannot be delivered; returns
    /// how many remain.
    pub fn flush(&self, manager: &Manager) -> usize {
        let Ok(files) = self.queued() else {
            return self.len();
        };
        let total = files.len();
        for (i, file) in files.iter().enumerate() {
            let Ok(Some(report)) = fsutil::read_json::<Report>(file) else {
                let _ = fs::remove_file(file);
                continue;
            };
            let sent = match &report {
                Report::Progress { bin, body } => manager.progress(bin, body),
                Report::Installed { bin, body } => manager.installed(bin, body),
            };
            match sent {
                Ok(()) => {}
                // Not (or no longer) enrolled: the report waits for a secret.
                Err(e @ Error::Refused { status: 401, .. }) => {
                    log::info!("report queued for a later run ({} waiting): {e}", total - i);
                    return total - i;
                }
                Err(Error::Refused {
                    url,
                    status,
                    message,
                }) => {
                    // The manager will never take this one: keeping it would block the rest.
                    log::warn!(
                        "manager refused a queued report ({url}: {status} {message}); dropped"
                    );
                }
                Err(e) => {
                    log::info!("report queued for a later run ({} waiting): {e}", total - i);
                    return total - i;
                }
            }
            let _ = fs::remove_file(file);
        }
        0
    }
}
