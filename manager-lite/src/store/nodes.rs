//! The node records: durable in the NODES table, mirrored in memory so that
//! a keepalive costs no database access. The mirror is ordered by node id,
//! which is what paging (`GET /api/v1/nodes?after=`) and the chunked passes
//! walk; each node is held in the compact form of [`super::node_record`].
//!
//! A keepalive that changes nothing moves `last_seen` in atomics of the
//! node's entry, under the map's read lock: thousands of them a second never
//! wait for one another, and a pass over the whole fleet ([`Store::scan_nodes`])
//! takes the read lock one chunk at a time, so a writer (a new node) waits
//! for at most one chunk and keepalives never wait for the whole fleet.
//! Record changes, deletions and progress reports bump a change counter
//! ([`Store::fleet_changes`]) that lets the rollout skip recounts when
//! nothing changed.

use binproxy_protocol::Node;
use compact_str::CompactString;
use redb::ReadableTable;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use super::node_record::{NodeRecord, NodeRef};
use super::{to_json, Context, Result, Store, LAST_SEEN, NODES};
use crate::time::{parse_rfc3339, rfc3339};

/// Nodes visited per read-lock hold in a whole-fleet pass.
const CHUNK: usize = 1024;

/// The in-memory mirror of NODES, ordered by node id.
pub type NodeMap = BTreeMap<CompactString, NodeEntry>;

pub struct NodeEntry {
    /// The record as last written (its `last_seen` may be older).
    record: NodeRecord,
    /// Milliseconds since the epoch.
    last_seen: AtomicU64,
    /// `last_seen` changed since the last flush.
    seen_dirty: AtomicBool,
}

impl NodeEntry {
    fn new(record: NodeRecord, last_seen: SystemTime, dirty: bool) -> NodeEntry {
        NodeEntry {
            record,
            last_seen: AtomicU64::new(millis(last_seen)),
            seen_dirty: AtomicBool::new(dirty),
        }
    }

    fn last_seen(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.last_seen.load(Ordering::Relaxed))
    }

    fn touch(&self, now: SystemTime) {
        self.last_seen.store(millis(now), Ordering::Relaxed);
        self.seen_dirty.store(true, Ordering::Release);
    }
}

fn silent_for(last_seen: SystemTime, after: Duration, now: SystemTime) -> bool {
    now.duration_since(last_seen).is_ok_and(|age| age > after)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A node as a whole-fleet pass sees it, without a copy.
pub struct Seen<'a> {
    pub node: NodeRef<'a>,
    pub last_seen: SystemTime,
    pub online: bool,
}

impl Store {
    pub(super) fn load_nodes(&self) -> Result<()> {
        let txn = self.read("loading nodes")?;
        let table = txn.open_table(NODES).at(&self.path, "nodes")?;
        let flushed = txn.open_table(LAST_SEEN).at(&self.path, "last_seen")?;
        let mut entries = Vec::new();
        for row in table.iter().at(&self.path, "nodes")? {
            let (key, value) = row.at(&self.path, "nodes")?;
            let node: Node = self.decode(value.value(), key.value())?;
            let written = parse_rfc3339(&node.last_seen).unwrap_or(SystemTime::UNIX_EPOCH);
            let last_seen = match flushed.get(key.value()).at(&self.path, "last_seen")? {
                Some(ms) => written.max(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.value())),
                None => written,
            };
            let record = NodeRecord::new(&node, &self.symbols);
            entries.push((
                CompactString::from(node.node_id),
                NodeEntry::new(record, last_seen, false),
            ));
        }
        // Collected at once, the B-tree is built with full nodes.
        let map: NodeMap = entries.into_iter().collect();
        *self.nodes.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    fn online(&self, last_seen: SystemTime, now: SystemTime) -> bool {
        now.duration_since(last_seen)
            .is_ok_and(|age| age <= self.opts.offline_after)
            || last_seen > now
    }

    fn view(&self, id: &str, entry: &NodeEntry, now: SystemTime) -> Node {
        let mut node = entry.record.to_node(id);
        let last_seen = entry.last_seen();
        node.last_seen = rfc3339(last_seen);
        node.online = self.online(last_seen, now);
        node
    }

    /// Records a keepalive: registers a new node, or updates its record.
    /// New and changed records are durable before this returns; an unchanged
    /// one only moves `last_seen` in memory. Without `bins_given` the node
    /// keeps the installed hashes it had.
    pub fn keepalive(&self, mut incoming: Node, bins_given: bool, now: SystemTime) -> Result<Node> {
        if let Some(node) = self.keepalive_unchanged(&mut incoming, bins_given, now) {
            return Ok(node);
        }
        if incoming.registered_at.is_empty() {
            incoming.registered_at = rfc3339(now);
        }
        self.save_node(incoming, now)
    }

