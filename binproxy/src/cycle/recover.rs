//! Step 2 of a cycle: finishing what an interrupted earlier cycle left
//! half-done. Each entry of the [`journal`] says which irreversible step its
//! update was about to take or had taken; recovery picks the update up there
//! and runs the same `settle`, `commit` and `roll_back` as a live update, so
//! it ends the way it would have without the interruption.

use std::time::Instant;

use super::Agent;
use crate::config::BinConfig;
use crate::error::Result;
use crate::fetch;
use crate::hashcache::{self, short};
use crate::journal::{self, Entry, Phase};
use crate::outcome::{log_action, BinResult};

impl Agent<'_> {
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
            let delivery = self.delivered(bin, &result, Some(&to));
            log_action(
                &bin.name,
                "recover",
                from.as_deref(),
                Some(&to),
                &result,
                took,
                delivery.as_ref(),
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
}
