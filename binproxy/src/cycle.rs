//! One cycle of the agent, each step a named function:
//!
//! 1. [`lock`](crate::lock) — one agent at a time;
//! 2. [`Agent::recover`] — finish or undo what an interrupted cycle left;
//! 3. [`Agent::keepalive`] — one request: who we are, what we run, our targets;
//! 4. [`Agent::local_hashes`] — sha256 on disk, from the cache when unchanged;
//! 5. [`Agent::decide`] — on target, quarantined, backing off, or update;
//! 6. and 7. [`Agent::stage`] — download, verify, preflight;
//! 8. and 9. [`Agent::swap_in`] — keep the current file, rename the new one in;
//! 10. [`Agent::settle`] — restart, health check, then commit or roll back;
//! 11. reports through the [`Outbox`].
//!
//! The journal is written before each irreversible step, and recovery runs
//! the same `settle`, `commit` and `roll_back` as a live update, so an update
//! interrupted anywhere ends the same way it would have.

use binproxy_protocol::{Installed, KeepaliveReply, Progress, ProgressStatus, Target};
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
use crate::outcome::{log_action, BinResult, Exit};
use crate::report::{Outbox, Report};
use crate::state::{now_ms, State};
use crate::{backoff, bounds, fetch, fsutil, health, hooks, host, hygiene, lock, swap, verify};

mod maintenance;
/// Kept at this path for the end-to-end tests.
pub use crate::splay::offset as splay_offset;
pub use maintenance::{closed_until, is_staged};

/// Where a swapped-in file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The manager's target, with its signed timestamp when signed.
    Update(Option<u64>),
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
    if !ignore_backoff && backing_off(config)? {
        return Ok(Exit::Unreachable);
    }
    // After the back-off check: a run that backs off changes nothing on disk
    // but backoff.json (exit 69's promise); the debris waits for a real run.
    hygiene::sweep(&config.state_dir)?;
    let bound = bounds::CycleBound::new(config.cycle_timeout);
    bounds::watch(stop, &bound, || {
        run_locked(config, &bound, splay, ignore_backoff)
    })
}

/// The cycle under the lock; `bound` stops it at a safe point on a signal
/// or once `cycle_timeout` has passed since the splay delay.
fn run_locked(
    config: &Config,
    bound: &bounds::CycleBound,
    splay: bool,
    ignore_backoff: bool,
) -> Result<Exit> {
    let stop = bound.stop();
    // Read under the lock: a run that just ended may have enrolled.
    let credentials = Credentials::load(config)?;
    let mut agent = Agent::with_credentials(config, stop, credentials)?;
    agent.ignore_backoff = ignore_backoff;
    let saved = agent.state.clone();
    let mut failed = agent.recover()?.iter().any(BinResult::is_failure);
    if splay {
        crate::splay::sleep(crate::splay::offset(&config.node_id, config.splay), stop);
    }
    bound.start();
    let outcome = agent.update_all();
    // Unreachable promises that nothing changed on disk: what this run learnt
    // (a refreshed hash cache) is not worth breaking that for.
    let unreachable = outcome
        .as_ref()
        .is_err_and(|e| e.exit() == Exit::Unreachable);
    if agent.state != saved && !unreachable {
        agent.state.save(&config.state_dir)?;
    }
    let trouble = agent.trouble.as_deref();
    let cycle = backoff::Cycle::of(&outcome, trouble, agent.manager.retry_after());
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
            Ok(Exit::Unreachable)
        }
        Err(e) => Err(e),
    }
}

