//! Named admin tokens (the TOKENS table and its mirror, by the sha256 of the
//! secret: the secret itself is never stored) and the audit log of admin
//! writes (the AUDIT table, pruned to the newest [`MAX_AUDIT`]).

use binproxy_protocol::{AuditRecord, TokenInfo};
use redb::ReadableTable;
use std::collections::HashMap;

use super::{next_id, to_json, Context, Result, Store, AUDIT, KEY_NEXT_AUDIT, TOKENS};

/// Audit records kept; older ones are pruned.
pub const MAX_AUDIT: u64 = 100_000;

/// A named admin token as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredToken {
    info: TokenInfo,
    /// Hex sha256 of the secret.
    sha256: String,
}

impl Store {
    pub(super) fn load_tokens(&self) -> Result<()> {
        self.tokens.load(
            self,
            TOKENS,
            ("loading tokens", "tokens"),
            |map: &mut HashMap<_, _>, _, value| {
                let stored: StoredToken = self.decode(value, "token")?;
                map.insert(stored.sha256, stored.info);
                Ok(())
            },
        )
    }

    /// Stores a token by the sha256 of its secret; `false` if the name is taken.
    pub fn add_token(&self, info: &TokenInfo, sha256: &str) -> Result<bool> {
        let stored = StoredToken {
            info: info.clone(),
            sha256: sha256.to_owned(),
        };
        self.tokens.write_through(
            self,
            "storing token",
            |txn| {
                let mut t = txn.open_table(TOKENS).at(&self.path, "tokens")?;
                if t.get(info.name.as_str())
                    .at(&self.path, "tokens")?
                    .is_some()
                {
                    return Ok(false);
                }
                t.insert(info.name.as_str(), to_json(&stored).as_slice())
                    .at(&self.path, "storing token")?;
                Ok(true)
            },
            |tokens, &added| {
                if added {
                    tokens.insert(stored.sha256.clone(), stored.info.clone());
                }
            },
        )
    }

    /// Revokes a token at once; `None` if there is none of that name.
    pub fn remove_token(&self, name: &str) -> Result<Option<TokenInfo>> {
        let removed = self.tokens.write_through(
            self,
            "revoking token",
            |txn| {
                let mut t = txn.open_table(TOKENS).at(&self.path, "tokens")?;
                let old = t.remove(name).at(&self.path, "revoking token")?;
                old.map(|v| self.decode::<StoredToken>(v.value(), "token"))
                    .transpose()
            },
            |tokens, removed| {
                if let Some(r) = removed {
                    tokens.remove(&r.sha256);
                }
            },
        )?;
        Ok(removed.map(|r| r.info))
    }

    /// Every named token, by name.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut all: Vec<TokenInfo> = self.tokens.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The token whose secret hashes to `sha256`.
    pub fn token_by_hash(&self, sha256: &str) -> Option<TokenInfo> {
        self.tokens.read().get(sha256).cloned()
    }

    /// Records an admin write durably; prunes past [`MAX_AUDIT`].
    pub fn add_audit(&self, mut record: AuditRecord) -> Result<()> {
        self.write("storing audit record", |txn| {
            record.id = next_id(txn, KEY_NEXT_AUDIT).at(&self.path, "audit id")?;
            let mut t = txn.open_table(AUDIT).at(&self.path, "audit")?;
            t.insert(record.id, to_json(&record).as_slice())
                .at(&self.path, "storing audit record")?;
            if record.id > MAX_AUDIT {
                t.remove(record.id - MAX_AUDIT)
                    .at(&self.path, "pruning audit")?;
            }
            Ok(())
        })
    }

    /// Audit records, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let txn = self.read("reading audit")?;
        let t = txn.open_table(AUDIT).at(&self.path, "audit")?;
        let mut out = Vec::new();
        for row in t.iter().at(&self.path, "audit")?.rev().take(limit) {
            let (_, value) = row.at(&self.path, "audit")?;
            out.push(self.decode(value.value(), "audit record")?);
        }
        Ok(out)
    }
}
