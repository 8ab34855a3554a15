//! Progress reports: the PROGRESS table ((bin, report id) → JSON
//! [`ProgressRecord`]), its per-node index PROGRESS_BY_NODE that bounds the
//! history kept per node and bin, and RELEASE_NODES, the latest status of
//! each node per live release the report is about, mirrored in memory for
//! the rollout's counts and the targets of paused releases. RELEASE_BYTES
//! sums, per release, the bytes its nodes downloaded (each node's first
//! success), for the savings of deltas.

use binproxy_protocol::{Progress, ProgressRecord, ProgressStatus};
use redb::{ReadableTable, ReadableTableMetadata};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::{
    next_id, to_json, Context, Result, Store, KEY_NEXT_PROGRESS, PROGRESS, PROGRESS_BY_NODE,
    RELEASE_BYTES, RELEASE_NODES,
};
use crate::time::rfc3339;

impl Store {
    /// Stores a progress report durably and prunes that node's history for
    /// the bin to the newest `progress_keep`.
    pub fn add_progress(&self, bin: &str, p: &Progress, now: SystemTime) -> Result<ProgressRecord> {
        let keep = self.opts.progress_keep.max(1);
        // The live releases this report is about: those whose artifacts include its hash.
        let mut releases = Vec::new();
        for r in self
            .live_releases()
            .iter()
            .filter(|r| r.bin_name == bin && r.status.is_live())
        {
            let versions = self.versions(bin, Some(&r.version))?;
            if let Some(v) = versions.iter().find(|v| v.sha256sum == p.target_hash) {
                releases.push((r.id, v.size));
            }
        }
        let record = self.write("storing progress", |txn| {
            let mut per_release = txn
                .open_table(RELEASE_NODES)
                .at(&self.path, "release nodes")?;
            let mut bytes = txn
                .open_table(RELEASE_BYTES)
                .at(&self.path, "release bytes")?;
            for &(id, full) in &releases {
                let before = per_release
                    .insert((id, p.node_id.as_str()), p.status.as_str())
                    .at(&self.path, "storing progress")?
                    .map(|prev| prev.value() == ProgressStatus::Success.as_str());
                // A node's first success counts its bytes; a repeat does not.
                if let (ProgressStatus::Success, Some(got), false) =
                    (p.status, p.bytes, before.unwrap_or(false))
                {
                    let (sum, sum_full) = bytes
                        .get(id)
                        .at(&self.path, "release bytes")?
                        .map_or((0, 0), |b| b.value());
                    bytes
                        .insert(id, (sum + got, sum_full + full))
                        .at(&self.path, "release bytes")?;
                }
            }
            drop(bytes);
            let id = next_id(txn, KEY_NEXT_PROGRESS).at(&self.path, "progress id")?;
            let record = ProgressRecord {
                id,
                node_id: p.node_id.clone(),
                bin_name: bin.to_owned(),
                target_hash: p.target_hash.clone(),
                from_hash: p.from_hash.clone(),
                status: p.status,
                processing_time_ms: p.processing_time_ms,
                message: p.message.clone(),
                bytes: p.bytes,
                method: p.method,
                received_at: rfc3339(now),
            };
            let mut reports = txn.open_table(PROGRESS).at(&self.path, "progress")?;
            let mut index = txn
                .open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            reports
                .insert((bin, id), to_json(&record).as_slice())
                .at(&self.path, "storing progress")?;
            let node = p.node_id.as_str();
            index
                .insert((bin, node, id), ())
                .at(&self.path, "storing progress")?;
            let ids: Vec<u64> = index
                .range((bin, node, 0)..=(bin, node, u64::MAX))
                .at(&self.path, "pruning progress")?
                .map(|row| row.map(|(k, _)| k.value().2))
                .collect::<std::result::Result<_, _>>()
                .at(&self.path, "pruning progress")?;
            for &old in ids.iter().take(ids.len().saturating_sub(keep)) {
                index
                    .remove((bin, node, old))
                    .at(&self.path, "pruning progress")?;
                reports
                    .remove((bin, old))
                    .at(&self.path, "pruning progress")?;
            }
            Ok(record)
        })?;
        // After the commit, as every mirror changes.
        let mut map = self.release_reports.lock();
        for (id, _) in releases {
            map.entry(id)
                .or_default()
                .insert(p.node_id.clone(), p.status);
        }
        drop(map);
        self.fleet_changed();
        Ok(record)
    }

