//! Steps 6 and 7 of an update: the target's signature is checked under the
//! rules of where it came from (the manager's, or a mirror's, which must
//! also be newer than what runs), its bytes are got (`cycle/obtain.rs`: by a
//! patch or the zst form when offered, else downloaded from the first source
//! that delivers them, the mirrors, then the target's own URL) and verified
//! as they stream in, and the file is prepared and vetted by the preflight
//! hook beside the live one.

use binproxy_protocol::Target;
use std::sync::atomic::Ordering;

use super::record::Failure;
use super::{Agent, BinResult, Origin, Staged, Step};
use crate::config::BinConfig;
use crate::delivery::Delivery;
use crate::error::Result;
use crate::hashcache::short;
use crate::mirror::{self, TargetFrom, Verdict};
use crate::state::Provenance;
use crate::verify::{self, Signed};
use crate::{fetch, health, hooks, swap};

impl Agent<'_> {
    /// Steps 6 and 7: a verified, prepared file beside the live one, or
    /// [`Step::Done`] with the result that ends this bin's update.
    pub(super) fn stage(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        started_ms: u64,
        from: &TargetFrom,
    ) -> Result<Step<Staged>> {
        fetch::remove_strays(&bin.path, &Self::part_hashes(target))?;
        let signed = match self.authorize(bin, target, from) {
            Ok(s) => s,
            Err(why) => {
                let wait = self.state.bin(&bin.name).back_off(&target.sha256sum);
                let message = format!(
                    "refused {}: {why}; next try in {}",
                    short(&target.sha256sum),
                    humantime::format_duration(wait)
                );
                let failure = Failure {
                    message: &message,
                    quarantine: false,
                    delivery: None,
                };
                return self
                    .fail(bin, target, local, started_ms, failure)
                    .map(Step::Done);
            }
        };
        let obtained = match self.obtain(bin, target, local, from, signed.as_ref()) {
            Ok(o) => o,
            Err(not) if self.stop.load(Ordering::Relaxed) => {
                return Ok(Step::Done(BinResult::Skipped(not.error.to_string())))
            }
            Err(not) => {
                if not.error.is_transient() {
                    // The server or the network, not this file: back off
                    // the manager too.
                    self.trouble.get_or_insert_with(|| not.error.to_string());
                }
                let wait = self.state.bin(&bin.name).back_off(&target.sha256sum);
                let message = format!(
                    "{}; next try in {}",
                    not.message(),
                    humantime::format_duration(wait)
                );
                let failure = Failure {
                    message: &message,
                    quarantine: false,
                    delivery: Some(&not.delivery),
                };
                return self
                    .fail(bin, target, local, started_ms, failure)
                    .map(Step::Done);
            }
        };
        // No source: a file an earlier run downloaded (the artifact, staged
        // ahead of a window, or a patch) was used as it was.
        let (artifact, staged) = match obtained.fetched.from {
            Some(source) => (source, None),
            None => self.staged_source(bin, target),
        };
        let delivery = obtained.delivery.or(staged);
        let staged = obtained.fetched.path;
        swap::prepare(&staged, &bin.path, bin.mode)?;
        if let Some(argv) = &bin.preflight {
            if let Err(e) = hooks::run(argv, &staged, health::RESTART_TIMEOUT, &self.hook_log) {
                let _ = std::fs::remove_file(&staged);
                let message = format!("preflight refused the new version: {e}");
                let failure = Failure {
                    message: &message,
                    quarantine: true,
                    delivery: delivery.as_ref(),
                };
                return self
                    .fail(bin, target, local, started_ms, failure)
                    .map(Step::Done);
            }
        }
        Ok(Step::Continue(Staged {
            path: staged,
            origin: Origin::Update {
                signed: signed.map(|s| s.timestamp),
                from: Provenance {
                    sha256: target.sha256sum.clone(),
                    target: from.to_string(),
                    artifact,
                    delivery,
                },
            },
        }))
    }

    /// The signature rules for a target `from` the manager ([`verify::authorize`])
    /// or a mirror ([`mirror::judge`]): the signature to check the bytes
    /// against (none without `trusted_keys`, from the manager only), or why
    /// the target is refused.
    pub(super) fn authorize(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        from: &TargetFrom,
    ) -> Result<Option<Signed>, String> {
        let policy = verify::Policy {
            keys: &self.config.trusted_keys,
            arch: std::env::consts::ARCH,
            newest: self.state.bin(&bin.name).signed_timestamp,
            allow_downgrade: self.config.allow_downgrade,
        };
        match from {
            TargetFrom::Manager => verify::authorize(&policy, target),
            TargetFrom::Mirror(_) => match mirror::judge(&policy, &bin.name, target) {
                Verdict::Install(signed) => Ok(Some(*signed)),
                Verdict::Stale(why) | Verdict::Refused(why) => Err(why),
            },
        }
    }

    /// Downloads `target`'s artifact beside `bin`'s live file, from its
    /// sources in order (the mirrors, then its own URL), verifying it.
    pub(super) fn download(
        &self,
        bin: &BinConfig,
        target: &Target,
        from: &TargetFrom,
        signed: Option<&Signed>,
    ) -> Result<fetch::Fetched> {
        let sources = mirror::sources(&self.config.mirrors, &self.manager, target, from);
        let wanted = fetch::Wanted::artifact(target, signed);
        fetch::fetch(&self.manager, &wanted, &sources, &bin.path, self.stop)
    }

    /// Where the bytes of a `.part` file found complete came from, and how:
    /// what the run that staged it recorded, when it was this target.
    fn staged_source(&mut self, bin: &BinConfig, target: &Target) -> (String, Option<Delivery>) {
        self.state
            .bin(&bin.name)
            .staged_from
            .as_ref()
            .filter(|p| p.sha256 == target.sha256sum)
            .map_or_else(
                || ("a download of an earlier run".to_owned(), None),
                |p| (p.artifact.clone(), p.delivery.clone()),
            )
    }
}
