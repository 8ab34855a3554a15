//! Recovery of an interrupted update, from each journal phase: it must end
//! the way the update would have ended without the interruption.

use super::*;
use crate::config::HealthConfig;
use std::fs;
use std::time::Duration;

/// A node whose manager is not listening: reports go to the outbox.
pub(super) struct Node {
    pub dir: PathBuf,
    pub config: Config,
}

impl Node {
    pub(super) fn new(tag: &str, healthy: bool) -> Node {
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
            mirrors: Vec::new(),
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

    pub(super) fn live(&self) -> PathBuf {
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
            from: None,
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
