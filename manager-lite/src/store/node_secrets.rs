//! Node secrets: the NODE_SECRETS table (node id → hex sha256 of the node's
//! secret) and its in-memory mirror (sha256 → node id) that authenticates
//! every node request without a read transaction. Only hashes are stored.
//!
//! Every change to the table happens under the mirror's write lock
//! (enrolling, revoking, and deleting a node), so a check made under that
//! lock holds until the write. Enrolling is idempotent for the same secret
//! (an agent killed before it learnt that its enrollment went through asks
//! again with the same secret) and writes nothing unless it enrolls.

use std::collections::HashMap;

use super::{Context, Result, Store, NODE_SECRETS};

/// What [`Store::enroll_node`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolling {
    /// The node had no secret: this one is stored, durably.
    Enrolled,
    /// The node is enrolled with this very secret already: nothing written.
    Again,
    /// The node is enrolled with another secret: nothing written.
    OtherSecret,
    /// This secret is another node's: nothing written.
    SecretTaken,
}

impl Store {
    pub(super) fn load_node_secrets(&self) -> Result<()> {
        self.node_secrets.load(
            self,
            NODE_SECRETS,
            ("loading node secrets", "node secrets"),
            |map: &mut HashMap<_, _>, node, sha| {
                map.insert(sha.to_owned(), node.to_owned());
                Ok(())
            },
        )
    }

    /// The node whose secret hashes to `sha256`.
    pub fn node_of_secret(&self, sha256: &str) -> Option<String> {
        self.node_secrets.read().get(sha256).cloned()
    }

    /// Enrolls `node` with `sha256`, the hash of its secret. Durable before
    /// it returns [`Enrolling::Enrolled`]; every other answer wrote nothing
    /// (the checks are a read transaction and the mirror).
    pub fn enroll_node(&self, node: &str, sha256: &str) -> Result<Enrolling> {
        let mut map = self.node_secrets.lock();
        let stored = {
            let txn = self.read("reading a node secret")?;
            let t = txn
                .open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?;
            let row = t.get(node).at(&self.path, "node secrets")?;
            row.map(|v| v.value().to_owned())
        };
        match stored {
            Some(old) if old == sha256 => return Ok(Enrolling::Again),
            Some(_) => return Ok(Enrolling::OtherSecret),
            None if map.contains_key(sha256) => return Ok(Enrolling::SecretTaken),
            None => {}
        }
        self.write("enrolling node", |txn| {
            let mut t = txn
                .open_table(NODE_SECRETS)
                .at(&self.path, "node secrets")?;
            t.insert(node, sha256).at(&self.path, "enrolling node")?;
            Ok(())
        })?;
        map.insert(sha256.to_owned(), node.to_owned());
        Ok(Enrolling::Enrolled)
    }

    /// Forgets a node's secret; `false` if it had none.
    pub fn revoke_node(&self, node: &str) -> Result<bool> {
        let removed = self.node_secrets.write_through(
            self,
            "revoking node",
            |txn| {
                let mut t = txn
                    .open_table(NODE_SECRETS)
                    .at(&self.path, "node secrets")?;
                let old = t.remove(node).at(&self.path, "revoking node")?;
                Ok(old.map(|v| v.value().to_owned()))
            },
            |map, removed| {
                if let Some(sha) = removed {
                    map.remove(sha);
                }
            },
        )?;
        Ok(removed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{opts, TempDir};

    #[test]
    fn enrolling_is_idempotent_for_the_same_secret_only() {
        let dir = TempDir::new("enroll");
        let store = Store::open(&dir.db(), opts(10)).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(store.enroll_node("n1", &a).unwrap(), Enrolling::Enrolled);
        assert_eq!(store.enroll_node("n1", &a).unwrap(), Enrolling::Again);
        assert_eq!(store.enroll_node("n1", &b).unwrap(), Enrolling::OtherSecret);
        assert_eq!(store.enroll_node("n2", &a).unwrap(), Enrolling::SecretTaken);
        assert_eq!(store.node_of_secret(&a).as_deref(), Some("n1"));
        assert_eq!(store.node_of_secret(&b), None);
        drop(store);
        // Durable, and the refused ones left nothing behind.
        let store = Store::open(&dir.db(), opts(10)).unwrap();
        assert_eq!(store.node_of_secret(&a).as_deref(), Some("n1"));
        assert_eq!(store.node_of_secret(&b), None);
        assert!(store.revoke_node("n1").unwrap());
        assert_eq!(store.enroll_node("n1", &b).unwrap(), Enrolling::Enrolled);
        assert_eq!(store.enroll_node("n2", &a).unwrap(), Enrolling::Enrolled);
    }
}
