//! One cycle of the agent, each step a named function:
//!
//! 1. [`lock`](crate::lock) — one agent at a time; a [`backoff`] in force
//!    ends the run here, and [`splay`](crate::splay) spreads the fleet;
//! 2. [`Agent::recover`] — finish or undo what an interrupted cycle left
//!    (`cycle/recover.rs`);
//! 3. [`Agent::keepalive`] — one request: who we are, what we run, our targets;
//! 4. [`Agent::local_hashes`] — sha256 on disk, from the cache when unchanged;
//! 5. [`Agent::decide`] — on target, quarantined, backing off, outside the
//!    maintenance window (`cycle/maintenance.rs`), or update;
//! 6. and 7. [`Agent::stage`] — download (from the mirrors first), verify,
//!    preflight (`cycle/stage.rs`);
//! 8. and 9. [`Agent::swap_in`] — keep the current file, rename the new one in;
//! 10. [`Agent::settle`] — restart, health check, then commit or roll back;
//! 11. reports through the [`Outbox`] (`cycle/record.rs`).
//!
//! When the keepalive cannot reach the manager and the config lists
//! `mirrors`, steps 5 to 11 run on targets read from the mirrors instead
//! (`cycle/mirrored.rs`), under `trusted_keys` only, and the reports wait in
//! the outbox; the run still exits 69.
//!
//! The journal is written before each irreversible step, and recovery runs
//! the same `settle`, `commit` and `roll_back` as a live update, so an update
//! interrupted anywhere ends the same way it would have. An operator's
//! `binproxy rollback` ([`Agent::manual_rollback`], `cycle/rollback.rs`)
//! takes the same path from step 8 on.

use binproxy_protocol::{Installed, KeepaliveReply, ProgressStatus, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::{BinConfig, Config};
use crate::credential::{self, Credentials};
use crate::error::{Error, Result};
use crate::hashcache::{self, short};
use crate::journal::{self, Entry, Phase};
use crate::manager::Manager;
use crate::mirror::TargetFrom;
use crate::outcome::{log_action, BinResult, Exit};
use crate::report::{Outbox, Report};
use crate::state::{now_ms, Provenance, State};
use crate::{backoff, bounds, fetch, fsutil, health, host, hygiene, lock, swap};
use record::Said;

mod maintenance;
mod mirrored;
mod obtain;
mod record;
mod recover;
mod rollback;
mod stage;
#[cfg(test)]
mod tests;

/// Kept at this path for the end-to-end tests.
pub use crate::splay::offset as splay_offset;
pub use maintenance::{closed_until, is_staged};

/// Where a swapped-in file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A target (the manager's, or a mirror's while the manager is
    /// unreachable), with its signed timestamp when signed, and where the
    /// target and its bytes came from.
    Update {
        signed: Option<u64>,
        from: Provenance,
    },
    /// An operator's `binproxy rollback` to a kept version.
    Manual,
}

/// How a phase of one bin's update went: on to the next phase with what it
/// made, or done early with the bin's result (refused, failed, stopped).
enum Step<T> {
    Continue(T),
    Done(BinResult),
}

/// A verified, prepared new file beside the live one, ready to swap in.
struct Staged {
    path: PathBuf,
    origin: Origin,
}

/// The state of one cycle.
pub struct Agent<'a> {
    pub config: &'a Config,
    pub manager: Manager,
    pub outbox: Outbox,
    pub state: State,
    stop: &'a AtomicBool,
    hook_log: PathBuf,
    /// A download failure on the server's or network's account, for the back-off.
    pub trouble: Option<String>,
    /// `run --ignore-backoff`: a bin's download back-off is lifted too.
    pub ignore_backoff: bool,
    /// Why the manager could not be reached, while the targets come from
    /// the mirrors: reports are queued for a later run, not sent.
    manager_down: Option<String>,
    /// The bins' results from the mirrors, when the keepalive could not
    /// reach the manager and the config lists mirrors (empty without
    /// `trusted_keys`).
    pub mirrored: Option<Vec<BinResult>>,
    /// A back-off of the manager is in force: read only the mirrors.
    backing_off: Option<Error>,
}

