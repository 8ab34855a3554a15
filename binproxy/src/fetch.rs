//! Step 6 of an update: download the target into a temp file in the live
//! file's own directory (same filesystem, so the later rename is atomic),
//! verifying as it streams. The bytes come from the first of its sources
//! (the mirrors, then the target's own URL; see [`crate::mirror`]) that
//! delivers them. An interrupted transfer leaves its `.part` file, and the
//! next attempt (the next source, or the next run) resumes it with a `Range`
//! request.

use binproxy_protocol::Target;
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
    fsutil::parent(live).join(format!(".{name}.binproxy-{prefix}.part"))
}

/// Removes our temp files beside `live`, except the part file of `keep`.
pub fn remove_strays(live: &Path, keep: Option<&str>) -> Result<usize> {
    let keep = keep.map(|sha| part_path(live, sha));
    remove_ours(live, |p| Some(p) != keep.as_deref())
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

/// A complete, verified, fsync'd download beside the live file.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// The [`Source::shown`] of the source that finished it; `None` when the
    /// `.part` file was complete already (staged by an earlier run).
    pub from: Option<String>,
}

/// Downloads `target` beside `live` from the first of `sources` (see
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
    target: &Target,
    sources: &[Source],
    live: &Path,
    signed: Option<&Signed>,
    stop: &AtomicBool,
) -> Result<Fetched> {
    let bin = &target.bin_name;
    let part = part_path(live, &target.sha256sum);
    let have = fs::metadata(&part).map_or(0, |m| m.len());
    if have == target.size && have > 0 {
        // A complete earlier download: check it without the network.
        match check_complete(target, &part, signed) {
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
                bin: bin.clone(),
                url: source.url.clone(),
            });
        }
        match fetch_from(client, target, source, &part, signed, stop) {
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
        what: format!("{bin}: download of {}", short(&target.sha256sum)),
        tried,
    })
}

/// One source's try: resumes the `.part` file where it ends (or starts over
/// when the source sends the whole file), streams the rest in, and checks
/// the whole. Wrong bytes remove the `.part` file; a cut keeps it.
fn fetch_from(
    client: &Manager,
    target: &Target,
    source: &Source,
    part: &Path,
    signed: Option<&Signed>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut have = fs::metadata(part).map_or(0, |m| m.len());
    if have > target.size {
        have = 0;
    }
    let mut verifier = Verifier::new(target.size, &target.sha256sum, signed);
    let mut download = client.download(&source.url, have, source.peer)?;
    let mut file = open_part(part, download.offset, &mut verifier, &target.bin_name)?;
    let from = pipeline::Source {
        bin: &target.bin_name,
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
            bin: target.bin_name.clone(),
            url: source.url.clone(),
            message,
        });
    }
    file.sync_all().map_err(Error::io(part, "fsync"))
}

/// Checks a `.part` file that holds as many bytes as the target; removes it
/// when they are not the target's.
fn check_complete(target: &Target, part: &Path, signed: Option<&Signed>) -> Result<()> {
    let mut verifier = Verifier::new(target.size, &target.sha256sum, signed);
    let file = open_part(part, target.size, &mut verifier, &target.bin_name)?;
    if let Err(message) = verifier.finish() {
        drop(file);
        let _ = fs::remove_file(part);
        return Err(Error::Verify {
            bin: target.bin_name.clone(),
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

#[cfg(test)]
mod tests;
