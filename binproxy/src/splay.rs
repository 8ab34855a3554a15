//! Where this node's cycles fall within `splay`: a fixed offset derived from
//! its node id, the same every run and different across nodes, so a fleet on
//! the same cron line or daemon interval does not call the manager at once.
//! `binproxy run --now` skips the wait; a stop request cuts it short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// This node's fixed offset within `splay`: the same every run, different
/// across nodes, so a fleet on `* * * * *` spreads over the window.
pub fn offset(node_id: &str, splay: Duration) -> Duration {
    use sha2::{Digest, Sha256};
    let ms = u64::try_from(splay.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(node_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % ms)
}

/// Sleeps, returning early when asked to stop.
pub fn sleep(d: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splay_is_deterministic_and_bounded() {
        let s = Duration::from_secs(30);
        assert_eq!(offset("web-01", s), offset("web-01", s));
        assert!(offset("web-01", s) < s);
        assert_eq!(offset("web-01", Duration::ZERO), Duration::ZERO);
        let distinct: std::collections::HashSet<_> =
            (0..100).map(|i| offset(&format!("n{i}"), s)).collect();
        assert!(
            distinct.len() > 90,
            "offsets should spread: {}",
            distinct.len()
        );
    }
}