/// Runs one full cycle. `splay`: wait this node's deterministic offset first.
/// Before the time a [`backoff`] allows, exits 69 without contacting the
/// manager, unless `ignore_backoff`.
pub fn run(config: &Config, stop: &AtomicBool, splay: bool, ignore_backoff: bool) -> Result<Exit> {
    fsutil::ensure_dir(&config.state_dir)?;
    let Some(_lock) = lock::try_lock(&config.state_dir)? else {
        log::info!(
            "another binproxy run holds {}; leaving this cycle to it",
            config.state_dir.join("binproxy.lock").display()
        );
        return Ok(Exit::Done);
    };
    let backoff = if ignore_backoff {
        None
    } else {
        backing_off(config)?
    };
    if backoff.is_some() && !config.mirrors_alone() {
        return Ok(Exit::Unreachable);
    }
    // After the back-off check: a run that backs off changes nothing on disk
    // but backoff.json (exit 69's promise); the debris waits for a real run.
    hygiene::sweep(&config.state_dir)?;
    let bound = bounds::CycleBound::new(config.cycle_timeout);
    bounds::watch(stop, &bound, || {
        run_locked(config, &bound, splay, ignore_backoff, backoff)
    })
}

/// The cycle under the lock; `bound` stops it at a safe point on a signal
/// or once `cycle_timeout` has passed since the splay delay.
///
/// `backoff`: a back-off of the manager is in force (the config reads
/// mirrors alone): the run reads only the mirrors, and leaves the back-off
/// as it is.
fn run_locked(
    config: &Config,
    bound: &bounds::CycleBound,
    splay: bool,
    ignore_backoff: bool,
    backoff: Option<Error>,
) -> Result<Exit> {
    let stop = bound.stop();
    // Read under the lock: a run that just ended may have enrolled.
    let credentials = Credentials::load(config)?;
    let mut agent = Agent::with_credentials(config, stop, credentials)?;
    agent.ignore_backoff = ignore_backoff;
    let contacts_manager = backoff.is_none();
    agent.backing_off = backoff;
    let saved = agent.state.clone();
    let mut failed = agent.recover()?.iter().any(BinResult::is_failure);
    if splay {
        crate::splay::sleep(crate::splay::offset(&config.node_id, config.splay), stop);
    }
    bound.start();
    let outcome = agent.update_all();
    // Unreachable promises that nothing changed on disk: what this run learnt
    // (a refreshed hash cache) is not worth breaking that for. Unless the
    // mirrors were used: what they did is kept.
    let unreachable = outcome
        .as_ref()
        .is_err_and(|e| e.exit() == Exit::Unreachable);
    let mirrored = agent.mirrored.as_deref().unwrap_or_default();
    if agent.state != saved && (!unreachable || !mirrored.is_empty()) {
        agent.state.save(&config.state_dir)?;
    }
    let trouble = agent.trouble.as_deref();
    let cycle = if contacts_manager {
        backoff::Cycle::of(&outcome, trouble, agent.manager.retry_after())
    } else {
        backoff::Cycle::Unknown
    };
    backoff::after_cycle(&config.state_dir, cycle)?;
    if bound.timed_out() {
        // Whatever the steps said about being stopped, the cause is this.
        return Err(Error::CycleTimeout {
            limit: bound.limit(),
        });
    }
    match outcome {
        Ok(results) => {
            failed |= results.iter().any(BinResult::is_failure);
            Ok(if failed { Exit::Failed } else { Exit::Done })
        }
        Err(e) if e.exit() == Exit::Unreachable => {
            log::error!("{e}");
            // An update from a mirror that failed or rolled back is worse news.
            Ok(if mirrored.iter().any(BinResult::is_failure) {
                Exit::Failed
            } else {
                Exit::Unreachable
            })
        }
        Err(e) => Err(e),
    }
}

/// The back-off that forbids contacting the manager now, if one does
/// (logged once). The mirrors are still read when the config reads them
/// alone: the back-off spares the manager, and they are plain files.
fn backing_off(config: &Config) -> Result<Option<Error>> {
    let now = crate::state::now_unix();
    let Some(b) = backoff::in_force(&config.state_dir, now)? else {
        return Ok(None);
    };
    let until = backoff::until(&b, now);
    log::warn!(
        "backing off until {until}: {}; not contacting the manager{} (--ignore-backoff overrides)",
        b.reason(),
        if config.mirrors_alone() {
            ", reading the mirrors"
        } else {
            ""
        }
    );
    Ok(Some(Error::BackingOff {
        until,
        reason: b.reason(),
    }))
}

