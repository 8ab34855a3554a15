//! Deleting: a node with everything of it (its record, `last_seen`, pins
//! and secret, in one transaction), and versions, for retention.
//!
//! A version's rows go in one transaction that also reads what refers to
//! them, so no release or pin can come to name a version between the check
//! and the delete (redb runs one write
//! transaction at a time). Whether a reference keeps a version is the
//! caller's policy ([`crate::retention`]); this only persists. The answer
//! names the artifact files no version refers to any more: the caller
//! removes them after the commit, so a crash leaves an orphan file (removed
//! at the next start), never a version without its file.

use binproxy_protocol::{Release, Version};
use redb::ReadableTable;
use std::collections::HashSet;

use std::sync::PoisonError;

use super::{
    Context, Result, Store, FORMS, LAST_SEEN, NODES, NODE_SECRETS, PINS, RELEASES, VERSIONS,
};

/// What refers to a bin's versions, read inside the deleting transaction.
pub struct References {
    /// Every release of the bin, whatever its status.
    pub releases: Vec<Release>,
    /// (node, version) of every pin of the bin.
    pub pins: Vec<(String, String)>,
}

/// What [`Store::delete_version`] did.
#[derive(Debug)]
pub enum Deletion {
    /// The rows are gone; `orphans` are the hashes no version refers to now.
    Deleted {
        versions: Vec<Version>,
        orphans: Vec<String>,
    },
    /// No artifact of that version (and arch).
    NotFound,
    /// Kept, for this reason.
    Refused(String),
}

impl Store {
    /// Removes a node: its record, pins and secret, in one transaction (its
    /// progress reports stay with the releases). `false` when unknown. A
    /// node that is still alive registers again with its next keepalive.
    pub fn delete_node(&self, node_id: &str) -> Result<bool> {
        // Held across the write: a flush of `last_seen` in between would
        // write the node's LAST_SEEN row back.
        let _guard = self
            .node_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut pins = self.pins.lock();
        let mut secrets = self.node_secrets.lock();
        let pinned: Vec<String> = pins
            .keys()
            .filter(|(n, _)| n == node_id)
            .map(|(_, b)| b.clone())
            .collect();
        let (existed, secret) = self.write("deleting node", |txn| {
            let existed = txn
                .open_table(NODES)
                .at(&self.path, "nodes")?
                .remove(node_id)
                .at(&self.path, "deleting node")?
                .is_some();
            txn.open_table(LAST_SEEN)
                .at(&self.path, "last_seen")?
                .remove(node_id)
                .at(&self.path, "deleting node")?;
            let mut t = txn.open_table(PINS).at(&self.path, "pins")?;
            for bin in &pinned {
                t.remove((node_id, bin.as_str()))
                    .at(&self.path, "deleting pins")?;
            }
            let secret = txn
                .open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?
                .remove(node_id)
                .at(&self.path, "deleting node secret")?
                .map(|v| v.value().to_owned());
            Ok((existed, secret))
        })?;
        for bin in pinned {
            pins.remove(&(node_id.to_owned(), bin));
        }
        if let Some(sha) = &secret {
            secrets.remove(sha);
        }
        // One mirror lock at a time past this point, as everywhere else.
        drop((pins, secrets));
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_id);
        self.fleet_changed();
        Ok(existed || secret.is_some())
    }

    /// Deletes the artifacts of `bin` `version`: of every arch (`arch`
    /// `None`), the arch-less one (`Some("")`) or one arch, unless `refuse`
    /// finds a reason to keep them in what refers to the bin's versions.
    pub fn delete_version(
        &self,
        bin: &str,
        version: &str,
        arch: Option<&str>,
        refuse: impl FnOnce(&References) -> Option<String>,
    ) -> Result<Deletion> {
        self.with_forms_reloaded(|| {
            self.write("deleting version", |txn| {
                let mut versions = txn.open_table(VERSIONS).at(&self.path, "versions")?;
                let mut doomed = Vec::new();
                for row in versions
                    .range((bin, version, "")..)
                    .at(&self.path, "versions")?
                {
                    let (key, value) = row.at(&self.path, "versions")?;
                    let (b, v, a) = key.value();
                    if b != bin || v != version {
                        break;
                    }
                    if arch.is_none_or(|want| want == a) {
                        doomed.push((
                            a.to_owned(),
                            self.decode::<Version>(value.value(), "version")?,
                        ));
                    }
                }
                if doomed.is_empty() {
                    return Ok(Deletion::NotFound);
                }
                let refs = self.references(txn, bin)?;
                if let Some(why) = refuse(&refs) {
                    return Ok(Deletion::Refused(why));
                }
                for (a, _) in &doomed {
                    versions
                        .remove((bin, version, a.as_str()))
                        .at(&self.path, "deleting version")?;
                }
                let mut orphans: HashSet<String> =
                    doomed.iter().map(|(_, v)| v.sha256sum.clone()).collect();
                let mut live = HashSet::new();
                for row in versions.iter().at(&self.path, "versions")? {
                    let (_, value) = row.at(&self.path, "versions")?;
                    live.insert(self.decode::<Version>(value.value(), "version")?.sha256sum);
                }
                orphans.retain(|sha| !live.contains(sha));
                // Its zst form and patches to it and from it go with it.
                let mut forms = txn.open_table(FORMS).at(&self.path, "forms")?;
                let freed = self.drop_forms(&mut forms, &orphans)?;
                orphans.extend(freed.into_iter().filter(|sha| !live.contains(sha)));
                Ok(Deletion::Deleted {
                    versions: doomed.into_iter().map(|(_, v)| v).collect(),
                    orphans: orphans.into_iter().collect(),
                })
            })
        })
    }

    fn references(&self, txn: &redb::WriteTransaction, bin: &str) -> Result<References> {
        let releases = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let pins = txn.open_table(PINS).at(&self.path, "pins")?;
        self.references_in(&releases, &pins, bin)
    }

    /// What refers to `bin`'s versions now, read outside any write: lets
    /// the caller pass over versions it would keep without a write
    /// transaction (an empty commit is an fsync). [`Store::delete_version`]
    /// checks again inside its own.
    pub fn references_now(&self, bin: &str) -> Result<References> {
        let txn = self.read("reading what refers to versions")?;
        let releases = txn.open_table(RELEASES).at(&self.path, "releases")?;
        let pins = txn.open_table(PINS).at(&self.path, "pins")?;
        self.references_in(&releases, &pins, bin)
    }

    fn references_in(
        &self,
        releases: &impl ReadableTable<u64, &'static [u8]>,
        pins: &impl ReadableTable<(&'static str, &'static str), &'static str>,
        bin: &str,
    ) -> Result<References> {
        let releases = self
            .scan_releases(releases)?
            .into_iter()
            .filter(|r| r.bin_name == bin)
            .collect();
        let mut pinned = Vec::new();
        for row in pins.iter().at(&self.path, "pins")? {
            let (key, value) = row.at(&self.path, "pins")?;
            let (node, b) = key.value();
            if b == bin {
                pinned.push((node.to_owned(), value.value().to_owned()));
            }
        }
        Ok(References {
            releases,
            pins: pinned,
        })
    }
}
