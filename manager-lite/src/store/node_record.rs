//! The node record as the in-memory mirror holds it: compact, because a
//! fleet of 100,000 nodes keeps 100,000 of them in memory for the life of
//! the process.
//!
//! A [`Node`] as the API shows it is nine strings and two maps, a dozen
//! heap blocks and about 2 KiB a node. Most of those strings are the same
//! across the fleet (architecture, OS, agent version, label keys and values,
//! bin names and the hashes nodes run), so the record keeps one shared copy
//! of each ([`Interner`]); the node's name is inline when short, labels and
//! bins are sorted slices, the registration time a number. The record is
//! turned back into a [`Node`] only for answers ([`NodeRecord::to_node`]).

use binproxy_protocol::{Node, NodeFacts};
use compact_str::CompactString;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::time::{parse_rfc3339, rfc3339};

/// A string many nodes share, stored once.
pub type Sym = Arc<str>;

/// One shared copy of each string the fleet repeats. Entries no record
/// holds any more are dropped once the set has doubled since the last
/// sweep, so it stays bounded by the distinct values in use.
#[derive(Default)]
pub struct Interner {
    inner: Mutex<Symbols>,
}

#[derive(Default)]
struct Symbols {
    set: HashSet<Sym>,
    /// Size of the set after the last sweep.
    swept: usize,
}

/// Fewest entries before a sweep is worth it.
const MIN_SWEEP: usize = 1024;

impl Interner {
    pub fn intern(&self, s: &str) -> Sym {
        let mut symbols = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sym) = symbols.set.get(s) {
            return Arc::clone(sym);
        }
        if symbols.set.len() >= (symbols.swept * 2).max(MIN_SWEEP) {
            // Only this set holds an entry whose count is 1, and a new
            // holder can only come through this lock: safe to drop.
            symbols.set.retain(|sym| Arc::strong_count(sym) > 1);
            symbols.swept = symbols.set.len();
        }
        let sym: Sym = Arc::from(s);
        symbols.set.insert(Arc::clone(&sym));
        sym
    }
}

/// A node's record in the mirror, without its id (the mirror's key) and
/// `last_seen` (kept apart, in atomics).
#[derive(Debug)]
pub struct NodeRecord {
    cpu_arch: Sym,
    os: Sym,
    os_release: Sym,
    bin_proxy_version: Sym,
    node_name: CompactString,
    /// Sorted by key, as the node's map was.
    labels: Box<[(Sym, Sym)]>,
    /// Bin name → sha256 the node runs, sorted by bin.
    bins: Box<[(Sym, Sym)]>,
    /// Seconds since the epoch (records show seconds).
    registered_at: u64,
}

