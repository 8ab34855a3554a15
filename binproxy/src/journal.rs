//! Step 2 of a cycle: what an interrupted earlier cycle left half-done.
//!
//! Before each irreversible step of an update the agent writes (and fsyncs)
//! `state_dir/journal/<bin>.json` saying which step it is about to take or
//! has taken. The next run reads it first and finishes the update or undoes
//! it ([`crate::cycle`] does the work), so a kill -9 between any two lines of
//! a swap or a rollback converges on the next run.

use binproxy_protocol::Target;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::state::Provenance;

/// Where an update stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The new file is staged and verified, the old one kept; the rename over
    /// the live path may or may not have happened.
    Swapping,
    /// The new file is live; restart and health check not yet passed.
    Swapped,
    /// The new version proved healthy; only the bookkeeping is left.
    Healthy,
    /// The new version failed; putting the previous one back.
    RollingBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub bin: String,
    pub phase: Phase,
    pub target_sha: String,
    pub target_version: String,
    /// The staged file (for `Swapping`).
    pub staged: PathBuf,
    /// The hash on disk before the update; `None` if there was no file.
    pub previous_sha: Option<String>,
    /// Where the previous version is kept.
    pub kept: Option<PathBuf>,
    /// Unix milliseconds when the update began, for processingTime.
    pub started_ms: u64,
    /// Why it is rolling back; `manual` marks an operator's rollback.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub manual: bool,
    /// The signed timestamp of the new version, when it was signed.
    #[serde(default)]
    pub signed_timestamp: Option<u64>,
    /// Where the new version's target and bytes came from (an update's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Provenance>,
}

impl Entry {
    /// The target this entry was working towards (as far as the journal
    /// knows it: no size, URL or signature).
    pub fn target(&self) -> Target {
        Target {
            bin_name: self.bin.clone(),
            version: self.target_version.clone(),
            sha256sum: self.target_sha.clone(),
            ..Target::default()
        }
    }

    /// How the update's bytes came, when this agent recorded it.
    pub fn delivery(&self) -> Option<&Delivery> {
        self.from.as_ref().and_then(|p| p.delivery.as_ref())
    }
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

fn path(state_dir: &Path, bin: &str) -> PathBuf {
    dir(state_dir).join(format!("{bin}.json"))
}

/// Records `entry` durably before the step it announces.
pub fn write(state_dir: &Path, entry: &Entry) -> Result<()> {
    fsutil::ensure_dir(&dir(state_dir))?;
    fsutil::write_json(&path(state_dir, &entry.bin), entry)
}

/// Moves an entry to `phase`, durably.
pub fn advance(state_dir: &Path, entry: &mut Entry, phase: Phase) -> Result<()> {
    entry.phase = phase;
    write(state_dir, entry)
}

pub fn read(state_dir: &Path, bin: &str) -> Result<Option<Entry>> {
    fsutil::read_json(&path(state_dir, bin))
}

/// The update is over: forget it.
pub fn clear(state_dir: &Path, bin: &str) -> Result<()> {
    let p = path(state_dir, bin);
    match fs::remove_file(&p) {
        Ok(()) => fsutil::sync_dir(&dir(state_dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, "remove journal")(e)),
    }
}

/// Every unfinished entry, whatever bin it names.
pub fn pending(state_dir: &Path) -> Result<Vec<Entry>> {
    let d = dir(state_dir);
    let listing = match fs::read_dir(&d) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(d, "list journal")(e)),
    };
    let mut out = Vec::new();
    for item in listing {
        let item = item.map_err(Error::io(&d, "list journal"))?;
        let p = item.path();
        if p.extension().is_some_and(|e| e == "json") {
            if let Some(entry) = fsutil::read_json::<Entry>(&p)? {
                out.push(entry);
            }
        }
    }
    out.sort_by(|a, b| a.bin.cmp(&b.bin));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bin: &str) -> Entry {
        Entry {
            bin: bin.into(),
            phase: Phase::Swapping,
            target_sha: "a".repeat(64),
            target_version: "2".into(),
            staged: PathBuf::from("/x/.staged"),
            previous_sha: Some("b".repeat(64)),
            kept: Some(PathBuf::from("/s/kept/b")),
            started_ms: 1,
            reason: None,
            manual: false,
            signed_timestamp: None,
            from: None,
        }
    }

    #[test]
    fn write_advance_read_clear() {
        let d = std::env::temp_dir().join(format!("bp-journal-{}", std::process::id()));
        assert!(pending(&d).unwrap().is_empty());
        let mut e = entry("streamd");
        write(&d, &e).unwrap();
        write(&d, &entry("api")).unwrap();
        advance(&d, &mut e, Phase::Swapped).unwrap();
        assert_eq!(read(&d, "streamd").unwrap().unwrap().phase, Phase::Swapped);
        let all = pending(&d).unwrap();
        assert_eq!(
            all.iter().map(|e| e.bin.as_str()).collect::<Vec<_>>(),
            ["api", "streamd"]
        );
        clear(&d, "streamd").unwrap();
        clear(&d, "streamd").unwrap();
        assert!(read(&d, "streamd").unwrap().is_none());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_journal_is_moved_aside_not_fatal() {
        let d = std::env::temp_dir().join(format!("bp-journal-torn-{}", std::process::id()));
        fs::create_dir_all(dir(&d)).unwrap();
        fs::write(path(&d, "streamd"), b"{\"bin\": \"str").unwrap();
        assert!(read(&d, "streamd").unwrap().is_none());
        assert!(dir(&d).join("streamd.corrupt").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