impl<'a> Agent<'a> {
    /// An agent with the stored node secret only (no enrollment).
    pub fn new(config: &'a Config, stop: &'a AtomicBool) -> Result<Agent<'a>> {
        Agent::with_credentials(config, stop, Credentials::stored(&config.state_dir))
    }

    pub fn with_credentials(
        config: &'a Config,
        stop: &'a AtomicBool,
        credentials: Credentials,
    ) -> Result<Agent<'a>> {
        Ok(Agent {
            config,
            manager: Manager::new(config, credentials),
            outbox: Outbox::new(&config.state_dir),
            state: State::load(&config.state_dir)?,
            stop,
            hook_log: config.state_dir.join("hook.log"),
            trouble: None,
            ignore_backoff: false,
            manager_down: None,
            mirrored: None,
            backing_off: None,
        })
    }

    fn bin_config(&self, name: &str) -> Option<&'a BinConfig> {
        self.config.bins.iter().find(|b| b.name == name)
    }

    /// Steps 3 to 11 for every bin.
    fn update_all(&mut self) -> Result<Vec<BinResult>> {
        let locals = self.local_hashes()?;
        if let Some(e) = self.backing_off.take() {
            self.mirrored = Some(self.update_from_mirrors(&e, &locals));
            return Err(e);
        }
        let (dir, node) = (&self.config.state_dir, &self.config.node_id);
        // Enrolling: the secret is on disk before it is proposed.
        let proposed = (self.manager.enrolling())
            .then(|| credential::proposal(dir))
            .transpose()?;
        let reply = match self.keepalive(&locals, proposed.as_deref()) {
            Ok(reply) => reply,
            Err(e) if e.exit() == Exit::Unreachable && !self.config.mirrors.is_empty() => {
                self.mirrored = Some(self.update_from_mirrors(&e, &locals));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(proposed) = &proposed {
            if let Some(secret) = credential::conclude(dir, node, proposed, &reply)? {
                self.manager.set_node_secret(secret);
            }
        }
        let mut targets = reply.targets;
        self.outbox.flush(&self.manager);
        let mut results = Vec::new();
        for bin in &self.config.bins {
            if self.stop.load(Ordering::Relaxed) {
                log::info!("stop requested: leaving the remaining bins for the next run");
                break;
            }
            let target = targets.remove(&bin.name).flatten();
            let local = locals.get(&bin.name).cloned().flatten();
            let started = Instant::now();
            let result = self.decide(bin, target.as_ref(), local.as_deref(), &TargetFrom::Manager);
            let to = target.as_ref().map(|t| t.sha256sum.as_str());
            let delivery = self.delivered(bin, &result, to);
            log_action(
                &bin.name,
                "update",
                local.as_deref(),
                to,
                &result,
                started.elapsed(),
                delivery.as_ref(),
            );
            results.push(result);
        }
        Ok(results)
    }

    /// Step 4: the sha256 of every managed file, `None` when missing.
    pub fn local_hashes(&mut self) -> Result<BTreeMap<String, Option<String>>> {
        let mut out = BTreeMap::new();
        for bin in &self.config.bins {
            out.insert(bin.name.clone(), self.local_hash(bin)?);
        }
        Ok(out)
    }

    fn local_hash(&mut self, bin: &BinConfig) -> Result<Option<String>> {
        let st = self.state.bin(&bin.name);
        let lookup = hashcache::local_hash(&bin.path, st.hash.as_ref())?;
        st.hash = lookup.entry;
        Ok(lookup.sha256)
    }

    /// Step 3: one request carrying who we are and what we run; the answer
    /// carries every bin's target.
    fn keepalive(
        &self,
        locals: &BTreeMap<String, Option<String>>,
        proposed_secret: Option<&str>,
    ) -> Result<KeepaliveReply> {
        let body = host::keepalive(self.config, locals, proposed_secret);
        self.manager.keepalive(&body)
    }

    /// Step 5: what to do about one bin, whose target (if any) comes `from`
    /// the manager or a mirror.
    fn decide(
        &mut self,
        bin: &BinConfig,
        target: Option<&Target>,
        local: Option<&str>,
        from: &TargetFrom,
    ) -> BinResult {
        let Some(target) = target else {
            return BinResult::NoTarget;
        };
        let sha = target.sha256sum.as_str();
        let st = self.state.bin(&bin.name);
        if local == Some(sha) {
            st.backoff = None;
            // Partial downloads of hashes that are not the target any more.
            if let Err(e) = fetch::remove_strays(&bin.path, &[]) {
                log::warn!("{}: {e}", bin.name);
            }
            return BinResult::OnTarget;
        }
        if let Some(q) = st.quarantine_of(sha) {
            return BinResult::Held(format!(
                "target {} is quarantined on this host: {} (clear with: binproxy unquarantine --config FILE {})",
                short(sha),
                q.reason,
                bin.name
            ));
        }
        if let Some(left) = st.backoff_left(sha).filter(|_| !self.ignore_backoff) {
            return BinResult::Held(format!(
                "download of {} failed before; next try in {left}s (--ignore-backoff overrides)",
                short(sha)
            ));
        }
        if let Some(result) = self.outside_window(bin, target, local, from) {
            return result;
        }
        self.update(bin, target, local, from).unwrap_or_else(|e| {
            let message = e.to_string();
            self.state.bin(&bin.name).record("failed", sha, &message);
            BinResult::Failed(message)
        })
    }

    /// Steps 6 to 11 for one bin whose target differs from what is on disk.
    fn update(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        from: &TargetFrom,
    ) -> Result<BinResult> {
        let started_ms = now_ms();
        if let (Some(why), TargetFrom::Mirror(_)) = (&self.manager_down, from) {
            log::warn!(
                "{why}; {}: installing {} from {from}",
                bin.name,
                target.version
            );
        }
        log::info!(
            "{}: updating {} -> {} (version {})",
            bin.name,
            local.map_or("nothing", short),
            short(&target.sha256sum),
            target.version
        );
        self.report(
            bin,
            target,
            local,
            ProgressStatus::InProgress,
            started_ms,
            Said::default(),
        )?;
        let staged = match self.stage(bin, target, local, started_ms, from)? {
            Step::Continue(staged) => staged,
            Step::Done(result) => return Ok(result),
        };
        let entry = self.swap_in(bin, target, local, &staged.path, started_ms, staged.origin)?;
        self.settle(bin, entry)
    }

    /// Steps 8 and 9: keep the current file, journal, rename the new one in.
    fn swap_in(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        staged: &Path,
        started_ms: u64,
        origin: Origin,
    ) -> Result<Entry> {
        let state_dir = &self.config.state_dir;
        let kept = match local {
            Some(sha) => {
                let kept = swap::kept_path(state_dir, &bin.name, sha);
                swap::keep_current(&bin.path, &kept)?;
                let order = &mut self.state.bin(&bin.name).kept;
                order.retain(|s| s != sha);
                order.push(sha.to_owned());
                Some(kept)
            }
            None => None,
        };
        let (manual, signed_timestamp, from) = match origin {
            Origin::Update { signed, from } => (false, signed, Some(from)),
            Origin::Manual => (true, None, None),
        };
        let mut entry = Entry {
            bin: bin.name.clone(),
            phase: Phase::Swapping,
            target_sha: target.sha256sum.clone(),
            target_version: target.version.clone(),
            staged: staged.to_path_buf(),
            previous_sha: local.map(str::to_owned),
            kept,
            started_ms,
            reason: None,
            manual,
            signed_timestamp,
            from,
        };
        journal::write(state_dir, &entry)?;
        if let Err(e) = swap::install(staged, &bin.path) {
            // Nothing changed on the live path: undo the journal, keep no debris.
            let _ = std::fs::remove_file(staged);
            journal::clear(state_dir, &bin.name)?;
            return Err(e);
        }
        // The next cycle finds the hash without reading the file.
        self.state.bin(&bin.name).hash = hashcache::installed(&bin.path, &target.sha256sum);
        journal::advance(state_dir, &mut entry, Phase::Swapped)?;
        Ok(entry)
    }

    /// Step 10: restart and health-check the swapped-in version, then commit
    /// it or roll it back.
    fn settle(&mut self, bin: &BinConfig, mut entry: Entry) -> Result<BinResult> {
        match health::restart_and_check(bin, &self.hook_log) {
            Ok(()) => {
                journal::advance(&self.config.state_dir, &mut entry, Phase::Healthy)?;
                self.commit(bin, &entry)
            }
            Err(reason) => self.roll_back(bin, entry, &reason),
        }
    }

    /// The new version is healthy: record it, prune, report, forget the journal.
    fn commit(&mut self, bin: &BinConfig, entry: &Entry) -> Result<BinResult> {
        self.state.bin(&bin.name).backoff = None;
        if entry.manual {
            self.record_operator_rollback(bin, entry)?;
        } else {
            let st = self.state.bin(&bin.name);
            let mut message = format!("version {} healthy", entry.target_version);
            if let Some(from) =
                (entry.from.as_ref()).filter(|f| f.target != TargetFrom::Manager.to_string())
            {
                message = format!("{message} (target from {})", from.target);
            }
            st.record("success", &entry.target_sha, &message);
            if let Some(t) = entry.signed_timestamp {
                st.signed_timestamp = Some(st.signed_timestamp.map_or(t, |n| n.max(t)));
            }
            st.installed_from.clone_from(&entry.from);
            if st
                .staged_from
                .as_ref()
                .is_some_and(|s| s.sha256 == entry.target_sha)
            {
                st.staged_from = None;
            }
            let from = entry.previous_sha.as_deref();
            let said = Said {
                message: None,
                delivery: entry.delivery(),
            };
            let status = ProgressStatus::Success;
            self.report(bin, &entry.target(), from, status, entry.started_ms, said)?;
        }
        let protect: Vec<&str> = entry.previous_sha.iter().map(String::as_str).collect();
        let st = self.state.bin(&bin.name);
        swap::prune(
            &self.config.state_dir,
            &bin.name,
            &mut st.kept,
            bin.keep,
            &protect,
        )?;
        self.send(&Report::Installed {
            bin: bin.name.clone(),
            body: Installed {
                node_id: self.config.node_id.clone(),
                sha256sum: entry.target_sha.clone(),
            },
        })?;
        self.persist()?;
        journal::clear(&self.config.state_dir, &bin.name)?;
        log::debug!(
            "{}: {} is live and healthy",
            bin.name,
            short(&entry.target_sha)
        );
        Ok(BinResult::Updated)
    }

    /// The new version failed: put the previous one back, restart it, check
    /// it, quarantine the failed hash, report.
    fn roll_back(&mut self, bin: &BinConfig, mut entry: Entry, reason: &str) -> Result<BinResult> {
        log::warn!(
            "{}: {} failed: {reason}; rolling back",
            bin.name,
            short(&entry.target_sha)
        );
        entry.reason = Some(reason.to_owned());
        journal::advance(&self.config.state_dir, &mut entry, Phase::RollingBack)?;
        match &entry.kept {
            Some(kept) => swap::restore(kept, &bin.path)?,
            None => swap::remove_new(&bin.path)?,
        }
        self.state.bin(&bin.name).hash = entry
            .previous_sha
            .as_deref()
            .and_then(|sha| hashcache::installed(&bin.path, sha));
        let previous_health = match entry.kept {
            Some(_) => match health::restart_and_check(bin, &self.hook_log) {
                Ok(()) => "the previous version is running and healthy".to_owned(),
                Err(e) => format!("the previous version is back but unhealthy too: {e}"),
            },
            None => "there was no previous version; the new file was removed".to_owned(),
        };
        let message = format!("{reason}; rolled back: {previous_health}");
        let target = entry.target();
        let st = self.state.bin(&bin.name);
        st.quarantine(&entry.target_sha, reason);
        st.record("rolled_back", &entry.target_sha, &message);
        let from = entry.previous_sha.as_deref();
        let said = Said {
            message: Some(&message),
            delivery: entry.delivery(),
        };
        let status = ProgressStatus::RolledBack;
        self.report(bin, &target, from, status, entry.started_ms, said)?;
        self.persist()?;
        journal::clear(&self.config.state_dir, &bin.name)?;
        Ok(BinResult::RolledBack(message))
    }
}
