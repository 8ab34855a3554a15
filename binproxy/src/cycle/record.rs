//! The traces a bin's update leaves: its state, saved before a journal entry
//! that would otherwise recreate it is cleared, and the reports to the
//! manager, each queued durably in the [`Outbox`](crate::report::Outbox)
//! before it is sent.

use binproxy_protocol::{Progress, ProgressStatus, Target};

use super::Agent;
use crate::config::BinConfig;
use crate::delivery::Delivery;
use crate::error::Result;
use crate::outcome::BinResult;
use crate::report::Report;
use crate::state::now_ms;

/// What a progress report says beyond its status.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Said<'a> {
    pub message: Option<&'a str>,
    /// How the update's bytes came, when they did (or were tried).
    pub delivery: Option<&'a Delivery>,
}

/// A failure before the swap.
#[derive(Clone, Copy)]
pub(super) struct Failure<'a> {
    pub message: &'a str,
    /// A hash that failed preflight is quarantined; a download is retried.
    pub quarantine: bool,
    pub delivery: Option<&'a Delivery>,
}

impl Agent<'_> {
    /// Records and reports a failure before the swap; the live file is untouched.
    pub(super) fn fail(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        started_ms: u64,
        failure: Failure<'_>,
    ) -> Result<BinResult> {
        let message = failure.message;
        let st = self.state.bin(&bin.name);
        st.record("failed", &target.sha256sum, message);
        if failure.quarantine {
            st.quarantine(&target.sha256sum, message);
            self.persist()?;
        }
        let said = Said {
            message: Some(message),
            delivery: failure.delivery,
        };
        self.report(bin, target, local, ProgressStatus::Failed, started_ms, said)?;
        Ok(BinResult::Failed(message.to_owned()))
    }

    /// Saves the state now: a quarantine or outcome must be on disk before
    /// the journal entry that would otherwise recreate it is cleared.
    pub(super) fn persist(&self) -> Result<()> {
        self.state.save(&self.config.state_dir)
    }

    /// Queues a progress report and tries to send it (see [`Agent::send`]).
    pub(super) fn report(
        &self,
        bin: &BinConfig,
        target: &Target,
        from: Option<&str>,
        status: ProgressStatus,
        started_ms: u64,
        said: Said<'_>,
    ) -> Result<()> {
        self.send(&Report::Progress {
            bin: bin.name.clone(),
            body: Progress {
                node_id: self.config.node_id.clone(),
                target_hash: target.sha256sum.clone(),
                status,
                processing_time_ms: now_ms().saturating_sub(started_ms),
                from_hash: from.map(str::to_owned),
                message: said.message.map(str::to_owned),
                bytes: said.delivery.map(|d| d.bytes),
                method: said.delivery.map(|d| d.method),
            },
        })
    }

    /// Queues a report and, unless the manager is known to be down (the
    /// targets came from the mirrors), tries to send the queue.
    pub(super) fn send(&self, report: &Report) -> Result<()> {
        if self.manager_down.is_some() {
            return self.outbox.queue(report);
        }
        self.outbox.send(&self.manager, report)
    }
}
