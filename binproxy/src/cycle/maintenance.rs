//! Maintenance windows in the cycle. Outside every configured window a bin
//! whose target differs from what is on disk is left alone: the keepalive has
//! already gone out (so the fleet view stays fresh) and queued reports are
//! still delivered, but nothing is downloaded, swapped or reported anew.
//!
//! With `prestage`, the target is downloaded and verified outside the window
//! into the same `.part` file beside the live one that an update uses; the
//! update inside the window finds it complete and re-checks it without the
//! network, so the swap does not wait for a download.

use binproxy_protocol::window::Windows;
use binproxy_protocol::Target;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use super::{Agent, BinResult};
use crate::config::BinConfig;
use crate::fetch;
use crate::mirror::TargetFrom;
use crate::state::Provenance;

/// When the windows next open (RFC 3339, UTC) if they are closed at `unix`.
pub fn closed_until(windows: &Windows, unix: u64) -> Option<String> {
    let now = i64::try_from(unix).unwrap_or(i64::MAX);
    let at = windows.closed_until(now)?;
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    Some(humantime::format_rfc3339_seconds(at).to_string())
}

/// Whether `target` is already fully downloaded beside `bin`'s live file
/// (verified again when it is swapped in).
pub fn is_staged(bin: &BinConfig, target: &Target) -> bool {
    let part = fetch::part_path(&bin.path, &target.sha256sum);
    target.size > 0 && std::fs::metadata(part).is_ok_and(|m| m.len() == target.size)
}

impl Agent<'_> {
    /// What a bin off its target does while the windows are closed; `None`
    /// when they are open and the update may go ahead.
    pub(super) fn outside_window(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        from: &TargetFrom,
    ) -> Option<BinResult> {
        let until = closed_until(&self.config.windows, crate::state::now_unix())?;
        let mut why = format!("outside maintenance window until {until}");
        if self.config.prestage {
            why.push_str("; ");
            why.push_str(&self.prestage(bin, target, local, from));
        }
        Some(BinResult::Skipped(why))
    }

    /// Gets and verifies `target` ahead of the window (by a patch or the
    /// zst form too, as an update would). Failures back off like an
    /// update's download and are recorded here, not reported: the update
    /// inside the window reports what it meets.
    fn prestage(
        &mut self,
        bin: &BinConfig,
        target: &Target,
        local: Option<&str>,
        from: &TargetFrom,
    ) -> String {
        if is_staged(bin, target) {
            return "the new version is staged".into();
        }
        if let Err(e) = fetch::remove_strays(&bin.path, &Self::part_hashes(target)) {
            return format!("not staged: {e}");
        }
        let obtained = match self.authorize(bin, target, from) {
            Err(why) => Err(format!("refused: {why}")),
            Ok(signed) => self
                .obtain(bin, target, local, from, signed.as_ref())
                .map_err(|not| not.message()),
        };
        match obtained {
            Ok(obtained) => {
                if let Some(artifact) = obtained.fetched.from {
                    self.state.bin(&bin.name).staged_from = Some(Provenance {
                        sha256: target.sha256sum.clone(),
                        target: from.to_string(),
                        artifact,
                        delivery: obtained.delivery,
                    });
                }
                "the new version is downloaded, verified and staged".into()
            }
            Err(e) if self.stop.load(Ordering::Relaxed) => format!("staging stopped: {e}"),
            Err(e) => {
                let st = self.state.bin(&bin.name);
                let wait = st.back_off(&target.sha256sum);
                let message = format!(
                    "staging failed: {e}; next try in {}",
                    humantime::format_duration(wait)
                );
                st.record("failed", &target.sha256sum, &message);
                message
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_is_rfc3339_utc() {
        // 2024-01-01 00:00 UTC, a Monday; the window opens at 01:00 +08:00 Tuesday.
        let windows = Windows::parse(&["Tue 01:00-05:00 +08:00"]).unwrap();
        assert_eq!(
            closed_until(&windows, 1_704_067_200).as_deref(),
            Some("2024-01-01T17:00:00Z")
        );
        assert_eq!(closed_until(&windows, 1_704_067_200 + 18 * 3600), None);
        assert_eq!(closed_until(&Windows::default(), 0), None);
    }
}
