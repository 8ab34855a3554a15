//! `binproxy rollback`: an operator puts a kept version back. It goes
//! through the same journal, swap, health check and automatic undo as an
//! update; the version left behind is quarantined so that the next run does
//! not bring it straight back.

use binproxy_protocol::{ProgressStatus, Target};
use std::time::Instant;

use super::{Agent, Origin};
use crate::config::BinConfig;
use crate::error::{Error, Result};
use crate::hashcache::short;
use crate::journal::Entry;
use crate::outcome::{log_action, BinResult};
use crate::state::now_ms;
use crate::swap;

impl Agent<'_> {
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
            ..Target::default()
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
            None,
        );
        Ok(result)
    }

    /// The bookkeeping of a healthy operator's rollback (from `commit`): the
    /// version left is recorded as rolled back and quarantined here, so that
    /// the next run does not bring it straight back, and reported so.
    pub(super) fn record_operator_rollback(
        &mut self,
        bin: &BinConfig,
        entry: &Entry,
    ) -> Result<()> {
        let left = entry.previous_sha.clone().unwrap_or_default();
        let message = format!(
            "operator rolled back from {} to {}",
            short(&left),
            short(&entry.target_sha)
        );
        let st = self.state.bin(&bin.name);
        st.record("rolled_back", &left, &message);
        // The version left behind must not come straight back next run.
        st.quarantine(&left, "rolled back by the operator");
        let from = Target {
            sha256sum: left,
            ..entry.target()
        };
        let said = super::record::Said {
            message: Some(&message),
            delivery: None,
        };
        let status = ProgressStatus::RolledBack;
        self.report(bin, &from, None, status, entry.started_ms, said)
    }
}
