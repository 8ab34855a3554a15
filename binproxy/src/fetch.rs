//! Step 6 of an update: download the target into a temp file in the live
//! file's own directory (same filesystem, so the later rename is atomic),
//! verifying as it streams. The bytes come from the first of its sources
//! (the mirrors, then the target's own URL; see [`crate::mirror`]) that
//! delivers them. An interrupted transfer leaves its `.part` file, and the
//! next attempt (the next source, or the next run) resumes it with a `Range`
//! request.

use binproxy_protocol::{Delta, Packed, Target};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::hashcache::short;
use crate::manager::Manager;
use crate::mirror::Source;
use crate::pipeline::{self, CHUNK};
use crate::verify::{Signed, Verifier};

/// The partial download of `sha` for the file at `live`.
pub fn part_path(live: &Path, sha: &str) -> PathBuf {
    beside(live, sha, "part")
}

/// Where the artifact `sha` is made from a patch or its zst form before it
/// is checked (see [`crate::delivery`]): not a `.part` file, so what a killed
/// run left there is removed, never resumed.
pub fn new_path(live: &Path, sha: &str) -> PathBuf {
    beside(live, sha, "new")
}

/// `.<name>.binproxy-<sha16>.<ext>` in the directory of `live`.
fn beside(live: &Path, sha: &str, ext: &str) -> PathBuf {
    let name = live
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    // The manager's answers are checked (see `manager`), but a file name is
    // made from hex digits only all the same: never a `/`, never a cut
    // inside a UTF-8 character.
    let prefix: String = sha
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    fsutil::parent(live).join(format!(".{name}.binproxy-{prefix}.{ext}"))
}

/// Removes our temp files beside `live`, except the part files of `keep`
/// (a target's artifact, and the patches and zst form that make it).
pub fn remove_strays(live: &Path, keep: &[&str]) -> Result<usize> {
    let keep: Vec<PathBuf> = keep.iter().map(|sha| part_path(live, sha)).collect();
    remove_ours(live, |p| !keep.iter().any(|k| k == p))
}

/// Removes our temp files beside `live` but keeps partial downloads, which a
/// later run may resume.
pub fn remove_strays_except_parts(live: &Path) -> Result<usize> {
    remove_ours(live, |p| p.extension().is_none_or(|e| e != "part"))
}

fn remove_ours(live: &Path, doomed: impl Fn(&Path) -> bool) -> Result<usize> {
    let name = live
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.binproxy-");
    let dir = fsutil::parent(live);
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, "list")(e)),
    };
    let mut removed = 0;
    for item in listing.flatten() {
        let path = item.path();
        if item.file_name().to_string_lossy().starts_with(&prefix) && doomed(&path) {
            fs::remove_file(&path).map_err(Error::io(&path, "remove stray temp file"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A file to download beside a bin's live file: a target's artifact, or a
/// patch or the zst form that makes it (see [`crate::delivery`]). Whatever it
/// is, its size and sha256 are checked as it streams in.
#[derive(Clone, Copy)]
pub struct Wanted<'a> {
    pub bin: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    /// The signature the bytes must carry: an artifact's, on a host with
    /// `trusted_keys`. A patch or a zst file is not signed; what it makes is
    /// checked against the artifact's signature instead.
    pub signed: Option<&'a Signed>,
}

impl<'a> Wanted<'a> {
    pub fn artifact(target: &'a Target, signed: Option<&'a Signed>) -> Wanted<'a> {
        Wanted {
            bin: &target.bin_name,
            sha256: &target.sha256sum,
            size: target.size,
            signed,
        }
    }

    pub fn patch(target: &'a Target, delta: &'a Delta) -> Wanted<'a> {
        Wanted {
            bin: &target.bin_name,
            sha256: &delta.sha256,
            size: delta.size,
            signed: None,
        }
    }

    pub fn packed(target: &'a Target, zst: &'a Packed) -> Wanted<'a> {
        Wanted {
            bin: &target.bin_name,
            sha256: &zst.sha256,
            size: zst.size,
            signed: None,
        }
    }

    fn verifier(&self) -> Verifier<'a> {
        Verifier::new(self.size, self.sha256, self.signed)
    }
}

/// A complete, verified, fsync'd download beside the live file.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// The [`Source::shown`] of the source that finished it; `None` when the
    /// `.part` file was complete already (staged by an earlier run).
    pub from: Option<String>,
}

