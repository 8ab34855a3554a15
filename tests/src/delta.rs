//! What the agent's delta tests (`tests/agent_delta.rs`) share: build-like
//! artifacts big enough for a patch to matter (megabytes of machine-code-like
//! words, each build a few changes from the one before), publishing a
//! version and waiting until the manager has made its patches and zst form
//! in the background, damaging one of those files where the manager keeps
//! it, and reading how an update's bytes came from its success report.

use binproxy_protocol::{Method, ProgressRecord, ProgressStatus, Version};
use std::fs;
use std::time::Duration;

use crate::agent::progress;
use crate::{sha256_hex, wait_until, Manager};

/// How long the manager may take to make a version's forms.
pub const FORMS_LIMIT: Duration = Duration::from_secs(120);

/// A build-like artifact of `len` bytes from `seed`: little-endian words,
/// most from a few thousand values (as opcodes and near offsets are), one
/// in four anything (as constants and far addresses are), so it compresses
/// to about half as a real binary does.
pub fn build(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let word = if x.is_multiple_of(4) {
            x
        } else {
            (x >> 8) % 3000
        };
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The next build of `old`: sixteen words changed here and there, a
/// function's worth of bytes inserted in the middle, a few removed near the
/// start (so what follows moves, as it does when code changes).
pub fn next_build(old: &[u8], seed: u8) -> Vec<u8> {
    let mut new = old.to_vec();
    for k in 0..16usize {
        let at = (k * 104_729 + usize::from(seed) * 7_919) % (new.len() - 4);
        new[at..at + 4].copy_from_slice(&[seed, 0xc3, seed ^ 0x5a, 0x90]);
    }
    let mid = new.len() / 2;
    let inserted: Vec<u8> = (0..400u32)
        .map(|i| (i * 31).to_le_bytes()[0] ^ seed)
        .collect();
    new.splice(mid..mid, inserted);
    new.drain(1000..1100);
    new
}

/// The manager's listing of `version` of `bin`.
pub fn version(m: &Manager, bin: &str, version: &str) -> Version {
    let list: Vec<Version> = m
        .admin_get(&format!("/api/v1/bins/{bin}/versions"))
        .expect(200)
        .parse();
    list.into_iter()
        .find(|v| v.version == version)
        .unwrap_or_else(|| panic!("{bin} {version} is not listed"))
}

/// Waits until the manager has made `version`'s forms (the zst form comes
/// with its patches) and returns the listing.
pub fn with_forms(m: &Manager, bin: &str, v: &str) -> Version {
    wait_until(&format!("the forms of {bin} {v}"), FORMS_LIMIT, || {
        version(m, bin, v).zst.is_some()
    });
    version(m, bin, v)
}

/// Uploads `bytes` as `bin` `v` (any arch), waits for its forms, and
/// releases it; the listing, with its patches and zst form.
pub fn publish_with_forms(m: &Manager, bin: &str, v: &str, bytes: &[u8]) -> Version {
    let up: Version = m.upload(bin, v, None, bytes).expect(201).parse();
    assert_eq!(
        up.sha256sum,
        sha256_hex(bytes),
        "manager stored other bytes"
    );
    let listed = with_forms(m, bin, v);
    m.release(bin, v).expect(201);
    listed
}

/// Overwrites the file the manager keeps for `sha` (an artifact, a patch or
/// a zst form) with as many other bytes: it serves files as they are.
pub fn damage(m: &Manager, sha: &str) {
    let path = m.data_dir.join("artifacts").join(sha);
    let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for b in bytes.iter_mut().skip(48) {
        *b ^= 0x5a;
    }
    fs::write(&path, bytes).unwrap();
}

/// The success report of `node`'s update of `bin` to `target`.
pub fn success(m: &Manager, bin: &str, node: &str, target: &str) -> ProgressRecord {
    let all = progress(m, bin, node);
    all.iter()
        .rev()
        .find(|r| r.status == ProgressStatus::Success && r.target_hash == target)
        .cloned()
        .unwrap_or_else(|| panic!("no success report for {target}: {all:?}"))
}

/// How a report says the bytes came, and how many.
pub fn how(r: &ProgressRecord) -> (Option<Method>, Option<u64>) {
    (r.method, r.bytes)
}
