//! Step 6 of an update: download the target into a temp file in the live
//! file's own directory (same filesystem, so the later rename is atomic),
//! verifying as it streams. An interrupted transfer leaves its `.part` file,
//! and the next attempt resumes it with a `Range` request.

use binproxy_protocol::Target;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::manager::Manager;
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

/// Downloads `target` beside `live`; returns the complete, verified, fsync'd
/// file. A wrong size or hash deletes the file; an interrupted transfer (or
/// a stop request) keeps it for a resume.
pub fn fetch(
    manager: &Manager,
    target: &Target,
    live: &Path,
    signed: Option<&Signed>,
    stop: &AtomicBool,
) -> Result<PathBuf> {
    let part = part_path(live, &target.sha256sum);
    let mut have = fs::metadata(&part).map_or(0, |m| m.len());
    if have > target.size {
        have = 0;
    }
    let mut verifier = Verifier::new(target.size, &target.sha256sum, signed);
    let file = if have == target.size && have > 0 {
        // A complete earlier download: check it without the network.
        open_part(&part, have, &mut verifier)?
    } else {
        let url = manager.url(&target.url);
        let mut download = manager.download(&url, have)?;
        let mut file = open_part(&part, download.offset, &mut verifier)?;
        let from = pipeline::Source {
            bin: &target.bin_name,
            url: &url,
        };
        pipeline::copy(
            &mut download.body,
            &mut file,
            &mut verifier,
            &part,
            &from,
            stop,
            &mut download.rate,
        )?;
        file
    };
    if let Err(message) = verifier.finish() {
        drop(file);
        let _ = fs::remove_file(&part);
        return Err(Error::Verify {
            bin: target.bin_name.clone(),
            message,
        });
    }
    file.sync_all().map_err(Error::io(&part, "fsync"))?;
    Ok(part)
}

/// Opens the part file positioned at `offset`, hashing the bytes before it.
fn open_part(part: &Path, offset: u64, verifier: &mut Verifier) -> Result<File> {
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
                    bin: part.display().to_string(),
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
mod tests {
    use super::*;

    /// Found by the property tests: a sha cut at byte 16 inside a UTF-8
    /// character panicked, and a `/` in it left the directory.
    #[test]
    fn part_paths_of_malformed_hashes_stay_beside_the_live_file() {
        let live = Path::new("/srv/bin/streamd");
        for sha in [
            "NѨ\"&'鬝&Y🕴\t𳋄*qEU:&=",
            "/../../../../etc/passwd",
            "",
            &"ab".repeat(32),
        ] {
            let part = part_path(live, sha);
            assert_eq!(part.parent(), Some(Path::new("/srv/bin")), "{sha:?}");
        }
        assert_eq!(
            part_path(live, &"ab".repeat(32)),
            Path::new("/srv/bin/.streamd.binproxy-abababababababab.part")
        );
    }
}
