//! Making the forms of one version: the zst form of its artifact, then a
//! patch from each of the newest earlier builds of the same bin and arch.
//! Each file is staged in the artifact directory (temp, fsync), checked, and
//! named and recorded together under the artifact lock, as uploads are.
//!
//! A patch is applied once before it is kept: the result must hash to the
//! version's sha256. It is kept only when it is smaller than [`KEEP_BELOW`]
//! of what a node would fetch otherwise (the zst form, or the plain file).

use std::fmt;
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use binproxy_delta::{zst, BuildOptions, DeltaError};
use binproxy_protocol::{hex, Version};
use sha2::{Digest, Sha256};

use super::Job;
use crate::artifacts::{Artifacts, Staged};
use crate::store::{DeltaFile, FormFile, Forms, Store, StoreError};

/// A patch is kept when smaller than this share (in percent) of the zst
/// form, or of the plain artifact when there is no zst form.
pub const KEEP_BELOW: u64 = 70;

/// Smaller artifacts get no forms: what they could save is less than a
/// keepalive's worth of bytes.
pub const MIN_SIZE: u64 = 64 * 1024;

/// One patch may take this long to make; past it the patch is given up.
const BUILD_DEADLINE: Duration = Duration::from_secs(600);

/// Why a version's forms were not made.
#[derive(Debug)]
pub enum FormError {
    Store(StoreError),
    /// Reading an artifact or writing a form failed; `sha256` names the file.
    Io {
        what: &'static str,
        sha256: String,
        source: io::Error,
    },
    /// Making the zst form or a patch failed.
    Delta {
        what: String,
        source: DeltaError,
    },
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => e.fmt(f),
            Self::Io {
                what,
                sha256,
                source,
            } => write!(f, "{what} {sha256}: {source}"),
            Self::Delta { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for FormError {}

impl From<StoreError> for FormError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn io_at<'a>(what: &'static str, sha256: &'a str) -> impl FnOnce(io::Error) -> FormError + 'a {
    move |source| FormError::Io {
        what,
        sha256: sha256.to_owned(),
        source,
    }
}

/// What one job came to.
#[derive(Debug, Default)]
pub struct Made {
    /// The version's size, and its forms as stored.
    pub size: u64,
    pub forms: Forms,
    /// Patches made but not kept.
    pub dropped: u64,
    /// Nothing was done, and why.
    pub skipped: Option<Skip>,
}

/// Why a job had nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The version was deleted meanwhile.
    Gone,
    /// Its forms were made before.
    MadeBefore,
}

impl Made {
    pub fn kept(&self) -> u64 {
        self.forms.deltas.len() as u64
    }

