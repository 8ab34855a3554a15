//! The fleet as `/metrics` and `GET /api/v1/fleet` count it: nodes online
//! and offline, per arch, and which version each bin runs, in one chunked
//! pass over the nodes in memory.

use binproxy_protocol::{NodeFacts, Release, Version};
use redb::ReadableTable;
use std::collections::{BTreeMap, HashMap};

use super::{Context, Result, Store, RELEASES, VERSIONS};

impl Store {
    /// What `/metrics` shows of the fleet: the versions and releases read
    /// in one transaction, the nodes counted from memory in one chunked
    /// pass (no copy of the fleet).
    pub fn fleet_snapshot(&self) -> Result<FleetSnapshot> {
        let txn = self.read("reading the fleet for metrics")?;
        let vt = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let mut versions = HashMap::new();
        for row in vt.iter().at(&self.path, "versions")? {
            let (_, value) = row.at(&self.path, "versions")?;
            let v: Version = self.decode(value.value(), "version")?;
            versions.insert((v.bin_name, v.sha256sum), v.version);
        }
        let rt = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let mut releases = Vec::new();
        for row in rt.iter().at(&self.path, "releases")?.rev() {
            let (_, value) = row.at(&self.path, "releases")?;
            releases.push(self.decode(value.value(), "release")?);
        }
        Ok(self.count_fleet(&versions, releases))
    }

    /// The fleet from memory alone, for when the database cannot be read
    /// (degraded storage): live releases, and every hash `unknown`.
    pub fn fleet_in_memory(&self) -> FleetSnapshot {
        self.count_fleet(&HashMap::new(), self.live_releases().to_vec())
    }

    /// Counts the nodes in one chunked pass; `versions`: (bin, sha) → version.
    fn count_fleet(
        &self,
        versions: &HashMap<(String, String), String>,
        releases: Vec<Release>,
    ) -> FleetSnapshot {
        let mut fleet = FleetSnapshot {
            online: 0,
            offline: 0,
            arches: BTreeMap::new(),
            running: BTreeMap::new(),
            releases,
        };
        let mut key = (String::new(), String::new());
        self.scan_nodes(|n| {
            *if n.online {
                &mut fleet.online
            } else {
                &mut fleet.offline
            } += 1;
            count(&mut fleet.arches, n.node.cpu_arch());
            for (bin, sha) in n.node.bins() {
                if !fleet.running.contains_key(bin) {
                    fleet.running.insert(bin.to_owned(), Running::default());
                }
                let Some(running) = fleet.running.get_mut(bin) else {
                    continue;
                };
                bin.clone_into(&mut key.0);
                sha.clone_into(&mut key.1);
                match versions.get(&key) {
                    _ if sha.is_empty() => running.missing += 1,
                    Some(v) => count(&mut running.versions, v),
                    None => running.unknown += 1,
                }
            }
        });
        fleet
    }
}

/// The fleet as `/metrics` sees it at one scrape.
pub struct FleetSnapshot {
    /// Nodes seen within `--offline-after`, and the others.
    pub online: u64,
    pub offline: u64,
    /// Nodes per CPU arch (empty: the node did not say).
    pub arches: BTreeMap<String, u64>,
    /// Per bin, the nodes on each version, missing it or on an unknown hash.
    pub running: BTreeMap<String, Running>,
    /// Every release, newest first.
    pub releases: Vec<Release>,
}

/// What the nodes that list one bin run.
#[derive(Debug, Default)]
pub struct Running {
    /// Version → nodes that run it (any arch).
    pub versions: BTreeMap<String, u64>,
    /// Nodes that list the bin without a file.
    pub missing: u64,
    /// Nodes that run a hash no upload of the bin has.
    pub unknown: u64,
}

/// One more of `key`; allocates only for a new key.
fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}