    /// Progress reports of `bin`, newest first, optionally of one node.
    pub fn progress(
        &self,
        bin: &str,
        node_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProgressRecord>> {
        let txn = self.read("reading progress")?;
        let reports = txn.open_table(PROGRESS).at(&self.path, "progress")?;
        let mut out = Vec::new();
        if let Some(node) = node_id {
            let index = txn
                .open_table(PROGRESS_BY_NODE)
                .at(&self.path, "progress")?;
            let rows = index
                .range((bin, node, 0)..=(bin, node, u64::MAX))
                .at(&self.path, "progress")?;
            for row in rows.rev().take(limit) {
                let (key, _) = row.at(&self.path, "progress")?;
                let id = key.value().2;
                let hit = reports.get((bin, id)).at(&self.path, "progress")?;
                if let Some(v) = hit {
                    out.push(self.decode(v.value(), "progress")?);
                }
            }
        } else {
            let rows = reports
                .range((bin, 0)..=(bin, u64::MAX))
                .at(&self.path, "progress")?;
            for row in rows.rev().take(limit) {
                let (_, v) = row.at(&self.path, "progress")?;
                out.push(self.decode(v.value(), "progress")?);
            }
        }
        Ok(out)
    }

    /// Each node's newest kept report of `bin` about one of `hashes` (or,
    /// when none of its kept reports is, its newest), read in one
    /// transaction: what a failed node last said about a release.
    pub fn last_reports<'a>(
        &self,
        bin: &str,
        nodes: impl IntoIterator<Item = &'a str>,
        hashes: &HashSet<String>,
    ) -> Result<Vec<ProgressRecord>> {
        let txn = self.read("reading progress")?;
        let reports = txn.open_table(PROGRESS).at(&self.path, "progress")?;
        let index = txn
            .open_table(PROGRESS_BY_NODE)
            .at(&self.path, "progress")?;
        let mut out = Vec::new();
        for node in nodes {
            let rows = index
                .range((bin, node, 0)..=(bin, node, u64::MAX))
                .at(&self.path, "progress")?;
            let mut newest = None;
            for row in rows.rev() {
                let (key, _) = row.at(&self.path, "progress")?;
                let Some(v) = reports
                    .get((bin, key.value().2))
                    .at(&self.path, "progress")?
                else {
                    continue;
                };
                let record: ProgressRecord = self.decode(v.value(), "progress")?;
                if hashes.contains(&record.target_hash) {
                    newest = Some(record);
                    break;
                }
                newest.get_or_insert(record);
            }
            out.extend(newest);
        }
        Ok(out)
    }

    /// Counts rows of the progress table (for tests of the retention bound).
    pub fn progress_rows(&self) -> Result<u64> {
        let txn = self.read("reading progress")?;
        let t = txn.open_table(PROGRESS).at(&self.path, "progress")?;
        t.len().at(&self.path, "progress")
    }

    pub(super) fn load_release_reports(&self) -> Result<()> {
        self.release_reports.load(
            self,
            RELEASE_NODES,
            ("loading release reports", "release nodes"),
            |map: &mut HashMap<u64, HashMap<String, ProgressStatus>>, (id, node), status| {
                if let Some(status) = status_of(status) {
                    map.entry(id).or_default().insert(node.to_owned(), status);
                }
                Ok(())
            },
        )
    }

    /// Bytes the nodes that succeeded in release `id` downloaded, and what
    /// full downloads would have been.
    pub fn release_bytes(&self, id: u64) -> Result<(u64, u64)> {
        let txn = self.read("reading release bytes")?;
        let t = txn
            .open_table(RELEASE_BYTES)
            .at(&self.path, "release bytes")?;
        let found = t.get(id).at(&self.path, "release bytes")?;
        Ok(found.map_or((0, 0), |b| b.value()))
    }

    /// Latest report per node for a release.
    pub fn release_reports(&self, id: u64) -> HashMap<String, ProgressStatus> {
        self.release_reports
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `node` has reported progress for release `id` (durable: the
    /// report was committed before it was counted).
    pub fn has_reported(&self, id: u64, node: &str) -> bool {
        self.release_reports
            .read()
            .get(&id)
            .is_some_and(|nodes| nodes.contains_key(node))
    }
}

fn status_of(text: &str) -> Option<ProgressStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{opts, TempDir};

    fn progress(node: &str, n: u64) -> Progress {
        Progress {
            node_id: node.into(),
            target_hash: "a".repeat(64),
            status: ProgressStatus::Success,
            processing_time_ms: n,
            from_hash: None,
            message: None,
            bytes: None,
            method: None,
        }
    }

    #[test]
    fn progress_history_is_bounded_per_node_and_bin() {
        let dir = TempDir::new("prune");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let now = SystemTime::now();
        for i in 0..10 {
            store
                .add_progress("streamd", &progress("n1", i), now)
                .unwrap();
            store
                .add_progress("streamd", &progress("n2", i), now)
                .unwrap();
        }
        store
            .add_progress("other", &progress("n1", 99), now)
            .unwrap();
        let n1 = store.progress("streamd", Some("n1"), 100).unwrap();
        assert_eq!(
            n1.iter().map(|r| r.processing_time_ms).collect::<Vec<_>>(),
            [9, 8, 7]
        );
        assert_eq!(store.progress("streamd", None, 100).unwrap().len(), 6);
        assert_eq!(store.progress("streamd", None, 2).unwrap().len(), 2);
        assert_eq!(store.progress_rows().unwrap(), 7);
    }
}