    pub fn log(&self, job: &Job, took: Duration) {
        if let Some(why) = self.skipped {
            log::debug!("forms of {} {}: skipped ({why:?})", job.bin, job.version);
            return;
        }
        if self.size < MIN_SIZE {
            log::info!(
                "forms of {} {}: none, {} B is too small",
                job.bin,
                job.version,
                self.size
            );
            return;
        }
        let zst = self
            .forms
            .zst
            .as_ref()
            .map_or("none".to_owned(), |z| z.size.to_string());
        let patches: Vec<String> = self
            .forms
            .deltas
            .iter()
            .map(|d| format!("{} B from {}", d.size, &d.from[..12.min(d.from.len())]))
            .collect();
        log::info!(
            "forms of {} {} ({} B) made in {:.1} s: zst {zst} B; patches: {}{}",
            job.bin,
            job.version,
            self.size,
            took.as_secs_f64(),
            if patches.is_empty() {
                "none".to_owned()
            } else {
                patches.join(", ")
            },
            if self.dropped > 0 {
                format!(" ({} not kept: too large)", self.dropped)
            } else {
                String::new()
            },
        );
    }
}

/// The newest version of each bin and arch that has no forms yet.
pub fn backlog(store: &Store) -> Result<Vec<Version>, StoreError> {
    let mut out = Vec::new();
    for (_, versions) in store.bins()? {
        let mut newest: Vec<Version> = Vec::new();
        for v in newest_first(versions) {
            if !newest.iter().any(|n| n.arch == v.arch) {
                newest.push(v);
            }
        }
        for v in newest {
            if !store.has_forms(&v.sha256sum) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

fn newest_first(mut versions: Vec<Version>) -> Vec<Version> {
    // Same-second uploads by version name, as retention orders them.
    versions.sort_by(|a, b| (&b.created_at, &b.version).cmp(&(&a.created_at, &a.version)));
    versions
}

/// Makes and stores the forms of `job`'s version, with patches from up to
/// `from` earlier builds.
pub fn make(
    store: &Store,
    artifacts: &Artifacts,
    job: &Job,
    from: usize,
) -> Result<Made, FormError> {
    let versions = newest_first(
        store
            .versions(&job.bin, None)?
            .into_iter()
            .filter(|v| v.arch == job.arch)
            .collect(),
    );
    let Some(at) = versions.iter().position(|v| v.version == job.version) else {
        return Ok(Made {
            skipped: Some(Skip::Gone),
            ..Made::default()
        });
    };
    let v = &versions[at];
    if store.has_forms(&v.sha256sum) {
        return Ok(Made {
            skipped: Some(Skip::MadeBefore),
            ..Made::default()
        });
    }
    if v.size < MIN_SIZE {
        let none = store_forms(store, artifacts, &v.sha256sum, None, &[])?;
        return Ok(Made {
            size: v.size,
            forms: none,
            dropped: 0,
            skipped: None,
        });
    }
    let mut bases: Vec<&Version> = Vec::new();
    for b in &versions[at + 1..] {
        if bases.len() < from
            && b.sha256sum != v.sha256sum
            && !bases.iter().any(|x| x.sha256sum == b.sha256sum)
        {
            bases.push(b);
        }
    }
    let new = open(artifacts, &v.sha256sum)?;
    let zst_form = pack(artifacts, &new, v)?;
    let reference = zst_form.as_ref().map_or(v.size, |z| z.size);
    let mut patches = Vec::new();
    let mut dropped = 0;
    for base in bases {
        match patch(artifacts, base, &new, v)? {
            Some(p) if p.size * 100 < reference * KEEP_BELOW => {
                patches.push((base.sha256sum.clone(), p));
            }
            _ => dropped += 1,
        }
    }
    let forms = store_forms(store, artifacts, &v.sha256sum, zst_form.as_ref(), &patches)?;
    Ok(Made {
        size: v.size,
        forms,
        dropped,
        skipped: None,
    })
}

fn open(artifacts: &Artifacts, sha256: &str) -> Result<File, FormError> {
    artifacts
        .open_file(sha256)
        .map_err(io_at("opening artifact", sha256))?
        .map(|(f, _)| f)
        .ok_or_else(|| FormError::Io {
            what: "opening artifact",
            sha256: sha256.to_owned(),
            source: io::ErrorKind::NotFound.into(),
        })
}

/// The zst form of `v`, when smaller than the artifact.
fn pack(artifacts: &Artifacts, new: &File, v: &Version) -> Result<Option<Staged>, FormError> {
    let staged = artifacts
        .stage_with(|out| zst::compress(new, out, zst::LEVEL).map(|_| ()))
        .map_err(io_at("making the zst form of", &v.sha256sum))?;
    Ok((staged.size < v.size).then_some(staged))
}

/// The patch from `base` to `v`, applied once to check it; `None` when
/// making or checking it failed (logged: the other forms still stand).
fn patch(
    artifacts: &Artifacts,
    base: &Version,
    new: &File,
    v: &Version,
) -> Result<Option<Staged>, FormError> {
    let old = open(artifacts, &base.sha256sum)?;
    let opts = BuildOptions {
        level: zst::LEVEL,
        deadline: Some(Instant::now() + BUILD_DEADLINE),
        tmp_dir: artifacts.dir().to_path_buf(),
    };
    let made = artifacts.stage_with(|out| {
        binproxy_delta::build(&old, new, out, &opts)
            .map(|_| ())
            .map_err(|e| match e {
                DeltaError::Io { source, .. } => source,
                other => io::Error::other(other),
            })
    });
    let staged = match made {
        Ok(s) => s,
        Err(e) => {
            log::warn!(
                "patch {} -> {} of {}: {e}",
                base.version,
                v.version,
                v.bin_name
            );
            return Ok(None);
        }
    };
    let file = staged
        .open()
        .map_err(io_at("reading the patch to", &v.sha256sum))?;
    let mut hasher = Sha256::new();
    let checked = binproxy_delta::apply(&old, &file, &mut hasher, v.size)
        .map(|_| hex(&hasher.finalize()) == v.sha256sum);
    match checked {
        Ok(true) => Ok(Some(staged)),
        Ok(false) => {
            log::error!(
                "patch {} -> {} of {} does not make it: dropped",
                base.version,
                v.version,
                v.bin_name
            );
            Ok(None)
        }
        // The disk failed: the job fails, and is tried again at the next start.
        Err(e @ DeltaError::Io { .. }) => Err(FormError::Delta {
            what: format!("checking the patch {} -> {}", base.version, v.version),
            source: e,
        }),
        // The patch itself is bad (a builder bug): it goes, the rest stands.
        Err(e) => {
            log::error!(
                "patch {} -> {} of {} does not apply ({e}): dropped",
                base.version,
                v.version,
                v.bin_name
            );
            Ok(None)
        }
    }
}

/// Names the files and records them, under the artifact lock; when the
/// version went meanwhile, the files go again.
fn store_forms(
    store: &Store,
    artifacts: &Artifacts,
    sha256: &str,
    zst_form: Option<&Staged>,
    patches: &[(String, Staged)],
) -> Result<Forms, FormError> {
    let forms = Forms {
        zst: zst_form.as_ref().map(|z| FormFile {
            sha256: z.sha256.clone(),
            size: z.size,
        }),
        deltas: patches
            .iter()
            .map(|(from, p)| DeltaFile {
                from: from.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
            })
            .collect(),
    };
    let _names = artifacts.lock();
    for staged in zst_form.into_iter().chain(patches.iter().map(|(_, p)| p)) {
        artifacts
            .commit(staged)
            .map_err(io_at("storing a form of", sha256))?;
    }
    if !store.put_forms(sha256, &forms)? {
        let live = store.artifact_hashes()?;
        for f in forms.files().filter(|f| !live.contains(*f)) {
            artifacts
                .remove(f)
                .map_err(io_at("removing a form of", sha256))?;
        }
    }
    Ok(forms)
}
