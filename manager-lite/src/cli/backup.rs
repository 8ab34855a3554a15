//! `manager-lite backup --to FILE`: downloads `GET /api/v1/backup` into a
//! temp file beside FILE (mode 0600), checking every file of the archive
//! against its manifest as it arrives ([`crate::backup::read_archive`]),
//! then fsyncs it and renames it to FILE: a cut or damaged download never
//! looks like a complete backup. A progress bar is drawn on a terminal, as
//! `publish` draws one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::http::Client;
use super::progress::Progress;
use super::ClientError;
use crate::backup::read_archive;

/// The temp file, removed unless renamed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Copies what it reads into a file, counting it.
struct Tee<R> {
    inner: R,
    out: File,
    written: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        self.written += n as u64;
        Ok(n)
    }
}

fn failed(what: &str, path: &Path, e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Failed(format!("{what} {}: {e}", path.display()))
}

pub fn backup(client: &Client, to: &Path) -> Result<(), ClientError> {
    let (dir, tmp) = crate::backup::temp_beside(to, "tmp")
        .ok_or_else(|| ClientError::Usage(format!("--to {}: not a file name", to.display())))?;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| failed("creating", &tmp, &e))?;
    let mut partial = Partial(Some(tmp.clone()));
    let (body, length) = client.download("/api/v1/backup")?;
    let progress = Progress::new(body, length.unwrap_or(0));
    let mut tee = Tee {
        inner: progress,
        out,
        written: 0,
    };
    let checked = read_archive(&mut tee, |_| Ok(None)).and_then(|manifest| {
        // The end-of-archive blocks, which the reader leaves unread.
        io::copy(&mut tee, &mut io::sink())
            .map(|_| manifest)
            .map_err(|source| crate::backup::ArchiveError::Io {
                what: "reading the end of the backup".into(),
                source,
            })
    });
    let manifest = match checked {
        Ok(m) => m,
        Err(e) => {
            tee.inner.abandon();
            return Err(ClientError::Failed(format!(
                "the backup is not complete or not sound, nothing written to {}: {e}",
                to.display()
            )));
        }
    };
    tee.inner.finish();
    if let Some(want) = length.filter(|&n| n != tee.written) {
        return Err(ClientError::Failed(format!(
            "the backup was cut: {} of {want} bytes; nothing written to {}",
            tee.written,
            to.display()
        )));
    }
    tee.out
        .sync_all()
        .map_err(|e| failed("writing", &tmp, &e))?;
    fs::rename(&tmp, to).map_err(|e| failed("renaming the backup to", to, &e))?;
    partial.0 = None;
    crate::artifacts::sync_dir(&dir).map_err(|e| failed("syncing", &dir, &e))?;
    let text = format!(
        "backup written to {}: {} bytes, the database and {} artifact(s) as of {}, every sha256 checked\n",
        to.display(),
        tee.written,
        manifest.files.len() - 1,
        manifest.created_at
    );
    super::render::emit(&text)
}