/// Whether a back-off forbids contacting the manager now (logged once).
fn backing_off(config: &Config) -> Result<bool> {
    let now = crate::state::now_unix();
    let Some(b) = backoff::in_force(&config.state_dir, now)? else {
        return Ok(false);
    };
    log::warn!(
        "backing off until {}: {}; not contacting the manager (--ignore-backoff overrides)",
        backoff::until(&b, now),
        b.reason()
    );
    Ok(true)
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
        })
    }

    fn bin_config(&self, name: &str) -> Option<&'a BinConfig> {
        self.config.bins.iter().find(|b| b.name == name)
    }

    /// Steps 3 to 11 for every bin.
    fn update_all(&mut self) -> Result<Vec<BinResult>> {
        let locals = self.local_hashes()?;
        let (dir, node) = (&self.config.state_dir, &self.config.node_id);
        // Enrolling: the secret is on disk before it is proposed.
        let proposed = (self.manager.enrolling())
            .then(|| credential::proposal(dir))
            .transpose()?;
        let reply = self.keepalive(&locals, proposed.as_deref())?;
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
            let result = self.decide(bin, target.as_ref(), local.as_deref());
            let to = target.as_ref().map(|t| t.sha256sum.as_str());
            log_action(
                &bin.name,
                "update",
                local.as_deref(),
                to,
                &result,
                started.elapsed(),
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

    /// Step 5: what to do about one bin.
    fn decide(
        &mut self,
        bin: &BinConfig,
        target: Option<&Target>,
        local: Option<&str>,
    ) -> BinResult {
        let Some(target) = target else {
            return BinResult::NoTarget;
        };
        let sha = target.sha256sum.as_str();
        let st = self.state.bin(&bin.name);
        if local == Some(sha) {
            st.backoff = None;
            // Partial downloads of hashes that are not the target any more.
            if let Err(e) = fetch::remove_strays(&bin.path, None) {
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
        if let Some(result) = self.outside_window(bin, target) {
            return result;
        }
        self.update(bin, target, local).unwrap_or_else(|e| {
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
    ) -> Result<BinResult> {
        let started_ms = now_ms();
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
            None,
        )?;
        let staged = match self.stage(bin, target, local, started_ms)? {
            Step::Continue(staged) => staged,
            Step::Done(result) => return Ok(result),
        };
        let entry = self.swap_in(bin, target, local, &staged.path, started_ms, staged.origin)?;
        self.settle(bin, entry)
    }

    /// Steps 6 and 7: a verified, prepared file beside the live one, or
    /// [`Step::Done`] with the result that ends this bin's update.
    fn stage(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        started_ms: u64,
    ) -> Result<Step<Staged>> {
        fetch::remove_strays(&bin.path, Some(&target.sha256sum))?;
        let policy = verify::Policy {
            keys: &self.config.trusted_keys,
            arch: std::env::consts::ARCH,
            newest: self.state.bin(&bin.name).signed_timestamp,
            allow_downgrade: self.config.allow_downgrade,
        };
        let signed = match verify::authorize(&policy, target) {
            Ok(s) => s,
            Err(why) => {
                let wait = self.state.bin(&bin.name).back_off(&target.sha256sum);
                let message = format!(
                    "refused {}: {why}; next try in {}",
                    short(&target.sha256sum),
                    humantime::format_duration(wait)
                );
                return self
                    .fail(bin, target, local, started_ms, &message, false)
                    .map(Step::Done);
            }
        };

        let staged =
            match fetch::fetch(&self.manager, target, &bin.path, signed.as_ref(), self.stop) {
                Ok(p) => p,
                Err(e) if self.stop.load(Ordering::Relaxed) => {
                    return Ok(Step::Done(BinResult::Skipped(e.to_string())))
                }
                Err(e) => {
                    if e.is_transient() {
                        // The server or the network, not this file: back off
                        // the manager too.
                        self.trouble.get_or_insert_with(|| e.to_string());
                    }
                    let wait = self.state.bin(&bin.name).back_off(&target.sha256sum);
                    let message = format!("{e}; next try in {}", humantime::format_duration(wait));
                    return self
                        .fail(bin, target, local, started_ms, &message, false)
                        .map(Step::Done);
                }
            };
        swap::prepare(&staged, &bin.path, bin.mode)?;
        if let Some(argv) = &bin.preflight {
            if let Err(e) = hooks::run(argv, &staged, health::RESTART_TIMEOUT, &self.hook_log) {
                let _ = std::fs::remove_file(&staged);
                let message = format!("preflight refused the new version: {e}");
                return self
                    .fail(bin, target, local, started_ms, &message, true)
                    .map(Step::Done);
            }
        }
        Ok(Step::Continue(Staged {
            path: staged,
            origin: Origin::Update(signed.map(|s| s.timestamp)),
        }))
    }

    /// Records and reports a failure before the swap; the live file is untouched.
    fn fail(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        started_ms: u64,
        message: &str,
        quarantine: bool,
    ) -> Result<BinResult> {
        let st = self.state.bin(&bin.name);
        st.record("failed", &target.sha256sum, message);
        if quarantine {
            st.quarantine(&target.sha256sum, message);
            self.persist()?;
        }
        self.report(
            bin,
            target,
            local,
            ProgressStatus::Failed,
            started_ms,
            Some(message),
        )?;
        Ok(BinResult::Failed(message.to_owned()))
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
            manual: origin == Origin::Manual,
            signed_timestamp: match origin {
                Origin::Update(t) => t,
                Origin::Manual => None,
            },
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
        let target = entry.target();
        let st = self.state.bin(&bin.name);
        st.backoff = None;
        if entry.manual {
            let left = entry.previous_sha.clone().unwrap_or_default();
            let message = format!(
                "operator rolled back from {} to {}",
                short(&left),
                short(&entry.target_sha)
            );
            st.record("rolled_back", &left, &message);
            // The version left behind must not come straight back next run.
            st.quarantine(&left, "rolled back by the operator");
            let from = Target {
                sha256sum: left,
                ..target.clone()
            };
            self.report(
                bin,
                &from,
                None,
                ProgressStatus::RolledBack,
                entry.started_ms,
                Some(&message),
            )?;
        } else {
            let message = format!("version {} healthy", entry.target_version);
            st.record("success", &entry.target_sha, &message);
            if let Some(t) = entry.signed_timestamp {
                st.signed_timestamp = Some(st.signed_timestamp.map_or(t, |n| n.max(t)));
            }
            let from = entry.previous_sha.as_deref();
            self.report(
                bin,
                &target,
                from,
                ProgressStatus::Success,
                entry.started_ms,
                None,
            )?;
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
        self.report(
            bin,
            &target,
            from,
            ProgressStatus::RolledBack,
            entry.started_ms,
            Some(&message),
        )?;
        self.persist()?;
        journal::clear(&self.config.state_dir, &bin.name)?;
        Ok(BinResult::RolledBack(message))
    }

    /// Step 2: finish or undo every update an earlier cycle left half-done.
    pub fn recover(&mut self) -> Result<Vec<BinResult>> {
        let mut results = Vec::new();
        for entry in journal::pending(&self.config.state_dir)? {
            let Some(bin) = self.bin_config(&entry.bin) else {
                log::warn!(
                    "journal names bin {:?}, which the config no longer lists; left as it is",
                    entry.bin
                );
                continue;
            };
            log::info!(
                "{}: finishing an interrupted update ({:?}) to {}",
                bin.name,
                entry.phase,
                short(&entry.target_sha)
            );
            let (from, to) = (entry.previous_sha.clone(), entry.target_sha.clone());
            let started = Instant::now();
            let result = self.recover_one(bin, entry)?;
            let took = started.elapsed();
            log_action(
                &bin.name,
                "recover",
                from.as_deref(),
                Some(&to),
                &result,
                took,
            );
            results.push(result);
        }
        for bin in &self.config.bins {
            if journal::read(&self.config.state_dir, &bin.name)?.is_none() {
                fetch::remove_strays_except_parts(&bin.path)?;
            }
        }
        Ok(results)
    }

    fn recover_one(&mut self, bin: &BinConfig, mut entry: Entry) -> Result<BinResult> {
        match entry.phase {
            Phase::Swapping => {
                let live = hashcache::local_hash(&bin.path, None)?.sha256;
                if live.as_deref() == Some(entry.target_sha.as_str()) {
                    journal::advance(&self.config.state_dir, &mut entry, Phase::Swapped)?;
                    self.settle(bin, entry)
                } else {
                    // The rename never happened: the old file is live and intact.
                    let _ = std::fs::remove_file(&entry.staged);
                    journal::clear(&self.config.state_dir, &bin.name)?;
                    Ok(BinResult::Skipped(
                        "interrupted before the swap; retried when next due".into(),
                    ))
                }
            }
            Phase::Swapped => self.settle(bin, entry),
            Phase::Healthy => self.commit(bin, &entry),
            Phase::RollingBack => {
                let reason = entry.reason.clone().unwrap_or_else(|| "unhealthy".into());
                self.roll_back(bin, entry, &reason)
            }
        }
    }

    /// `binproxy rollback`: swap a kept version back in, with the same journal,
    /// health check and automatic undo as an update.
    pub fn manual_rollback(&mut self, bin: &BinConfig, to: Option<&str>) -> Result<BinResult> {
        let local = self.local_hash(bin)?;
        let st = self.state.bin(&bin.name);
        let to = match to {
            Some(sha) => sha.to_owned(),
            None => st
                .kept
                .iter()
                .rev()
                .find(|s| Some(s.as_str()) != local.as_deref())
                .cloned()
                .ok_or_else(|| Error::NoKeptVersion {
                    bin: bin.name.clone(),
                    wanted: None,
                })?,
        };
        if local.as_deref() == Some(to.as_str()) {
            return Err(Error::AlreadyLive {
                bin: bin.name.clone(),
                sha: to,
            });
        }
        let kept = swap::kept_path(&self.config.state_dir, &bin.name, &to);
        if !kept.exists() {
            return Err(Error::NoKeptVersion {
                bin: bin.name.clone(),
                wanted: Some(to),
            });
        }
        let started_ms = now_ms();
        let started = Instant::now();
        let staged = swap::stage_kept(&kept, &bin.path)?;
        swap::prepare(&staged, &bin.path, bin.mode)?;
        let target = Target {
            bin_name: bin.name.clone(),
            version: format!("kept {}", short(&to)),
            sha256sum: to.clone(),
            size: 0,
            url: String::new(),
            reason: None,
            signature: None,
        };
        let entry = self.swap_in(
            bin,
            &target,
            local.as_deref(),
            &staged,
            started_ms,
            Origin::Manual,
        )?;
        let result = self.settle(bin, entry)?;
        self.state.save(&self.config.state_dir)?;
        let took = started.elapsed();
        log_action(
            &bin.name,
            "rollback",
            local.as_deref(),
            Some(&to),
            &result,
            took,
        );
        Ok(result)
    }

    /// Saves the state now: a quarantine or outcome must be on disk before
    /// the journal entry that would otherwise recreate it is cleared.
    fn persist(&self) -> Result<()> {
        self.state.save(&self.config.state_dir)
    }

    /// Queues a progress report and tries to send it.
    fn report(
        &self,
        bin: &BinConfig,
        target: &Target,
        from: Option<&str>,
        status: ProgressStatus,
        started_ms: u64,
        message: Option<&str>,
    ) -> Result<()> {
        self.send(&Report::Progress {
            bin: bin.name.clone(),
            body: Progress {
                node_id: self.config.node_id.clone(),
                target_hash: target.sha256sum.clone(),
                status,
                processing_time_ms: now_ms().saturating_sub(started_ms),
                from_hash: from.map(str::to_owned),
                message: message.map(str::to_owned),
            },
        })
    }

    fn send(&self, report: &Report) -> Result<()> {
        self.outbox.send(&self.manager, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthConfig;
    use std::fs;
    use std::time::Duration;

    /// A node whose manager is not listening: reports go to the outbox.
    struct Node {
        dir: PathBuf,
        config: Config,
    }

    impl Node {
        fn new(tag: &str, healthy: bool) -> Node {
            let dir = std::env::temp_dir().join(format!("bp-recover-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin")).unwrap();
            let health = HealthConfig {
                command: Some(vec![if healthy { "true" } else { "false" }.into()]),
                http: None,
                timeout: Duration::from_secs(5),
                retries: 1,
                interval: Duration::ZERO,
            };
            let config = Config {
                manager_url: "http://127.0.0.1:9".into(),
                node_id: "unit".into(),
                labels: BTreeMap::new(),
                state_dir: dir.join("state"),
                splay: Duration::ZERO,
                timeout: Duration::from_secs(1),
                download_min_rate: 0,
                download_min_rate_window: Duration::from_secs(1),
                cycle_timeout: Duration::from_secs(60),
                trusted_keys: Vec::new(),
                allow_downgrade: false,
                enroll_token_file: None,
                ca_file: None,
                ca_roots: Vec::new(),
                windows: binproxy_protocol::window::Windows::default(),
                prestage: false,
                bins: vec![BinConfig {
                    name: "svc".into(),
                    path: dir.join("bin/svc"),
                    mode: None,
                    preflight: None,
                    restart: None,
                    health: Some(health),
                    keep: 3,
                }],
            };
            fsutil::ensure_dir(&config.state_dir).unwrap();
            Node { dir, config }
        }

        fn live(&self) -> PathBuf {
            self.config.bins[0].path.clone()
        }

        /// Old bytes kept, new bytes at `new_at`; returns the journal entry.
        fn prepare(&self, phase: Phase, new_at: &Path) -> Entry {
            let (old, new) = (b"old".as_slice(), b"new".as_slice());
            let (old_sha, new_sha) = (sha(old), sha(new));
            let kept = swap::kept_path(&self.config.state_dir, "svc", &old_sha);
            fs::create_dir_all(kept.parent().unwrap()).unwrap();
            fs::write(&kept, old).unwrap();
            fs::write(self.live(), old).unwrap();
            fs::write(new_at, new).unwrap();
            let entry = Entry {
                bin: "svc".into(),
                phase,
                target_sha: new_sha,
                target_version: "2".into(),
                staged: self.dir.join("bin/.svc.binproxy-staged.part"),
                previous_sha: Some(old_sha),
                kept: Some(kept),
                started_ms: now_ms(),
                reason: Some("unhealthy".into()),
                manual: false,
                signed_timestamp: None,
            };
            journal::write(&self.config.state_dir, &entry).unwrap();
            entry
        }

        fn recover(&self) -> (Vec<BinResult>, State) {
            let stop = AtomicBool::new(false);
            let mut agent = Agent::new(&self.config, &stop).unwrap();
            let results = agent.recover().unwrap();
            (results, agent.state)
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn sha(b: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        binproxy_protocol::hex(&Sha256::digest(b))
    }

    #[test]
    fn swapping_before_the_rename_keeps_the_old_file_and_drops_the_staged_one() {
        let n = Node::new("swapping-old", true);
        let staged = n.dir.join("bin/.svc.binproxy-staged.part");
        let entry = n.prepare(Phase::Swapping, &staged);
        let (results, _) = n.recover();
        assert!(
            matches!(results[..], [BinResult::Skipped(_)]),
            "{results:?}"
        );
        assert_eq!(fs::read(n.live()).unwrap(), b"old");
        assert!(!entry.staged.exists());
        assert!(journal::read(&n.config.state_dir, "svc").unwrap().is_none());
    }

    #[test]
    fn swapping_after_the_rename_settles_like_a_live_update() {
        let n = Node::new("swapping-new", true);
        let live = n.live();
        n.prepare(Phase::Swapping, &live);
        let (results, state) = n.recover();
        assert_eq!(results, [BinResult::Updated]);
        assert_eq!(fs::read(n.live()).unwrap(), b"new");
        assert_eq!(state.bins["svc"].last.as_ref().unwrap().status, "success");
        assert!(journal::read(&n.config.state_dir, "svc").unwrap().is_none());
        assert!(
            !Outbox::new(&n.config.state_dir).is_empty(),
            "reports queued for later"
        );
    }

    #[test]
    fn swapped_and_unhealthy_rolls_back_and_quarantines() {
        let n = Node::new("swapped-bad", false);
        let live = n.live();
        let entry = n.prepare(Phase::Swapped, &live);
        let (results, state) = n.recover();
        assert!(
            matches!(results[..], [BinResult::RolledBack(_)]),
            "{results:?}"
        );
        assert_eq!(fs::read(n.live()).unwrap(), b"old");
        assert!(state.bins["svc"].quarantine_of(&entry.target_sha).is_some());
        // Persisted before the journal went: a crash now would not lose it.
        let on_disk = State::load(&n.config.state_dir).unwrap();
        assert!(on_disk.bins["svc"]
            .quarantine_of(&entry.target_sha)
            .is_some());
        assert!(journal::read(&n.config.state_dir, "svc").unwrap().is_none());
    }

    #[test]
    fn rolling_back_is_finished_even_if_the_restore_already_happened() {
        let n = Node::new("rolling", true);
        let live = n.live();
        let entry = n.prepare(Phase::RollingBack, &live);
        let kept = entry.kept.clone().unwrap();
        swap::restore(&kept, &live).unwrap();
        let (results, state) = n.recover();
        assert!(
            matches!(results[..], [BinResult::RolledBack(_)]),
            "{results:?}"
        );
        assert_eq!(fs::read(&live).unwrap(), b"old");
        assert_eq!(fs::read(&kept).unwrap(), b"old", "the kept copy stays");
        assert!(state.bins["svc"].quarantine_of(&entry.target_sha).is_some());
    }

    #[test]
    fn healthy_only_needs_the_bookkeeping() {
        let n = Node::new("healthy", false);
        let live = n.live();
        n.prepare(Phase::Healthy, &live);
        // The health check would fail now; a Healthy entry must not run it.
        let (results, state) = n.recover();
        assert_eq!(results, [BinResult::Updated]);
        assert_eq!(fs::read(&live).unwrap(), b"new");
        assert_eq!(state.bins["svc"].last.as_ref().unwrap().status, "success");
    }
}
