//! How a target's bytes reach the host. A target may offer, besides its
//! artifact, patches that make it from earlier builds (`deltas`) and the
//! artifact as one zstd frame (`zst`); both are made by the manager and are
//! much smaller than the artifact. [`plan`] says which to try, in order: a
//! patch whose base this host has (the live file, or a kept version, whose
//! hash the hash cache vouches for), then the zst form, then the artifact as
//! it is (always last, so any failure of the others only costs bytes). The
//! cycle (`cycle/obtain.rs`) downloads each through the same sources and
//! checks as an artifact, and this module turns a downloaded patch or zst
//! file into the artifact ([`apply_patch`], [`unpack_zst`]).
//!
//! Nothing a patch makes is trusted: it is written to a temp file beside the
//! live one (`.<name>.binproxy-<sha16>.new`), hashed and checked against the
//! target's size, sha256 and signature as it is written, exactly as a
//! download is, and only then renamed to the target's `.part` file, the one
//! a full download ends in. A run killed half-way leaves only the `.new`
//! file, which is not a `.part`, so the next run removes it as a stray and
//! never resumes or swaps it in.

use binproxy_delta::DeltaError;
use binproxy_protocol::{check_sha256, Delta, Method, Packed, Target};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Unpacking};
use crate::fetch;
use crate::hashcache::short;
use crate::verify::{Signed, Verifier};

/// How a version's bytes came, for its reports, the action line and
/// `binproxy status`; kept with the journal entry, so a run that finishes an
/// interrupted update reports it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The way that worked (or, for a failure, the last one tried).
    pub method: Method,
    /// Bytes downloaded for this update, every attempt counted.
    pub bytes: u64,
    /// The artifact's size, to compare `bytes` with.
    pub size: u64,
    /// What was tried first and failed, in words, in order
    /// (`delta failed (corrupt patch: …)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

impl Delivery {
    /// Whether the action line says how the bytes came: only when it was
    /// not simply the artifact.
    pub fn worth_saying(&self) -> bool {
        self.method != Method::Full || !self.fallbacks.is_empty()
    }

    /// `412 KB of 5.2 MB`.
    pub fn downloaded(&self) -> String {
        format!("{} of {}", human(self.bytes), human(self.size))
    }
}

/// Bytes in decimal units, as a person reads them.
pub fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a figure for a person
    let f = n as f64;
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.0} KB", f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", f / 1e6),
        _ => format!("{:.2} GB", f / 1e9),
    }
}

/// A build on this host that a patch can start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub path: PathBuf,
    /// A kept version (`state_dir/kept/<bin>/<sha256>`), not the live file.
    pub kept: bool,
}

impl Base {
    /// `the live file`, `kept 1a2b3c4d5e6f`.
    pub fn describe(&self) -> String {
        if self.kept {
            let name = self.path.file_name().unwrap_or_default().to_string_lossy();
            format!("kept {}", short(&name))
        } else {
            "the live file".to_owned()
        }
    }
}

/// One way of getting a target's bytes besides the artifact itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Way<'a> {
    /// A patch, and the build here it starts from.
    Delta {
        delta: &'a Delta,
        base: Base,
    },
    Zst(&'a Packed),
}

impl Way<'_> {
    pub fn method(&self) -> Method {
        match self {
            Way::Delta { .. } => Method::Delta,
            Way::Zst(_) => Method::Zst,
        }
    }
}

/// What to try before the artifact itself, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    pub ways: Vec<Way<'a>>,
    /// Why the target's patches are not tried, when it offers some.
    pub no_delta: Option<String>,
}

/// The ways to try for `target` before its artifact: the first of its
/// patches (the manager lists the newest base first) whose base `base`
/// finds here, then its zst form. None when the artifact is `staged`
/// already (a complete `.part` file, checked again without the network).
pub fn plan(target: &Target, staged: bool, mut base: impl FnMut(&str) -> Option<Base>) -> Plan<'_> {
    let mut plan = Plan {
        ways: Vec::new(),
        no_delta: None,
    };
    if staged {
        return plan;
    }
    let found = target
        .deltas
        .iter()
        .find_map(|delta| base(&delta.from).map(|base| Way::Delta { delta, base }));
    match found {
        Some(way) => plan.ways.push(way),
        None if !target.deltas.is_empty() => {
            plan.no_delta = Some(format!(
                "no delta (this host has none of the {} build(s) its patches start from)",
                target.deltas.len()
            ));
        }
        None => {}
    }
    if let Some(zst) = &target.zst {
        plan.ways.push(Way::Zst(zst));
    }
    plan
}

