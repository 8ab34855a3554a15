//! Artifact files: `DATA/artifacts/<sha256>`, content-addressed.
//!
//! An upload streams into a temp file in the same directory while it is
//! hashed; only a complete, fsync'd file is renamed to its hash (and the
//! directory fsync'd), so a crash never leaves half an artifact under a real
//! name. Leftover temp files, and files no stored version refers to (a crash
//! between the rename and the database commit), are removed at startup.
//!
//! A write that fails on our side (a full disk) marks the directory
//! degraded ([`crate::degraded`]) until a later upload is stored.

use binproxy_protocol::hex;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::degraded::Condition;

const TMP_PREFIX: &str = ".tmp-";

/// Why an upload was not staged.
#[derive(Debug)]
pub enum IngestError {
    /// The body is larger than the limit.
    TooLarge { max: u64 },
    /// Reading the request body failed (the client went away).
    Body(io::Error),
    /// Writing on our side failed; names the file.
    Disk { path: PathBuf, source: io::Error },
}

/// An uploaded file, hashed and fsync'd under a temp name. Dropped without
/// [`Artifacts::commit`], it removes itself.
pub struct Staged {
    tmp: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl Staged {
    /// Opens the staged file for reading.
    pub fn open(&self) -> io::Result<File> {
        File::open(&self.tmp)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

pub struct Artifacts {
    dir: PathBuf,
    counter: AtomicU64,
    /// Held from naming a file to committing its version, and from deleting
    /// versions to removing the files they leave: an upload of the same
    /// bytes cannot land between a delete's commit and its unlink.
    names: Mutex<()>,
    condition: Condition,
}

impl Artifacts {
    /// Opens the artifact directory, creating it, and removes leftover temp files.
    pub fn open(dir: &Path) -> io::Result<Artifacts> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(Artifacts {
            dir: dir.to_path_buf(),
            counter: AtomicU64::new(0),
            names: Mutex::new(()),
            condition: Condition::new("artifacts"),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The artifact directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether writes to the directory fail (degraded), and why.
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// Streams `body` into a temp file, hashing it, refusing more than `max`
    /// bytes. A failure to write it marks the directory degraded.
    pub fn ingest(&self, body: &mut dyn Read, max: u64) -> Result<Staged, IngestError> {
        let staged = self.stage(body, max);
        match &staged {
            Ok(_) => self.condition.worked(),
            Err(IngestError::Disk { path, source }) => self
                .condition
                .failed(format!("writing {}: {source}", path.display())),
            Err(_) => {}
        }
        staged
    }

    /// Stages a file the manager makes itself (a zst form, a patch):
    /// `make` writes it into a temp file, which is fsync'd and hashed.
    pub fn stage_with<E: From<io::Error>>(
        &self,
        make: impl FnOnce(&mut File) -> Result<(), E>,
    ) -> Result<Staged, E> {
        let tmp = self.temp_name();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut staged = Staged {
            tmp,
            sha256: String::new(),
            size: 0,
        };
        make(&mut file)?;
        file.sync_all()?;
        file.seek(io::SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        staged.size = io::copy(&mut file, &mut hasher)?;
        staged.sha256 = hex(&hasher.finalize());
        Ok(staged)
    }

    fn temp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{TMP_PREFIX}{}-{n}", std::process::id()))
    }

    fn stage(&self, body: &mut dyn Read, max: u64) -> Result<Staged, IngestError> {
        let tmp = self.temp_name();
        let disk = |source| IngestError::Disk {
            path: tmp.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(disk)?;
        // From here on the temp file is owned by `staged` and removed on error.
        let mut staged = Staged {
            tmp: tmp.clone(),
            sha256: String::new(),
            size: 0,
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(IngestError::Body(e)),
            };
            staged.size += n as u64;
            if staged.size > max {
                return Err(IngestError::TooLarge { max });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(disk)?;
        }
        file.sync_all().map_err(disk)?;
        staged.sha256 = hex(&hasher.finalize());
        Ok(staged)
    }

    /// Gives a staged file its real name, durably. Content-addressed: if the
    /// hash is already stored, the bytes are the same and the temp file goes.
    /// A failure marks the directory degraded.
    pub fn commit(&self, staged: &Staged) -> io::Result<()> {
        let dest = self.path(&staged.sha256);
        if dest.exists() {
            return Ok(());
        }
        let done = fs::rename(&staged.tmp, &dest).and_then(|()| sync_dir(&self.dir));
        if let Err(e) = &done {
            self.condition
                .failed(format!("storing {}: {e}", dest.display()));
        }
        done
    }

    /// The artifact with this (checked) hash and its size, if stored.
    pub fn open_file(&self, sha256: &str) -> io::Result<Option<(File, u64)>> {
        match File::open(self.path(sha256)) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Serialises the naming and removal of files with the commits that
    /// refer to them (see the field).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the file of an artifact no version refers to any more
    /// (the caller holds [`Artifacts::lock`]), durably.
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match fs::remove_file(self.path(sha256)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Bytes of every artifact file.
    pub fn bytes(&self) -> io::Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.dir)? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }

    /// Removes files no stored version refers to; returns how many.
    pub fn remove_unreferenced(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// fsyncs a directory, so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
