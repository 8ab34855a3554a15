//! The on-disk side of `mirror sync`: the tree in DIR, written so that a
//! reader (nginx, `aws s3 sync`, rclone) never sees half a file or a bins
//! file naming a missing artifact, and a run killed at any point leaves
//! nothing the next run cannot finish.
//!
//! Every file is written under a `.mirror-tmp-` name in its final
//! directory, fsync'd, renamed, and the directory fsync'd. Artifacts are
//! streamed in with their size and sha256 checked on the way; one already
//! there with its size is kept (its name is its hash: it is not read
//! again). `DIR/.mirror-sync/` holds the lock (one sync at a time per DIR)
//! and `state.json`: the last generation and when each artifact the
//! manager no longer stores was first seen missing, so that it is removed
//! only after the grace period. Only names this command writes are ever
//! removed: `<64 hex>` and `<64 hex>.minisig` under `artifacts/`,
//! `<bin>.json` under `bins/`, and its own temp files.

use binproxy_protocol::mirror::{MirrorBin, MirrorIndex, INDEX_FILE};
use binproxy_protocol::{check_bin_name, hex};
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::mirror_plan::Artifact;
use super::settings::shown;
use super::ClientError;
use crate::artifacts::sync_dir;
use crate::time::{parse_rfc3339, rfc3339};

/// This command's own directory inside DIR: the lock and the state.
pub const STATE_DIR: &str = ".mirror-sync";
/// Names of files being written; any found at the start is a killed run's.
pub const TMP_PREFIX: &str = ".mirror-tmp-";
const ARTIFACTS: &str = "artifacts";
const BINS: &str = "bins";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// What this command remembers between runs (`.mirror-sync/state.json`).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The last generation written to `index.json`, should that file be lost.
    #[serde(default)]
    generation: u64,
    /// sha256 → RFC 3339: when an artifact on disk was first seen no longer
    /// stored on the manager.
    #[serde(default)]
    missing: BTreeMap<String, String>,
}

/// What one run changed in the tree.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub artifacts_copied: u64,
    pub bytes_copied: u64,
    pub artifacts_removed: u64,
    pub signatures_written: u64,
    pub signatures_removed: u64,
    pub bins_written: u64,
    pub bins_removed: u64,
    /// Artifacts no longer stored on the manager, kept until the grace period is over.
    pub waiting: u64,
}

impl Changes {
    /// Whether a file of the tree was written or removed.
    fn any(&self) -> bool {
        self.artifacts_copied
            + self.artifacts_removed
            + self.signatures_written
            + self.signatures_removed
            + self.bins_written
            + self.bins_removed
            > 0
    }
}

/// The tree's generation after a run, and whether the run changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub generation: u64,
    pub changed: bool,
    pub changes: Changes,
}

/// DIR, locked for this run.
pub struct Tree {
    dir: PathBuf,
    /// Held while alive; the kernel drops the lock however the process ends.
    _lock: File,
    state: State,
    state_changed: bool,
    pub changes: Changes,
}

fn failed(what: &str, path: &Path, e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Failed(format!("{what} {}: {e}", shown(path)))
}

