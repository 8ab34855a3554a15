//! `GET /api/v1/backup`: the backup archive, made while the manager serves.
//!
//! The database is copied from one read transaction into
//! `DATA/.backup-<pid>-<n>/manager.redb`, and every artifact that copy refers
//! to is hard-linked beside it (no bytes copied; a file deleted from
//! `artifacts/` meanwhile stays readable through its link). The answer then
//! streams the tar of that directory, chunk by chunk, with its exact
//! `Content-Length`: memory stays bounded whatever the size. The directory
//! is removed when the answer is done or abandoned, and at startup if a
//! crash left one ([`remove_leftovers`]). One backup runs at a time.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{hash_file, FileEntry, Manifest, DATABASE, FORMAT, MANIFEST, VERSION};
use crate::api::app::App;
use crate::api::reply::{ApiError, Body, Reply};

/// Prefix of the snapshot directories in the data directory.
pub const SNAPSHOT_PREFIX: &str = ".backup-";
/// Tries when an artifact vanishes between the copy and its link.
const ATTEMPTS: usize = 3;

static RUNNING: AtomicBool = AtomicBool::new(false);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Held while a backup runs (until its answer is dropped).
struct Running;

impl Running {
    fn take() -> Option<Running> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// A snapshot directory, removed when dropped.
struct SnapshotDir(PathBuf);

impl Drop for SnapshotDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            log::error!("removing backup snapshot {}: {e}", self.0.display());
        }
    }
}

/// Removes snapshot directories a crash left in `data`; returns how many.
pub fn remove_leftovers(data: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(data)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SNAPSHOT_PREFIX)
        {
            fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The answer to `GET /api/v1/backup`.
pub fn answer(app: &App) -> Result<Reply, ApiError> {
    let running = Running::take()
        .ok_or_else(|| ApiError::conflict("a backup is already running: retry when it is done"))?;
    // The freshest last_seen values go in too; a failure only means older ones.
    if let Err(e) = app.store.flush_last_seen() {
        log::warn!("backup: last_seen not flushed first: {e}");
    }
    let data = app
        .artifacts
        .dir()
        .parent()
        .ok_or_else(|| ApiError::internal("the artifact directory has no parent"))?
        .to_path_buf();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = SnapshotDir(data.join(format!("{SNAPSHOT_PREFIX}{}-{n}", std::process::id())));
    let manifest = snapshot(app, &dir.0)?;
    let stream = ArchiveStream::new(&manifest, dir, running)
        .map_err(|e| unavailable("building the archive", &e))?;
    let len = stream.len;
    let name = format!(
        "manager-lite-backup-{}.tar",
        manifest.created_at.replace(':', "")
    );
    log::info!(
        "backup: {} files, {len} bytes, taken at {}",
        manifest.files.len(),
        manifest.created_at
    );
    Ok(Reply {
        status: 200,
        headers: Vec::new(),
        body: Body::Reader(Box::new(stream), len),
    }
    .header("Content-Type", "application/x-tar")
    .header(
        "Content-Disposition",
        format!("attachment; filename=\"{name}\""),
    )
    .header("Cache-Control", "no-store"))
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("backup failed, retry later: {what}: {e}"))
}

/// Copies the database into `dir` and links the artifacts it refers to;
/// tries again if one vanished in between (a deleted version).
fn snapshot(app: &App, dir: &Path) -> Result<Manifest, ApiError> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| unavailable("clearing the snapshot", &e))?;
        }
        fs::create_dir_all(dir.join("artifacts"))
            .map_err(|e| unavailable(&format!("creating {}", dir.display()), &e))?;
        let created_at = crate::time::now_rfc3339();
        let db = dir.join(DATABASE);
        let hashes = app.store.snapshot(&db).map_err(|e| {
            if e.is_unavailable() {
                unavailable("copying the database", &e)
            } else {
                ApiError::from(e)
            }
        })?;
        let (size, sha256) = hash_file(&db).map_err(|e| unavailable("reading the copy", &e))?;
        let mut files = vec![FileEntry {
            path: DATABASE.into(),
            size,
            sha256,
        }];
        let mut vanished = None;
        for hash in hashes {
            let from = app.artifacts.dir().join(&hash);
            let to = dir.join("artifacts").join(&hash);
            match fs::hard_link(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = Some(hash);
                    break;
                }
                Err(e) => return Err(unavailable(&format!("linking {}", from.display()), &e)),
            }
            let size = fs::metadata(&to)
                .map_err(|e| unavailable(&format!("reading {}", to.display()), &e))?
                .len();
            files.push(FileEntry {
                path: format!("artifacts/{hash}"),
                size,
                sha256: hash,
            });
        }
        match vanished {
            None => {
                return Ok(Manifest {
                    format: FORMAT.into(),
                    version: VERSION,
                    created_at,
                    manager_version: env!("CARGO_PKG_VERSION").into(),
                    schema_version: crate::store::SCHEMA_VERSION,
                    files,
                })
            }
            Some(hash) => last = hash,
        }
    }
    Err(ApiError::unavailable(format!(
        "backup failed, retry later: artifact {last} was removed while it was linked, \
         {ATTEMPTS} times"
    )))
}

/// One piece of the archive.
enum Part {
    Bytes(Vec<u8>),
    /// A file's bytes, then zeros up to the next 512-byte block.
    File {
        path: PathBuf,
        size: u64,
    },
}

/// The tar of a snapshot directory, produced as it is read.
struct ArchiveStream {
    parts: VecDeque<Part>,
    current: Option<Box<dyn Read + Send>>,
    len: u64,
    _dir: SnapshotDir,
    _running: Running,
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

fn header(path: &str, size: u64) -> io::Result<Vec<u8>> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h.set_cksum();
    Ok(h.as_bytes().to_vec())
}

impl ArchiveStream {
    fn new(manifest: &Manifest, dir: SnapshotDir, running: Running) -> io::Result<ArchiveStream> {
        let text = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        let mut parts = VecDeque::new();
        let mut len = 0;
        let size = text.len() as u64;
        let mut first = header(MANIFEST, size)?;
        first.extend_from_slice(&text);
        first.resize(first.len() + usize::try_from(padding(size)).unwrap_or(0), 0);
        len += first.len() as u64;
        parts.push_back(Part::Bytes(first));
        for f in &manifest.files {
            parts.push_back(Part::Bytes(header(&f.path, f.size)?));
            parts.push_back(Part::File {
                path: dir.0.join(&f.path),
                size: f.size,
            });
            len += 512 + f.size + padding(f.size);
        }
        // The end of a tar: two zero blocks.
        parts.push_back(Part::Bytes(vec![0; 1024]));
        len += 1024;
        Ok(ArchiveStream {
            parts,
            current: None,
            len,
            _dir: dir,
            _running: running,
        })
    }
}

impl Read for ArchiveStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(current) = self.current.as_mut() {
                let n = current.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.current = None;
            }
            let Some(part) = self.parts.pop_front() else {
                return Ok(0);
            };
            self.current = Some(match part {
                Part::Bytes(bytes) => Box::new(Cursor::new(bytes)),
                // A file shorter than its size ends the stream early: the
                // answer is cut, and the client sees it is.
                Part::File { path, size } => Box::new(
                    File::open(&path)?
                        .take(size)
                        .chain(io::repeat(0).take(padding(size))),
                ),
            });
        }
    }
}
