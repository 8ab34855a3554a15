//! Step 6 with deltas: getting a target's bytes the cheapest way that works
//! in this cycle. [`delivery::plan`] says what to try — a patch from a build
//! this host has, then the zst form — and the artifact itself always comes
//! last, so a failure of the cheaper ways (no base, a patch that cannot be
//! fetched or applied, a result that does not match) only costs bytes. Each
//! file comes from the same sources as the artifact (the mirrors first) with
//! the same resumable downloads and checks, and every failure is logged and
//! said in the bin's action line.

use binproxy_protocol::{Method, Target};
use std::fs;
use std::sync::atomic::Ordering;

use super::{maintenance, Agent};
use crate::config::BinConfig;
use crate::delivery::{self, Base, Delivery, Way};
use crate::error::{Error, Result};
use crate::fetch::{self, Fetched, Wanted};
use crate::hashcache::{self, short};
use crate::mirror::{self, TargetFrom};
use crate::outcome::BinResult;
use crate::swap;
use crate::verify::Signed;

/// A target's verified `.part` file, and how its bytes came (`None`: it
/// was complete already, from an earlier run).
pub(super) struct Obtained {
    pub fetched: Fetched,
    pub delivery: Option<Delivery>,
}

/// Why no way worked (the artifact's own download's error), and what
/// every way cost.
pub(super) struct NotObtained {
    pub error: Error,
    pub delivery: Delivery,
}

impl NotObtained {
    /// The failures in order, for the report: `delta failed (…); <error>`.
    pub fn message(&self) -> String {
        let mut words = self.delivery.fallbacks.join("; ");
        if !words.is_empty() {
            words.push_str("; ");
        }
        words.push_str(&self.error.to_string());
        words
    }
}

impl Agent<'_> {
    /// The part files a target may be got through: its artifact's, and its
    /// patches' and zst form's (kept by the stray clean-up, for a resume).
    pub(super) fn part_hashes(target: &Target) -> Vec<&str> {
        let offers = target.deltas.iter().map(|d| d.sha256.as_str());
        let zst = target.zst.iter().map(|z| z.sha256.as_str());
        std::iter::once(target.sha256sum.as_str())
            .chain(offers)
            .chain(zst)
            .collect()
    }

    /// `target`'s bytes beside `bin`'s live file, verified: by a patch from
    /// a build here, by the zst form, or as the artifact itself, the first
    /// that works.
    pub(super) fn obtain(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        from: &TargetFrom,
        signed: Option<&Signed>,
    ) -> Result<Obtained, Box<NotObtained>> {
        let staged = maintenance::is_staged(bin, target);
        let plan = delivery::plan(target, staged, |sha| self.base(bin, local, sha));
        let before = self.manager.received();
        let mut delivery = Delivery {
            method: Method::Full,
            bytes: 0,
            size: target.size,
            fallbacks: plan.no_delta.into_iter().collect(),
        };
        for way in plan.ways {
            delivery.method = way.method();
            let tried = self.try_way(bin, target, &way, from, signed);
            delivery.bytes = self.manager.received() - before;
            match tried {
                Ok(fetched) => {
                    return Ok(Obtained {
                        fetched,
                        delivery: Some(delivery),
                    })
                }
                Err(error) if self.stopping(&error) => {
                    return Err(Box::new(NotObtained { error, delivery }))
                }
                Err(error) => {
                    let method = way.method().as_str();
                    log::warn!(
                        "{}: {method} failed: {error}; trying the next way",
                        bin.name
                    );
                    delivery
                        .fallbacks
                        .push(format!("{method} failed ({})", brief(&error)));
                }
            }
        }
        delivery.method = Method::Full;
        let full = self.download(bin, target, from, signed);
        delivery.bytes = self.manager.received() - before;
        match full {
            Ok(fetched) => {
                let delivery = fetched.from.is_some().then_some(delivery);
                Ok(Obtained { fetched, delivery })
            }
            Err(error) => Err(Box::new(NotObtained { error, delivery })),
        }
    }

    /// How the bytes of the version `result` installed came (for its
    /// action line): what [`Agent::commit`] recorded.
    pub(super) fn delivered(
        &mut self,
        bin: &BinConfig,
        result: &BinResult,
        to: Option<&str>,
    ) -> Option<Delivery> {
        if *result != BinResult::Updated {
            return None;
        }
        let st = self.state.bin(&bin.name);
        let installed = st.installed_from.as_ref()?;
        (Some(installed.sha256.as_str()) == to)
            .then(|| installed.delivery.clone())
            .flatten()
    }

    fn stopping(&self, error: &Error) -> bool {
        matches!(error, Error::Stopped { .. }) || self.stop.load(Ordering::Relaxed)
    }

    /// One way: its file downloaded, then made into the artifact's `.part`.
    /// The patch or zst file is removed once used, whatever came of it.
    fn try_way(
        &self,
        bin: &BinConfig,
        target: &Target,
        way: &Way,
        from: &TargetFrom,
        signed: Option<&Signed>,
    ) -> Result<Fetched> {
        let (wanted, url) = match way {
            Way::Delta { delta, .. } => (Wanted::patch(target, delta), &delta.url),
            Way::Zst(zst) => (Wanted::packed(target, zst), &zst.url),
        };
        let mirrors = &self.config.mirrors;
        let sources = mirror::file_sources(mirrors, &self.manager, wanted.sha256, url, from);
        let file = fetch::fetch(&self.manager, &wanted, &sources, &bin.path, self.stop)?;
        let made = match way {
            Way::Delta { base, delta } => {
                log::info!(
                    "{}: applying a patch of {} to {}",
                    bin.name,
                    delivery::human(delta.size),
                    base.describe()
                );
                delivery::apply_patch(base, &file.path, target, signed, &bin.path)
            }
            Way::Zst(_) => delivery::unpack_zst(&file.path, target, signed, &bin.path),
        };
        let _ = fs::remove_file(&file.path);
        made.map(|path| Fetched {
            path,
            from: file.from,
        })
    }

    /// A build here whose sha256 is `sha`: the live file (`local`, from the
    /// hash cache this cycle), or the kept version of that name if the hash
    /// cache vouches for its bytes.
    fn base(&mut self, bin: &BinConfig, local: Option<&str>, sha: &str) -> Option<Base> {
        if local == Some(sha) {
            return Some(Base {
                path: bin.path.clone(),
                kept: false,
            });
        }
        let path = swap::kept_path(&self.config.state_dir, &bin.name, sha);
        if !path.is_file() {
            return None;
        }
        let st = self.state.bin(&bin.name);
        let cached = st.kept_hashes.iter().find(|e| e.sha256 == sha);
        let lookup = match hashcache::local_hash(&path, cached) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("{}: kept {}: {e}; not used as a base", bin.name, short(sha));
                return None;
            }
        };
        let kept = &st.kept;
        st.kept_hashes
            .retain(|e| e.sha256 != sha && kept.contains(&e.sha256));
        if lookup.sha256.as_deref() != Some(sha) {
            log::warn!(
                "{}: the kept copy {} does not have that hash; not used as a base",
                bin.name,
                path.display()
            );
            return None;
        }
        st.kept_hashes.extend(lookup.entry);
        Some(Base { path, kept: true })
    }
}

/// An error in few words for the action line: a patch's or zst file's own
/// trouble without the bin's name before it.
fn brief(error: &Error) -> String {
    match error {
        Error::Unpack { problem, .. } => problem.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