/// Drops the patches and zst form of a target (from the manager or a
/// mirror) whose hashes are not 64 hex digits: they name files here, and a
/// patch's `from` names a kept version's path. Lowers the others' case, the
/// one spelling compared. The artifact itself is still there to fetch.
pub fn check_offers(target: &mut Target) {
    let bin = target.bin_name.clone();
    target.deltas.retain_mut(|d| {
        match (
            check_sha256("from", &d.from),
            check_sha256("sha256", &d.sha256),
        ) {
            (Ok(from), Ok(sha)) => {
                (d.from, d.sha256) = (from, sha);
                true
            }
            (Err(e), _) | (_, Err(e)) => {
                log::warn!("{bin}: a patch offered is ignored: {e}");
                false
            }
        }
    });
    if let Some(zst) = target.zst.as_mut() {
        match check_sha256("sha256", &zst.sha256) {
            Ok(sha) => zst.sha256 = sha,
            Err(e) => {
                log::warn!("{bin}: the zst form offered is ignored: {e}");
                target.zst = None;
            }
        }
    }
}

/// Applies the downloaded `patch` to `base`, making `target`'s artifact
/// beside `live` and checking it as it is written; returns its `.part` file.
pub fn apply_patch(
    base: &Base,
    patch: &Path,
    target: &Target,
    signed: Option<&Signed>,
    live: &Path,
) -> Result<PathBuf> {
    let what = format!("patch from {}", base.describe());
    let old = File::open(&base.path).map_err(Error::io(&base.path, "open the base"))?;
    let patch_file = File::open(patch).map_err(Error::io(patch, "open"))?;
    make(target, signed, live, &what, |out| {
        binproxy_delta::apply(&old, &patch_file, out, target.size)
    })
}

/// Decompresses the downloaded zst form `packed` into `target`'s artifact
/// beside `live`, checking it as it is written; returns its `.part` file.
pub fn unpack_zst(
    packed: &Path,
    target: &Target,
    signed: Option<&Signed>,
    live: &Path,
) -> Result<PathBuf> {
    let file = File::open(packed).map_err(Error::io(packed, "open"))?;
    make(target, signed, live, "zst form", |out| {
        binproxy_delta::zst::decompress(BufReader::new(file), out, target.size)
    })
}

/// Runs `write` into the `.new` temp file through the target's checks; on
/// success renames it to the target's `.part` file, else removes it.
fn make(
    target: &Target,
    signed: Option<&Signed>,
    live: &Path,
    what: &str,
    write: impl FnOnce(&mut Checked) -> Result<u64, DeltaError>,
) -> Result<PathBuf> {
    let temp = fetch::new_path(live, &target.sha256sum);
    let made = make_at(&temp, target, signed, what, write);
    match made {
        Ok(()) => {
            let part = fetch::part_path(live, &target.sha256sum);
            fs::rename(&temp, &part).map_err(Error::io(&temp, "rename into place"))?;
            Ok(part)
        }
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

fn make_at(
    temp: &Path,
    target: &Target,
    signed: Option<&Signed>,
    what: &str,
    write: impl FnOnce(&mut Checked) -> Result<u64, DeltaError>,
) -> Result<()> {
    let unpacking = |problem| Error::Unpack {
        bin: target.bin_name.clone(),
        what: what.to_owned(),
        problem,
    };
    let file = File::create(temp).map_err(Error::io(temp, "create"))?;
    let mut out = Checked {
        file,
        verifier: Verifier::new(target.size, &target.sha256sum, signed),
    };
    write(&mut out).map_err(|e| unpacking(Unpacking::Delta(e)))?;
    let Checked { file, verifier } = out;
    verifier
        .finish()
        .map_err(|why| unpacking(Unpacking::Result(why)))?;
    file.sync_all().map_err(Error::io(temp, "fsync"))
}

/// The made artifact's file, and the checks its bytes pass through on the
/// way in (the same as a download's).
pub struct Checked<'a> {
    file: File,
    verifier: Verifier<'a>,
}

impl Write for Checked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.verifier.update(buf).map_err(io::Error::other)?;
        self.file.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Its patch and zst writers serve the tests of `cycle/obtain.rs` too.
#[cfg(test)]
pub(crate) mod tests;