/// Downloads `wanted` beside `live` from the first of `sources` (see
/// [`crate::mirror::sources`]) that delivers it, each tried at most once.
/// A complete `.part` file is checked first, without the network. A source
/// that fails is logged with its URL and the next one is tried: after a cut
/// transfer the `.part` file stays and the next source resumes it (the same
/// sha256 is the same bytes wherever they come from); after wrong bytes it is
/// removed and the next source starts from 0. A stop request or a local
/// write error ends it at once. Fails with the one source's error, or
/// [`Error::Sources`] listing every source's.
pub fn fetch(
    client: &Manager,
    wanted: &Wanted,
    sources: &[Source],
    live: &Path,
    stop: &AtomicBool,
) -> Result<Fetched> {
    let bin = wanted.bin;
    let part = part_path(live, wanted.sha256);
    let have = fs::metadata(&part).map_or(0, |m| m.len());
    if have == wanted.size && have > 0 {
        // A complete earlier download: check it without the network.
        match check_complete(wanted, &part) {
            Ok(()) => {
                return Ok(Fetched {
                    path: part,
                    from: None,
                })
            }
            Err(e @ Error::Verify { .. }) => {
                log::warn!("{e}; downloading it again");
            }
            Err(e) => return Err(e),
        }
    }
    let mut tried = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped {
                bin: bin.to_owned(),
                url: source.url.clone(),
            });
        }
        match fetch_from(client, wanted, source, &part, stop) {
            Ok(()) => {
                return Ok(Fetched {
                    path: part,
                    from: Some(source.shown.clone()),
                })
            }
            Err(e @ (Error::Stopped { .. } | Error::Io { .. })) => return Err(e),
            Err(e) => {
                if let Some(next) = sources.get(i + 1) {
                    log::warn!("{e}; trying {} next", next.url);
                }
                tried.push(e);
            }
        }
    }
    if tried.len() == 1 {
        if let Some(e) = tried.pop() {
            return Err(e);
        }
    }
    Err(Error::Sources {
        what: format!("{bin}: download of {}", short(wanted.sha256)),
        tried,
    })
}

/// One source's try: resumes the `.part` file where it ends (or starts over
/// when the source sends the whole file), streams the rest in, and checks
/// the whole. Wrong bytes remove the `.part` file; a cut keeps it.
fn fetch_from(
    client: &Manager,
    wanted: &Wanted,
    source: &Source,
    part: &Path,
    stop: &AtomicBool,
) -> Result<()> {
    let mut have = fs::metadata(part).map_or(0, |m| m.len());
    if have > wanted.size {
        have = 0;
    }
    let mut verifier = wanted.verifier();
    let mut download = client.download(&source.url, have, source.peer)?;
    let mut file = open_part(part, download.offset, &mut verifier, wanted.bin)?;
    let from = pipeline::Source {
        bin: wanted.bin,
        url: &source.url,
    };
    pipeline::copy(
        &mut download.body,
        &mut file,
        &mut verifier,
        part,
        &from,
        stop,
        &mut download.rate,
    )?;
    if let Err(message) = verifier.finish() {
        drop(file);
        let _ = fs::remove_file(part);
        return Err(Error::Verify {
            bin: wanted.bin.to_owned(),
            url: source.url.clone(),
            message,
        });
    }
    file.sync_all().map_err(Error::io(part, "fsync"))
}

/// Checks a `.part` file that holds as many bytes as wanted; removes it
/// when they are not the wanted ones.
fn check_complete(wanted: &Wanted, part: &Path) -> Result<()> {
    let mut verifier = wanted.verifier();
    let file = open_part(part, wanted.size, &mut verifier, wanted.bin)?;
    if let Err(message) = verifier.finish() {
        drop(file);
        let _ = fs::remove_file(part);
        return Err(Error::Verify {
            bin: wanted.bin.to_owned(),
            url: part.display().to_string(),
            message,
        });
    }
    file.sync_all().map_err(Error::io(part, "fsync"))
}

/// Opens the part file positioned at `offset`, hashing the bytes before it.
fn open_part(part: &Path, offset: u64, verifier: &mut Verifier, bin: &str) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(offset == 0)
        .open(part)
        .map_err(Error::io(part, "create"))?;
    if offset > 0 {
        let mut buf = vec![0u8; CHUNK];
        let mut left = offset;
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            file.read_exact(&mut buf[..want])
                .map_err(Error::io(part, "read"))?;
            verifier
                .update(&buf[..want])
                .map_err(|message| Error::Verify {
                    bin: bin.to_owned(),
                    url: part.display().to_string(),
                    message,
                })?;
            left -= want as u64;
        }
        file.set_len(offset).map_err(Error::io(part, "truncate"))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(Error::io(part, "seek"))?;
    }
    Ok(file)
}

/// Its loopback HTTP server serves the tests of `cycle/obtain.rs` too.
#[cfg(test)]
pub(crate) mod tests;