impl Tree {
    /// Creates DIR if missing (not its parent), takes the lock, removes the
    /// temp files a killed run left and reads the state. Writes nothing of
    /// the tree itself.
    pub fn open(dir: &Path) -> Result<Tree, ClientError> {
        let config = |why: &str| ClientError::Config(format!("--to {}: {why}", shown(dir)));
        match fs::create_dir(dir) {
            Ok(()) => {
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
                let parent = parent.unwrap_or(Path::new("."));
                sync_dir(parent).map_err(|e| failed("syncing", parent, &e))?;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(config("not a directory"))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(config("its parent directory does not exist"))
            }
            Err(e) => return Err(failed("--to: cannot create the directory", dir, &e)),
        }
        let own = dir.join(STATE_DIR);
        fs::create_dir_all(&own).map_err(|e| failed("creating", &own, &e))?;
        let lock_path = own.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| failed("opening the lock file", &lock_path, &e))?;
        if let Err(e) = lock.try_lock_exclusive() {
            let held = e.kind() == ErrorKind::WouldBlock
                || e.raw_os_error() == fs2::lock_contended_error().raw_os_error();
            return Err(if held {
                ClientError::Failed(format!(
                    "another mirror sync holds {}; this one did nothing",
                    shown(&lock_path)
                ))
            } else {
                failed("locking", &lock_path, &e)
            });
        }
        for sub in [dir.to_path_buf(), dir.join(ARTIFACTS), dir.join(BINS), own] {
            remove_temp_files(&sub)?;
        }
        let state_path = dir.join(STATE_DIR).join(STATE_FILE);
        // A state file that does not parse is forgotten: the grace periods
        // start again, which only keeps files longer.
        let state = read_optional(&state_path)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(Tree {
            dir: dir.to_path_buf(),
            _lock: lock,
            state,
            state_changed: false,
            changes: Changes::default(),
        })
    }

    /// Creates `artifacts/` and `bins/`, before the first file goes in.
    pub fn prepare(&self) -> Result<(), ClientError> {
        let mut created = false;
        for sub in [ARTIFACTS, BINS] {
            let path = self.dir.join(sub);
            match fs::create_dir(&path) {
                Ok(()) => created = true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(failed("creating", &path, &e)),
            }
        }
        if created {
            sync_dir(&self.dir).map_err(|e| failed("syncing", &self.dir, &e))?;
        }
        Ok(())
    }

    fn artifact_path(&self, name: &str) -> PathBuf {
        self.dir.join(ARTIFACTS).join(name)
    }

    /// Whether `artifacts/<sha>` is there with its size (not read: its
    /// name is its hash, and only a checked file is ever given it).
    pub fn has_artifact(&self, sha: &str, size: u64) -> bool {
        fs::metadata(self.artifact_path(sha)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Streams `body` into `artifacts/<sha>`: refused, and nothing left
    /// behind, unless it is exactly `size` bytes whose sha256 is `sha`.
    /// `source` (a URL) is named in errors.
    pub fn write_artifact(
        &mut self,
        sha: &str,
        size: u64,
        body: &mut dyn Read,
        source: &str,
    ) -> Result<(), ClientError> {
        let dir = self.dir.join(ARTIFACTS);
        let tmp = dir.join(format!("{TMP_PREFIX}{sha}"));
        let mut file = create_temp(&tmp)?;
        let partial = Partial(Some(tmp.clone()));
        let refused = |why: String| {
            ClientError::Failed(format!(
                "artifact {sha} from {source}: {why}; refused, nothing written"
            ))
        };
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(refused(format!(
                        "the download failed after {got} bytes: {e}"
                    )))
                }
            };
            got += n as u64;
            if got > size {
                return Err(refused(format!(
                    "more than the {size} bytes its version has"
                )));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| failed("writing", &tmp, &e))?;
        }
        if got != size {
            return Err(refused(format!("{got} bytes, its version has {size}")));
        }
        let actual = hex(&hasher.finalize());
        if actual != sha {
            return Err(refused(format!("its bytes hash to {actual}")));
        }
        file.sync_all().map_err(|e| failed("syncing", &tmp, &e))?;
        let path = dir.join(sha);
        fs::rename(&tmp, &path).map_err(|e| failed("renaming to", &path, &e))?;
        partial.disarm();
        sync_dir(&dir).map_err(|e| failed("syncing", &dir, &e))?;
        self.changes.artifacts_copied += 1;
        self.changes.bytes_copied += size;
        Ok(())
    }

    /// `artifacts/<sha>.minisig`: written when `signature` is new or
    /// changed, removed when it is gone.
    pub fn sync_signature(
        &mut self,
        sha: &str,
        signature: Option<&str>,
    ) -> Result<(), ClientError> {
        let name = format!("{sha}.minisig");
        let path = self.artifact_path(&name);
        let current = read_optional(&path)?;
        match (signature, current) {
            (Some(want), Some(have)) if want.as_bytes() == have.as_slice() => {}
            (Some(want), _) => {
                write_atomic(&self.dir.join(ARTIFACTS), &name, want.as_bytes())?;
                self.changes.signatures_written += 1;
            }
            (None, Some(_)) => {
                remove(&path)?;
                self.changes.signatures_removed += 1;
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// `bins/<bin>.json`, written only when it says something new (its
    /// `generated_at` aside).
    pub fn sync_bin(&mut self, bin: &MirrorBin) -> Result<(), ClientError> {
        let name = format!("{}.json", bin.bin_name);
        let path = self.dir.join(BINS).join(&name);
        let current: Option<MirrorBin> =
            read_optional(&path)?.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if let Some(mut current) = current {
            current.generated_at.clone_from(&bin.generated_at);
            if &current == bin {
                return Ok(());
            }
        }
        write_atomic(&self.dir.join(BINS), &name, &to_json(bin)?)?;
        self.changes.bins_written += 1;
        Ok(())
    }

    /// Removes at once the bins files of bins not in `keep`.
    pub fn remove_stale_bins(&mut self, keep: &BTreeSet<&str>) -> Result<(), ClientError> {
        let dir = self.dir.join(BINS);
        for name in list(&dir)? {
            let Some(bin) = name.strip_suffix(".json") else {
                continue;
            };
            if check_bin_name(bin).is_ok() && !keep.contains(bin) {
                remove(&dir.join(&name))?;
                self.changes.bins_removed += 1;
            }
        }
        Ok(())
    }

    /// Artifacts (and signatures) on disk that are not in `keep`: each is
    /// removed once it has been missing from the manager for `grace`.
    pub fn expire_artifacts(
        &mut self,
        keep: &BTreeMap<String, Artifact>,
        grace: Duration,
        now: SystemTime,
    ) -> Result<(), ClientError> {
        let mut stale: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for name in list(&self.dir.join(ARTIFACTS))? {
            let (sha, is_signature) = match name.strip_suffix(".minisig") {
                Some(sha) => (sha, true),
                None => (name.as_str(), false),
            };
            if is_sha(sha) && !keep.contains_key(sha) {
                let entry = stale.entry(sha.to_owned()).or_default();
                if is_signature {
                    entry.1 = true;
                } else {
                    entry.0 = true;
                }
            }
        }
        let before = self.state.missing.len();
        self.state.missing.retain(|sha, _| stale.contains_key(sha));
        self.state_changed |= self.state.missing.len() != before;
        for (sha, (artifact, signature)) in stale {
            let seen = self.state.missing.get(&sha).and_then(|t| parse_rfc3339(t));
            let since = seen.unwrap_or_else(|| {
                self.state.missing.insert(sha.clone(), rfc3339(now));
                self.state_changed = true;
                now
            });
            if now.duration_since(since).unwrap_or_default() < grace {
                self.changes.waiting += 1;
                continue;
            }
            // The signature first: a reader never finds one without its artifact.
            if signature {
                remove(&self.artifact_path(&format!("{sha}.minisig")))?;
                self.changes.signatures_removed += 1;
            }
            if artifact {
                remove(&self.artifact_path(&sha))?;
                self.changes.artifacts_removed += 1;
            }
            self.state.missing.remove(&sha);
            self.state_changed = true;
        }
        Ok(())
    }

    /// Writes `index.json` last, if anything in the tree changed (or it is
    /// missing, unreadable or lists other bins), with the next generation;
    /// then saves the state. Gives back the generation the tree is at.
    pub fn finish(mut self, bins: Vec<String>, generated_at: &str) -> Result<Outcome, ClientError> {
        let path = self.dir.join(INDEX_FILE);
        let index: Option<MirrorIndex> =
            read_optional(&path)?.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let previous = index.as_ref().map_or(0, |i| i.generation);
        let changed = self.changes.any() || index.as_ref().is_none_or(|i| i.bins != bins);
        let generation = if changed {
            let generation = previous.max(self.state.generation) + 1;
            let index = MirrorIndex {
                generation,
                generated_at: generated_at.to_owned(),
                bins,
            };
            write_atomic(&self.dir, INDEX_FILE, &to_json(&index)?)?;
            generation
        } else {
            previous
        };
        if self.state.generation != generation {
            self.state.generation = generation;
            self.state_changed = true;
        }
        if self.state_changed {
            let bytes = to_json(&self.state)?;
            write_atomic(&self.dir.join(STATE_DIR), STATE_FILE, &bytes)?;
        }
        Ok(Outcome {
            generation,
            changed,
            changes: self.changes,
        })
    }
}

/// A sha256 as this command names files: 64 lower-case hex digits.
fn is_sha(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Pretty JSON and a newline, as the files are served.
fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ClientError::Failed(format!("encoding a mirror file: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The temp file, removed unless renamed.
struct Partial(Option<PathBuf>);

impl Partial {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Creates `tmp` anew (a leftover of the same name is removed first).
fn create_temp(tmp: &Path) -> Result<File, ClientError> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(failed("removing", tmp, &e)),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| failed("creating", tmp, &e))
}

/// Writes `dir/name` whole or not at all: temp file, fsync, rename, fsync dir.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ClientError> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let mut file = create_temp(&tmp)?;
    let partial = Partial(Some(tmp.clone()));
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| failed("writing", &tmp, &e))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(|e| failed("renaming to", &path, &e))?;
    partial.disarm();
    sync_dir(dir).map_err(|e| failed("syncing", dir, &e))
}

/// The file's bytes, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ClientError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed("reading", path, &e)),
    }
}

/// Removes a file (gone already is fine) and syncs its directory.
fn remove(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(failed("removing", path, &e)),
        _ => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(|e| failed("syncing", dir, &e))
        }
    }
}

/// The file names in `dir` (none if it does not exist), sorted.
fn list(dir: &Path) -> Result<Vec<String>, ClientError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed("listing", dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed("listing", dir, &e))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Removes the temp files a killed run left in `dir`.
fn remove_temp_files(dir: &Path) -> Result<(), ClientError> {
    for name in list(dir)? {
        if name.starts_with(TMP_PREFIX) {
            remove(&dir.join(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "mirror_tree_tests.rs"]
mod tests;
