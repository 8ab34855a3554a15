//! The fleet as `/metrics` counts it: nodes online and offline, and which
//! version each bin runs, in one chunked pass over the nodes in memory.

use binproxy_protocol::{Release, Version};
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
            for (bin, sha) in n.node.bins() {
                bin.clone_into(&mut key.0);
                sha.clone_into(&mut key.1);
                let version = match versions.get(&key) {
                    _ if sha.is_empty() => "none",
                    Some(v) => v.as_str(),
                    None => "unknown",
                };
                count_running(&mut fleet.running, bin, version);
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
    /// bin → version it runs → nodes; the version is `none` for a missing
    /// file, `unknown` for a hash no upload has.
    pub running: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every release, newest first.
    pub releases: Vec<Release>,
}

/// One more node running `bin` `version`; allocates only for a new pair.
fn count_running(running: &mut BTreeMap<String, BTreeMap<String, u64>>, bin: &str, version: &str) {
    if !running.contains_key(bin) {
        running.insert(bin.to_owned(), BTreeMap::new());
    }
    let Some(versions) = running.get_mut(bin) else {
        return;
    };
    match versions.get_mut(version) {
        Some(n) => *n += 1,
        None => {
            versions.insert(version.to_owned(), 1);
        }
    }
}