impl NodeRecord {
    pub fn new(node: &Node, symbols: &Interner) -> NodeRecord {
        let pairs = |map: &BTreeMap<String, String>| -> Box<[(Sym, Sym)]> {
            map.iter()
                .map(|(k, v)| (symbols.intern(k), symbols.intern(v)))
                .collect()
        };
        let registered = parse_rfc3339(&node.registered_at).unwrap_or(SystemTime::UNIX_EPOCH);
        NodeRecord {
            cpu_arch: symbols.intern(&node.cpu_arch),
            os: symbols.intern(&node.os),
            os_release: symbols.intern(&node.os_release),
            bin_proxy_version: symbols.intern(&node.bin_proxy_version),
            node_name: CompactString::from(node.node_name.as_str()),
            labels: pairs(&node.labels),
            bins: pairs(&node.bins),
            registered_at: registered
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The record as the API shows it, with `last_seen` and `online` left
    /// for the caller.
    pub fn to_node(&self, node_id: &str) -> Node {
        let map = |pairs: &[(Sym, Sym)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Node {
            node_id: node_id.to_owned(),
            cpu_arch: self.cpu_arch.to_string(),
            os: self.os.to_string(),
            os_release: self.os_release.to_string(),
            node_name: self.node_name.to_string(),
            bin_proxy_version: self.bin_proxy_version.to_string(),
            labels: map(&self.labels),
            bins: map(&self.bins),
            registered_at: rfc3339(self.registered_at()),
            last_seen: String::new(),
            online: false,
        }
    }

    pub fn registered_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.registered_at)
    }

    /// Whether `node` says what this record says, bins included only when
    /// `with_bins` (a keepalive without bins keeps the ones recorded).
    pub fn same_as(&self, node: &Node, with_bins: bool) -> bool {
        let same_pairs = |pairs: &[(Sym, Sym)], map: &BTreeMap<String, String>| {
            pairs.len() == map.len()
                && pairs
                    .iter()
                    .zip(map)
                    .all(|((k, v), (mk, mv))| **k == **mk && **v == **mv)
        };
        *self.cpu_arch == *node.cpu_arch
            && *self.os == *node.os
            && *self.os_release == *node.os_release
            && *self.bin_proxy_version == *node.bin_proxy_version
            && self.node_name == node.node_name
            && same_pairs(&self.labels, &node.labels)
            && (!with_bins || same_pairs(&self.bins, &node.bins))
    }

    /// Bin name → sha256, in bin order.
    pub fn bins(&self) -> impl Iterator<Item = (&str, &str)> {
        self.bins.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn bin(&self, bin: &str) -> Option<&str> {
        find(&self.bins, bin)
    }

    /// The record's bins as the node's map.
    pub fn bins_map(&self) -> BTreeMap<String, String> {
        self.bins()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

fn find<'a>(pairs: &'a [(Sym, Sym)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*pairs[i].1)
}

/// A node of the mirror, borrowed: its id and its record.
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    pub id: &'a str,
    pub record: &'a NodeRecord,
}

impl NodeRef<'_> {
    pub fn name(&self) -> &str {
        &self.record.node_name
    }

    pub fn bin(&self, bin: &str) -> Option<&str> {
        self.record.bin(bin)
    }

    pub fn bins(&self) -> impl Iterator<Item = (&str, &str)> {
        self.record.bins()
    }
}

impl NodeFacts for NodeRef<'_> {
    fn node_id(&self) -> &str {
        self.id
    }
    fn cpu_arch(&self) -> &str {
        &self.record.cpu_arch
    }
    fn os(&self) -> &str {
        &self.record.os
    }
    fn label(&self, key: &str) -> Option<&str> {
        find(&self.record.labels, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            node_id: "web-1".into(),
            cpu_arch: "x86_64".into(),
            os: "linux".into(),
            os_release: "12".into(),
            node_name: "web-1.example.com".into(),
            bin_proxy_version: "0.1.0".into(),
            labels: [("env", "prod"), ("dc", "fra")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            bins: [("a", "00"), ("b", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            registered_at: "2026-12-03T10:00:00Z".into(),
            last_seen: String::new(),
            online: false,
        }
    }

    #[test]
    fn a_record_gives_back_the_node_it_was_made_from() {
        let symbols = Interner::default();
        let record = NodeRecord::new(&node(), &symbols);
        assert_eq!(record.to_node("web-1"), node());
        assert!(record.same_as(&node(), true));
        let r = NodeRef {
            id: "web-1",
            record: &record,
        };
        assert_eq!(r.label("dc"), Some("fra"));
        assert_eq!(r.label("zone"), None);
        assert_eq!(r.bin("b"), Some(""));
        assert_eq!(r.bins().count(), 2);
    }

    #[test]
    fn any_difference_is_seen_and_bins_only_when_asked() {
        let symbols = Interner::default();
        let record = NodeRecord::new(&node(), &symbols);
        let mut other = node();
        other.bins.insert("a".into(), "11".into());
        assert!(!record.same_as(&other, true));
        assert!(record.same_as(&other, false));
        other = node();
        other.labels.insert("env".into(), "dev".into());
        assert!(!record.same_as(&other, false));
        other = node();
        other.node_name.push('x');
        assert!(!record.same_as(&other, false));
    }

    #[test]
    fn shared_strings_are_stored_once_and_unused_ones_swept() {
        let symbols = Interner::default();
        let a = NodeRecord::new(&node(), &symbols);
        let b = NodeRecord::new(&node(), &symbols);
        assert!(Arc::ptr_eq(&a.cpu_arch, &b.cpu_arch));
        assert!(Arc::ptr_eq(&a.labels[0].1, &b.labels[0].1));
        for i in 0..3 * MIN_SWEEP {
            drop(symbols.intern(&format!("gone-{i}")));
        }
        let held = symbols.inner.lock().unwrap().set.len();
        assert!(held < 2 * MIN_SWEEP + 20, "{held} strings held");
        assert!(Arc::ptr_eq(&symbols.intern("x86_64"), &a.cpu_arch));
    }
}