    /// The keepalive of a known node that changes nothing but `last_seen`:
    /// moves it in memory (under the read lock) and returns the node. `None`
    /// when the record is new or changed and must be written
    /// ([`Store::keepalive`]); `incoming` then carries what it keeps of the
    /// stored record.
    pub fn keepalive_unchanged(
        &self,
        incoming: &mut Node,
        bins_given: bool,
        now: SystemTime,
    ) -> Option<Node> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        let entry = nodes.get(incoming.node_id.as_str())?;
        if !entry.record.same_as(incoming, bins_given) {
            if !bins_given {
                incoming.bins = entry.record.bins_map();
            }
            incoming.registered_at = rfc3339(entry.record.registered_at());
            return None;
        }
        entry.touch(now);
        Some(self.view(&incoming.node_id, entry, now))
    }

    /// A call by the node itself proves it alive: moves its `last_seen` in
    /// memory, flushed with the keepalives' ([`Store::flush_last_seen`]).
    /// `None` when the node is unknown.
    pub fn seen(&self, node_id: &str, now: SystemTime) -> Option<Node> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        let entry = nodes.get(node_id)?;
        entry.touch(now);
        Some(self.view(node_id, entry, now))
    }

    /// Sets what a node says it runs for `bin`. `None` when the node is unknown.
    pub fn set_installed(&self, node_id: &str, bin: &str, sha256: &str) -> Result<Option<Node>> {
        let now = SystemTime::now();
        let node = {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = nodes.get(node_id) else {
                return Ok(None);
            };
            if entry.record.bin(bin) == Some(sha256) {
                entry.touch(now);
                return Ok(Some(self.view(node_id, entry, now)));
            }
            let mut node = entry.record.to_node(node_id);
            node.bins.insert(bin.to_owned(), sha256.to_owned());
            node
        };
        self.save_node(node, now).map(Some)
    }

    /// Writes a node's record, with `now` as its `last_seen`: every caller is
    /// the node itself.
    fn save_node(&self, mut node: Node, now: SystemTime) -> Result<Node> {
        let _guard = self
            .node_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        node.last_seen = rfc3339(now);
        node.online = false;
        let bytes = to_json(&node);
        self.write("saving node", |txn| {
            let mut t = txn.open_table(NODES).at(&self.path, "nodes")?;
            t.insert(node.node_id.as_str(), bytes.as_slice())
                .at(&self.path, "saving node")?;
            Ok(())
        })?;
        let entry = NodeEntry::new(NodeRecord::new(&node, &self.symbols), now, false);
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(CompactString::from(node.node_id.as_str()), entry);
        self.fleet_changed();
        node.online = self.online(now, now);
        Ok(node)
    }

    /// Writes every pending `last_seen` in one transaction, a chunk of the
    /// mirror at a time, into LAST_SEEN (a number a node, not its record):
    /// a flush after a busy interval (every node of a large fleet) costs
    /// little time and no memory.
    pub fn flush_last_seen(&self) -> Result<usize> {
        let _guard = self
            .node_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut any = false;
        self.scan_entries(|_, e| any |= e.seen_dirty.load(Ordering::Relaxed));
        if !any {
            return Ok(0);
        }
        // The nodes whose mark this flush took: marked again if it fails,
        // so the next flush retries them instead of losing their values.
        let mut taken = Vec::new();
        let flushed = self.write("flushing last_seen", |txn| {
            let mut t = txn.open_table(LAST_SEEN).at(&self.path, "last_seen")?;
            let mut failed = None;
            self.scan_entries(|id, e| {
                if failed.is_some() || !e.seen_dirty.swap(false, Ordering::Acquire) {
                    return;
                }
                if let Err(err) = t.insert(id, e.last_seen.load(Ordering::Relaxed)) {
                    failed = Some(err);
                }
                taken.push(CompactString::from(id));
            });
            match failed {
                Some(err) => Err(err).at(&self.path, "flushing last_seen"),
                None => Ok(taken.len()),
            }
        });
        if flushed.is_err() {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            for id in &taken {
                if let Some(e) = nodes.get(id) {
                    e.seen_dirty.store(true, Ordering::Release);
                }
            }
        }
        flushed
    }

    pub fn node(&self, node_id: &str) -> Option<Node> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        nodes
            .get(node_id)
            .map(|e| self.view(node_id, e, SystemTime::now()))
    }

    /// Up to `limit` nodes with ids after `after`, ordered by id, and
    /// whether more follow.
    pub fn nodes_page(&self, after: Option<&str>, limit: usize) -> (Vec<Node>, bool) {
        let now = SystemTime::now();
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = nodes.range::<str, _>((from, Bound::Unbounded));
        let page = rest
            .by_ref()
            .take(limit)
            .map(|(id, e)| self.view(id, e, now))
            .collect();
        (page, rest.next().is_some())
    }

    /// Calls `f` for every node, in id order, holding the read lock for one
    /// chunk at a time: not a snapshot (a node written meanwhile may be
    /// seen in either state, a new one may be missed), but nothing waits
    /// for the whole pass.
    pub fn scan_nodes(&self, mut f: impl FnMut(&Seen)) {
        let now = SystemTime::now();
        self.scan_entries(|id, e| {
            let last_seen = e.last_seen();
            f(&Seen {
                node: NodeRef {
                    id,
                    record: &e.record,
                },
                last_seen,
                online: self.online(last_seen, now),
            });
        });
    }

    fn scan_entries(&self, mut f: impl FnMut(&str, &NodeEntry)) {
        let mut after: Option<CompactString> = None;
        loop {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let mut last = None;
            for (id, entry) in nodes.range::<str, _>((from, Bound::Unbounded)).take(CHUNK) {
                f(id, entry);
                last = Some(id);
            }
            match last {
                Some(id) => after = Some(id.clone()),
                None => return,
            }
        }
    }

    /// Nodes last seen longer than `after` before `now`.
    pub fn silent_nodes(&self, after: Duration, now: SystemTime) -> Vec<String> {
        let mut silent = Vec::new();
        self.scan_nodes(|n| {
            if silent_for(n.last_seen, after, now) {
                silent.push(n.node.id.to_owned());
            }
        });
        silent
    }

    /// Whether `node_id` is still silent for longer than `after` at `now`
    /// (false when unknown): checked again right before a node found by
    /// [`Store::silent_nodes`] is deleted, since it may have called since.
    pub fn still_silent(&self, node_id: &str, after: Duration, now: SystemTime) -> bool {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        nodes
            .get(node_id)
            .is_some_and(|e| silent_for(e.last_seen(), after, now))
    }

    /// A counter that moves whenever a node record changes, a node is
    /// deleted or a progress report is counted: equal values mean the
    /// facts a rollout counts from are the same.
    pub fn fleet_changes(&self) -> u64 {
        self.fleet_changes.load(Ordering::Acquire)
    }

    pub(super) fn fleet_changed(&self) {
        self.fleet_changes.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{opts, TempDir};
    use super::super::tests::node;
    use super::*;

    #[test]
    fn passes_and_pages_see_every_node_once_in_id_order() {
        let dir = TempDir::new("scan");
        let store = Store::open(&dir.db(), opts(10)).unwrap();
        let now = SystemTime::now();
        let start = store.fleet_changes();
        // More than a chunk, so a pass takes the lock more than once.
        let ids: Vec<String> = (0..CHUNK + 100).map(|i| format!("n{i:05}")).collect();
        for id in ids.iter().rev() {
            store.keepalive(node(id), true, now).unwrap();
        }
        assert_eq!(store.fleet_changes(), start + ids.len() as u64);
        let mut seen = Vec::new();
        store.scan_nodes(|n| seen.push(n.node.id.to_owned()));
        assert_eq!(seen, ids);

        let (first, more) = store.nodes_page(None, CHUNK);
        assert!(more);
        let last = first.last().map(|n| n.node_id.clone()).unwrap();
        let (rest, more) = store.nodes_page(Some(&last), CHUNK);
        assert!(!more);
        let paged: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|n| n.node_id.clone())
            .collect();
        assert_eq!(paged, ids);

        // An unchanged keepalive and a sign of life move `last_seen` only.
        let later = now + Duration::from_secs(60);
        let n = store.keepalive(node(&ids[0]), true, later).unwrap();
        assert_eq!(n.last_seen, rfc3339(later));
        store.seen(&ids[1], later).unwrap();
        assert_eq!(store.fleet_changes(), start + ids.len() as u64);
        assert_eq!(store.flush_last_seen().unwrap(), 2);
        assert_eq!(store.flush_last_seen().unwrap(), 0);
    }
}
