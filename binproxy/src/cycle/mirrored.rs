//! Steps 5 to 11 while the manager is unreachable, for a config that lists
//! `mirrors`. With `trusted_keys`, each bin's target is read from the first
//! mirror that answers `bins/<bin>.json` ([`mirror::find`]); one that is
//! signed for this bin, version and arch and newer than what runs
//! ([`mirror::judge`]) goes through the same `decide` as a manager's target
//! (quarantine, download back-off, maintenance windows), then the same
//! stage, swap, health check and rollback. Reports are queued in the outbox
//! and delivered by the first run that reaches the manager again. Without
//! `trusted_keys` nothing is taken from a mirror, and the run says so once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Agent;
use crate::config::BinConfig;
use crate::error::Error;
use crate::hashcache::short;
use crate::mirror::{self, TargetFrom, Verdict};
use crate::outcome::{log_action, BinResult};
use crate::verify;

impl Agent<'_> {
    /// The keepalive could not reach the manager (`why`): each bin's target
    /// from the mirrors, when they may be trusted for it. Returns the bins'
    /// results, none without `trusted_keys`.
    pub(super) fn update_from_mirrors(
        &mut self,
        why: &Error,
        locals: &BTreeMap<String, Option<String>>,
    ) -> Vec<BinResult> {
        if self.config.trusted_keys.is_empty() {
            log::warn!(
                "the manager is unreachable and mirrors are set, but {}; nothing updated",
                mirror::UNTRUSTED
            );
            return Vec::new();
        }
        log::warn!("the manager is unreachable: looking for newer signed releases on the mirrors");
        self.manager_down = Some(why.to_string());
        let mut results = Vec::new();
        for bin in &self.config.bins {
            if self.stop.load(Ordering::Relaxed) {
                log::info!("stop requested: leaving the remaining bins for the next run");
                break;
            }
            let local = locals.get(&bin.name).cloned().flatten();
            let started = Instant::now();
            let (result, to) = self.update_from_mirror(bin, local.as_deref());
            let delivery = self.delivered(bin, &result, to.as_deref());
            log_action(
                &bin.name,
                "update",
                local.as_deref(),
                to.as_deref(),
                &result,
                started.elapsed(),
                delivery.as_ref(),
            );
            results.push(result);
        }
        results
    }

    /// One bin: its target on the mirrors, and what became of it; with the
    /// target's sha256 when there is one.
    fn update_from_mirror(
        &mut self,
        bin: &BinConfig,
        local: Option<&str>,
    ) -> (BinResult, Option<String>) {
        let arch = std::env::consts::ARCH;
        let (base, target) =
            match mirror::find(&self.manager, &self.config.mirrors, &bin.name, arch) {
                Ok((base, Some(target))) => (base, target),
                Ok((base, None)) => {
                    log::info!("{}: mirror {base} has no target for {arch}", bin.name);
                    return (BinResult::NoTarget, None);
                }
                Err(e) => {
                    let why = format!("no target from the mirrors: {e}");
                    return (BinResult::Skipped(why), None);
                }
            };
        let to = Some(target.sha256sum.clone());
        if local != Some(target.sha256sum.as_str()) {
            let policy = verify::Policy {
                keys: &self.config.trusted_keys,
                arch,
                newest: self.state.bin(&bin.name).signed_timestamp,
                allow_downgrade: false,
            };
            // A mirror that lags behind (or replays) is no failure: the
            // newest version stays. Other refusals are, as from the manager.
            if let Verdict::Stale(why) = mirror::judge(&policy, &bin.name, &target) {
                let why = format!("mirror {base} offers {}: {why}", short(&target.sha256sum));
                return (BinResult::Skipped(why), to);
            }
        }
        let from = TargetFrom::Mirror(base);
        (self.decide(bin, Some(&target), local, &from), to)
    }
}
